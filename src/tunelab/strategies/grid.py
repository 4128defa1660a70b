"""Grid search: every combination of the listed values, in order."""

from __future__ import annotations

from collections.abc import Sequence

from tunelab.space import Space
from tunelab.strategies.base import Proposal, Strategy, strategy_index
from tunelab.trial import FrozenTrial

__all__ = ["GridSearch"]


class GridSearch(Strategy):
    """Visits ``space.grid()`` in order, then stops proposing.

    Categoricals and integer ranges enumerate themselves; a float range needs listed values
    (``grid: [...]``) or a ``step``, else :class:`~tunelab.errors.SpaceError` says so.
    """

    def __init__(self) -> None:
        pass

    def is_finite(self) -> bool:
        return True

    def ask(
        self, space: Space, history: Sequence[FrozenTrial], numbers: Sequence[int]
    ) -> list[Proposal]:
        grid = space.grid()
        first = strategy_index(history, numbers[0]) if numbers else 0
        return [
            Proposal(dict(grid[k]), {"grid_index": k, "grid_size": len(grid)})
            for k in range(first, min(first + len(numbers), len(grid)))
        ]
