"""Manual search: run exactly the configs queued with ``Study.enqueue`` (or ``configs:`` in a
spec), nothing more. Queued configs also run first under every other strategy."""

from __future__ import annotations

from collections.abc import Sequence

from tunelab.space import Space
from tunelab.strategies.base import Proposal, Strategy
from tunelab.trial import FrozenTrial

__all__ = ["Manual"]


class Manual(Strategy):
    """Proposes nothing of its own: the study ends when its queue of given configs is done."""

    def __init__(self) -> None:
        pass

    def is_finite(self) -> bool:
        return True

    def ask(
        self, space: Space, history: Sequence[FrozenTrial], numbers: Sequence[int]
    ) -> list[Proposal]:
        return []
