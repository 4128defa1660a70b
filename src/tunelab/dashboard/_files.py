"""A trial's artifact files: where they are, what they are called, and which may be downloaded."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunelab.storage import Storage, StudyRecord

__all__ = ["MAX_FILES", "artifacts_root", "list_files", "trial_file", "trial_folder"]

#: The most files a trial page lists (a trial that saved a checkpoint per step may hold thousands).
MAX_FILES = 500


def artifacts_root(storage: Storage, record: StudyRecord, given: str | Path | None) -> Path:
    """Where a study's trial folders are: the dashboard's ``artifacts_dir``, else the ``artifacts``
    of the spec stored with the study, else where :class:`~tunelab.Study` puts them by default."""
    if given is not None:
        return Path(given).expanduser().resolve()
    spec_root = (record.spec or {}).get("artifacts")
    if spec_root:
        return Path(spec_root).expanduser().resolve()
    from tunelab.study import _default_artifacts  # study.py imports scipy: only trial pages pay

    return _default_artifacts(storage)


def trial_folder(root: Path, study: str, number: int) -> Path | None:
    """The trial's folder, or None when the study's name is no plain folder name (as
    :attr:`tunelab.Study.study_dir` refuses it): nothing outside ``root`` is ever read."""
    root = root.resolve()
    study_dir = (root / study).resolve()
    if study_dir.parent != root:
        return None
    return study_dir / f"trial_{number:05d}"


def list_files(folder: Path | None) -> dict[str, Any]:
    """The files under ``folder`` (paths relative to it, sizes in bytes), the first MAX_FILES:
    a folder's own files by name, then its subfolders' by name; links are not followed."""
    found = list(itertools.islice(_walk(folder), MAX_FILES + 1)) if folder is not None else []
    return {
        "folder": None if folder is None else str(folder),
        "files": [
            {"path": path.relative_to(folder).as_posix(), "size": _size(path)}
            for path in found[:MAX_FILES]
        ],
        "truncated": len(found) > MAX_FILES,
    }


def _walk(folder: Path) -> Iterator[Path]:
    for parent, dirs, names in os.walk(folder):  # nothing when the folder does not exist
        dirs.sort()
        for name in sorted(names):
            path = Path(parent) / name
            if path.is_file() and not path.is_symlink():
                yield path


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:  # removed between the listing and the look
        return None


def trial_file(folder: Path | None, relative: str) -> Path | None:
    """The file ``relative`` names inside ``folder``, or None when it is not a file there: a
    path that climbs out (``../``), is absolute, or leads through a link outside is refused."""
    if folder is None or not relative:
        return None
    base = folder.resolve()
    path = (base / relative).resolve()
    return path if path.is_relative_to(base) and path.is_file() else None
