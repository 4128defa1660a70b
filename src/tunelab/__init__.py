"""tunelab: hyperparameter tuning for neural networks.

The small public API: a :class:`Study` runs a search over a :class:`Space` of :class:`Float`,
:class:`Int` and :class:`Categorical` parameters; each trial's objective receives a :class:`Trial`.
Strategies (:class:`RandomSearch`, :class:`GridSearch`, :class:`BayesSearch`, :class:`Manual`)
propose configs; schedulers (:class:`MedianScheduler`, :class:`ASHAScheduler`,
:class:`HyperbandScheduler`) stop or pause trials early; :class:`Strategy` and :class:`Scheduler`
are their bases. :func:`set_verbosity` sets how much the ``tunelab`` logger says.

Names are imported when first used, so a tool that needs one part (``tunelab.readers``, the
storage) does not pay for the others (torch, scipy).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "ASHAScheduler",
    "BayesSearch",
    "Categorical",
    "Decision",
    "Float",
    "FrozenTrial",
    "GridSearch",
    "HyperbandScheduler",
    "Int",
    "Manual",
    "MedianScheduler",
    "NoCompletedTrials",
    "RandomSearch",
    "Ranged",
    "Scheduler",
    "Space",
    "SpecError",
    "Strategy",
    "Study",
    "Trial",
    "TrialPruned",
    "TrialState",
    "TunelabError",
    "create_study",
    "load_study",
    "lr_find",
    "set_verbosity",
]

__version__ = "0.1.0"

_HOMES = {
    "Categorical": "tunelab.space",
    "Float": "tunelab.space",
    "Int": "tunelab.space",
    "Ranged": "tunelab.space",
    "Space": "tunelab.space",
    "SpecError": "tunelab.errors",
    "TrialPruned": "tunelab.errors",
    "TunelabError": "tunelab.errors",
    "NoCompletedTrials": "tunelab.errors",
    "Study": "tunelab.study",
    "create_study": "tunelab.study",
    "load_study": "tunelab.study",
    "BayesSearch": "tunelab.strategies",
    "GridSearch": "tunelab.strategies",
    "Manual": "tunelab.strategies",
    "RandomSearch": "tunelab.strategies",
    "Strategy": "tunelab.strategies",
    "ASHAScheduler": "tunelab.schedulers",
    "HyperbandScheduler": "tunelab.schedulers",
    "MedianScheduler": "tunelab.schedulers",
    "Scheduler": "tunelab.schedulers",
    "set_verbosity": "tunelab.events",
    "Decision": "tunelab.trial",
    "FrozenTrial": "tunelab.trial",
    "Trial": "tunelab.trial",
    "TrialState": "tunelab.trial",
    "lr_find": "tunelab.lr_range",
}

if TYPE_CHECKING:
    from tunelab.errors import NoCompletedTrials, SpecError, TrialPruned, TunelabError
    from tunelab.events import set_verbosity
    from tunelab.lr_range import lr_find
    from tunelab.schedulers import ASHAScheduler, HyperbandScheduler, MedianScheduler, Scheduler
    from tunelab.space import Categorical, Float, Int, Ranged, Space
    from tunelab.strategies import BayesSearch, GridSearch, Manual, RandomSearch, Strategy
    from tunelab.study import Study, create_study, load_study
    from tunelab.trial import Decision, FrozenTrial, Trial, TrialState


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'tunelab' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
