"""The executor interface: where trials run. The driver decides; executors only run and relay."""

from __future__ import annotations

import abc
import numbers
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab._params import ParamsMixin
from tunelab.clock import Clock, RealClock
from tunelab.errors import StorageUnavailable, TrialDiverged, TrialPruned, TrialTimeout
from tunelab.trial import Decision, Reporter, Trial, TrialState

__all__ = ["Executor", "TrialOutcome", "TrialTask", "make_trial", "run_trial", "trial_outcome"]

Objective = Callable[[Trial], Any]


@dataclass(frozen=True)
class TrialTask:
    """Everything a worker needs to run one trial (small and picklable).

    ``timeout_s`` counts from when the trial starts running where it runs (not from when it was
    submitted: a worker process may spend seconds starting). ``resumed_from`` is the step of the
    checkpoint a resumed trial continues from. ``metric`` is the study's (what Optuna's
    ``trial.report(value, step)`` reports).
    """

    trial_id: int
    number: int
    params: dict[str, Any]
    seed: int
    directory: str
    timeout_s: float | None = None
    resumed_from: int | None = None
    metric: str = "value"


@dataclass(frozen=True)
class TrialOutcome:
    """How a trial ended (or paused). ``result`` is what the objective returned, made plain: a
    float or a dict of floats; ``last_metrics`` is its last report, used when it returned nothing;
    ``checkpoint_step`` the step of the checkpoint it saved (a paused trial resumes there);
    ``suggested`` the params it chose itself (define-by-run: ``trial.suggest_float``...) and
    ``distributions`` their ranges, as :func:`~tunelab.space.param_to_dict` describes them."""

    task: TrialTask
    state: TrialState
    result: float | dict[str, float] | None = None
    last_metrics: dict[str, float] | None = None
    error: str | None = None
    checkpoint_step: int | None = None
    warnings: tuple[str, ...] = ()
    user_attrs: dict[str, Any] = field(default_factory=dict)
    suggested: dict[str, Any] = field(default_factory=dict)
    distributions: dict[str, dict[str, Any]] = field(default_factory=dict)


class Executor(ParamsMixin, abc.ABC):
    """Runs trials and relays their reports to the driver.

    The driver calls :meth:`start` once, submits tasks up to :meth:`free_slots`, then calls
    :meth:`wait`, which calls ``on_report`` for every report (its Decision goes back to the trial)
    and returns the trials that ended or paused. Tasks arrive as a list, so a later executor can
    train a group of same-shaped trials as one computation while each still reports and ends on
    its own. :class:`~tunelab.testing.ExecutorContract` holds every executor to this.
    """

    @abc.abstractmethod
    def start(self, objective: Objective, clock: Clock | None = None) -> None:
        """Get ready to run ``objective``; trial time limits follow ``clock`` where the executor
        runs trials in the driver's process (worker processes keep real time)."""

    @abc.abstractmethod
    def free_slots(self) -> int: ...

    @abc.abstractmethod
    def submit(self, tasks: Sequence[TrialTask]) -> None: ...

    @abc.abstractmethod
    def wait(self, on_report: Reporter, timeout: float) -> list[TrialOutcome]: ...

    @abc.abstractmethod
    def running(self) -> list[TrialTask]: ...

    @abc.abstractmethod
    def shutdown(self) -> None: ...


def run_trial(
    objective: Objective, task: TrialTask, reporter: Reporter, clock: Clock | None = None
) -> TrialOutcome:
    """Run the objective on one task and classify how it ended; never raises for trial errors.

    A trial whose last decision was PAUSE and that returned is PAUSED; STOP makes it PRUNED."""
    trial = make_trial(task, reporter, clock)
    try:
        result = objective(trial)
    except Exception as exc:  # noqa: BLE001 - classified below, and the study goes on
        return trial_outcome(task, trial, error=exc)
    return trial_outcome(task, trial, result)


def make_trial(task: TrialTask, reporter: Reporter, clock: Clock | None = None) -> Trial:
    """The :class:`~tunelab.trial.Trial` handle of a task; its time limit starts now."""
    clock = clock or RealClock()
    deadline = clock.now() + task.timeout_s if task.timeout_s else None
    return Trial(
        task.number,
        task.params,
        task.seed,
        Path(task.directory),
        reporter,
        deadline,
        task.resumed_from,
        clock.now,
        task.metric,
    )


def trial_outcome(
    task: TrialTask, trial: Trial, result: Any = None, error: BaseException | None = None
) -> TrialOutcome:
    """How a trial ended: what it returned (made plain) or the error it raised, classified.

    For executors that run an objective's work themselves (fused training) as for
    :func:`run_trial`: a return after a PAUSE is PAUSED, after a STOP PRUNED; TrialPruned is
    PRUNED; a time limit, a divergence or any other error FAILED with its reason (a traceback
    for errors of user code). A storage that stays unreachable is raised: the study stops.
    """
    state = TrialState.COMPLETE
    if error is None:
        try:
            result = _plain_result(result)
        except TypeError as exc:
            error = exc
    if isinstance(error, StorageUnavailable):
        raise error
    if error is None:
        if trial.decision is Decision.PAUSE:
            state = TrialState.PAUSED
        elif trial.decision is Decision.STOP:
            state = TrialState.PRUNED
        message = None
    else:
        result = None
        if isinstance(error, TrialPruned):
            state, message = TrialState.PRUNED, None
        elif isinstance(error, TrialTimeout):
            state, message = TrialState.FAILED, f"timed out: {error}"
        elif isinstance(error, TrialDiverged):
            state, message = TrialState.FAILED, str(error)
        else:
            state, message = TrialState.FAILED, "".join(traceback.format_exception(error))
    return TrialOutcome(
        task,
        state,
        result,
        trial.last_metrics or None,
        message,
        trial.checkpoint_step,
        tuple(trial.warnings),
        dict(trial.user_attrs),
        *_suggestions(trial),
    )


def _suggestions(trial: Trial) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    if not trial.distributions:
        return {}, {}
    from tunelab.space import param_to_dict

    names = trial.distributions
    return (
        {name: trial.params[name] for name in names},
        {name: param_to_dict(param) for name, param in names.items()},
    )


def _plain_result(result: Any) -> float | dict[str, float] | None:
    """Objective return values as plain floats (numpy and torch scalars included)."""
    if result is None:
        return None
    if isinstance(result, Mapping):
        return {str(k): _to_float(v, k) for k, v in result.items()}
    return _to_float(result, "return value")


def _to_float(value: Any, name: Any) -> float:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    raise TypeError(
        f"objective {name!r} must be a number, got {type(value).__name__}: {value!r}; "
        "return a float or a dict of floats"
    )
