"""Each executor joins the executor contract (tunelab.testing.ExecutorContract)."""

import pytest

from tunelab.executors import InlineExecutor, ProcessExecutor
from tunelab.testing import ExecutorContract


class TestInline(ExecutorContract):
    @pytest.fixture
    def executor(self):
        return InlineExecutor()


class TestProcesses(ExecutorContract):
    @pytest.fixture
    def executor(self):
        return ProcessExecutor(n_workers=2, threads_per_worker=1)


class TestFusedProcesses(ExecutorContract):
    """Plain function objectives cannot be fused: each worker runs them one at a time."""

    @pytest.fixture
    def executor(self):
        return ProcessExecutor(n_workers=2, threads_per_worker=1, fuse=True, group_size=3)
