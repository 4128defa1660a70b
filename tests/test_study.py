import os

import pytest

from tests import objectives
from tunelab import Categorical, Float, Study, TrialState
from tunelab.errors import SpecError, TunelabError
from tunelab.study import trial_seed
from tunelab.trial import FrozenTrial

X = {"x": Float(-5.0, 5.0)}


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path}/study.db"


def test_finds_the_minimum_and_records_every_trial(url):
    study = Study("q", storage=url, direction="minimize", seed=0)
    best = study.optimize(objectives.quadratic, X, trials=40)
    assert abs(best.params["x"] - 2.0) < 0.5
    trials = study.trials
    assert [t.number for t in trials] == list(range(40))
    assert all(t.state is TrialState.COMPLETE and t.value is not None for t in trials)
    assert best == study.best_trial


def test_trial_budget_is_the_study_total_so_rerunning_tops_up(url):
    Study("q", storage=url, direction="minimize", seed=0).optimize(
        objectives.quadratic, X, trials=5
    )
    again = Study("q", storage=url, direction="minimize", seed=0)
    again.optimize(objectives.quadratic, X, trials=5)
    assert len(again.trials) == 5
    again.optimize(objectives.quadratic, X, trials=8)
    assert len(again.trials) == 8
    assert len({t.params["x"] for t in again.trials}) == 8  # the sequence continued, no repeats


def test_queued_configs_run_first_and_manual_runs_only_them(url):
    study = Study("m", storage=url, direction="minimize", strategy="manual")
    study.enqueue({"x": 2.0})
    study.enqueue({"x": -1.0})
    study.optimize(objectives.quadratic, X)
    assert [(t.params, t.value, t.source) for t in study.trials] == [
        ({"x": 2.0}, 0.0, "queue"),
        ({"x": -1.0}, 9.0, "queue"),
    ]


def test_an_invalid_queued_config_fails_alone(url):
    study = Study("m", storage=url, direction="minimize", strategy="manual")
    study.enqueue({"x": 50.0})
    study.enqueue({"x": 1.0})
    study.optimize(objectives.quadratic, X)
    bad, good = study.trials
    assert bad.state is TrialState.FAILED and "outside the range [-5.0, 5.0]" in bad.error
    assert good.state is TrialState.COMPLETE


def test_grid_search_ends_when_the_grid_is_done(url):
    study = Study("g", storage=url, direction="minimize", strategy="grid")
    study.optimize(objectives.quadratic, {"x": Float(0, 4, values=(0.0, 2.0, 4.0))})
    assert sorted(t.params["x"] for t in study.trials) == [0.0, 2.0, 4.0]


def test_failures_are_recorded_and_the_study_goes_on(url):
    study = Study("f", storage=url, direction="maximize", strategy="manual")
    for kind in ["raise", "nan", "wrong-type", "ok"]:
        study.enqueue({"kind": kind})
    study.optimize(
        objectives.misbehaving, {"kind": Categorical(["ok", "raise", "nan", "wrong-type"])}
    )
    by_kind = {t.params["kind"]: t for t in study.trials}
    assert by_kind["ok"].state is TrialState.COMPLETE
    assert "RuntimeError: boom in user code" in by_kind["raise"].error
    assert by_kind["nan"].state is TrialState.FAILED and "diverged" in by_kind["nan"].error
    assert "must be a number, got str" in by_kind["wrong-type"].error
    assert all(by_kind[k].state is TrialState.FAILED for k in ["raise", "nan", "wrong-type"])


def test_missing_metric_is_a_clear_failure(url):
    study = Study("m", storage=url, metric="accuracy", strategy="manual")
    study.enqueue({"x": 1.0})
    study.optimize(lambda trial: {"loss": 1.0}, X)
    (trial,) = study.trials
    assert trial.state is TrialState.FAILED
    assert "gave loss but not 'accuracy'" in trial.error


def test_median_scheduler_prunes_and_reports_are_stored(url):
    study = Study("p", storage=url, metric="score", scheduler="median", seed=0)
    study.optimize(objectives.curve, {"x": Float(0.0, 1.0)}, trials=30)
    states = [t.state for t in study.trials]
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    pruned = [t for t in study.trials if t.state is TrialState.PRUNED]
    assert all(len(t.intermediate) < 10 and t.value is not None for t in pruned)
    complete = [t for t in study.trials if t.state is TrialState.COMPLETE]
    assert all(sorted(t.intermediate) == list(range(1, 11)) for t in complete)


def test_seeds_and_directories(url, tmp_path):
    study = Study("s", storage=url, seed=7, artifacts_dir=tmp_path / "art")
    study.optimize(objectives.seed_and_dir, X, trials=3)
    for trial in study.trials:
        assert trial.seed == trial_seed(7, trial.number)
        assert (
            tmp_path / "art" / "s" / f"trial_{trial.number:05d}" / "note.txt"
        ).read_text() == str(trial.seed)


