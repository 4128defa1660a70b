"""A trial under k-fold cross-validation: its folds trained in turn, scored by their mean, and
stopped after any fold once it is hopeless.

The per-fold pruning rule: after fold ``k`` (counted from 1) the trial reports, at step ``k``,
the mean of each metric over its first ``k`` folds. A scheduler compares it with what other
trials reported at step ``k``: the median rule stops a trial whose mean after ``k`` folds is
worse than the median of the others' after ``k`` folds; ASHA's rungs are counted in folds. A
trial stopped after ``k`` folds is PRUNED with that mean as its value (its unrun folds are never
trained), so one bad fold of a good configuration costs less than one fold of a bad one costs
when every fold must run. Inside a fold nothing is reported to the scheduler: its epochs are
one training, judged once it ends (the folds' epoch curves are kept with the trial, see below).

What a trial keeps: its value is the mean over the folds it trained; the metrics also hold
``<metric>_std`` (the spread over folds) and ``folds`` (how many ran). The trial's user
attribute ``folds`` holds, per fold, its metrics and its per-epoch curves: a fold axis beside
the step axis. A scheduler that pauses (ASHA, Hyperband) pauses between folds; the folds done so
far are the checkpoint, and the resumed trial trains the next fold.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tunelab.trial import Decision, Trial

if TYPE_CHECKING:
    from tunelab.nn.runner import TrialRunner, TrialTraining
    from tunelab.nn.splits import Fold
    from tunelab.nn.train import Trainer

__all__ = ["FoldsTraining", "cross_validate", "fold_scheduler_options"]


def cross_validate(
    runner: TrialRunner,
    trial: Trial,
    config: Mapping[str, Any],
    params: Mapping[str, Any],
    folds: Sequence[Fold],
) -> dict[str, float]:
    """Train ``trial``'s configuration on each fold in turn, reporting the running mean after
    each, until the folds run out or the scheduler stops or pauses the trial.

    Every fold trains with the trial's seed (the same initial weights and batch order, as
    scikit-learn's ``cross_val_score`` with a fixed ``random_state``), so the folds differ in
    their data alone.

    Returns:
        The mean of each metric over the folds trained, its ``_std`` and ``folds``.
    """
    training = FoldsTraining(runner, trial, config, params, folds)
    while not training.over:
        training.trainer.run_epoch()
        training.after_epoch()
    return training.result()


class FoldsTraining:
    """A cross-validated trial's training, stepped an epoch at a time as a
    :class:`~tunelab.nn.runner.TrialTraining` is: :attr:`trainer` is the current fold's, and
    the next fold's once one ends, so a fused executor trains the folds of many trials (those
    on the same fold together) as :func:`cross_validate` trains one trial's."""

    def __init__(
        self,
        runner: TrialRunner,
        trial: Trial,
        config: Mapping[str, Any],
        params: Mapping[str, Any],
        folds: Sequence[Fold],
        own_generator: bool = False,
    ) -> None:
        self.trial = trial
        self._runner, self._config, self._params = runner, config, params
        self._folds, self._own_generator = folds, own_generator
        self._done: list[dict[str, Any]] = list((trial.load_checkpoint() or {}).get("folds", []))
        trial.final_step = len(folds)
        self._fold = self._next_fold()

    @property
    def trainer(self) -> Trainer:
        return self._fold[0].trainer

    @property
    def over(self) -> bool:
        """True once every fold ran, or the scheduler stopped or paused the trial."""
        return self._fold is None

    def after_epoch(self) -> None:
        """At a fold's end: report the running means, then pause, stop or start the next."""
        training, handle, curve = self._fold
        training.after_epoch()
        if not training.over:
            return
        metrics = training.result()
        self.trial.warnings.extend(f"fold {len(self._done) + 1}: {w}" for w in handle.warnings)
        self._done.append(
            {
                "fold": len(self._done) + 1,
                "metrics": metrics,
                "curve": {str(step): values for step, values in curve.items()},
            }
        )
        self.trial.report(len(self._done), **_means(self._done))
        paused = self.trial.should_pause()
        if paused:  # the folds done so far are the checkpoint; the resumed trial trains the next
            self.trial.save_checkpoint({"folds": self._done})
        self._fold = None if paused or self.trial.should_stop() else self._next_fold()

    def result(self) -> dict[str, float]:
        """The mean of each metric over the folds trained, its ``_std`` and ``folds``."""
        self.trial.set_user_attr("folds", self._done)
        return _summary(self._done)

    def _next_fold(self) -> tuple[TrialTraining, Trial, dict[int, dict[str, float]]] | None:
        """The next fold's training, its handle (its epochs kept apart from the trial's steps,
        the handle going on at every one) and its curve; None when the folds ran out."""
        number = len(self._done) + 1
        if number > len(self._folds):
            return None
        curve: dict[int, dict[str, float]] = {}

        def keep(_number: int, step: int, metrics: dict[str, float]) -> Decision:
            curve[step] = metrics
            return Decision.CONTINUE

        handle = self.trial.part(self.trial.dir / f"fold-{number}", keep)
        fold = self._folds[number - 1]
        training = self._runner.start(
            handle, self._config, self._params, fold, own_generator=self._own_generator
        )
        return training, handle, curve


def fold_scheduler_options(name: str, folds: int) -> dict[str, Any]:
    """The options that make scheduler ``name`` judge a cross-validated trial by its folds: the
    median rule from fold 1 (a fold's score ends a whole training, not a noisy early epoch),
    ASHA's and Hyperband's rungs counted in folds (``folds`` in all)."""
    return {
        "median": {"warmup_steps": 1},
        "asha": {"max_resource": folds},
        "hyperband": {"max_resource": folds},
    }.get(name, {})


def _means(done: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    names = done[0]["metrics"].keys()
    return {name: statistics.fmean(fold["metrics"][name] for fold in done) for name in names}


def _summary(done: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    means = _means(done)
    spread = {
        f"{name}_std": statistics.pstdev(fold["metrics"][name] for fold in done) for name in means
    }
    return {**means, **spread, "folds": float(len(done))}
