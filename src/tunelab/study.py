"""The study: one loop joins strategy, executor, scheduler and storage.

strategy proposes -> executor runs -> reports arrive -> scheduler decides -> storage records.
The driver (``Study.optimize``) is the one writer for the trials it runs; several drivers, in several
processes or on several machines, can share one study through storage.
"""

from __future__ import annotations

import bisect
import math
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from tunelab._names import check_study_name
from tunelab._params import clone
from tunelab.clock import Clock, RealClock
from tunelab.errors import NoCompletedTrials, SpecError, StorageError, TunelabError
from tunelab.events import LoggingListener, StudyListener, as_listener, logger
from tunelab.executors import Executor, TrialOutcome, TrialTask, executor_for, make_executor
from tunelab.executors.base import Objective
from tunelab.readers import best_trial, state_counts
from tunelab.schedulers import SCHEDULERS, Scheduler, StudyView, make_scheduler
from tunelab.space import Space, learned_space
from tunelab.storage import (
    Storage,
    StorageUnavailable,
    StudyRecord,
    TrialStateError,
    get_storage,
)
from tunelab.storage.base import StudyNameTaken, TrialNumberTaken
from tunelab.strategies import Proposal, Strategy, make_strategy
from tunelab.strategies.base import History
from tunelab.trial import Decision, FrozenTrial, TrialState

__all__ = ["Study", "create_study", "load_study", "trial_seed"]

HEARTBEAT_INTERVAL_S = 10.0
#: A RUNNING trial on another machine with no heartbeat for this long is taken as dead.
STALE_AFTER_S = 120.0
_HOST = socket.gethostname()

Callback = Callable[["Study", FrozenTrial], None] | StudyListener


def trial_seed(study_seed: int, number: int) -> int:
    """The seed of trial ``number``: independent streams from one study seed (numpy SeedSequence)."""
    return int(np.random.SeedSequence([study_seed, number]).generate_state(1)[0])


def _tally(trials: Sequence[FrozenTrial]) -> str:
    """What a study's trials came to, for a line that says why none is best:
    "3 trials: 2 failed, 1 pruned; the last failure: ValueError: bad batch"."""
    if not trials:
        return "it has no trials; run some with study.optimize(objective, space, trials=...)"
    counts = {state: n for state, n in state_counts(trials).items() if n}
    parts = ", ".join(f"{n} {state.value.lower()}" for state, n in counts.items())
    failed = [t for t in trials if t.state is TrialState.FAILED and (t.error or "").strip()]
    last = f"; the last failure: {failed[-1].error.strip().splitlines()[-1]}" if failed else ""
    return f"{len(trials)} trial{'s' if len(trials) != 1 else ''}: {parts}{last}"


#: trials_dataframe's column groups, in Optuna's order (seed and error are tunelab's, off by default)
_DATAFRAME_GROUPS = (
    "number",
    "value",
    "datetime_start",
    "datetime_complete",
    "duration",
    "params",
    "metrics",
    "user_attrs",
    "state",
    "seed",
    "error",
)
_DATAFRAME_DEFAULT = _DATAFRAME_GROUPS[:-2]
_DATAFRAME_NESTED = ("params", "metrics", "user_attrs")


def _dataframe_row(trial: FrozenTrial) -> dict[str, Any]:
    row: dict[str, Any] = {
        "number": trial.number,
        "value": trial.value,
        "datetime_start": _datetime(trial.started_at),
        "datetime_complete": _datetime(trial.finished_at) if trial.state.is_finished() else None,
        "duration": trial.duration if trial.state.is_finished() else None,
        "state": trial.state.value,
        "seed": trial.seed,
        "error": trial.error,
    }
    for group, values in (
        ("params", trial.params or {}),
        ("metrics", trial.metrics),
        ("user_attrs", trial.user_attrs),
    ):
        row.update({f"{group}_{key}": value for key, value in values.items()})
    return row


def _datetime(timestamp: float | None) -> datetime | None:
    """A stored time as Optuna shows it: a naive local datetime."""
    return None if timestamp is None else datetime.fromtimestamp(timestamp)


def _direction(direction: str) -> str:
    if direction not in ("maximize", "minimize"):
        raise SpecError("metric.direction", f"must be 'maximize' or 'minimize', got {direction!r}")
    return direction


