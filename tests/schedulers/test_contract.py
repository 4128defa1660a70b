"""Each scheduler joins the scheduler contract (tunelab.testing.SchedulerContract)."""

import pytest

from tests.schedulers.pausing import PauseOnce
from tunelab.schedulers import MedianScheduler, NoScheduler
from tunelab.testing import SchedulerContract


class TestNoScheduler(SchedulerContract):
    @pytest.fixture
    def scheduler(self):
        return NoScheduler()


class TestMedian(SchedulerContract):
    @pytest.fixture
    def scheduler(self):
        return MedianScheduler(warmup_steps=1, min_trials=2)


class TestPauseOnce(SchedulerContract):
    """The tests' own pausing scheduler: the driver's pause and resume path under the contract."""

    @pytest.fixture
    def scheduler(self):
        return PauseOnce(step=2, min_paused=1)
