"""Readers: what the CLI, the final report and the dashboard show of a study, computed in one place.

Plain functions over :class:`~tunelab.trial.FrozenTrial` lists (as storage hands them out). Importing
this module imports neither torch nor scipy, so read-only tools start fast.

Example:
    >>> from tunelab.trial import FrozenTrial, TrialState
    >>> trials = [FrozenTrial(id=1, number=0, state=TrialState.COMPLETE, params={"x": 1}, value=0.5)]
    >>> best_trial(trials, "maximize").number
    0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tunelab.trial import FrozenTrial, TrialState

__all__ = [
    "best_summary",
    "best_trial",
    "state_counts",
    "steps_reached",
    "trial_row",
    "trial_rows",
    "validated_on",
]


def best_trial(trials: Iterable[FrozenTrial], direction: str) -> FrozenTrial | None:
    """The COMPLETE trial with the best finite value (the earliest among equals), or None."""
    scored = [
        t
        for t in trials
        if t.state is TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
    ]
    if not scored:
        return None
    pick = max if direction == "maximize" else min
    return pick(scored, key=lambda t: t.value)


def state_counts(trials: Iterable[FrozenTrial]) -> dict[TrialState, int]:
    """How many trials are in each state, every state listed (zeros included), in lifecycle order."""
    counts = dict.fromkeys(TrialState, 0)
    for trial in trials:
        counts[trial.state] += 1
    return counts


def steps_reached(trials: Iterable[FrozenTrial]) -> dict[int, int]:
    """How many trials got at least as far as each step where one of them paused: under ASHA or
    Hyperband, the trials per rung (a trial counts at every rung it passed)."""
    reached = [t.last_step for t in trials if t.last_step is not None]
    pauses = sorted({p for t in trials if (p := t.attrs.get("paused_at")) is not None})
    return {step: sum(last >= step for last in reached) for step in pauses}


def best_summary(name: str, metric: str, best: FrozenTrial) -> dict[str, Any]:
    """The best trial as ``tunelab best`` and the final result name it (before any retrain)."""
    return {
        "study": name,
        "trial": best.number,
        "params": best.params,
        "metric": metric,
        "value": best.value,
        "val_metrics": best.metrics,
        "seed": best.seed,
        "test_metrics": None,
    }


def validated_on(spec: Mapping[str, Any] | None) -> str | None:
    """Where a spec's trial values come from, said beside every number chosen by them (None for
    a study made from Python, whose values are its objective's own)."""
    if not spec:
        return None
    validation = (spec.get("data") or {}).get("validation") or {}
    if validation.get("kfold"):
        repeats, group = validation.get("repeats", 1), validation.get("group")
        return (
            f"mean over {validation['kfold']}-fold cross-validation"
            + (f", {repeats} repeats" if repeats > 1 else "")
            + (f", grouped by {group}" if group else "")
        )
    return f"validation split, {validation.get('holdout', 0.2):.0%} of the non-test rows"


def trial_row(trial: FrozenTrial) -> dict[str, Any]:
    """One line of the trial table: plain JSON-ready values. ``stopped`` is the scheduler's
    reason for a PAUSED or PRUNED trial (decision, step, by, why), else None."""
    return {
        "number": trial.number,
        "state": trial.state.value,
        "value": trial.value,
        "params": trial.params,
        "metrics": trial.metrics,
        "steps": len(trial.intermediate),
        "last_step": trial.last_step,
        "seed": trial.seed,
        "duration_s": None if trial.duration is None else round(trial.duration, 3),
        "retries": trial.retries,
        "error": trial.error,
        "warnings": trial.attrs.get("warnings", []),
        "stopped": trial.attrs.get("stopped") if trial.state in _STOPPED else None,
    }


_STOPPED = (TrialState.PAUSED, TrialState.PRUNED)


def trial_rows(trials: Sequence[FrozenTrial]) -> list[dict[str, Any]]:
    return [trial_row(t) for t in trials]
