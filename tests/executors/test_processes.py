"""The local-processes executor, through Study.optimize (real spawned workers)."""

import pytest

from tests import objectives
from tunelab import Categorical, Float, Study, TrialState
from tunelab.executors import ProcessExecutor

KINDS = Categorical(["ok", "raise", "nan", "kill", "hang", "wrong-type"])


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path}/study.db"


def test_every_failure_is_recorded_with_its_reason_and_the_study_goes_on(url):
    study = Study("f", storage=url, strategy="manual")
    for kind in ["kill", "raise", "hang", "nan", "ok", "wrong-type", "ok"]:
        study.enqueue({"kind": kind})
    study.optimize(objectives.misbehaving, {"kind": KINDS}, workers=2, trial_timeout=2.0)
    trials = study.trials
    assert len(trials) == 7
    reasons = {t.params["kind"]: t.error for t in trials if t.state is TrialState.FAILED}
    assert "killed by SIGKILL" in reasons["kill"]
    assert "RuntimeError: boom in user code" in reasons["raise"]
    assert reasons["hang"].startswith("timed out")
    assert "diverged" in reasons["nan"]
    assert "must be a number" in reasons["wrong-type"]
    assert [t.state for t in trials if t.params["kind"] == "ok"] == [TrialState.COMPLETE] * 2


def test_reports_and_decisions_cross_the_process_boundary(url):
    study = Study("p", storage=url, metric="score", scheduler="median", seed=0)
    study.optimize(objectives.curve, {"x": Float(0.0, 1.0)}, trials=24, workers=2)
    trials = study.trials
    assert {t.state for t in trials} == {TrialState.COMPLETE, TrialState.PRUNED}
    assert all(t.intermediate for t in trials)


def test_workers_are_recycled_after_max_trials(url):
    study = Study("r", storage=url, direction="minimize", seed=0)
    executor = ProcessExecutor(n_workers=2, max_trials_per_worker=2)
    study.optimize(objectives.quadratic, {"x": Float(-5, 5)}, trials=9, executor=executor)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 9


def test_threads_per_worker_split_the_cores():
    from tunelab.executors.processes import available_cores

    executor = ProcessExecutor(n_workers=2)
    assert executor._threads() == max(1, available_cores() // 2)
    assert ProcessExecutor(n_workers=2, threads_per_worker=3)._threads() == 3


DRIVER = """
import sys
from tests import objectives
from tunelab import Float, Study
study = Study("d", storage=sys.argv[1], seed=0)
study.optimize(objectives.long_reporting, {"x": Float(0, 1)}, trials=4, workers=2)
"""


def _children(pid):
    import subprocess

    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in found.split()]


def _alive(pid):
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead, just not reaped
        return stat.read().split()[2] != "Z"


def test_workers_of_a_dead_driver_exit_within_a_second_and_print_nothing(url):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, url], env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while len(workers := [p for p in _children(driver.pid) if _alive(p)]) < 2:
        assert time.monotonic() < deadline, "the workers never started"
        time.sleep(0.1)
    while not Study("d", storage=url).trials or not Study("d", storage=url).trials[0].intermediate:
        assert time.monotonic() < deadline, "no trial reported"
        time.sleep(0.1)
    driver.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    while any(_alive(p) for p in workers) and time.monotonic() - killed < 5:
        time.sleep(0.02)
    exited_after = time.monotonic() - killed
    assert exited_after < 1.0, f"workers lived {exited_after:.1f} s after their driver"
    assert driver.stderr.read() == "", "a worker printed into the user's terminal"


def test_a_time_limit_counts_from_when_the_trial_starts_not_from_worker_start_up(url):
    """The worker spends 2 s importing the objective; a 1 s limit is for the trial alone."""
    from tests import slow_import

    study = Study("t", storage=url, seed=0)
    study.optimize(slow_import.quick, {"x": Float(0, 1)}, trials=2, workers=2, trial_timeout=1.0)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2, study.trials[0].error
