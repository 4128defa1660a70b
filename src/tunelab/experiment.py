"""A spec-driven experiment: search on train/validation, then retrain the best config and score it
once on the held-out test split.

Why retrain on train+validation: the search used the validation split to choose, so the chosen
config's validation score is optimistic; once the choice is made, the validation data is just more
training data. The test split was cut off before the search and is used exactly once, here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunelab.errors import SpecError, StorageError, TunelabError
from tunelab.events import logger
from tunelab.executors import Executor, make_executor
from tunelab.lr_range import ATTR, apply_auto, measure_auto, uses_auto
from tunelab.readers import best_summary, validated_on
from tunelab.schedulers import make_scheduler
from tunelab.space import Space
from tunelab.spec import ExperimentSpec, parse_spec
from tunelab.storage import Storage, StudyRecord, get_storage
from tunelab.strategies import make_strategy
from tunelab.study import Callback, Study, owner_alive, this_owner
from tunelab.trial import FrozenTrial

if TYPE_CHECKING:
    from tunelab.nn import NetworkObjective
    from tunelab.nn.callbacks import Callback

__all__ = ["Experiment", "open_experiment"]

#: Spec fields that define what a study searches; changing them needs a new study name. Specs are
#: stored and compared without their defaults, so a field added in a later release does not make
#: an older study look different.
_IDENTITY = ("data", "model", "metric", "space", "fixed")


@dataclass
class Experiment:
    """A spec bound to its study. ``search()`` runs trials; ``finalize()`` retrains and tests.

    The objective is built once per experiment, so the data is loaded once per run: for the
    checks, the search (its worker processes get it with the objective) and the final fit.
    """

    spec: ExperimentSpec
    study: Study
    objective: NetworkObjective
    space: Space

    @classmethod
    def from_spec(cls, spec: ExperimentSpec, storage: str | Storage | None = None) -> Experiment:
        """The experiment of ``spec``: its objective checked (the data loaded), its study opened
        or created, and an ``auto`` learning rate's range tests run or, resuming, read back."""
        objective = _objective(spec)
        # every fixed value and bound of the space, the data (loaded here, once) and the metric
        space = spec.build_space()
        objective.check(space)
        _check_metric(spec, objective)
        strategy_options = spec.strategy.options
        if spec.strategy.name == "random":
            strategy_options.setdefault("seed", spec.seed)
        strategy = make_strategy(spec.strategy.name, **strategy_options)
        scheduler = make_scheduler(spec.scheduler.name, **_scheduler_options(spec, objective))
        store = get_storage(storage or spec.storage)  # opened once the spec is known to be sound
        _check_same_search(spec, store)
        lr_range = None
        if uses_auto(spec):
            lr_range = _stored_lr_range(spec.name, store) or measure_auto(spec, objective)
            space, objective.fixed, lr_range["searched"] = apply_auto(spec, lr_range)
            objective.check(space)
        study = Study(
            spec.name,
            storage=store,
            direction=spec.metric.direction,
            metric=spec.metric.name,
            strategy=strategy,
            scheduler=scheduler,
            seed=spec.seed,
            artifacts_dir=spec.artifacts,
            spec=spec.model_dump(mode="json", exclude_defaults=True),
        )
        if lr_range is not None and ATTR not in study.attrs:
            study.set_attr(ATTR, lr_range)
        if spec.configs and not study.attrs.get("configs_queued"):
            for config in spec.configs:
                study.enqueue(config)
            study.set_attr("configs_queued", True)
        return cls(spec, study, objective, space)

    def search(self, callbacks: Iterable[Callback] = ()) -> FrozenTrial | None:
        """Run the search until the spec's budget is spent; returns the best trial."""
        budget = self.spec.budget
        return self.study.optimize(
            self.objective,
            self.space,
            trials=budget.trials,
            minutes=budget.minutes,
            workers=self.spec.workers,
            fuse=self.spec.fuse,
            executor=self._executor(),
            reproducible=self.spec.reproducible,
            trial_timeout=budget.trial_minutes * 60 if budget.trial_minutes else None,
            callbacks=callbacks,
        )

    def _executor(self) -> Executor | None:
        """The spec's executor; ``fuse: true`` beside one that can fuse (``processes``, ``ray``)
        turns its ``fuse`` on unless its options say otherwise."""
        executor = self.spec.executor
        if executor is None:
            return None
        options = dict(executor.options)
        if self.spec.fuse and executor.name in ("processes", "ray"):
            options.setdefault("fuse", True)
        return make_executor(executor.name, **options)

    def finalize(self, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
        """Retrain the best config on train+validation, score it on test once, save the model.

        The result is stored with the study (``tunelab best NAME --json`` prints it); a finalize
        with the same best trial reuses it instead of retraining. ``callbacks`` join the
        retrain's training (``tunelab run`` shows it with a :class:`~tunelab.nn.ProgressBar`).

        One retrain per study, whoever shares it: the retrain is claimed in storage first
        (study attribute ``retraining``). A process that finds the claim held waits for the
        result instead of training the same configuration again, and takes the claim over once
        its holder is gone: a process of this machine that no longer runs, or, from another
        machine, a claim older than :data:`RETRAIN_CLAIM_S` plus three times the trial's own
        training time.
        """
        store, study_id, told = self.study.storage, self.study.id, False
        while True:
            best = self.study.best_trial
            if best is None:
                raise TunelabError(
                    f"no trial of {self.study.name!r} completed, so there is no best config; "
                    f"see why with: tunelab trials {self.study.name}"
                )
            attrs = self.study.attrs
            previous = attrs.get("result")
            if previous and previous.get("trial") == best.number:
                return previous
            holder = attrs.get(_RETRAIN)
            if holder is not None and _claim_holds(holder):
                if not told:
                    logger.info(
                        "waiting for %s, which retrains trial %d", holder["owner"], holder["trial"]
                    )
                    told = True
                time.sleep(_POLL_S)
                continue
            mine = {"owner": this_owner(), "trial": best.number, "expires": _expiry(best)}
            if store.swap_study_attr(study_id, _RETRAIN, holder, mine):
                break
        try:
            final = self.objective.final_fit(
                best.params,
                seed=best.seed,
                out_dir=self.study.study_dir / "best",
                callbacks=callbacks,
            )
            result = {
                **best_summary(self.study.name, self.study.metric, best),
                "validated_on": validated_on(self.spec.model_dump(mode="json")),
                "test_metrics": final["test_metrics"],
                "retrained_on": "train+validation",
                "artifacts": final["artifacts"],
            }
            self.study.set_attr("result", result)
        finally:
            store.swap_study_attr(study_id, _RETRAIN, mine, None)
        return result


#: The study attribute that claims the final retrain: ``{"owner", "trial", "expires"}``.
_RETRAIN = "retraining"
#: How long a claim from another machine holds beyond three times the trial's training time.
RETRAIN_CLAIM_S = 600.0
_POLL_S = 1.0


def _claim_holds(claim: dict[str, Any]) -> bool:
    """Whether a retrain claim's holder may still be at work (see :meth:`Experiment.finalize`)."""
    alive = owner_alive(claim["owner"])
    return alive if alive is not None else time.time() < claim["expires"]


def _expiry(best: FrozenTrial) -> float:
    return time.time() + RETRAIN_CLAIM_S + 3 * (best.duration or 0.0)


def stored_spec(record: StudyRecord) -> ExperimentSpec:
    """The spec a study was created from; refused for a study made in Python, whose objective
    is code tunelab has no record of."""
    if not record.spec:
        raise StorageError(
            f"study {record.name!r} was created from Python, not from a spec, so tunelab cannot "
            "rebuild what it trained; run it again from your script (Study.optimize)"
        )
    return parse_spec(record.spec)


def open_experiment(name: str, storage: str | Storage | None = None) -> Experiment:
    """The experiment behind a stored study, rebuilt from the spec saved with it (for resume)."""
    store = get_storage(storage, create=False)
    spec = stored_spec(store.get_study(name))
    from tunelab.nn.config import is_builtin

    if not is_builtin(spec.model):
        raise SpecError(
            "model",
            f"study {name!r} trains your code ({spec.model}); tunelab never imports code a "
            "database names, so resume it with the spec file you trust: tunelab run SPEC",
        )
    return Experiment.from_spec(spec, store)


def _objective(spec: ExperimentSpec) -> NetworkObjective:
    from tunelab.nn import NetworkObjective

    data = spec.data
    fixed = {name: value for name, value in spec.fixed.items() if value != "auto"}
    return NetworkObjective(
        data={
            "source": data.source,
            "target": data.target,
            "task": data.task,
            "test_size": data.test_size,
            "holdout": data.validation.holdout,
            "kfold": data.validation.kfold,
            "repeats": data.validation.repeats,
            "group": data.validation.group,
            "scaling": data.scaling,
            "target_scaling": data.target_scaling,
            "shape": data.shape,
        },
        model=spec.model,
        fixed=fixed,  # an auto lr joins once its range test has run
        device=spec.device,
        split_seed=spec.seed,
    )


#: Schedulers whose rungs are counted in epochs, up to ``max_resource``.
_RUNG_SCHEDULERS = ("asha", "hyperband")


def _scheduler_options(spec: ExperimentSpec, objective: NetworkObjective) -> dict[str, Any]:
    """The spec's scheduler options over what the validation implies: under k-fold a trial
    reports once per fold, else a full trial is its epochs (ASHA's and Hyperband's top rung)."""
    from tunelab.nn.kfold import fold_scheduler_options

    name, validation = spec.scheduler.name, spec.data.validation
    if validation.kfold:
        implied = fold_scheduler_options(name, validation.kfold * validation.repeats)
    elif name in _RUNG_SCHEDULERS:
        implied = {"max_resource": _max_epochs(spec, objective)}
    else:
        implied = {}
    return {**implied, **spec.scheduler.options}


def _max_epochs(spec: ExperimentSpec, objective: NetworkObjective) -> int:
    """The most epochs a trial trains: fixed, the top of the searched range, or the default."""
    if "epochs" in spec.space:
        param = spec.space["epochs"]
        return int(max(param.choices) if hasattr(param, "choices") else param.high)
    return int(objective.resolver.resolve({})[0]["epochs"])


def _check_metric(spec: ExperimentSpec, objective: NetworkObjective) -> None:
    known = objective.metric_names()
    if spec.metric.name not in known:
        raise SpecError(
            "metric.name",
            f"{spec.metric.name!r} is not reported by model {spec.model!r} on this data; "
            f"choose one of {', '.join(known)}",
        )


def _stored_lr_range(name: str, storage: Storage) -> dict[str, Any] | None:
    """The range tests a study made before its first trial, to resume it with the same range."""
    try:
        return storage.get_study(name).attrs.get(ATTR)
    except StorageError:
        return None


def _check_same_search(spec: ExperimentSpec, storage: Storage) -> None:
    try:
        stored = storage.get_study(spec.name).spec
    except StorageError:
        return
    if not stored:
        return
    new = spec.model_dump(mode="json", exclude_defaults=True)
    changed = [key for key in _IDENTITY if stored.get(key) != new.get(key)]
    if changed:
        raise SpecError(
            changed[0],
            f"differs from the stored study {spec.name!r}, which searched something else; "
            "give the spec a new name (budget, workers and storage may change between runs)",
        )
