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
