"""Trials whose learning curves and costs come from a benchmark, on N workers in virtual time.

A benchmark knows, for a configuration, its metrics after each step (epoch) and how many seconds
of training it takes to get there (LCBench's surrogate predicts both). The simulated executor
runs the real driver, strategy, scheduler and storage around it, but instead of training it
advances a :class:`~tunelab.clock.VirtualClock` to the next report of whichever trial is due
first: hundreds of trials a second of real time, with the timing a cluster of N workers would
see. A promoted (resumed) trial pays only for the steps after its checkpoint; one restarted
without a checkpoint pays again from step 1.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tunelab.clock import Clock, VirtualClock
from tunelab.errors import TunelabError
from tunelab.executors.base import Executor, TrialOutcome, TrialTask
from tunelab.trial import Decision, Reporter, TrialState

__all__ = ["Benchmark", "SimulatedExecutor"]


class Benchmark(Protocol):
    """A simulated objective: the curve of a configuration, step by step."""

    def curve(
        self, params: Mapping[str, Any], seed: int
    ) -> Sequence[tuple[float, dict[str, float]]]:
        """``(seconds of training up to step s, metrics at step s)`` for s = 1, 2, ..."""


@dataclass(order=True)
class _Due:
    """The next report of a running trial, ordered by when it is due (then by trial number)."""

    at: float
    number: int
    task: TrialTask = field(compare=False)
    curve: Sequence[tuple[float, dict[str, float]]] = field(compare=False)
    step: int = field(compare=False)  # the step this report is for (counted from 1)


class SimulatedExecutor(Executor):
    """N virtual workers running a :class:`Benchmark` in virtual time.

    Use it with a study whose clock is a :class:`~tunelab.clock.VirtualClock` (the study's
    storage then stamps simulated times too).

    Args:
        n_workers: trials at once.

    Example:
        >>> from tunelab import Float, Study
        >>> from tunelab.clock import VirtualClock
        >>> class Line:
        ...     def curve(self, params, seed):
        ...         return [(10.0 * s, {"acc": params["x"] * s / 5}) for s in range(1, 6)]
        >>> study = Study("sim", "sqlite://", metric="acc", seed=0, clock=VirtualClock())
        >>> best = study.optimize(Line(), {"x": Float(0, 1)}, trials=4,
        ...                       executor=SimulatedExecutor(n_workers=2))
        >>> study.clock.now()  # 4 trials of 50 s on 2 workers
        100.0
    """

    def __init__(self, n_workers: int = 1) -> None:
        if not isinstance(n_workers, int) or n_workers < 1:
            raise ValueError(f"n_workers must be an integer >= 1, got {n_workers!r}")
        self.n_workers = n_workers
        self._benchmark: Benchmark | None = None
        self._clock: VirtualClock | None = None
        self._due: list[_Due] = []

    def start(self, objective: Any, clock: Clock | None = None) -> None:
        if not callable(getattr(objective, "curve", None)):
            raise TunelabError(
                "the simulated executor runs a benchmark: an object with "
                "curve(params, seed) -> [(seconds, metrics), ...], not a training function"
            )
        if not isinstance(clock, VirtualClock):
            raise TunelabError(
                "the simulated executor needs the study's clock to be a VirtualClock: "
                "Study(..., clock=VirtualClock())"
            )
        self._benchmark, self._clock = objective, clock

    def free_slots(self) -> int:
        return self.n_workers - len(self._due)

    def running(self) -> list[TrialTask]:
        return [due.task for due in self._due]

    def submit(self, tasks: Sequence[TrialTask]) -> None:
        for task in tasks:
            curve = self._benchmark.curve(task.params, task.seed)
            first = (task.resumed_from or 0) + 1
            self._schedule(task, curve, first, self._clock.now())

    def _schedule(self, task: TrialTask, curve, step: int, now: float) -> None:
        paid = curve[step - 2][0] if step >= 2 else 0.0  # resumed: the steps before are paid
        heapq.heappush(
            self._due, _Due(now + curve[step - 1][0] - paid, task.number, task, curve, step)
        )

    def wait(self, on_report: Reporter, timeout: float) -> list[TrialOutcome]:
        """Advance virtual time report by report until a trial ends or pauses."""
        while self._due:
            due = heapq.heappop(self._due)
            self._clock.advance(max(0.0, due.at - self._clock.now()))
            metrics = dict(due.curve[due.step - 1][1])
            decision = on_report(due.number, due.step, metrics)
            if due.step == len(due.curve):  # the training is over, whatever the scheduler says
                return [TrialOutcome(due.task, TrialState.COMPLETE, metrics, metrics)]
            if decision is Decision.PAUSE:
                return [TrialOutcome(due.task, TrialState.PAUSED, None, metrics, None, due.step)]
            if decision is Decision.STOP:
                return [TrialOutcome(due.task, TrialState.PRUNED, None, metrics)]
            self._schedule(due.task, due.curve, due.step + 1, self._clock.now())
        return []

    def shutdown(self) -> None:
        self._due.clear()
