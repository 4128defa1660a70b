"""The fault drill at a small size (tests/fault_drill.py runs it at 50 kills by hand)."""

import pytest

from tests.fault_drill import drill


@pytest.mark.slow
def test_three_kills_with_resume_lose_nothing(tmp_path):
    summary = drill(kills=3, folder=tmp_path, seed=1)
    assert summary["driver_kills"] == 3 and summary["trials"] == 38
    assert summary["slowest_worker_exit_s"] < 1.0
