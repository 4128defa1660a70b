"""Every error tunelab raises derives from :class:`TunelabError`.

User-facing errors carry the dotted path of the field at fault, so the CLI can print one line such as
``space.lr.low: must be > 0 when log is true, but got 0.0; use a small positive bound such as 1e-6``.
"""

from __future__ import annotations

__all__ = [
    "NoCompletedTrials",
    "TunelabError",
    "SpecError",
    "SpaceError",
    "StorageError",
    "StorageUnavailable",
    "TrialPruned",
    "TrialDiverged",
    "TrialTimeout",
]


class TunelabError(Exception):
    """Base class of every error tunelab raises on purpose."""


class SpecError(TunelabError, ValueError):
    """An experiment spec (YAML or Python) is invalid; ``field`` is the dotted path at fault."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class SpaceError(SpecError):
    """A search-space definition is invalid (its ``field`` starts with ``space.``)."""


class StorageError(TunelabError):
    """Storage cannot do what was asked (unknown study, bad URL, ...)."""


class NoCompletedTrials(TunelabError, ValueError):
    """A study has no COMPLETE trial yet, so it has no best params or value (a ValueError, as
    Optuna's ``best_params`` raises)."""


class StorageUnavailable(StorageError):
    """The database server stayed out of reach past the retry window. What was recorded before
    is safe: a study continues (``tunelab resume``) once the server is back."""


class TrialPruned(TunelabError):
    """Raised inside an objective to end its trial early as PRUNED (the scheduler said stop)."""


class TrialDiverged(TunelabError):
    """Training diverged (NaN or infinite loss); the trial is recorded FAILED with this reason."""


class TrialTimeout(TunelabError):
    """The trial ran past its time limit; it is recorded FAILED with this reason."""
