"""The median stopping rule (Golovin et al., 2017, Google Vizier; Optuna's MedianPruner)."""

from __future__ import annotations

import statistics

from tunelab.schedulers.base import Scheduler, StudyView
from tunelab.trial import Decision, FrozenTrial, TrialState, is_bad_number

__all__ = ["MedianScheduler"]


class MedianScheduler(Scheduler):
    """Stop a trial whose best value up to step s is worse than the median of the completed trials'
    best values up to s.

    Best-so-far on both sides makes the rule robust to a noisy epoch. Nothing is stopped before
    ``warmup_steps`` or before ``min_trials`` trials have completed past that step.

    Args:
        warmup_steps: steps every trial runs before it can be stopped.
        min_trials: completed trials needed at a step before the rule applies there.
        interval: apply the rule every ``interval`` steps after warm-up.
    """

    def __init__(self, warmup_steps: int = 5, min_trials: int = 5, interval: int = 1) -> None:
        for name, value, low in (
            ("warmup_steps", warmup_steps, 0),
            ("min_trials", min_trials, 1),
            ("interval", interval, 1),
        ):
            if not isinstance(value, int) or value < low:
                raise ValueError(
                    f"MedianScheduler.{name} must be an integer >= {low}, got {value!r}"
                )
        self.warmup_steps = warmup_steps
        self.min_trials = min_trials
        self.interval = interval

    def on_report(self, trial: FrozenTrial, step: int, study: StudyView) -> Decision:
        if step < self.warmup_steps or (step - self.warmup_steps) % self.interval:
            return Decision.CONTINUE
        own = _best_up_to(trial, study, step)
        if own is None:  # diverged values are the executor's business, not the median's
            return Decision.CONTINUE
        others = [
            best
            for t in study.trials
            if t.state is TrialState.COMPLETE
            and t.id != trial.id
            and (best := _best_up_to(t, study, step)) is not None
        ]
        if len(others) < self.min_trials:
            return Decision.CONTINUE
        median = statistics.median(others)
        return Decision.STOP if study.better(median, own) else Decision.CONTINUE


def _best_up_to(trial: FrozenTrial, study: StudyView, step: int) -> float | None:
    """The best reported value of the metric at steps <= ``step``, if the trial reached ``step``."""
    values = trial.values_at(study.metric)
    if not values or max(values) < step:
        return None
    seen = [v for s, v in values.items() if s <= step and not is_bad_number(v)]
    if not seen:
        return None
    return max(seen) if study.direction == "maximize" else min(seen)
