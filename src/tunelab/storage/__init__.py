"""Storage backends. ``get_storage`` turns a URL (or an existing storage) into a :class:`Storage`."""

from __future__ import annotations

from tunelab.storage.base import Storage, StudyRecord
from tunelab.storage.sql import SQLStorage

__all__ = ["DEFAULT_STORAGE", "SQLStorage", "Storage", "StudyRecord", "get_storage"]

DEFAULT_STORAGE = "sqlite:///tunelab.db"


def get_storage(storage: str | Storage | None = None) -> Storage:
    """A storage from a database URL (``sqlite:///tunelab.db``, ``postgresql+psycopg://...``)."""
    if isinstance(storage, Storage):
        return storage
    return SQLStorage(storage or DEFAULT_STORAGE)
