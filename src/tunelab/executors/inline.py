"""Runs trials one at a time in the driver's own process: simplest, and what debuggers like."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator, Sequence

from tunelab.clock import Clock, RealClock
from tunelab.errors import TrialTimeout
from tunelab.executors.base import Executor, Objective, TrialOutcome, TrialTask, run_trial
from tunelab.trial import Reporter

__all__ = ["InlineExecutor"]


class InlineExecutor(Executor):
    """One trial at a time, in-process.

    A time limit is enforced at the trial's reports and, for a trial that hangs between reports,
    by an alarm signal that raises :class:`~tunelab.errors.TrialTimeout` inside it (in the main
    thread on Unix, with the real clock; elsewhere at the next report only).
    """

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
        real_time = self._clock is None or isinstance(self._clock, RealClock)
        with _alarm(task.timeout_s if real_time else None):
            outcome = run_trial(self._objective, task, on_report, self._clock)
        self._queue.pop(0)
        return [outcome]

    def shutdown(self) -> None:
        self._queue.clear()


@contextlib.contextmanager
def _alarm(seconds: float | None) -> Iterator[None]:
    """Raise TrialTimeout in this thread after ``seconds`` (when signals allow it)."""
    usable = (
        seconds
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TrialTimeout(f"time limit of {seconds:g} s exceeded (no report came in time)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
