"""The dashboard's memory of each study: its trials, kept current through storage revisions.

Reading a study of 100,000 trials takes seconds; asking storage what changed since the last look
takes a millisecond. So each study is read once, then only its changed trials are read again, at
most once per ``refresh_every`` seconds however many requests arrive. Whatever the pages derive
from a study (its summary, a sort order, a figure) is remembered with that revision of it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from operator import attrgetter
from typing import Any

from tunelab.storage import Storage, StudyRecord
from tunelab.trial import FrozenTrial

__all__ = ["Snapshot", "StudyView", "Views"]


class Snapshot:
    """One study at one revision: its record and its trials by number, never changed once made.

    ``memo`` remembers what is computed from it, so a page that polls or pages through a big
    study pays for a summary, a sort or a figure once per revision; the newest ``memo_size``
    results are kept.
    """

    def __init__(
        self,
        record: StudyRecord,
        trials: tuple[FrozenTrial, ...],
        revision: int,
        memo_size: int = 32,
    ) -> None:
        self.record = record
        self.trials = trials
        self.revision = revision
        self._by_number = {trial.number: trial for trial in trials}
        self._memo: OrderedDict[Hashable, Any] = OrderedDict()
        self._memo_size = memo_size
        self._lock = threading.Lock()

    def trial(self, number: int) -> FrozenTrial | None:
        return self._by_number.get(number)

    def memo(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """``compute()``, or what it gave for ``key`` before. Computed outside the lock, so a slow
        figure never holds up the table (two requests at once may both compute it)."""
        with self._lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
        value = compute()
        with self._lock:
            self._memo[key] = value
            while len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)
        return value


class StudyView:
    """One study, read in full once and then only where it changed (see the module docstring)."""

    def __init__(self, storage: Storage, name: str, refresh_every: float = 1.0) -> None:
        self.name = name
        self._storage = storage
        self._refresh_every = refresh_every
        self._id = storage.get_study(name).id  # an unknown name raises StorageError here
        self._lock = threading.Lock()
        self._by_number: dict[int, FrozenTrial] = {}
        self._snapshot: Snapshot | None = None
        self._checked_at = 0.0

    def current(self) -> Snapshot:
        """The study as storage holds it, looked up again at most once per ``refresh_every``."""
        with self._lock:
            stale = time.monotonic() - self._checked_at >= self._refresh_every
            if self._snapshot is None or stale:
                self._snapshot = self._refreshed(self._snapshot)
                self._checked_at = time.monotonic()
            return self._snapshot

    def _refreshed(self, old: Snapshot | None) -> Snapshot:
        """A new snapshot when the study's trials or attributes (the final result) changed; the
        study's attributes take no revision, so its record is read each time (one row)."""
        record = self._storage.get_study(self.name)
        changed, revision = self._storage.changes(self._id, 0 if old is None else old.revision)
        if old is not None and not changed and (revision, record) == (old.revision, old.record):
            return old
        for trial in changed:
            self._by_number[trial.number] = trial
        trials = tuple(sorted(self._by_number.values(), key=attrgetter("number")))
        return Snapshot(record, trials, revision)


class Views:
    """The studies of one storage that the dashboard has looked at, by name."""

    def __init__(self, storage: Storage, refresh_every: float = 1.0) -> None:
        self.storage = storage
        self._refresh_every = refresh_every
        self._views: dict[str, StudyView] = {}
        self._lock = threading.Lock()

    def snapshot(self, name: str) -> Snapshot:
        """The study called ``name`` as it is now; raises StorageError when there is none."""
        with self._lock:
            view = self._views.get(name)
            if view is None:
                view = self._views[name] = StudyView(self.storage, name, self._refresh_every)
        return view.current()

    def snapshots(self) -> list[Snapshot]:
        """Every study in storage, in the order they were created."""
        return [self.snapshot(record.name) for record in self.storage.list_studies()]