def test_trial_timeout_in_process_fails_the_trial_at_its_next_report(url):
    import time

    def slow(trial):
        for step in range(100):
            time.sleep(0.02)
            trial.report(step, value=step)
        return 1.0

    study = Study("t", storage=url)
    study.optimize(slow, X, trials=1, trial_timeout=0.1)
    (trial,) = study.trials
    assert trial.state is TrialState.FAILED and trial.error.startswith("timed out")
    assert len(trial.intermediate) < 100


def test_minutes_budget_stops_starting_trials(url):
    study = Study("t", storage=url)
    study.optimize(objectives.quadratic, X, trials=1000, minutes=1e-9)
    assert study.trials == []


def test_ctrl_c_gives_the_running_trial_back_to_the_queue(url):
    def interrupted(trial):
        raise KeyboardInterrupt

    study = Study("k", storage=url, direction="minimize")
    with pytest.raises(KeyboardInterrupt):
        study.optimize(interrupted, X, trials=3)
    (trial,) = study.trials
    assert trial.state is TrialState.WAITING and trial.params is not None
    study.optimize(objectives.quadratic, X, trials=3)
    first = study.trials[0]
    assert (
        first.state is TrialState.COMPLETE and first.params == trial.params and first.retries == 1
    )


def test_trials_of_a_dead_process_are_requeued_and_rerun(url):
    study = Study("d", storage=url, direction="minimize")
    storage = study.storage
    storage.create_trial(study.id, 0, "ghost-host:1", {"x": 1.0}, 5, {})  # another machine
    import tunelab.study as study_module

    study_module.STALE_AFTER_S, saved = -1.0, study_module.STALE_AFTER_S
    try:
        study.optimize(objectives.quadratic, X, trials=2)
    finally:
        study_module.STALE_AFTER_S = saved
    rerun = study.trials[0]
    assert (rerun.state, rerun.params, rerun.seed, rerun.retries) == (
        TrialState.COMPLETE,
        {"x": 1.0},
        5,
        1,
    )
    assert len(study.trials) == 2


def test_trial_left_running_by_a_dead_local_pid_is_requeued(url):
    study = Study("d", storage=url, direction="minimize")
    import socket

    dead_pid = _dead_pid()
    study.storage.create_trial(study.id, 0, f"{socket.gethostname()}:{dead_pid}", {"x": 3.0}, 5, {})
    study.optimize(objectives.quadratic, X, trials=1)
    (trial,) = study.trials
    assert trial.state is TrialState.COMPLETE and trial.retries == 1


def test_existing_study_with_another_metric_is_refused(url):
    Study("x", storage=url, direction="minimize", metric="loss")
    with pytest.raises(SpecError, match="already exists and optimises loss"):
        Study("x", storage=url, direction="maximize", metric="acc")


def test_unbounded_random_search_is_refused(url):
    with pytest.raises(SpecError, match="budget: give trials and/or minutes"):
        Study("x", storage=url).optimize(objectives.quadratic, X)


def test_unpicklable_objective_with_workers_is_a_clear_error(url):
    with pytest.raises(TunelabError, match="must be picklable"):
        Study("x", storage=url).optimize(lambda t: 1.0, X, trials=2, workers=2)


def test_best_trial_is_none_before_anything_completes(url):
    assert Study("x", storage=url).best_trial is None


def test_frozen_trial_values_at():
    trial = FrozenTrial(
        id=1,
        number=0,
        state=TrialState.RUNNING,
        params={},
        intermediate={1: {"a": 0.5}, 2: {"b": 1.0}, 3: {"a": 0.7}},
    )
    assert trial.values_at("a") == {1: 0.5, 3: 0.7}


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not os.path.exists(f"/proc/{child.pid}")
    return child.pid


def test_a_live_trial_on_another_machine_is_left_alone(url):
    import tunelab.study as study_module

    study = Study("d", storage=url, direction="minimize")
    live = study.storage.create_trial(study.id, 0, "other-host:1", {"x": 1.0}, 5, {})
    study._view.sync(force=True)  # the driver has seen the trial with its first heartbeat
    study_module.STALE_AFTER_S, saved = 0.5, study_module.STALE_AFTER_S
    try:
        import time

        time.sleep(0.6)
        study.storage.heartbeat([live.id])  # the other machine is alive and beating
        study.optimize(objectives.quadratic, X, trials=2)
    finally:
        study_module.STALE_AFTER_S = saved
    states = {t.number: (t.state, t.owner) for t in study.trials}
    assert states[0] == (TrialState.RUNNING, "other-host:1")
    assert states[1][0] is TrialState.COMPLETE
