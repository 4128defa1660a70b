"""The Ray executor on a real local Ray cluster: a head and two worker nodes (`.ci/ray start`).

Set TUNELAB_TEST_RAY_ADDRESS to a cluster's address to run these here; without it they skip,
except in CI (CI=true), where a missing cluster is a failure.
"""

import os
import sys
import uuid
from pathlib import Path

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


def unique(prefix):
    """A study name no earlier run left on a long-lived server."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def storage(tmp_path):
    """PostgreSQL where CI provides it (the cluster path's storage), else an SQLite file."""
    url = os.environ.get("TUNELAB_TEST_POSTGRES_URL")
    return url or f"sqlite:///{tmp_path}/study.db"


def test_a_study_runs_each_trial_once_across_the_nodes_and_puts_the_data_once(storage, tmp_path):
    executor = RayExecutor(address=ADDRESS)
    name = unique("ray")
    study = Study(name, storage=storage, artifacts_dir=tmp_path, seed=0)
    study.optimize(objectives.where_it_ran, {"x": Float(0.0, 4.0)}, trials=12, executor=executor)
    trials = study.trials
    assert sorted(t.number for t in trials) == list(range(12))
    assert all(t.state is TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["node"] for t in trials}) >= 2, "the trials stayed on one node"
    assert executor.puts == 1  # the objective, and the data with it, went in once


