"""Runs trials one at a time in the driver's own process: simplest, and what debuggers like."""

from __future__ import annotations

from collections.abc import Sequence

from tunelab.clock import Clock
from tunelab.executors.base import Executor, Objective, TrialOutcome, TrialTask, run_trial
from tunelab.trial import Reporter

__all__ = ["InlineExecutor"]


class InlineExecutor(Executor):
    """One trial at a time, in-process. A time limit is enforced at the trial's next report."""

    def __init__(self) -> None:
        self._objective: Objective | None = None
        self._clock: Clock | None = None
        self._queue: list[TrialTask] = []

    def start(self, objective: Objective, clock: Clock | None = None) -> None:
        self._objective = objective
        self._clock = clock

    def free_slots(self) -> int:
        return 0 if self._queue else 1

    def submit(self, tasks: Sequence[TrialTask]) -> None:
        self._queue.extend(tasks)

    def running(self) -> list[TrialTask]:
        return list(self._queue)

    def wait(self, on_report: Reporter, timeout: float) -> list[TrialOutcome]:
        if not self._queue:
            return []
        task = self._queue[0]
        outcome = run_trial(self._objective, task, on_report, self._clock)
        self._queue.pop(0)
        return [outcome]

    def shutdown(self) -> None:
        self._queue.clear()
