"""The strategy interface: a strategy only proposes configurations; it never trains."""

from __future__ import annotations

import abc
import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tunelab._params import ParamsMixin
from tunelab.space import Space
from tunelab.trial import FrozenTrial

__all__ = ["History", "Proposal", "Strategy"]


@dataclass(frozen=True)
class Proposal:
    """A proposed config, and why (acquisition value, grid index...): recorded with the trial."""

    params: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)


class Strategy(ParamsMixin, abc.ABC):
    """Proposes configs for trials the driver has claimed.

    ``ask`` receives the claimed trial numbers and every other trial of the study, running ones
    included, so a strategy can avoid proposing what is already being tried, and batches (``n > 1``)
    come for free. Trial numbers are unique across processes, so a strategy that derives its
    sequence position from them never hands two workers the same point.
    """

    @abc.abstractmethod
    def ask(
        self, space: Space, history: Sequence[FrozenTrial], numbers: Sequence[int]
    ) -> list[Proposal]:
        """One proposal per claimed number, in order; fewer when the strategy is exhausted."""

    def is_finite(self) -> bool:
        """Whether the strategy runs out of proposals by itself (a grid, a list of configs), so
        a study needs no trial or time budget. The one rule the spec and the study both use."""
        return False


class History(list):
    """Every trial of a study by number (numbers dense from 0), as the driver hands them to
    strategies, with the sorted numbers of the trials no strategy proposed (queued configs).

    It makes :func:`strategy_index` a bisect instead of a scan of the study: at 100,000 trials
    the scan cost 30 ms per proposal, and the study's speed fell with its size.
    """

    def __init__(self, trials: Sequence[FrozenTrial], not_proposed: Sequence[int]) -> None:
        super().__init__(trials)
        self.not_proposed = not_proposed


def strategy_index(history: Sequence[FrozenTrial], number: int) -> int:
    """How many strategy-proposed trials come before ``number``: a sequence position that every
    process computes alike (queued manual trials do not use up grid points or Sobol points)."""
    if isinstance(history, History):  # every number below ``number`` is a trial of the study
        return number - bisect.bisect_left(history.not_proposed, number)
    return sum(1 for t in history if t.number < number and t.source == "strategy")
