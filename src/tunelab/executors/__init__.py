"""Executors run trials: in this process, or in local worker processes."""

from __future__ import annotations

from tunelab.executors.base import Executor, TrialOutcome, TrialTask, run_trial
from tunelab.executors.inline import InlineExecutor
from tunelab.executors.processes import ProcessExecutor

__all__ = [
    "Executor",
    "InlineExecutor",
    "ProcessExecutor",
    "TrialOutcome",
    "TrialTask",
    "make_executor",
    "run_trial",
]


def make_executor(workers: int = 1) -> Executor:
    """In-process for one worker, local processes for more."""
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    return InlineExecutor() if workers == 1 else ProcessExecutor(workers)
