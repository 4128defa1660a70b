import pytest

from tunelab.errors import StorageError
from tunelab.storage import SQLStorage, get_storage
from tunelab.testing import StorageContract


class TestSQLiteFile(StorageContract):
    @pytest.fixture
    def storage(self, tmp_path):
        storage = SQLStorage(f"sqlite:///{tmp_path}/nested/tunelab.db")
        yield storage
        storage.close()


class TestSQLiteMemory(StorageContract):
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
