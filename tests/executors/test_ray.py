"""The Ray executor on a real local Ray cluster: a head and two worker nodes (`.ci/ray start`).

Set TUNELAB_TEST_RAY_ADDRESS to a cluster's address to run these here; without it they skip,
except in CI (CI=true), where a missing cluster is a failure.
"""

import os

import pytest

from tests import objectives
from tunelab import Categorical, Float, Study, TrialState
from tunelab.executors import RayExecutor
from tunelab.testing import ExecutorContract

# loopback stays loopback (else Ray swaps 127.0.0.1 for the host's address and finds no cluster)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ADDRESS = os.environ.get("TUNELAB_TEST_RAY_ADDRESS")
if ADDRESS is None and os.environ.get("CI"):
    pytest.fail("CI must run the Ray tests: .ci/run sets TUNELAB_TEST_RAY_ADDRESS")
pytestmark = pytest.mark.skipif(ADDRESS is None, reason="TUNELAB_TEST_RAY_ADDRESS is not set")


@pytest.fixture(scope="module", autouse=True)
def connected():
    """One connection to the cluster for the module (each executor finds Ray initialised)."""
    import ray

    ray.init(address=ADDRESS, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()


class TestRayContract(ExecutorContract):
    @pytest.fixture
    def executor(self):
        return RayExecutor(address=ADDRESS)


@pytest.fixture
def storage(tmp_path):
    """PostgreSQL where CI provides it (the cluster path's storage), else an SQLite file."""
    url = os.environ.get("TUNELAB_TEST_POSTGRES_URL")
    return url or f"sqlite:///{tmp_path}/study.db"


def test_a_study_runs_each_trial_once_across_the_nodes_and_puts_the_data_once(storage, tmp_path):
    executor = RayExecutor(address=ADDRESS)
    name = f"ray-{os.getpid()}-{tmp_path.name}"
    study = Study(name, storage=storage, artifacts_dir=tmp_path, seed=0)
    study.optimize(objectives.where_it_ran, {"x": Float(0.0, 4.0)}, trials=12, executor=executor)
    trials = study.trials
    assert sorted(t.number for t in trials) == list(range(12))
    assert all(t.state is TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["node"] for t in trials}) >= 2, "the trials stayed on one node"
    assert executor.puts == 1  # the objective, and the data with it, went in once


def test_a_worker_killed_mid_trial_is_retried_or_recorded_failed(storage, tmp_path):
    space = {"kind": Categorical(["kill", "ok"])}
    failing = Study(
        f"ray-kill-{tmp_path.name}", storage=storage, strategy="manual", artifacts_dir=tmp_path
    )
    for kind in ("kill", "ok"):
        failing.enqueue({"kind": kind})
    failing.optimize(objectives.misbehaving, space, executor=RayExecutor(address=ADDRESS))
    killed, fine = failing.trials
    assert killed.state is TrialState.FAILED and "worker process died" in killed.error
    assert fine.state is TrialState.COMPLETE

    retried = Study(f"ray-retry-{tmp_path.name}", storage=storage, artifacts_dir=tmp_path, seed=0)
    retried.optimize(
        objectives.killed_once,
        {"x": Float(0.0, 1.0)},
        trials=2,
        executor=RayExecutor(address=ADDRESS, max_retries=1),
    )
    assert [t.state for t in retried.trials] == [TrialState.COMPLETE] * 2


def test_an_address_nothing_answers_at_is_one_line_at_once():
    import ray

    from tunelab.errors import TunelabError

    ray.shutdown()  # as a fresh driver would be
    try:
        with pytest.raises(TunelabError, match="executor.address: no Ray cluster answers at"):
            RayExecutor(address="127.0.0.1:1").start(objectives.quadratic)
    finally:
        ray.init(address=ADDRESS, logging_level="WARNING", log_to_driver=False)


def test_bad_options_name_the_field():
    from tunelab.errors import SpecError

    with pytest.raises(SpecError, match="executor.cpus: must be a number >= 0"):
        RayExecutor(cpus=-1)
    with pytest.raises(SpecError, match="executor.cpus: a trial needs some CPU or GPU"):
        RayExecutor(cpus=0)


# Last: it takes a node out of the cluster for good.
@pytest.mark.skipif(
    not os.environ.get("TUNELAB_TEST_RAY_WORKERS"),
    reason="TUNELAB_TEST_RAY_WORKERS (the worker nodes' raylet pids, .ci/ray) is not set",
)
def test_a_node_removed_mid_trial_gives_a_retried_or_failed_trial_never_a_lost_one(
    storage, tmp_path
):
    import json
    import signal
    import threading

    victim = json.loads(open(os.environ["TUNELAB_TEST_RAY_WORKERS"]).read())[0]
    threading.Timer(1.5, lambda: os.kill(victim, signal.SIGKILL)).start()  # mid-trial
    study = Study(f"ray-node-{tmp_path.name}", storage=storage, artifacts_dir=tmp_path, seed=0)
    study.optimize(
        objectives.slow_where,
        {"x": Float(0.0, 1.0)},
        trials=3,
        executor=RayExecutor(address=ADDRESS, max_retries=1),
    )
    trials = study.trials
    assert len(trials) == 3
    for trial in trials:  # each ran once more elsewhere, or says what happened
        assert trial.state is TrialState.COMPLETE or "died" in trial.error, trial.error
