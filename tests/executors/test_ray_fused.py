"""Fused groups as Ray actors, on the real local Ray cluster of test_ray.py (a head and two worker
nodes, one CPU each)."""

import pytest

from tests.executors.test_fused import (
    METRIC,
    SPACE,
    assert_a_dying_process_fails_its_group_alone,
    assert_same_trials,
    study,
)
from tests.executors.test_ray import ADDRESS, connected, unique  # noqa: F401 - the fixture
from tunelab import Study, TrialState
from tunelab.executors import InlineExecutor, RayExecutor
from tunelab.executors.ray_fused import FusedRayExecutor
from tunelab.nn import NetworkObjective
from tunelab.testing import ExecutorContract

pytestmark = [
    pytest.mark.skipif(ADDRESS is None, reason="TUNELAB_TEST_RAY_ADDRESS is not set"),
    pytest.mark.usefixtures("one_torch_thread"),
]


class TestFusedRayContract(ExecutorContract):
    """Plain function objectives cannot be stepped: an actor runs them one at a time."""

    @pytest.fixture
    def executor(self):
        return RayExecutor(address=ADDRESS, fuse=True, group_size=4)


def test_fuse_makes_a_fused_ray_executor_and_its_options_are_checked():
    from tunelab.errors import SpecError
    from tunelab.executors import make_executor

    assert type(make_executor("ray", fuse=True, group_size=8)) is FusedRayExecutor
    assert type(RayExecutor()) is RayExecutor
    with pytest.raises(SpecError, match="executor.group_size"):
        RayExecutor(fuse=True, group_size=0)
    with pytest.raises(SpecError, match="executor.fuse"):
        RayExecutor(fuse="yes")


def test_trials_train_as_fused_groups_in_actors_and_end_as_they_would_alone(tmp_path):
    """Two actors of four (max_running 8), refilled as trials end; the trials as one at a time."""
    from tests.callbacks import FusedEpochsByProcess

    counts = tmp_path / "fused"
    counts.mkdir()
    made = NetworkObjective(
        {"source": "digits"},
        fixed={"batch_size": 64, "epochs": 3},
        device="cpu",
        callbacks=[FusedEpochsByProcess(counts)],
    )
    executor = RayExecutor(ADDRESS, fuse=True, group_size=4, max_running=8, min_speedup=0)
    name, storage = unique("ray-fused"), f"sqlite:///{tmp_path}/r.db"
    run = Study(name, storage=storage, seed=3, artifacts_dir=tmp_path, **METRIC)
    run.optimize(made, SPACE, trials=12, executor=executor)
    fused = {t.number: t for t in run.trials}
    alone = study(tmp_path, "alone", InlineExecutor(), fixed={"epochs": 3})
    assert_same_trials(fused, alone)
    assert all(t.state is TrialState.COMPLETE for t in fused.values())
    assert len(list(counts.iterdir())) == 2, "both actors trained fused groups"


def test_a_dying_actor_fails_its_whole_group_and_the_study_goes_on(tmp_path):
    executor = RayExecutor(ADDRESS, fuse=True, group_size=3, max_running=3, min_speedup=0)
    assert_a_dying_process_fails_its_group_alone(tmp_path, executor, "worker process died")
