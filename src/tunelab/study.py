"""The study: one loop joins strategy, executor, scheduler and storage.

strategy proposes -> executor runs -> reports arrive -> scheduler decides -> storage records.
The driver (``Study.optimize``) is the one writer for the trials it runs; several drivers, in several
processes or on several machines, can share one study through storage.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.errors import SpecError, StorageError, TunelabError
from tunelab.executors import Executor, TrialOutcome, TrialTask, make_executor
from tunelab.executors.base import Objective
from tunelab.schedulers import Scheduler, StudyView, make_scheduler
from tunelab.space import Space
from tunelab.storage import Storage, StudyRecord, get_storage
from tunelab.storage.base import TrialNumberTaken
from tunelab.strategies import Strategy, make_strategy
from tunelab.trial import Decision, FrozenTrial, TrialState

__all__ = ["Study", "trial_seed"]

HEARTBEAT_INTERVAL_S = 10.0
#: A RUNNING trial on another machine with no heartbeat for this long is taken as dead.
STALE_AFTER_S = 120.0
_HOST = socket.gethostname()

Callback = Callable[["Study", FrozenTrial], None]


def trial_seed(study_seed: int, number: int) -> int:
    """The seed of trial ``number``: independent streams from one study seed (numpy SeedSequence)."""
    return int(np.random.SeedSequence([study_seed, number]).generate_state(1)[0])


def _direction(direction: str) -> str:
    if direction not in ("maximize", "minimize"):
        raise SpecError("metric.direction", f"must be 'maximize' or 'minimize', got {direction!r}")
    return direction


class Study:
    """A named search, stored so it can be inspected, resumed and shared between processes.

    Example:
        >>> from tunelab import Float, Study
        >>> study = Study("quad", storage="sqlite://", direction="minimize", seed=0)
        >>> best = study.optimize(lambda t: (t.params["x"] - 2) ** 2, {"x": Float(-5, 5)}, trials=20)
        >>> round(best.params["x"])
        2

    Args:
        name: the study's name in storage; an existing study of that name is continued.
        storage: a database URL or a Storage (default ``sqlite:///tunelab.db``).
        direction: "maximize" or "minimize".
        metric: which number is optimised when the objective returns or reports several.
        strategy: "random", "grid", "manual" or a Strategy.
        scheduler: None, "median" or a Scheduler.
        seed: study seed; each trial's seed derives from it and the trial number.
        artifacts_dir: where per-trial directories go (default: beside a SQLite file, else ./).
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
    ) -> None:
        self.storage = get_storage(storage)
        self._record = self._open(name, _direction(direction), metric, seed, spec)
        self.seed = int(self._record.attrs["seed"])
        self.strategy = make_strategy(strategy)
        options = self.strategy.get_params()
        if options.get("seed", 0) is None:  # seeded strategies follow the study
            self.strategy.set_params(seed=self.seed)
        if "direction" in options:  # model-based strategies learn in the study's direction
            self.strategy.set_params(direction=self.direction)
        self.scheduler = make_scheduler(scheduler)
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
            chosen = seed if seed is not None else int(np.random.SeedSequence().entropy % 2**31)
            try:
                return self.storage.create_study(name, direction, metric, spec, {"seed": chosen})
            except StorageError:  # another process created it in between
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
        return best_of(
            self.storage.get_trials(self.id, states=[TrialState.COMPLETE]), self.direction
        )

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
        space: Space | Mapping[str, Any],
        trials: int | None = None,
        minutes: float | None = None,
        workers: int = 1,
        executor: Executor | None = None,
        trial_timeout: float | None = None,
        callbacks: Iterable[Callback] = (),
    ) -> FrozenTrial | None:
        """Run trials until the budget is spent or the strategy has nothing left; return the best.

        Args:
            objective: ``f(trial) -> float | dict[str, float] | None``; None means "use the last
                reported value of the metric".
            space: a Space, or a mapping of names to Float / Int / Categorical.
            trials: the study's total trial budget, counted across runs and processes, so
                re-running a finished study does nothing and a resumed one tops up to the total.
            minutes: stop starting new trials after this long (this call); running ones finish.
            workers: trials at once; >1 runs them in that many local processes.
            executor: run trials elsewhere (overrides ``workers``).
            trial_timeout: seconds a single trial may run before it is stopped and marked FAILED.
            callbacks: ``f(study, trial)`` called after each trial ends.
        """
        if (
            trials is None
            and minutes is None
            and not isinstance(self.strategy, _finite_strategies())
        ):
            raise SpecError("budget", "give trials and/or minutes, or the search never ends")
        space = space if isinstance(space, Space) else Space(space)
        run = _Run(self, space, trials, minutes, trial_timeout, list(callbacks))
        self._executor = executor or make_executor(workers)
        try:
            run.loop(objective, self._executor)
        finally:
            self._executor.shutdown()
            run.close()
            self._executor = None
        return self.best_trial

    def set_attr(self, key: str, value: Any) -> None:
        self.storage.set_study_attr(self.id, key, value)

    def trial_dir(self, number: int) -> Path:
        return self.artifacts_dir / self.name / f"trial_{number:05d}"