class Study:
    """A named search, stored so it can be inspected, resumed and shared between processes.

    Example:
        >>> from tunelab import BayesSearch, Float, Study
        >>> study = Study("quad", storage="sqlite://", direction="minimize", seed=0)
        >>> best = study.optimize(lambda t: (t.params["x"] - 2) ** 2, {"x": Float(-5, 5)}, trials=20)
        >>> round(best.params["x"]), round(study.best_params["x"]), len(study.trials)
        (2, 2, 20)
        >>> tuned = Study("gp", storage="sqlite://", strategy=BayesSearch(n_initial=5))
        >>> tuned.strategy.n_initial
        5

    Strategies, by name or as an object with options (all exported from ``tunelab``):

    * ``"random"`` / :class:`~tunelab.RandomSearch` ``(seed=None)``: scrambled Sobol points
      (the default; ``seed`` None follows the study's seed).
    * ``"grid"`` / :class:`~tunelab.GridSearch` ``()``: every combination, then the study ends.
    * ``"manual"`` / :class:`~tunelab.Manual` ``()``: only the configs given to :meth:`enqueue`.
    * ``"bayes"`` / :class:`~tunelab.BayesSearch` ``(n_initial=None, n_candidates=1024,
      max_observations=300, seed=None)``: a Gaussian process (BoTorch) and log expected
      improvement after ``n_initial`` Sobol trials (default 2 per parameter, 5 to 10).

    Schedulers (early stopping), by name or as an object:

    * None / ``"none"``: every trial runs to its end.
    * ``"median"`` / :class:`~tunelab.MedianScheduler` ``(warmup_steps=5, min_trials=5,
      interval=1)``: stop a trial whose best value so far is worse than the other trials' median.
    * ``"asha"`` / :class:`~tunelab.ASHAScheduler` ``(min_resource=1, max_resource=None,
      reduction_factor=3, brackets=1)``: pause at rungs, resume the best 1/reduction_factor.
    * ``"hyperband"`` / :class:`~tunelab.HyperbandScheduler` ``(min_resource=1, max_resource=81,
      reduction_factor=3)``: ASHA brackets from aggressive to full training.

    Reading results: :attr:`best_trial` (None before a trial completes), :attr:`best_params` and
    :attr:`best_value` (these raise :class:`NoCompletedTrials`, a ValueError, as Optuna's do),
    :attr:`trials`, :meth:`trials_dataframe` (pandas). :meth:`load` opens an existing study.
    Each finished trial is one line on the ``tunelab`` logger;
    ``tunelab.set_verbosity(logging.WARNING)`` keeps the warnings only (failed trials, a call
    that ran nothing or ended with no completed trial).

    Args:
        name: the study's name in storage; an existing study of that name is continued.
        storage: a database URL or a Storage (default ``sqlite:///tunelab.db``).
        direction: "maximize" or "minimize".
        metric: which number is optimised when the objective returns or reports several.
        strategy: "random", "grid", "manual", "bayes" or a Strategy (the study works on a copy;
            its ``direction``, ``metric`` and a ``seed`` left None are set from the study).
        scheduler: None, "none", "median", "asha", "hyperband" or a Scheduler (the study works
            on a copy).
        seed: study seed; each trial's seed derives from it and the trial number.
        artifacts_dir: where per-trial directories go (default: beside a SQLite file, else ./).
        clock: where the driver (and a storage opened from a URL) reads the time; a
            :class:`~tunelab.clock.VirtualClock` runs simulated studies.
    """

    def __init__(
        self,
        name: str,
        storage: str | Storage | None = None,
        direction: str = "maximize",
        metric: str = "value",
        strategy: str | Strategy = "random",
        scheduler: str | Scheduler | None = None,
        seed: int | None = None,
        artifacts_dir: str | Path | None = None,
        spec: Mapping[str, Any] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock or RealClock()
        self.storage = get_storage(storage, self.clock)
        self._record = self._open(name, _direction(direction), metric, seed, spec)
        self.seed = int(self._record.attrs["seed"])
        self.strategy = clone(make_strategy(strategy))
        options = self.strategy.get_params()
        if options.get("seed", 0) is None:  # seeded strategies follow the study
            self.strategy.set_params(seed=self.seed)
        if "direction" in options:  # model-based strategies learn in the study's direction
            self.strategy.set_params(direction=self.direction)
        if "metric" in options:  # ... and read the study's metric in reports
            self.strategy.set_params(metric=self.metric)
        self.scheduler = clone(make_scheduler(scheduler))
        self.artifacts_dir = (
            Path(artifacts_dir) if artifacts_dir else _default_artifacts(self.storage)
        )
        self._view = _TrialView(self.storage, self._record.id)
        self._executor: Executor | None = None

    def _open(
        self, name: str, direction: str, metric: str, seed: int | None, spec: Mapping | None
    ) -> StudyRecord:
        try:
            record = self.storage.get_study(name)
        except StorageError:
            check_study_name(name)  # it becomes a folder name: checked before anything is stored
            chosen = seed if seed is not None else int(np.random.SeedSequence().entropy % 2**31)
            try:
                return self.storage.create_study(name, direction, metric, spec, {"seed": chosen})
            except StudyNameTaken:  # another process created it in between
                record = self.storage.get_study(name)
        if (record.direction, record.metric) != (direction, metric):
            raise SpecError(
                "metric",
                f"study {name!r} already exists and optimises {record.metric} ({record.direction}), "
                f"not {metric} ({direction}); use another name or the same metric",
            )
        return record

    # Reading -------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._record.name

    @property
    def direction(self) -> str:
        return self._record.direction

    @property
    def metric(self) -> str:
        return self._record.metric

    @property
    def id(self) -> int:
        return self._record.id

    @property
    def attrs(self) -> dict[str, Any]:
        return self.storage.get_study(self.name).attrs

    @property
    def trials(self) -> list[FrozenTrial]:
        """Every trial, by number, as storage holds it now."""
        return self.storage.get_trials(self.id)

    @property
    def best_trial(self) -> FrozenTrial | None:
        """The COMPLETE trial with the best value (None before any completes)."""
        return best_trial(
            self.storage.get_trials(self.id, states=[TrialState.COMPLETE]), self.direction
        )

    @property
    def best_params(self) -> dict[str, Any]:
        """The params of :attr:`best_trial`; raises :class:`NoCompletedTrials` (a ValueError,
        as Optuna's ``best_params`` does) before any trial completes."""
        return dict(self._best("best_params").params or {})

    @property
    def best_value(self) -> float:
        """The value of :attr:`best_trial`; raises :class:`NoCompletedTrials` (a ValueError)
        before any trial completes."""
        return float(self._best("best_value").value)

    def _best(self, asked: str) -> FrozenTrial:
        best = self.best_trial
        if best is None:
            raise NoCompletedTrials(
                f"study {self.name!r} has no completed trial yet, so no {asked}; "
                f"{_tally(self.trials)}"
            )
        return best

    def trials_dataframe(self, attrs: Sequence[str] | None = None) -> Any:
        """Every trial as a row of a pandas DataFrame, as Optuna's ``trials_dataframe`` has it.

        Columns, in Optuna's order: ``number``, ``value``, ``datetime_start``,
        ``datetime_complete``, ``duration`` (a Timedelta), ``params_<name>`` (NaN where a
        conditional parameter is inactive), ``metrics_<name>`` (every metric the trial ended
        with), ``user_attrs_<key>`` (what the objective stored with ``trial.set_user_attr``),
        ``state`` (``"COMPLETE"``, ``"PRUNED"``, ...).

        Args:
            attrs: the column groups to keep, any of ``number``, ``value``, ``datetime_start``,
                ``datetime_complete``, ``duration``, ``params``, ``metrics``, ``user_attrs``,
                ``state``, ``seed``, ``error`` (default: all but ``seed`` and ``error``).

        Raises:
            ImportError: pandas is not installed (``pip install pandas``).
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "Study.trials_dataframe needs pandas, which is not installed; "
                "install it with: pip install pandas"
            ) from None
        groups = _DATAFRAME_DEFAULT if attrs is None else tuple(attrs)
        unknown = [g for g in groups if g not in _DATAFRAME_GROUPS]
        if unknown:
            raise ValueError(
                f"trials_dataframe: unknown attrs {', '.join(map(repr, unknown))}; "
                f"choose from {', '.join(_DATAFRAME_GROUPS)}"
            )
        trials = self.trials
        rows = [_dataframe_row(trial) for trial in trials]
        columns: list[str] = []
        for group in _DATAFRAME_GROUPS:  # Optuna's order, whatever order attrs names them in
            if group not in groups:
                continue
            if group in _DATAFRAME_NESTED:
                columns += sorted(
                    {key for row in rows for key in row if key.startswith(group + "_")}
                )
            else:
                columns.append(group)
        frame = pd.DataFrame(rows, columns=columns)
        for column in ("datetime_start", "datetime_complete"):
            if column in frame:
                frame[column] = pd.to_datetime(frame[column])
        if "duration" in frame:
            frame["duration"] = pd.to_timedelta(frame["duration"], unit="s")
        return frame

    @classmethod
    def load(
        cls,
        name: str,
        storage: str | Storage | None = None,
        *,
        strategy: str | Strategy = "random",
        scheduler: str | Scheduler | None = None,
        artifacts_dir: str | Path | None = None,
        clock: Clock | None = None,
    ) -> Study:
        """Open a study that exists (Optuna's ``load_study``): its direction, metric and seed come
        from storage. Raises :class:`~tunelab.errors.StorageError`, one line naming the studies
        the storage holds, when there is none of that name; ``Study(name, ...)`` creates one.

        The strategy and scheduler are the ones passed here, not necessarily those the study
        ran with (as with Optuna's sampler and pruner).
        """
        clock = clock or RealClock()
        try:  # a database that does not exist yet is not created
            store = get_storage(storage, clock, create=False)
            record = store.get_study(name)
        except StorageError as exc:
            raise StorageError(
                f"{exc}; Study.load opens an existing study, Study({name!r}, ...) creates one"
            ) from None
        return cls(
            name,
            storage=store,
            direction=record.direction,
            metric=record.metric,
            strategy=strategy,
            scheduler=scheduler,
            artifacts_dir=artifacts_dir,
            clock=clock,
        )

    def get_trials(
        self, deepcopy: bool = True, states: Iterable[TrialState] | None = None
    ) -> list[FrozenTrial]:
        """Optuna's ``get_trials``: the trials, or those in ``states`` (records are immutable, so
        ``deepcopy`` changes nothing)."""
        wanted = None if states is None else set(states)
        return [t for t in self.trials if wanted is None or t.state in wanted]

    @property
    def n_running(self) -> int:
        """Trials this driver is running right now."""
        return len(self._executor.running()) if self._executor else 0

    def enqueue(self, params: Mapping[str, Any]) -> FrozenTrial:
        """Queue a config to run before anything the strategy proposes (a manual trial)."""
        return self.storage.enqueue_trial(self.id, dict(params))

    # Running -------------------------------------------------------------------------------------
    def optimize(
        self,
        objective: Objective,
        space: Space | Mapping[str, Any] | None = None,
        trials: int | None = None,
        minutes: float | None = None,
        workers: int = 1,
        executor: str | Executor | None = None,
        trial_timeout: float | None = None,
        callbacks: Iterable[Callback] = (),
        reproducible: bool = False,
        n_trials: int | None = None,
        timeout: float | None = None,
        fuse: bool = False,
    ) -> FrozenTrial | None:
        """Run trials until the budget is spent or the strategy has nothing left; return the best.

        Args:
            objective: ``f(trial) -> float | dict[str, float] | None``; None means "use the last
                reported value of the metric".
            space: a Space, or a mapping of names to Float / Int / Categorical; None when the
                objective asks for its parameters as it runs (``trial.suggest_float(...)``,
                define-by-run, as in Optuna). Both mix: the declared parameters, and the ones
                the objective suggests, which the study learns from the trials that ran.
            trials: the study's total trial budget, counted across runs and processes (as a
                spec's ``budget.trials``), so a resumed study tops up to the total and re-running
                a finished one runs nothing (it logs one line saying so).
            minutes: stop starting new trials after this long (this call); running ones finish.
            workers: trials at once; >1 runs them in that many local processes.
            executor: an Executor, or a name from :data:`~tunelab.executors.EXECUTORS`
                (overrides ``workers`` and ``fuse``).
            trial_timeout: seconds a single trial may run before it is stopped and marked FAILED
                (counted from when it starts running, each time it runs).
            callbacks: ``f(study, trial)`` called after each trial ends, or
                :class:`~tunelab.events.StudyListener` objects that also hear starts, reports
                and pauses (a live view). Each finished trial is also logged, one line on the
                ``tunelab`` logger (:func:`tunelab.events.set_verbosity` quiets it).
            reproducible: make the study's outcome depend on its seed alone, not on which trial
                finishes first: with W workers, trial n is proposed, and judged by the scheduler,
                with exactly the trials numbered up to n - W, all finished (it waits for them).
                W is fixed when the study first runs this way. It costs the idle time of a worker
                waiting for an earlier trial (bench/reproducible.py measures it); schedulers that
                pause trials are not covered.
            n_trials: start at most this many trials in this call, as Optuna's ``n_trials``
                counts: new ones and queued ones (resuming a paused trial does not count). With
                ``trials`` too, both limits hold.
            timeout: Optuna's name for the time budget, in seconds (``minutes`` x 60).
            fuse: train trials whose networks have the same shape as fused groups, in this
                process or in each worker (:class:`~tunelab.executors.FusedExecutor`); for a
                :class:`~tunelab.nn.NetworkObjective` (other objectives run as without it).

        Returns:
            The study's best COMPLETE trial (from every run, not only this one), or None when no
            trial has completed; a WARNING line on the ``tunelab`` logger then says what the
            trials came to.
        """
        if n_trials is not None and (not isinstance(n_trials, int) or n_trials < 1):
            raise SpecError("n_trials", f"must be an integer >= 1, got {n_trials!r}")
        if timeout is not None:
            minutes = timeout / 60 if minutes is None else min(minutes, timeout / 60)
        unbounded = trials is None and minutes is None and n_trials is None
        if unbounded and not self.strategy.is_finite():
            raise SpecError(
                "budget",
                "give trials and/or minutes, or the search never ends "
                "(trials: the study's total; n_trials: how many this call starts)",
            )
        if space is not None and not isinstance(space, Space):
            space = Space(space)
        if space is None and getattr(self.strategy, "search_space", False) is None:
            raise SpecError(
                "strategy",
                "a grid needs its values: GridSearch(search_space={name: [values], ...}) as "
                "Optuna's GridSampler takes them, or a declared space",
            )
        logged = LoggingListener(lambda: best_trial(self._view.trials, self.direction))
        listeners = [logged, *map(as_listener, callbacks)]
        run = _Run(self, space, trials, minutes, trial_timeout, listeners, n_trials)
        if not isinstance(fuse, bool):
            raise SpecError("fuse", f"must be true or false, got {fuse!r}")
        self._executor = make_executor(executor) if executor else executor_for(workers, fuse)
        run.reproducible = reproducible
        try:
            run.loop(objective, self._executor)
        finally:
            self._executor.shutdown()
            run.close()
            self._executor = None
        said = not run.started and run.ended_by is not None
        if said:
            logger.warning(self._nothing_ran(run.ended_by, trials))
        best = self.best_trial
        if best is None and not (said and not self._view.trials):  # no trials: said already
            logger.warning(
                f"study {self.name!r}: no trial has completed, so optimize returns None; "
                f"{_tally(self.trials)}"
            )
        return best

    def _nothing_ran(self, reason: str, total: int | None) -> str:
        """The one line a call that started no trial logs: why, and how to run more."""
        have = len(self.trials)  # from storage: other processes may have added some
        had = f"study {self.name!r} already has {have} trial{'s' if have != 1 else ''}"
        if reason == "budget":
            return (
                f"{had}, the total trials={total} asks for, so nothing ran; trials= is the "
                f"study's total across runs: pass a larger one (trials={(total or 0) + 10}), or "
                "n_trials=N to run N more"
            )
        name = type(self.strategy).__name__
        if name == "Manual":
            return (
                f"study {self.name!r} has no queued config, so nothing ran; the manual strategy "
                "runs only the configs given to study.enqueue(params)"
            )
        return f"{had} and {name} has nothing more to propose, so nothing ran"

    def _reproducible_lag(self, workers: int) -> int:
        """The W of reproducible mode: stored with the study on its first such run, so a resume
        with another number of workers still makes the same decisions."""
        lag = self.attrs.get("reproducible_lag")
        if lag is None:
            lag = workers
            self.set_attr("reproducible_lag", lag)
        return int(lag)

    def set_attr(self, key: str, value: Any) -> None:
        self.storage.set_study_attr(self.id, key, value)

    def trial_dir(self, number: int) -> Path:
        return self.study_dir / f"trial_{number:05d}"

    @property
    def study_dir(self) -> Path:
        """Where this study's artifacts go; never outside ``artifacts_dir``, whatever the name
        of a study an older release (or another tool) stored."""
        root = self.artifacts_dir.resolve()
        folder = (root / self.name).resolve()
        if folder.parent != root:
            raise StorageError(
                f"study {self.name!r} cannot have an artifact folder: its name is not a plain "
                "folder name; copy it to a new study name with letters, digits, '.', '_', '-'"
            )
        return folder


def create_study(
    study_name: str | None = None,
    storage: str | Storage | None = None,
    direction: str = "minimize",
    load_if_exists: bool = False,
    *,
    metric: str = "value",
    strategy: str | Strategy = "random",
    scheduler: str | Scheduler | None = "median",
    seed: int | None = None,
    sampler: Strategy | None = None,
    pruner: Scheduler | None = None,
) -> Study:
    """A study made as Optuna's ``create_study`` makes one, so a script ports by its import.

    As in Optuna: minimised by default, kept in memory unless ``storage`` names a database, a
    generated name unless ``study_name`` is given, an existing study refused unless
    ``load_if_exists`` (then opened as stored: its direction and metric), and the median rule as the default early stopping (Optuna's
    ``MedianPruner``). ``sampler`` and ``pruner`` take tunelab's strategies and schedulers
    (``tunelab.BayesSearch()``, ``tunelab.ASHAScheduler()``); the porting guide (docs/porting.md)
    names the counterpart of each of Optuna's.

    Raises:
        StorageError: the study exists and ``load_if_exists`` is False.
    """
    for given, name, counterpart in ((sampler, "sampler", Strategy), (pruner, "pruner", Scheduler)):
        if given is not None and not isinstance(given, counterpart):
            raise SpecError(
                name,
                f"takes a tunelab {counterpart.__name__} ({type(given).__name__} is not one); "
                "see docs/porting.md for the counterpart of each of Optuna's",
            )
    store = get_storage(storage or "sqlite://")
    name = study_name or f"no-name-{uuid.uuid4()}"
    if any(study.name == name for study in store.list_studies()):
        if not load_if_exists:
            raise StorageError(
                f"study {name!r} already exists in {store!r}; pass load_if_exists=True to "
                "continue it, or another study_name"
            )
        return Study.load(name, store, strategy=sampler or strategy, scheduler=pruner or scheduler)
    return Study(
        name,
        storage=store,
        direction=direction,
        metric=metric,
        strategy=sampler or strategy,
        scheduler=pruner or scheduler,
        seed=seed,
    )


def load_study(study_name: str, storage: str | Storage, **options: Any) -> Study:
    """Optuna's ``load_study``: :meth:`Study.load`."""
    return Study.load(study_name, storage, **options)


def _default_artifacts(storage: Storage) -> Path:
    url = getattr(storage, "url", "")
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :]).expanduser().resolve().parent / "tunelab-artifacts"
    return Path("tunelab-artifacts").resolve()


