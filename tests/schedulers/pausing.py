"""A small pause-and-resume scheduler for the driver's tests (importable by worker processes)."""

from tunelab.schedulers import Scheduler
from tunelab.trial import Decision, TrialState


class PauseOnce(Scheduler):
    """Pause every trial once, at ``step``; resume the best paused trial once ``min_paused``
    are paused (``min_paused=None``: never resume)."""

    def __init__(self, step: int = 2, min_paused: int | None = 2) -> None:
        self.step = step
        self.min_paused = min_paused

    def on_report(self, trial, step, study):
        first_time = "checkpoint" not in trial.attrs  # set when the trial paused
        return Decision.PAUSE if step == self.step and first_time else Decision.CONTINUE

    def resume_next(self, study):
        paused = [t for t in study.trials if t.state is TrialState.PAUSED]
        if self.min_paused is None or len(paused) < self.min_paused:
            return None
        pick = max if study.direction == "maximize" else min
        return pick(paused, key=lambda t: t.values_at(study.metric)[t.last_step])
