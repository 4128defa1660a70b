"""tunelab: hyperparameter tuning for neural networks.

The small public API: a :class:`Study` runs a search over a :class:`Space` of :class:`Float`,
:class:`Int` and :class:`Categorical` parameters; each trial's objective receives a :class:`Trial`.
"""

from tunelab.errors import SpecError, TrialPruned, TunelabError
from tunelab.space import Categorical, Float, Int, Space
from tunelab.study import Study
from tunelab.trial import Decision, FrozenTrial, Trial, TrialState

__all__ = [
    "Categorical",
    "Decision",
    "Float",
    "FrozenTrial",
    "Int",
    "Space",
    "SpecError",
    "Study",
    "Trial",
    "TrialPruned",
    "TrialState",
    "TunelabError",
]

__version__ = "0.1.0"