class _TrialView:
    """The driver's copy of the study's trials, kept current with cheap incremental reads."""

    def __init__(self, storage: Storage, study_id: int) -> None:
        self._storage = storage
        self._study_id = study_id
        self._ordered: list[FrozenTrial] = []  # by number: updates replace in place, no re-sort
        self._index: dict[int, int] = {}  # trial number -> position in _ordered
        self._waiting: set[int] = set()
        self._not_proposed: list[int] = []  # numbers of queued (manual) trials, sorted
        self._revision = 0
        self._complete = False
        self.next_number = 0

    def sync(self, force: bool = False) -> None:
        """Read what changed in storage, unless our own last write proved nothing did."""
        if self._complete and not force:
            return
        changed, self._revision = self._storage.changes(self._study_id, self._revision)
        for trial in changed:
            self._store(trial)
        self._complete = True

    def put(self, trial: FrozenTrial, revision: int | None = None) -> None:
        """Keep our own write. When it took the very next revision, no other process wrote in
        between, so the view is still complete and the next sync need not read anything."""
        self._store(trial)
        if revision is not None:
            self._complete = revision == self._revision + 1
            if self._complete:
                self._revision = revision

    def _store(self, trial: FrozenTrial) -> None:
        position = self._index.get(trial.number)
        if position is not None:
            self._ordered[position] = trial
        elif trial.number >= self.next_number:  # the usual case: a new trial at the end
            self._index[trial.number] = len(self._ordered)
            self._ordered.append(trial)
            self.next_number = trial.number + 1
        else:  # a lower number another process created after we read: re-index once
            self._ordered.insert(bisect.bisect(self._ordered, trial.number, key=_number), trial)
            self._index = {t.number: i for i, t in enumerate(self._ordered)}
        if trial.source != "strategy":
            position = bisect.bisect_left(self._not_proposed, trial.number)
            if self._not_proposed[position : position + 1] != [trial.number]:
                self._not_proposed.insert(position, trial.number)
        if trial.state is TrialState.WAITING:
            self._waiting.add(trial.number)
        else:
            self._waiting.discard(trial.number)

    def has_waiting(self) -> bool:
        return bool(self._waiting)

    def first_waiting(self) -> int:
        return min(self._waiting)

    def get(self, number: int) -> FrozenTrial:
        return self._ordered[self._index[number]]

    def find(self, number: int) -> FrozenTrial | None:
        position = self._index.get(number)
        return None if position is None else self._ordered[position]

    @property
    def trials(self) -> History:
        """Every trial by number (a copy: the view changes as reports arrive)."""
        return History(self._ordered, tuple(self._not_proposed))


