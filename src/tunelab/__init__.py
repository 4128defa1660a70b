"""tunelab: hyperparameter tuning for neural networks.

The small public API: a :class:`Study` runs a search over a :class:`Space` of :class:`Float`,
:class:`Int` and :class:`Categorical` parameters; each trial's objective receives a :class:`Trial`.

Names are imported when first used, so a tool that needs one part (``tunelab.readers``, the
storage) does not pay for the others (torch, scipy).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "Categorical",
    "Decision",
    "Float",
    "FrozenTrial",
    "Int",
    "Ranged",
    "Space",
    "SpecError",
    "Study",
    "Trial",
    "TrialPruned",
    "TrialState",
    "TunelabError",
    "lr_find",
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
    "Study": "tunelab.study",
    "Decision": "tunelab.trial",
    "FrozenTrial": "tunelab.trial",
    "Trial": "tunelab.trial",
    "TrialState": "tunelab.trial",
    "lr_find": "tunelab.lr_range",
}

if TYPE_CHECKING:
    from tunelab.errors import SpecError, TrialPruned, TunelabError
    from tunelab.lr_range import lr_find
    from tunelab.space import Categorical, Float, Int, Ranged, Space
    from tunelab.study import Study
    from tunelab.trial import Decision, FrozenTrial, Trial, TrialState


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'tunelab' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
