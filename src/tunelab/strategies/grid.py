"""Grid search: every combination of the listed values, in order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tunelab.space import Categorical, Space
from tunelab.strategies.base import Proposal, Strategy, strategy_index
from tunelab.trial import FrozenTrial

__all__ = ["GridSearch"]


class GridSearch(Strategy):
    """Visits ``space.grid()`` in order, then stops proposing.

    Categoricals and integer ranges enumerate themselves; a float range needs listed values
    (``grid: [...]``) or a ``step``, else :class:`~tunelab.errors.SpaceError` says so.

    Args:
        search_space: the values to visit per name (Optuna's ``GridSampler(search_space)``),
            for an objective that suggests its parameters as it runs; by default the grid of
            the study's declared space.
    """

    def __init__(self, search_space: Mapping[str, Sequence[Any]] | None = None) -> None:
        self.search_space = search_space

    def is_finite(self) -> bool:
        return True

    def ask(
        self, space: Space, history: Sequence[FrozenTrial], numbers: Sequence[int]
    ) -> list[Proposal]:
        grid = self._given_grid() if self.search_space else space.grid()
        first = strategy_index(history, numbers[0]) if numbers else 0
        return [
            Proposal(dict(grid[k]), {"grid_index": k, "grid_size": len(grid)})
            for k in range(first, min(first + len(numbers), len(grid)))
        ]

    def _given_grid(self) -> list[dict[str, Any]]:
        if getattr(self, "_grid", None) is None:
            listed = {name: Categorical(list(values)) for name, values in self.search_space.items()}
            self._grid = Space(listed).grid()
        return self._grid