def _number(trial: FrozenTrial) -> int:
    return trial.number


class _Order:
    """Reproducible mode: trial n sees exactly the trials numbered up to n - lag, all finished.

    Which trials a proposal or a pruning decision sees is then fixed by trial numbers alone: a
    trial is started only once every trial ``lag`` or more numbers before it has finished, and
    the later ones, still running or not, show only their params (as pending)."""

    def __init__(self, lag: int) -> None:
        self.lag = lag
        self._finished_prefix = 0  # every trial numbered below it has finished

    def ready(self, view: _TrialView, number: int) -> bool:
        """Whether every trial numbered up to ``number - lag`` has finished."""
        while (t := view.find(self._finished_prefix)) is not None and t.state.is_finished():
            self._finished_prefix += 1
        return number < self._finished_prefix + self.lag

    def history(self, trials: Sequence[FrozenTrial], number: int) -> list[FrozenTrial]:
        """What the strategy sees when it proposes trial ``number``."""
        return [
            t if t.number <= number - self.lag else _pending(t) for t in trials if t.number < number
        ]

    def seen_by(self, view: _TrialView, trial: FrozenTrial) -> list[FrozenTrial]:
        """What the scheduler sees when ``trial`` reports: the trials it was proposed with."""
        earlier = [t for t in view.trials if t.number <= trial.number - self.lag]
        return [*earlier, trial]


