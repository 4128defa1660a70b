"""Search strategies. Each is one class behind :class:`Strategy`; ``make_strategy`` builds one
from its name and constructor arguments (as a spec names it)."""

from __future__ import annotations

from typing import Any

from tunelab._params import build_named
from tunelab.strategies.base import Proposal, Strategy
from tunelab.strategies.bayes import BayesSearch
from tunelab.strategies.grid import GridSearch
from tunelab.strategies.manual import Manual
from tunelab.strategies.random import RandomSearch

__all__ = [
    "BayesSearch",
    "STRATEGIES",
    "GridSearch",
    "Manual",
    "Proposal",
    "RandomSearch",
    "Strategy",
    "make_strategy",
]

STRATEGIES: dict[str, type[Strategy]] = {
    "manual": Manual,
    "grid": GridSearch,
    "random": RandomSearch,
    "bayes": BayesSearch,
}


def make_strategy(name: str | Strategy, **kwargs: Any) -> Strategy:
    """``make_strategy("random", seed=0)``; a Strategy instance passes through."""
    return build_named(STRATEGIES, "strategy", name, kwargs)
