"""Tests of the figures: data functions, importance, renderers."""

from __future__ import annotations

from typing import Any

from tunelab.trial import FrozenTrial, TrialState


def make_trial(
    number: int,
    value: float | None = None,
    state: TrialState = TrialState.COMPLETE,
    params: dict[str, Any] | None = None,
    intermediate: dict[int, dict[str, float]] | None = None,
) -> FrozenTrial:
    """A trial as storage would hand it out, with only what a figure reads."""
    return FrozenTrial(
        id=number + 1,
        number=number,
        state=state,
        params=params if params is not None else {"x": float(number)},
        value=value,
        intermediate=intermediate or {},
    )