def _pending(trial: FrozenTrial) -> FrozenTrial:
    """A trial as one that has just started: its params, no outcome."""
    return replace(
        trial, state=TrialState.RUNNING, value=None, metrics={}, intermediate={}, error=None
    )


class _Run:
    """One call of ``Study.optimize``: the ask -> run -> tell loop and its bookkeeping."""

    def __init__(
        self,
        study: Study,
        declared: Space | None,
        max_trials: int | None,
        minutes: float | None,
        trial_timeout: float | None,
        listeners: list[StudyListener],
        quota: int | None = None,
    ) -> None:
        self.study = study
        self.storage = study.storage
        self.clock = study.clock
        self.declared = declared
        # define-by-run: what the objective suggested, by name (the latest range of each)
        self.distributions: dict[str, dict[str, Any]] = {}
        self._space: tuple[Space | None] | None = (declared,)
        self.max_trials = max_trials
        self.deadline = self.clock.now() + 60 * minutes if minutes else None
        self.trial_timeout = trial_timeout
        self.listeners = listeners
        self.owner = this_owner()
        self.view = study._view
        self.by_number: dict[int, int] = {}  # running trial number -> trial id
        self.stops: dict[int, dict[str, Any]] = {}  # running trial number -> its last PAUSE/STOP
        self.scheduler_name = _registered_name(study.scheduler)
        self.no_new_trials = False  # budget spent or strategy exhausted: run queued ones only
        self.ended_by: str | None = None  # why no new trials: "budget" or "strategy"
        self.quota = quota  # trials this call may still start (n_trials), None: any
        self.started = 0  # trials this call started or claimed (new, queued or resumed)
        self.reproducible = False
        self.order: _Order | None = None  # reproducible mode
        self._heartbeat = _Heartbeat(self.storage, lambda: list(self.by_number.values()))

    # The loop ------------------------------------------------------------------------------------
    @property
    def space(self) -> Space | None:
        """The space proposals are made in: the declared one, and what the objective suggested
        (define-by-run). None until there is either."""
        if self._space is None:
            self._space = (learned_space(self.declared, self.distributions),)
        return self._space[0]

    def learn(self, distributions: Mapping[str, Mapping[str, Any]]) -> None:
        """Take in the ranges a trial suggested; the space is rebuilt when one is new."""
        for name, described in distributions.items():
            if self.distributions.get(name) != described:
                self.distributions[name] = dict(described)
                self._space = None

    def learn_all(self, trials: Sequence[FrozenTrial]) -> None:
        """Take in what every trial suggested (this process's or others')."""
        for trial in trials:
            self.learn(trial.attrs.get("distributions") or {})

    def loop(self, objective: Objective, executor: Executor) -> None:
        self.view.sync(force=True)
        self.learn_all(self.view.trials)
        self.requeue_dead()
        executor.start(objective, self.clock)
        if self.reproducible:  # W: the slots a started executor has (a cluster's, say)
            self.order = _Order(self.study._reproducible_lag(executor.free_slots()))
        self._heartbeat.start()
        last_check = self.clock.now()
        while True:
            launched = not self.out_of_time() and self.launch(executor)
            if not executor.running():
                if launched:  # claimed trials that ended before running (invalid queued configs)
                    continue
                break
            for outcome in executor.wait(self.on_report, timeout=HEARTBEAT_INTERVAL_S):
                self.record(outcome)
            if self.clock.now() - last_check > HEARTBEAT_INTERVAL_S:
                self.view.sync(force=True)
                self.learn_all(self.view.trials)
                self.requeue_dead()
                last_check = self.clock.now()

    def out_of_time(self) -> bool:
        return self.deadline is not None and self.clock.now() >= self.deadline

    def launch(self, executor: Executor) -> bool:
        """Fill the free slots: queued trials first, then paused ones the scheduler resumes, then
        new ones the strategy proposes.

        Returns whether anything happened, so the loop goes on even when nothing got to run
        (an invalid queued config, a trial number another process took first).
        """
        free = executor.free_slots()
        if not free:
            return False
        self.view.sync()
        tasks: list[TrialTask] = []
        progressed = False
        while len(tasks) < free and self.view.has_waiting() and self.quota != 0:
            if self.order and not self.order.ready(self.view, self.view.first_waiting()):
                break
            trial = self.storage.claim_trial(self.study.id, self.owner)
            if trial is None:  # another process took them
                self.view.sync(force=True)
                break
            progressed = True
            self.count_new(1)
            task = self.start_queued(trial)
            if task is not None:
                tasks.append(task)
        progressed |= self.resume_paused(free, tasks)
        if len(tasks) < free and not self.no_new_trials:
            progressed |= self.propose(free - len(tasks), tasks)
        if tasks:
            executor.submit(tasks)
        return progressed

    def claimed(self, trial: FrozenTrial) -> FrozenTrial:
        """A trial storage just handed us, with the reports our view already holds."""
        known = self.view.find(trial.number)
        if known is not None:
            trial = replace(trial, intermediate=known.intermediate)
        self.view.put(trial, trial.revision)  # the claim's own revision: no re-read for it
        return trial

    def start_queued(self, trial: FrozenTrial) -> TrialTask | None:
        """A claimed queued trial: validate its params against the space, give it its seed.

        A trial re-queued after a crash already has both, and keeps its proposal's record."""
        trial = self.claimed(trial)
        seed = trial.seed if trial.seed is not None else trial_seed(self.study.seed, trial.number)
        try:
            params = self.validate_queued(trial.params)
        except SpecError as exc:
            self.by_number[trial.number] = trial.id
            self.started += 1
            self.finish(trial.number, TrialState.FAILED, error=f"invalid queued config: {exc}")
            return None
        if (params, seed) != (trial.params, trial.seed):
            proposal = trial.proposal or {"queued": True}
            revision = self.storage.set_trial_params(trial.id, params, seed, proposal, self.owner)
            trial = replace(trial, params=params, seed=seed, proposal=proposal)
            self.view.put(trial, revision)
        return self.task_for(trial)

    def validate_queued(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A queued config checked against the declared space; without one (define-by-run)
        its values are checked when the objective suggests them."""
        if self.declared is None:
            return dict(params)
        return self.declared.validate(params)

    def resume_paused(self, free: int, tasks: list[TrialTask]) -> bool:
        """Resume the paused trials the scheduler names, while slots are free."""
        asked: set[int] = set()
        while len(tasks) < free:
            view = StudyView(self.study.metric, self.study.direction, self.view.trials)
            chosen = self.study.scheduler.resume_next(view)
            if chosen is None:
                break
            if chosen.id in asked:
                raise TunelabError(
                    f"scheduler {self.study.scheduler!r} named trial {chosen.number} to resume "
                    "twice; resume_next must return a PAUSED trial of the view, or None"
                )
            asked.add(chosen.id)
            trial = self.storage.claim_trial(self.study.id, self.owner, chosen.id)
            if trial is None:  # another process resumed it first
                self.view.sync(force=True)
                continue
            tasks.append(self.task_for(self.claimed(trial)))
        return bool(asked)

    def propose(self, n: int, tasks: list[TrialTask]) -> bool:
        """Ask the strategy for the next ``n`` trial numbers and create those trials.

        In reproducible mode one at a time, each asked with the history its number may see,
        and only while the trials it must see have finished."""
        if self.order is None:
            numbers = self.allowed(self.view.next_number, n)
            if not numbers:
                return False
            proposals = self.ask(self.view.trials, numbers)
            return self.create(numbers, proposals, tasks)
        progressed = False
        for _ in range(n):
            number = self.view.next_number
            if not self.allowed(number, 1) or not self.order.ready(self.view, number):
                break
            history = self.order.history(self.view.trials, number)
            proposals = self.ask(history, [number])
            if not self.create([number], proposals, tasks):
                break
            progressed = True
        return progressed

    def ask(self, history: Sequence[FrozenTrial], numbers: list[int]) -> list[Proposal]:
        """The strategy's proposals; before any parameter is declared or suggested there is
        nothing to propose: the objective's first suggestions are drawn as it runs."""
        strategy = self.study.strategy
        if self.space is None and not getattr(strategy, "search_space", None):
            return [Proposal({}) for _ in numbers]
        return strategy.ask(self.space, history, numbers)  # a given grid needs no space

    def allowed(self, first: int, n: int) -> list[int]:
        """The trial numbers from ``first`` (at most ``n``) the budget still allows, so the
        strategy is never asked for a proposal that could not become a trial (a Gaussian-process
        proposal costs up to a second). None left: no new trials in this call.

        The trial budget is checked again, in one transaction, when the trial is created: the
        view may not show what another process created meanwhile."""
        if self.no_new_trials:
            return []
        if self.max_trials is not None and first >= self.max_trials:
            self.stop_new("budget")
            return []
        if self.quota == 0:
            self.stop_new(None)
            return []
        if self.quota is not None:
            n = min(n, self.quota)
        if self.max_trials is not None:
            n = min(n, self.max_trials - first)
        return list(range(first, first + n))

    def stop_new(self, reason: str | None) -> None:
        self.no_new_trials = True
        self.ended_by = self.ended_by or reason

    def count_new(self, n: int) -> None:
        """``n`` more trials started fresh by this call (what ``n_trials`` counts)."""
        if self.quota is not None:
            self.quota = max(0, self.quota - n)

    def create(self, numbers: list[int], proposals: list[Proposal], tasks: list[TrialTask]) -> bool:
        """Create the proposed trials; False when none could be (the strategy or the budget is
        exhausted, or another process took a number first and the view was re-read)."""
        if len(proposals) < len(numbers):
            self.stop_new("strategy")  # the strategy has nothing more (a finished grid)
        created = False
        for number, proposal in zip(numbers, proposals, strict=False):
            seed = trial_seed(self.study.seed, number)
            try:
                trial = self.storage.create_trial(
                    self.study.id,
                    number,
                    self.owner,
                    proposal.params,
                    seed,
                    proposal.info,
                    self.max_trials,
                )
            except TrialNumberTaken:  # another process created it first: re-read, ask again
                self.view.sync(force=True)
                return True
            if trial is None:  # the trial budget is spent (by another process, say)
                self.stop_new("budget")
                break
            self.view.put(trial, trial.revision)
            tasks.append(self.task_for(trial))
            self.count_new(1)
            created = True
        return created

    def task_for(self, trial: FrozenTrial) -> TrialTask:
        self.by_number[trial.number] = trial.id
        self.started += 1
        for listener in self.listeners:
            listener.trial_started(self.study, trial)
        checkpoint = trial.attrs.get("checkpoint") or {}
        return TrialTask(
            trial.id,
            trial.number,
            trial.params,
            trial.seed,
            str(self.study.trial_dir(trial.number)),
            self.trial_timeout,
            checkpoint.get("step"),
            self.study.metric,
        )

    # Reports and outcomes ------------------------------------------------------------------------
    def on_report(self, number: int, step: int, metrics: dict[str, float]) -> Decision:
        """Store the report and ask the scheduler; a PAUSE or STOP is kept with its reason until
        the trial's outcome shows whether it took effect (it does not at the last step)."""
        trial_id = self.by_number[number]
        try:
            revision = self.storage.add_report(trial_id, step, metrics, self.owner)
        except TrialStateError:  # taken over by another process: this run of it is void
            return Decision.STOP
        trial = self.view.get(number)
        trial = replace(trial, intermediate={**trial.intermediate, step: metrics})
        self.view.put(trial, revision)
        for listener in self.listeners:
            listener.trial_reported(self.study, trial, step)
        trials = self.view.trials if self.order is None else self.order.seen_by(self.view, trial)
        view = StudyView(self.study.metric, self.study.direction, trials)
        decision = self.study.scheduler.on_report(trial, step, view)
        if decision is not Decision.CONTINUE:  # rare: the hot path pays nothing for reasons
            why = self.study.scheduler.explain(trial, step, decision, view)
            self.stops[number] = {
                "decision": decision.value,
                "step": step,
                "by": self.scheduler_name,
                "why": why,
            }
        return decision

    def stop_reason(self, number: int, state: TrialState) -> dict[str, Any] | None:
        """The scheduler's reason for a trial that ends here PAUSED or PRUNED by its answer; None
        for any other ending (a completed trial needs no reason, a failed one has its error)."""
        stop = self.stops.pop(number, None)
        expected = {TrialState.PAUSED: Decision.PAUSE, TrialState.PRUNED: Decision.STOP}
        return stop if stop is not None and stop["decision"] == expected.get(state) else None

    def record(self, outcome: TrialOutcome) -> None:
        task = outcome.task
        attrs: dict[str, Any] = {"warnings": list(outcome.warnings)} if outcome.warnings else {}
        params = None
        if outcome.distributions:  # define-by-run: the params it chose, and their ranges
            self.learn(outcome.distributions)
            attrs["distributions"] = outcome.distributions
            params = self.ran_with(task.number, outcome)
        if outcome.user_attrs:  # a resumed trial adds to what its earlier runs kept
            kept = self.view.get(task.number).user_attrs
            attrs["user_attrs"] = {**kept, **outcome.user_attrs}
        if outcome.state is TrialState.PAUSED:
            self.pause(task.number, outcome, attrs, params)
            return
        if outcome.state is TrialState.FAILED:
            self.finish(
                task.number,
                TrialState.FAILED,
                metrics=outcome.last_metrics,
                error=outcome.error,
                attrs=attrs,
                params=params,
            )
            return
        try:
            value, metrics = self.value_of(outcome)
        except TunelabError as exc:
            self.finish(
                task.number,
                TrialState.FAILED,
                metrics=outcome.last_metrics,
                error=str(exc),
                attrs=attrs,
                params=params,
            )
            return
        if outcome.state is TrialState.COMPLETE and not math.isfinite(value):
            self.finish(
                task.number,
                TrialState.FAILED,
                value,
                metrics,
                error=f"diverged: {self.study.metric} is {value}",
                attrs=attrs,
                params=params,
            )
            return
        self.finish(task.number, outcome.state, value, metrics, attrs=attrs, params=params)

    def ran_with(self, number: int, outcome: TrialOutcome) -> dict[str, Any]:
        """The params a define-by-run trial ran with: the declared ones it was given and what it
        suggested (proposed values of branches it did not take are dropped)."""
        given = self.view.get(number).params or {}
        declared = self.declared or {}
        return {**{k: v for k, v in given.items() if k in declared}, **outcome.suggested}

    def value_of(self, outcome: TrialOutcome) -> tuple[float | None, dict[str, float]]:
        metric, result = self.study.metric, outcome.result
        if isinstance(result, dict):
            metrics = result
        elif result is not None:
            metrics = {**(outcome.last_metrics or {}), metric: result}
        else:
            metrics = outcome.last_metrics or {}
        if metric not in metrics:
            if outcome.state is TrialState.PRUNED:
                return None, metrics
            given = ", ".join(metrics) or "nothing"
            raise TunelabError(
                f"the objective gave {given} but not {metric!r}, the metric this study optimises; "
                f"return a float, or a dict (or last report) that includes {metric!r}"
            )
        return metrics[metric], metrics

    def pause(
        self,
        number: int,
        outcome: TrialOutcome,
        attrs: dict[str, Any],
        params: dict[str, Any] | None = None,
    ) -> None:
        """Record a paused trial with where it can resume from (its checkpoint, if it saved one)."""
        trial = self.view.get(number)
        if outcome.checkpoint_step is not None:
            checkpoint = {"step": outcome.checkpoint_step}
        else:
            checkpoint = None
            attrs["warnings"] = [
                *trial.attrs.get("warnings", []),
                *attrs.get("warnings", []),
                f"paused at step {trial.last_step} without a checkpoint; a resume starts over",
            ]
        attrs["checkpoint"] = checkpoint
        attrs["paused_at"] = trial.last_step
        attrs["stopped"] = self.stop_reason(number, TrialState.PAUSED)
        self.by_number.pop(number, None)
        try:
            revision = self.storage.pause_trial(trial.id, self.owner, attrs, params)
        except TrialStateError:  # taken over by another process meanwhile
            return
        trial = replace(
            trial,
            state=TrialState.PAUSED,
            owner=None,
            attrs={**trial.attrs, **attrs},
            params=trial.params if params is None else params,
        )
        self.view.put(trial, revision)
        for listener in self.listeners:
            listener.trial_paused(self.study, trial)

    def finish(
        self,
        number: int,
        state: TrialState,
        value: float | None = None,
        metrics: Mapping[str, float] | None = None,
        error: str | None = None,
        attrs: Mapping[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        trial = self.view.get(number)
        self.by_number.pop(number, None)
        if attrs and "warnings" in attrs:  # a resumed trial keeps the warnings of earlier runs
            attrs = {**attrs, "warnings": [*trial.attrs.get("warnings", []), *attrs["warnings"]]}
        stopped = self.stop_reason(number, state)
        if stopped is not None or trial.attrs.get("stopped"):  # a resumed trial's pause is over
            attrs = {**(attrs or {}), "stopped": stopped}
        try:
            revision = self.storage.finish_trial(
                trial.id, state, value, metrics, error, self.owner, attrs, params
            )
        except TrialStateError:  # taken over by another process meanwhile: its result counts
            return
        trial = replace(
            trial,
            state=state,
            value=value if value is not None and math.isfinite(value) else None,
            metrics=dict(metrics or {}),
            error=error,
            finished_at=self.clock.now(),
            attrs={**trial.attrs, **(attrs or {})},
            params=trial.params if params is None else params,
        )
        self.view.put(trial, revision)
        for listener in self.listeners:
            listener.trial_finished(self.study, trial)

    # Crash recovery ------------------------------------------------------------------------------
    def requeue_dead(self) -> None:
        """Trials left RUNNING by a process that died go back to the queue (params and seed kept)."""
        now = self.clock.now()
        mine = set(self.by_number.values())
        # Read from storage, not the view: heartbeats do not take revisions, so only a fresh read
        # has them.
        running = self.storage.get_trials(self.study.id, states=[TrialState.RUNNING])
        dead = [t for t in running if t.id not in mine and _is_dead(t, now)]
        if dead:
            self.storage.requeue_trials(dead)
            self.view.sync(force=True)

    def close(self) -> None:
        """After the loop, or on Ctrl-C: trials still running here are given back to the queue."""
        self._heartbeat.stop()
        interrupted = [self.view.get(n) for n in self.by_number]
        if interrupted:
            try:
                self.storage.requeue_trials(interrupted)
                self.view.sync(force=True)
            except StorageUnavailable:  # the error on its way out says so; a resume requeues
                pass
        self.by_number.clear()
        self.stops.clear()


def _registered_name(scheduler: Scheduler) -> str:
    """The spec name of a built-in scheduler ("asha"), else its class name."""
    cls = type(scheduler)
    return next((name for name, known in SCHEDULERS.items() if known is cls), cls.__name__)


def _is_dead(trial: FrozenTrial, now: float) -> bool:
    alive = owner_alive(trial.owner or "")
    if alive is not None:  # a process of this host: a driver never leaves its own trials running
        return not alive or trial.owner == this_owner()
    return trial.heartbeat_at is None or now - trial.heartbeat_at > STALE_AFTER_S


def this_owner() -> str:
    """This process as an owner of trials and claims: ``host:pid``."""
    return f"{_HOST}:{os.getpid()}"


def owner_alive(owner: str) -> bool | None:
    """Whether the process an owner (``host:pid``) names is running; None when it runs on
    another host, whose processes this one cannot see."""
    host, _, pid = owner.rpartition(":")
    if host != _HOST or not pid.isdigit():
        return None
    return _process_alive(int(pid))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


class _Heartbeat:
    """A background thread that marks this driver's running trials alive every few seconds, even
    while an in-process trial keeps the driver busy."""

    def __init__(self, storage: Storage, running_ids: Callable[[], Sequence[int]]) -> None:
        self._storage = storage
        self._running_ids = running_ids
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="tunelab-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_INTERVAL_S):
            try:
                self._storage.heartbeat(self._running_ids())
            except Exception:  # noqa: BLE001 - a missed beat is harmless; the next one retries
                pass
