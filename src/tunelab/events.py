"""What the driver tells the outside as trials run: listeners, and the one log line per trial.

A live view, a logger or a progress bar is a :class:`StudyListener`: the driver calls its hooks
when a trial starts, reports, pauses and ends, in the driver's process (with any executor, since
workers report to the driver). A plain ``f(study, trial)`` callback, as Optuna takes, hears only
the ends.

The ``tunelab`` logger writes one line per finished trial to stderr, as Optuna users expect;
:func:`set_verbosity` quiets it (``set_verbosity(logging.WARNING)`` keeps failures only).

Example:
    >>> class Counter(StudyListener):
    ...     reports = 0
    ...     def trial_reported(self, study, trial, step):
    ...         self.reports += 1
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tunelab.readers import best_trial
from tunelab.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from tunelab.study import Study

__all__ = [
    "LoggingListener",
    "StudyListener",
    "as_listener",
    "describe_end",
    "logger",
    "set_verbosity",
]

logger = logging.getLogger("tunelab")


class StudyListener:
    """Hooks the driver calls as trials run; each does nothing until overridden.

    ``trial`` is the driver's snapshot: its params, and its reports so far in ``intermediate``.
    Hooks run on the driver's loop, so they should return quickly.
    """

    def trial_started(self, study: Study, trial: FrozenTrial) -> None:
        """A trial starts running here: new, queued, re-queued or resumed from a pause."""

    def trial_reported(self, study: Study, trial: FrozenTrial, step: int) -> None:
        """A running trial reported its metrics at ``step`` (``trial.intermediate[step]``)."""

    def trial_paused(self, study: Study, trial: FrozenTrial) -> None:
        """The scheduler paused a trial; it may resume later, in any process."""

    def trial_finished(self, study: Study, trial: FrozenTrial) -> None:
        """A trial ended COMPLETE, PRUNED or FAILED."""


class _EndCallback(StudyListener):
    """A plain ``f(study, trial)`` callback, called when a trial ends."""

    def __init__(self, callback: Callable[[Study, FrozenTrial], None]) -> None:
        self.callback = callback

    def trial_finished(self, study: Study, trial: FrozenTrial) -> None:
        self.callback(study, trial)


def as_listener(callback: StudyListener | Callable[[Study, FrozenTrial], None]) -> StudyListener:
    """A listener as given, or a plain callback wrapped to hear trial ends."""
    if isinstance(callback, StudyListener):
        return callback
    if not callable(callback):
        raise TypeError(f"callbacks: expected f(study, trial) or a StudyListener, got {callback!r}")
    return _EndCallback(callback)


class LoggingListener(StudyListener):
    """One line per finished trial on the ``tunelab`` logger: its value and params and the best
    so far (INFO), why a scheduler stopped it (INFO), or its error (WARNING).

    ``best_before`` gives the best trial before this run; it is asked once, at the first line,
    so a quiet run never pays for it."""

    def __init__(self, best_before: Callable[[], FrozenTrial | None] = lambda: None) -> None:
        self.best_before = best_before
        self.best: FrozenTrial | None = None
        self.started = False

    def trial_finished(self, study: Study, trial: FrozenTrial) -> None:
        if not logger.isEnabledFor(logging.INFO) and trial.state is not TrialState.FAILED:
            return
        if not self.started:
            self.best, self.started = self.best_before(), True
        self.best = best_trial([t for t in (self.best, trial) if t], study.direction)
        level = logging.WARNING if trial.state is TrialState.FAILED else logging.INFO
        logger.log(level, describe_end(trial, study.metric, self.best))


def describe_end(trial: FrozenTrial, metric: str, best: FrozenTrial | None) -> str:
    """The line a finished trial gets in logs and in the CLI's plain output."""
    if trial.state is TrialState.FAILED:
        lines = (trial.error or "no error text").strip().splitlines() or ["no error text"]
        return f"Trial {trial.number} failed: {lines[-1]}"
    if trial.state is TrialState.PRUNED:
        stopped = trial.attrs.get("stopped") or {}
        where = f" at step {stopped['step']} by {stopped['by']}" if stopped else ""
        line = f"Trial {trial.number} pruned{where}, with params {trial.params}."
    else:
        value = _number(trial.value)
        line = f"Trial {trial.number} finished with {metric} = {value} and params {trial.params}."
    if best is not None:
        line += f" Best is trial {best.number} with {metric} = {_number(best.value)}."
    return line


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.6g}"


def set_verbosity(level: int) -> None:
    """How much the ``tunelab`` logger says: ``logging.INFO`` (the default: a line per trial),
    ``logging.WARNING`` (failed trials, and an ``optimize`` that ran nothing or ends with no
    completed trial), ``logging.ERROR``... Also ``tunelab.set_verbosity``."""
    logger.setLevel(level)


def _configure_default_handler() -> None:
    """A stderr handler at INFO, as Optuna has, unless the application configured ours; lines
    do not also go to the root logger (no duplicates under ``logging.basicConfig``)."""
    if logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(levelname)1.1s %(asctime)s] %(message)s"))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:  # a level the application set first stays
        logger.setLevel(logging.INFO)
    logger.propagate = False


_configure_default_handler()
