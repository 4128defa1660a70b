"""The median stopping rule (Golovin et al., 2017, Google Vizier; Optuna's MedianPruner)."""

from __future__ import annotations

import statistics

from tunelab.schedulers.base import Scheduler, StudyView
from tunelab.trial import Decision, FrozenTrial, TrialState, is_bad_number

__all__ = ["MedianScheduler"]


class MedianScheduler(Scheduler):
    """Stop a trial whose best value up to step s is worse than the median of the other trials'
    best values up to s.

    The others are every trial that got to step s, however it ended: completed, pruned or paused
    later than s, or still running past it (failed ones aside). Counting only completed trials,
    as Optuna's MedianPruner does, compares each trial with the survivors of earlier cuts, a
    median that rises as the study goes on and prunes ever harder. Best-so-far on both sides makes
    the rule robust to a noisy epoch and lets trials that report at different steps be compared.
    Nothing is stopped before ``warmup_steps`` or before ``min_trials`` others got to that step.

    Args:
        warmup_steps: steps every trial runs before it can be stopped.
        min_trials: completed trials needed at a step before the rule applies there.
        interval: apply the rule when a report reaches or passes the next of the steps
            ``warmup_steps + k * interval`` (a trial reporting every 3 steps is still checked
            with ``interval=2``).
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
        if not self._checks_at(trial, step):
            return Decision.CONTINUE
        compared = self._compare(trial, step, study)
        if compared is None:
            return Decision.CONTINUE
        own, median, _ = compared
        return Decision.STOP if study.better(median, own) else Decision.CONTINUE

    def explain(self, trial: FrozenTrial, step: int, decision: Decision, study: StudyView) -> str:
        compared = self._compare(trial, step, study)
        if compared is None:
            return super().explain(trial, step, decision, study)
        own, median, n_others = compared
        side = "below" if study.direction == "maximize" else "above"
        return (
            f"best {study.metric} {own:.4g} by step {step}, {side} the median {median:.4g} "
            f"of {n_others} other trials there"
        )

    def _compare(
        self, trial: FrozenTrial, step: int, study: StudyView
    ) -> tuple[float, float, int] | None:
        """The trial's best value up to ``step``, the median of the others' and how many others
        there are; None when the rule does not apply (a diverged trial, too few others)."""
        own = _best_up_to(trial, study, step)
        if own is None:  # diverged values are the executor's business, not the median's
            return None
        others = [
            best
            for t in study.trials
            if t.state is not TrialState.FAILED
            and t.id != trial.id
            and _reached(t, step)
            and (best := _best_up_to(t, study, step)) is not None
        ]
        if len(others) < self.min_trials:
            return None
        return own, statistics.median(others), len(others)

    def _checks_at(self, trial: FrozenTrial, step: int) -> bool:
        """Whether this report reaches a check point the trial's previous report had not."""
        if step < self.warmup_steps:
            return False
        previous = max((s for s in trial.intermediate if s < step), default=None)
        if previous is None or previous < self.warmup_steps:
            return True
        slot = (step - self.warmup_steps) // self.interval
        return slot > (previous - self.warmup_steps) // self.interval


def _reached(trial: FrozenTrial, step: int) -> bool:
    """Whether the trial got as far as ``step``: a completed one whatever its length (its best
    up to ``step`` is what it showed by then), any other once it has reported at ``step`` or
    beyond."""
    return trial.state is TrialState.COMPLETE or (trial.last_step or 0) >= step


def _best_up_to(trial: FrozenTrial, study: StudyView, step: int) -> float | None:
    """The best reported value of the metric at steps <= ``step``."""
    values = trial.values_at(study.metric)
    seen = [v for s, v in values.items() if s <= step and not is_bad_number(v)]
    if not seen:
        return None
    return max(seen) if study.direction == "maximize" else min(seen)