def test_a_worker_killed_mid_trial_is_retried_or_recorded_failed(storage, tmp_path):
    space = {"kind": Categorical(["kill", "ok"])}
    failing = Study(unique("ray-kill"), storage=storage, strategy="manual", artifacts_dir=tmp_path)
    for kind in ("kill", "ok"):
        failing.enqueue({"kind": kind})
    failing.optimize(objectives.misbehaving, space, executor=RayExecutor(address=ADDRESS))
    killed, fine = failing.trials
    assert killed.state is TrialState.FAILED and "worker process died" in killed.error
    assert fine.state is TrialState.COMPLETE

    retried = Study(unique("ray-retry"), storage=storage, artifacts_dir=tmp_path, seed=0)
    retried.optimize(
        objectives.killed_once,
        {"markers": Categorical([str(tmp_path)])},
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


def test_a_node_with_another_tunelab_is_one_line_at_start(monkeypatch):
    """Every node is asked which tunelab it runs; here the driver's answer is made to differ."""
    from tunelab.errors import TunelabError
    from tunelab.executors import ray as ray_executor

    ray_executor._version_task()
    monkeypatch.setitem(ray_executor._REMOTES, "version here", lambda: "9.9.9 (source abc)")
    with pytest.raises(TunelabError, match=r"the Ray node at 127\.0\.0\.1 runs tunelab 0\."):
        RayExecutor(address=ADDRESS).start(objectives.quadratic)


def test_bad_options_name_the_field():
    from tunelab.errors import SpecError

    with pytest.raises(SpecError, match="executor.cpus: must be a number >= 0"):
        RayExecutor(cpus=-1)
    with pytest.raises(SpecError, match="executor.cpus: a trial needs some CPU or GPU"):
        RayExecutor(cpus=0)


def test_a_paused_trial_resumes_on_the_other_node_from_its_shipped_checkpoint(tmp_path):
    """Paused on worker 0, resumed on worker 1: the checkpoint went to the driver's folder and
    from there to the other node; the trial ran in a scratch folder of its node each time, never
    in the driver's (no shared filesystem needed)."""
    from tunelab.trial import Decision

    def pause_at_2(number, step, metrics):
        return Decision.PAUSE if step == 2 else Decision.CONTINUE

    task = ExecutorContract.task(0, tmp_path, steps=4)
    on_0 = RayExecutor(address=ADDRESS, resources={"worker-0": 1})
    (paused,) = ExecutorContract.run_all(on_0, objectives.resumable_where, [task], pause_at_2)
    assert (paused.state, paused.checkpoint_step) == (TrialState.PAUSED, 2)
    assert [p.name for p in Path(task.directory).iterdir()] == ["checkpoint-step2.pt"]

    again = ExecutorContract.task(0, tmp_path, resumed_from=2, steps=4)
    on_1 = RayExecutor(address=ADDRESS, resources={"worker-1": 1})
    (resumed,) = ExecutorContract.run_all(on_1, objectives.resumable_where, [again])
    assert (resumed.state, resumed.result, resumed.warnings) == (TrialState.COMPLETE, 4.0, ())
    first_node, second_node = resumed.user_attrs["nodes"]  # read back from the checkpoint
    assert first_node != second_node
    for outcome in (paused, resumed):
        assert not outcome.user_attrs["folder"].startswith(str(tmp_path))
        assert outcome.task == (task if outcome is paused else again)


def test_asha_across_the_cluster_resumes_paused_trials_from_their_checkpoints(storage, tmp_path):
    """Rungs at 1 and 3 of 9 steps: promoted trials resume wherever Ray puts them, each from the
    checkpoint its pause shipped back (never a restart), and reach step 9."""
    from tunelab.schedulers import ASHAScheduler

    study = Study(
        unique("ray-asha"),
        storage=storage,
        artifacts_dir=tmp_path,
        scheduler=ASHAScheduler(min_resource=1, max_resource=9, reduction_factor=3),
        seed=0,
    )
    space = {"steps": Categorical([9]), "x": Float(0.0, 1.0)}
    study.optimize(objectives.resumable_where, space, trials=9, executor=RayExecutor(ADDRESS))
    trials = study.trials
    assert not [t.attrs["warnings"] for t in trials if t.attrs.get("warnings")]
    resumed = [t for t in trials if len(t.user_attrs["nodes"]) > 1]
    assert resumed and all(t.last_step > 1 for t in resumed)
    assert any(t.state is TrialState.COMPLETE and t.last_step == 9 for t in resumed)


def test_shared_artifacts_run_trials_in_the_drivers_folder(tmp_path):
    executor = RayExecutor(address=ADDRESS, artifacts="shared")
    task = ExecutorContract.task(0, tmp_path, steps=1)
    (outcome,) = ExecutorContract.run_all(executor, objectives.resumable_where, [task])
    assert outcome.user_attrs["folder"] == task.directory


def test_code_from_a_module_workers_cannot_import_travels_with_the_objective(tmp_path, monkeypatch):
    """A script's own module (not installed, not on the workers' path) is pickled by value."""
    import importlib

    name = f"users_code_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        "def objective(trial):\n    return 2 * trial.params['x']\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    monkeypatch.delitem(sys.modules, name)
    study = Study(f"ray-code-{tmp_path.name}", storage=f"sqlite:///{tmp_path}/s.db", seed=0)
    study.optimize(
        module.objective, {"x": Float(0.0, 1.0)}, trials=2, executor=RayExecutor(address=ADDRESS)
    )
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert all(t.value == 2 * t.params["x"] for t in study.trials)


def test_a_specs_model_file_travels_with_the_objective(tmp_path):
    """The spec's models.py is read on the driver only: it is gone before the trials start."""
    import yaml

    from tunelab.experiment import Experiment
    from tunelab.spec import load_spec

    (tmp_path / "models.py").write_text(
        "from torch import nn\n\n\n"
        "def build(params, input_shape, n_outputs):\n"
        "    return nn.Sequential(nn.Linear(input_shape[0], params['units']), nn.ReLU(),\n"
        "                         nn.Linear(params['units'], n_outputs))\n"
    )
    spec = {
        "name": f"ray-spec-{tmp_path.name}",
        "data": {"source": "iris"},
        "model": "models.py:build",
        "metric": {"name": "val_accuracy", "direction": "maximize"},
        "space": {"units": {"type": "categorical", "choices": [4, 8]}},
        "fixed": {"epochs": 2},
        "budget": {"trials": 2},
        "storage": f"sqlite:///{tmp_path}/s.db",
        "executor": {"name": "ray", "address": ADDRESS},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    experiment = Experiment.from_spec(load_spec(tmp_path / "spec.yaml"))
    (tmp_path / "models.py").unlink()
    experiment.search()
    trials = experiment.study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2, [t.error for t in trials]


def test_a_time_limit_counts_from_the_start_on_the_node_not_from_submission(tmp_path):
    """Three trials of 3.5 s queue for one node; the last starts 7 s after its submission, past
    its limit of 4 s and the grace after it, and still completes."""
    executor = RayExecutor(address=ADDRESS, resources={"worker-0": 1}, max_running=3)
    tasks = [ExecutorContract.task(n, tmp_path, 4.0, seconds=3.5) for n in range(3)]
    outcomes = ExecutorContract.run_all(executor, objectives.sleeping, tasks)
    assert [o.state for o in outcomes] == [TrialState.COMPLETE] * 3, [o.error for o in outcomes]


def test_a_dead_drivers_trials_end_with_it_and_a_resume_runs_them_again(tmp_path):
    """The driver is killed (SIGKILL) mid-trial: Ray ends its trials on the worker nodes, and a
    resume re-queues what it left RUNNING and finishes every trial, each number once."""
    import signal
    import subprocess
    import time

    storage = f"sqlite:///{tmp_path}/s.db"
    markers = str(tmp_path)
    driver = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import ray, sys\n"
            "from tests import objectives\n"
            "from tunelab import Categorical, Study\n"
            "from tunelab.executors import RayExecutor\n"
            f"study = Study('dead-driver', storage={storage!r}, artifacts_dir={markers!r}, seed=0)\n"
            f"study.optimize(objectives.ticking, {{'markers': Categorical([{markers!r}])}},\n"
            f"               trials=2, executor=RayExecutor(address={ADDRESS!r}))\n",
        ],
        cwd=Path(__file__).resolve().parents[2],
    )
    ticks = [tmp_path / "tick-0", tmp_path / "tick-1"]
    try:
        deadline = time.monotonic() + 120
        while not all(t.exists() for t in ticks):
            assert driver.poll() is None and time.monotonic() < deadline, "trials never started"
            time.sleep(0.1)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    time.sleep(3)  # Ray notices the dead driver and ends its tasks
    before = [t.read_text() for t in ticks]
    time.sleep(1)
    assert [t.read_text() for t in ticks] == before, "the dead driver's trials still run"

    (tmp_path / "release").write_text("")
    study = Study("dead-driver", storage=storage, artifacts_dir=tmp_path, seed=0)
    assert [t.state for t in study.trials] == [TrialState.RUNNING] * 2
    study.optimize(
        objectives.ticking,
        {"markers": Categorical([markers])},
        trials=2,
        executor=RayExecutor(address=ADDRESS),
    )
    trials = study.trials
    assert sorted(t.number for t in trials) == [0, 1]
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2


@pytest.mark.takes_a_ray_node  # out of the cluster for good: it runs last (tests/conftest.py)
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
    study = Study(unique("ray-node"), storage=storage, artifacts_dir=tmp_path, seed=0)
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
