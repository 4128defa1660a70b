"""Search strategies. Each is one class behind :class:`Strategy`; ``make_strategy`` builds one
from its name and constructor arguments (as a spec names it). All are exported from ``tunelab``,
and ``Study(strategy=...)`` takes a name or an object:

======== ================ ===============================================================
name     class            options
======== ================ ===============================================================
random   RandomSearch     ``seed=None`` (None: the study's seed). Scrambled Sobol points;
                          a resumed study continues the sequence. The default.
grid     GridSearch       none. Every combination of ``space.grid()``, then the study
                          ends (a float needs listed values or a ``step``).
manual   Manual           none. Only the configs queued with ``Study.enqueue`` (queued
                          configs also run first under every other strategy).
bayes    BayesSearch      ``n_initial=None`` (Sobol trials before the model: 2 per
                          parameter, 5..10), ``n_candidates=1024``,
                          ``max_observations=300``, ``seed=None``; ``direction`` and
                          ``metric`` are set by the study. A BoTorch Gaussian process
                          with log expected improvement.
======== ================ ===============================================================

Example:
    >>> from tunelab import BayesSearch, Study
    >>> Study("s", storage="sqlite://", strategy=BayesSearch(n_initial=5)).strategy.n_initial
    5
    >>> make_strategy("bayes", n_initial=5).n_initial
    5
"""

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
