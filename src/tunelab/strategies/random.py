"""Quasi-random search: scrambled Sobol points from scipy, decoded by the space."""

from __future__ import annotations

from collections.abc import Sequence

from scipy.stats import qmc

from tunelab.space import Space
from tunelab.strategies.base import Proposal, Strategy, strategy_index
from tunelab.trial import FrozenTrial

__all__ = ["RandomSearch"]


class RandomSearch(Strategy):
    """Scrambled Sobol sequence: covers the space more evenly than independent draws.

    Point k of the sequence goes to the k-th strategy trial, so a resumed study continues the same
    sequence and parallel workers never draw the same point.

    Example:
        >>> from tunelab.space import Float, Space
        >>> RandomSearch(seed=0).ask(Space({"x": Float(0, 1)}), [], [0])[0].params
        {'x': 0.8102...}
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def ask(
        self, space: Space, history: Sequence[FrozenTrial], numbers: Sequence[int]
    ) -> list[Proposal]:
        first = strategy_index(history, numbers[0]) if numbers else 0
        engine = self._sobol(len(space), first)
        points = [engine.random(1)[0] for _ in numbers]  # one at a time, as trials consume them
        return [Proposal(space.decode(u), {"sobol_index": first + i}) for i, u in enumerate(points)]

    def _sobol(self, dim: int, index: int) -> qmc.Sobol:
        """A Sobol engine positioned at ``index``; reused while draws stay in sequence, since
        building and scrambling one costs more than proposing."""
        engine = getattr(self, "_engine_", None)
        if (
            engine is None
            or engine.d != dim
            or engine.num_generated != index
            or (getattr(self, "_engine_seed_", None) != self.seed)
        ):
            engine = qmc.Sobol(d=dim, scramble=True, seed=self.seed)
            if index:
                engine.fast_forward(index)
            self._engine_, self._engine_seed_ = engine, self.seed
        return engine
