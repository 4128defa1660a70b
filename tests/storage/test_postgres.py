"""The storage contract on a real PostgreSQL server (.ci/run starts one; see .ci/postgres).

Set TUNELAB_TEST_POSTGRES_URL to a server's URL to run these here; without it they skip, except
under CI, where a missing server is a failure.
"""

import os

import pytest

from tunelab.storage import SQLStorage
from tunelab.testing import StorageContract

URL = os.environ.get("TUNELAB_TEST_POSTGRES_URL")

if URL is None and os.environ.get("CI"):
    pytest.fail("CI must run the PostgreSQL tests: .ci/run sets TUNELAB_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(URL is None, reason="TUNELAB_TEST_POSTGRES_URL is not set")


class TestPostgreSQL(StorageContract):
    @pytest.fixture
    def storage(self, database_url):
        storage = SQLStorage(database_url)
        yield storage
        storage.close()


def test_two_opens_of_a_new_database_at_once_make_one_schema(database_url):
    """Drivers starting together on an empty database must not race creating the tables."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        opened = list(pool.map(lambda _: SQLStorage(database_url), range(4)))
    opened[0].create_study("s", "maximize", "acc")
    assert [s.name for s in opened[-1].list_studies()] == ["s"]
    for storage in opened:
        storage.close()


def test_two_drivers_share_one_study_exactly_over_many_rounds(database_url, tmp_path):
    """Each round two driver processes top the study up by 30 trials at once: no number twice,
    none lost, no trial claimed by both."""
    from tests.test_concurrency import run_drivers
    from tunelab import Study, TrialState

    for round_ in range(1, 6):
        run_drivers(database_url, 30 * round_, 2, tmp_path / f"barrier-{round_}")
        trials = Study("shared", storage=database_url, direction="minimize").trials
        assert [t.number for t in trials] == list(range(30 * round_))
        assert all(t.state is TrialState.COMPLETE for t in trials)
    xs = [t.params["x"] for t in trials]
    assert len(set(xs)) == len(xs), "two drivers ran the same point"
    assert len({t.owner for t in trials}) > 2, "the rounds did not share the study"
