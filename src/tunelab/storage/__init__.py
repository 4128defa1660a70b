"""Storage backends. ``get_storage`` turns a URL (or an existing storage) into a :class:`Storage`."""

from __future__ import annotations

from tunelab.clock import Clock
from tunelab.storage.base import (
    SCHEMA_VERSION,
    TRANSITIONS,
    Storage,
    StorageUnavailable,
    StudyRecord,
    TrialNumberTaken,
    TrialStateError,
)
from tunelab.storage.sql import SQLStorage

__all__ = [
    "DEFAULT_STORAGE",
    "SCHEMA_VERSION",
    "SQLStorage",
    "Storage",
    "StorageUnavailable",
    "StudyRecord",
    "TRANSITIONS",
    "TrialNumberTaken",
    "TrialStateError",
    "get_storage",
]

DEFAULT_STORAGE = "sqlite:///tunelab.db"


def get_storage(
    storage: str | Storage | None = None, clock: Clock | None = None, create: bool = True
) -> Storage:
    """A storage from a database URL (``sqlite:///tunelab.db``, ``postgresql+psycopg://...``);
    its timestamps follow ``clock`` (the real one by default). With ``create=False`` (what read
    commands use) a missing database is an error instead of a new empty one."""
    if isinstance(storage, Storage):
        return storage
    return SQLStorage(storage or DEFAULT_STORAGE, clock, create)