def _finite_strategies() -> tuple[type, ...]:
    from tunelab.strategies import GridSearch, Manual

    return (GridSearch, Manual)


def best_of(trials: Iterable[FrozenTrial], direction: str) -> FrozenTrial | None:
    scored = [t for t in trials if t.value is not None and math.isfinite(t.value)]
    if not scored:
        return None
    pick = max if direction == "maximize" else min
    return pick(scored, key=lambda t: t.value)


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
        self._trials: dict[int, FrozenTrial] = {}
        self._waiting: set[int] = set()
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
        self._trials[trial.id] = trial
        self.next_number = max(self.next_number, trial.number + 1)
        if trial.state is TrialState.WAITING:
            self._waiting.add(trial.id)
        else:
            self._waiting.discard(trial.id)

    def has_waiting(self) -> bool:
        return bool(self._waiting)

    def get(self, trial_id: int) -> FrozenTrial:
        return self._trials[trial_id]

    @property
    def trials(self) -> list[FrozenTrial]:
        return sorted(self._trials.values(), key=lambda t: t.number)


class _Run:
    """One call of ``Study.optimize``: the ask -> run -> tell loop and its bookkeeping."""

    def __init__(
        self,
        study: Study,
        space: Space,
        max_trials: int | None,
        minutes: float | None,
        trial_timeout: float | None,
        callbacks: list[Callback],
    ) -> None:
        self.study = study
        self.storage = study.storage
        self.space = space
        self.max_trials = max_trials
        self.deadline = time.time() + 60 * minutes if minutes else None
        self.trial_timeout = trial_timeout
        self.callbacks = callbacks
        self.owner = f"{_HOST}:{os.getpid()}"
        self.view = study._view
        self.by_number: dict[int, int] = {}  # running trial number -> trial id
        self.no_new_trials = False  # budget spent or strategy exhausted: run queued ones only
        self._heartbeat = _Heartbeat(self.storage, lambda: list(self.by_number.values()))

    # The loop ------------------------------------------------------------------------------------
    def loop(self, objective: Objective, executor: Executor) -> None:
        self.view.sync(force=True)
        self.requeue_dead()
        executor.start(objective)
        self._heartbeat.start()
        last_check = time.time()
        while True:
            launched = not self.out_of_time() and self.launch(executor)
            if not executor.running():
                if launched:  # claimed trials that ended before running (invalid queued configs)
                    continue
                break
            for outcome in executor.wait(self.on_report, timeout=HEARTBEAT_INTERVAL_S):
                self.record(outcome)
            if time.time() - last_check > HEARTBEAT_INTERVAL_S:
                self.view.sync(force=True)
                self.requeue_dead()
                last_check = time.time()

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.time() >= self.deadline

    def launch(self, executor: Executor) -> bool:
        """Fill the free slots: queued trials first, then new ones the strategy proposes.

        Returns whether anything happened, so the loop goes on even when nothing got to run
        (an invalid queued config, a trial number another process took first).
        """
        free = executor.free_slots()
        if not free:
            return False
        self.view.sync()
        tasks: list[TrialTask] = []
        progressed = False
        while len(tasks) < free and self.view.has_waiting():
            trial = self.storage.claim_trial(self.study.id, self.owner)
            if trial is None:  # another process took them
                self.view.sync(force=True)
                break
            progressed = True
            task = self.start_queued(trial)
            if task is not None:
                tasks.append(task)
        if len(tasks) < free and not self.no_new_trials:
            progressed |= self.propose(free - len(tasks), tasks)
        if tasks:
            executor.submit(tasks)
        return progressed

    def start_queued(self, trial: FrozenTrial) -> TrialTask | None:
        """A claimed queued trial: validate its params against the space, give it its seed."""
        seed = trial.seed if trial.seed is not None else trial_seed(self.study.seed, trial.number)
        try:
            params = self.space.validate(trial.params)
        except SpecError as exc:
            self.view.put(trial)
            self.finish(trial.id, TrialState.FAILED, error=f"invalid queued config: {exc}")
            return None
        revision = self.storage.set_trial_params(trial.id, params, seed, {"queued": True})
        trial = replace(trial, params=params, seed=seed, proposal={"queued": True})
        self.view.put(trial, revision)
        return self.task_for(trial)

    def propose(self, n: int, tasks: list[TrialTask]) -> bool:
        """Ask the strategy for the next ``n`` trial numbers and create those trials."""
        numbers = [self.view.next_number + i for i in range(n)]
        proposals = self.study.strategy.ask(self.space, self.view.trials, numbers)
        if len(proposals) < n:
            self.no_new_trials = True  # the strategy has nothing more (a finished grid)
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
            if trial is None:  # the trial budget is spent
                self.no_new_trials = True
                break
            self.view.put(trial, trial.revision)
            tasks.append(self.task_for(trial))
        return bool(tasks)

    def task_for(self, trial: FrozenTrial) -> TrialTask:
        self.by_number[trial.number] = trial.id
        deadline = time.time() + self.trial_timeout if self.trial_timeout else None
        directory = str(self.study.trial_dir(trial.number))
        return TrialTask(trial.id, trial.number, trial.params, trial.seed, directory, deadline)

    # Reports and outcomes ------------------------------------------------------------------------
    def on_report(self, number: int, step: int, metrics: dict[str, float]) -> Decision:
        trial_id = self.by_number[number]
        revision = self.storage.add_report(trial_id, step, metrics)
        trial = self.view.get(trial_id)
        trial = replace(trial, intermediate={**trial.intermediate, step: metrics})
        self.view.put(trial, revision)
        view = StudyView(self.study.metric, self.study.direction, self.view.trials)
        return self.study.scheduler.on_report(trial, step, view)

    def record(self, outcome: TrialOutcome) -> None:
        task = outcome.task
        if outcome.state is TrialState.FAILED:
            self.finish(
                task.trial_id, TrialState.FAILED, metrics=outcome.last_metrics, error=outcome.error
            )
            return
        try:
            value, metrics = self.value_of(outcome)
        except TunelabError as exc:
            self.finish(
                task.trial_id, TrialState.FAILED, metrics=outcome.last_metrics, error=str(exc)
            )
            return
        if outcome.state is TrialState.COMPLETE and not math.isfinite(value):
            self.finish(
                task.trial_id,
                TrialState.FAILED,
                value,
                metrics,
                error=f"diverged: {self.study.metric} is {value}",
            )
            return
        self.finish(task.trial_id, outcome.state, value, metrics)

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

    def finish(
        self,
        trial_id: int,
        state: TrialState,
        value: float | None = None,
        metrics: Mapping[str, float] | None = None,
        error: str | None = None,
    ) -> None:
        revision = self.storage.finish_trial(trial_id, state, value, metrics, error)
        trial = replace(
            self.view.get(trial_id),
            state=state,
            value=value if value is not None and math.isfinite(value) else None,
            metrics=dict(metrics or {}),
            error=error,
            finished_at=time.time(),
        )
        self.view.put(trial, revision)
        self.by_number.pop(trial.number, None)
        for callback in self.callbacks:
            callback(self.study, trial)

    # Crash recovery ------------------------------------------------------------------------------
    def requeue_dead(self) -> None:
        """Trials left RUNNING by a process that died go back to the queue (params and seed kept)."""
        now = time.time()
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
        interrupted = [self.view.get(i) for i in self.by_number.values()]
        if interrupted:
            self.storage.requeue_trials(interrupted)
            self.view.sync(force=True)
        self.by_number.clear()


def _is_dead(trial: FrozenTrial, now: float) -> bool:
    host, _, pid = (trial.owner or "").rpartition(":")
    if host == _HOST and pid.isdigit():
        return int(pid) == os.getpid() or not _process_alive(int(pid))
    return trial.heartbeat_at is None or now - trial.heartbeat_at > STALE_AFTER_S


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
