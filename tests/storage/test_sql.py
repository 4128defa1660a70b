from pathlib import Path

import pytest

from tunelab.errors import StorageError
from tunelab.storage import SQLStorage, get_storage
from tunelab.testing import StorageContract

DATA = Path(__file__).parent / "data"


class TestSQLiteFile(StorageContract):
    @pytest.fixture
    def storage(self, tmp_path):
        storage = SQLStorage(f"sqlite:///{tmp_path}/nested/tunelab.db")
        yield storage
        storage.close()


class TestSQLiteMemory(StorageContract):
    shared_between_processes = False

    @pytest.fixture
    def storage(self):
        return SQLStorage("sqlite://")


def test_sqlite_file_uses_wal(tmp_path):
    storage = SQLStorage(f"sqlite:///{tmp_path}/t.db")
    with storage._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_tables_are_prefixed(tmp_path):
    import sqlalchemy as sa

    storage = SQLStorage(f"sqlite:///{tmp_path}/t.db")
    names = sa.inspect(storage._engine).get_table_names()
    assert names and all(name.startswith("tunelab_") for name in names)


def test_bad_url_is_a_clear_error():
    with pytest.raises(StorageError, match="cannot read 'not a url' as a database URL"):
        get_storage("not a url")


def test_storage_survives_pickling(tmp_path):
    import pickle

    storage = SQLStorage(f"sqlite:///{tmp_path}/t.db")
    storage.create_study("a", "minimize", "loss")
    assert pickle.loads(pickle.dumps(storage)).get_study("a").metric == "loss"


def test_a_database_written_by_release_0_1_0_is_upgraded_in_place(tmp_path):
    """tests/storage/data holds a study made by tunelab 0.1.0 (4 trials, 1 queued, schema 1)."""
    import shutil

    import sqlalchemy as sa

    from tunelab.storage import SCHEMA_VERSION
    from tunelab.trial import TrialState

    path = tmp_path / "old.db"
    shutil.copy(DATA / "tunelab-0.1.0.sqlite", path)
    storage = SQLStorage(f"sqlite:///{path}")
    with storage._engine.connect() as conn:
        assert (
            conn.exec_driver_sql("SELECT version FROM tunelab_version").scalar() == SCHEMA_VERSION
        )
    study = storage.get_study("made-by-0.1.0")
    trials = storage.get_trials(study.id)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4 + [TrialState.WAITING]
    assert all(t.attrs == {} for t in trials) and len(trials[0].intermediate) == 3
    queued = storage.claim_trial(study.id, "me:1")  # and the new verbs work on it
    storage.pause_trial(queued.id, "me:1", {"checkpoint": {"step": 1}})
    assert storage.get_trials(study.id)[-1].attrs == {"checkpoint": {"step": 1}}
    storage.close()
    reopened = SQLStorage(f"sqlite:///{path}")  # a second open finds nothing to upgrade
    assert sa.inspect(reopened._engine).get_columns("tunelab_trials")[-1]["name"] == "attrs"


def test_a_database_from_a_newer_release_is_refused_with_the_fix(tmp_path):
    url = f"sqlite:///{tmp_path}/new.db"
    SQLStorage(url).close()
    import sqlite3

    with sqlite3.connect(tmp_path / "new.db") as conn:
        conn.execute("UPDATE tunelab_version SET version = 99")
    with pytest.raises(StorageError, match="written by a newer tunelab .schema 99.*pip install -U"):
        SQLStorage(url)


def test_opening_a_new_database_from_several_connections_at_once_never_sees_locked(tmp_path):
    """Two connections switching a new file to WAL at the same instant: SQLite answers one of them
    'database is locked' at once, without waiting (it would deadlock). Four drivers starting a
    study together met this about once in 20 runs; the switch is now retried."""
    import threading

    failures = []
    for i in range(60):
        url = f"sqlite:///{tmp_path}/db{i}.db"
        barrier = threading.Barrier(4)

        def open_storage(url=url, barrier=barrier):
            barrier.wait()
            try:
                SQLStorage(url).close()
            except Exception as exc:  # noqa: BLE001 - collected and shown below
                failures.append(repr(exc))

        threads = [threading.Thread(target=open_storage) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
