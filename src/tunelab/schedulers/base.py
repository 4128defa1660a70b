"""The scheduler interface: at each report, decide whether a trial goes on."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

from tunelab._params import ParamsMixin
from tunelab.trial import Decision, FrozenTrial

__all__ = ["Scheduler", "StudyView"]


@dataclass(frozen=True)
class StudyView:
    """What a scheduler may look at: the objective and every trial of the study, reports included."""

    metric: str
    direction: str
    trials: Sequence[FrozenTrial]

    def better(self, a: float, b: float) -> bool:
        """Is ``a`` strictly better than ``b`` in this study's direction?"""
        return a > b if self.direction == "maximize" else a < b


class Scheduler(ParamsMixin, abc.ABC):
    """Decides CONTINUE / PAUSE / STOP for a trial that just reported at ``step``, and which
    PAUSED trial, if any, runs next.

    ``trial.intermediate`` already holds the new report. Schedulers never train and never write
    to storage; the driver applies their decision. They keep no state of their own between calls:
    everything they decide from is in the study view, so a study resumed by another process (or
    after a crash) gets the same decisions. :class:`~tunelab.testing.SchedulerContract` holds
    every scheduler to this.
    """

    @abc.abstractmethod
    def on_report(self, trial: FrozenTrial, step: int, study: StudyView) -> Decision: ...

    def explain(self, trial: FrozenTrial, step: int, decision: Decision, study: StudyView) -> str:
        """Why ``on_report`` answered ``decision`` (PAUSE or STOP) here, in one short sentence
        that ``tunelab trials`` shows with the trial.

        The driver asks only when a trial is paused or stopped, with the same arguments it
        passed to ``on_report``, so the answer may recompute what the decision was made from.
        """
        done = "paused" if decision is Decision.PAUSE else "stopped"
        return f"{done} by {type(self).__name__} at step {step}"

    def resume_next(self, study: StudyView) -> FrozenTrial | None:
        """The PAUSED trial to run next, or None to start a new trial instead.

        The driver asks before it asks the strategy for a new config, and again while it has
        free slots; a trial returned here is resumed from its checkpoint. By default paused
        trials are never resumed.
        """
        return None


class NoScheduler(Scheduler):
    """Every trial runs to its end."""

    def __init__(self) -> None:
        pass

    def on_report(self, trial: FrozenTrial, step: int, study: StudyView) -> Decision:
        return Decision.CONTINUE
