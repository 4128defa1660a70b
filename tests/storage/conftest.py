"""The PostgreSQL tests' database: a fresh one per test on the server CI starts."""

import os
import uuid

import pytest
import sqlalchemy as sa


@pytest.fixture
def database_url():
    """A fresh database on the server (TUNELAB_TEST_POSTGRES_URL) for one test, dropped
    afterwards."""
    server = os.environ["TUNELAB_TEST_POSTGRES_URL"]
    name = f"tunelab_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    yield sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
    admin.dispose()
