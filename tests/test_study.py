import os
import time
from pathlib import Path

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
    for trial in pruned:  # why each was pruned is stored with it, and only with them
        stopped = trial.attrs["stopped"]
        assert (stopped["decision"], stopped["step"], stopped["by"]) == (
            "STOP",
            trial.last_step,
            "median",
        )
        assert stopped["why"].startswith("best score ") and "below the median" in stopped["why"]
    assert not any("stopped" in t.attrs for t in complete)


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


# Pause and resume ---------------------------------------------------------------------------------
def test_paused_trials_resume_from_their_checkpoint_and_continue_their_steps(url):
    from tests.schedulers.pausing import PauseOnce
    from tunelab.testing.executors import counting

    study = Study("p", storage=url, scheduler=PauseOnce(step=2, min_paused=2), seed=0)
    study.optimize(counting, {"steps": Categorical([5])}, trials=6)
    trials = study.trials
    resumed = [t for t in trials if t.state is TrialState.COMPLETE]
    assert len(resumed) >= 4, [t.state for t in trials]
    for trial in resumed:
        assert sorted(trial.intermediate) == [1, 2, 3, 4, 5] and trial.value == 5.0
        assert trial.attrs["checkpoint"] == {"step": 2} and "warnings" not in trial.attrs
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PAUSED}


def test_a_trial_paused_by_one_driver_is_resumed_by_another_in_a_worker_process(url):
    from tests.schedulers.pausing import PauseOnce
    from tunelab.testing.executors import counting

    space = {"steps": Categorical([4])}
    first = Study("p", storage=url, scheduler=PauseOnce(step=2, min_paused=None), seed=0)
    first.optimize(counting, space, trials=3)
    assert [t.state for t in first.trials] == [TrialState.PAUSED] * 3
    second = Study("p", storage=url, scheduler=PauseOnce(step=2, min_paused=1), seed=0)
    second.optimize(counting, space, trials=3, workers=2)
    trials = second.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert all(sorted(t.intermediate) == [1, 2, 3, 4] for t in trials)
    assert all(t.retries == 0 and "warnings" not in t.attrs for t in trials)


def test_a_pause_is_explained_once_and_the_explanation_ends_with_the_pause(url):
    """The scheduler is asked why only when it pauses (never per CONTINUE report); a resumed
    trial that completes keeps no stale reason."""
    from tests.schedulers.pausing import PauseOnce
    from tunelab.testing.executors import counting

    asked = []

    class Explained(PauseOnce):
        def explain(self, trial, step, decision, study):
            asked.append((trial.number, step, decision))
            return f"trial {trial.number} waits"

    space = {"steps": Categorical([4])}
    first = Study("p", storage=url, scheduler=Explained(step=2, min_paused=None), seed=0)
    first.optimize(counting, space, trials=3)
    assert asked == [(n, 2, "PAUSE") for n in range(3)]
    for trial in first.trials:
        assert trial.state is TrialState.PAUSED
        assert trial.attrs["stopped"] == {
            "decision": "PAUSE",
            "step": 2,
            "by": "Explained",
            "why": f"trial {trial.number} waits",
        }
    second = Study("p", storage=url, scheduler=Explained(step=2, min_paused=1), seed=0)
    second.optimize(counting, space, trials=3)
    assert len(asked) == 3
    assert all(t.state is TrialState.COMPLETE and t.attrs["stopped"] is None for t in second.trials)


def test_a_pause_at_the_last_step_completes_the_trial(url):
    """counting declares its last step: a pause there is moot, nothing is paused or explained."""
    from tests.schedulers.pausing import PauseOnce
    from tunelab.testing.executors import counting

    study = Study("p", storage=url, scheduler=PauseOnce(step=4, min_paused=None), seed=0)
    study.optimize(counting, {"steps": Categorical([4])}, trials=3)
    for trial in study.trials:
        assert trial.state is TrialState.COMPLETE and trial.value == 4.0
        assert "stopped" not in trial.attrs and "checkpoint" not in trial.attrs


def test_a_pause_without_a_checkpoint_is_recorded_and_the_resume_starts_over(url):
    from tests.schedulers.pausing import PauseOnce

    study = Study("p", storage=url, metric="score", scheduler=PauseOnce(2, 1), seed=0)
    study.optimize(objectives.curve, {"x": Float(0.5, 1.0)}, trials=2)
    for trial in study.trials:
        assert trial.state is TrialState.COMPLETE and sorted(trial.intermediate) == list(
            range(1, 11)
        )
        assert trial.attrs["checkpoint"] is None
        assert "without a checkpoint; a resume starts over" in trial.attrs["warnings"][0]


def test_a_resumed_trial_whose_process_dies_retries_from_its_checkpoint(url):
    from tunelab.storage import get_storage

    storage = get_storage(url)
    study = Study("c", storage=storage, seed=0)
    trial = storage.create_trial(study.id, 0, "host:1", {"steps": 4}, 5, {})
    storage.add_report(trial.id, 1, {"value": 1.0}, "host:1")
    storage.pause_trial(trial.id, "host:1", {"checkpoint": {"step": 1}})
    Path(study.trial_dir(0)).mkdir(parents=True)
    import torch

    torch.save({"step": 1, "tunelab_step": 1}, study.trial_dir(0) / "checkpoint-step1.pt")
    storage.claim_trial(study.id, "elsewhere:1", trial.id)
    storage.add_report(trial.id, 2, {"value": 2.0}, "elsewhere:1")  # then that host goes silent
    import tunelab.study
    from tunelab.testing.executors import counting

    stale = tunelab.study.STALE_AFTER_S
    tunelab.study.STALE_AFTER_S = -1.0  # every heartbeat is old: the other host is dead
    try:
        study.optimize(counting, {"steps": Categorical([4])}, trials=1)
    finally:
        tunelab.study.STALE_AFTER_S = stale
    (done,) = study.trials
    assert done.state is TrialState.COMPLETE and done.retries == 1
    assert sorted(done.intermediate) == [1, 2, 3, 4] and "warnings" not in done.attrs


# Seams --------------------------------------------------------------------------------------------
def test_a_virtual_clock_times_the_driver_and_storage(url):
    from tunelab.clock import VirtualClock

    clock = VirtualClock(start=1000.0)

    def ten_minutes_each(trial):
        clock.advance(600)
        return trial.params["x"]

    study = Study("v", storage=url, seed=0, clock=clock)
    study.optimize(ten_minutes_each, X, minutes=25)
    trials = study.trials
    assert len(trials) == 3, "the 25-minute budget is virtual: 3 trials of 10 minutes start"
    assert [t.duration for t in trials] == [600.0] * 3
    assert trials[0].started_at == 1000.0


def test_the_study_works_on_copies_of_what_it_is_given(url):
    from tunelab.schedulers import MedianScheduler
    from tunelab.strategies import BayesSearch, RandomSearch

    strategy, scheduler = RandomSearch(), MedianScheduler(warmup_steps=1)
    study = Study("c", storage=url, strategy=strategy, scheduler=scheduler, seed=3)
    assert strategy.seed is None and study.strategy.seed == 3
    assert study.strategy is not strategy and study.scheduler is not scheduler
    assert study.scheduler.get_params() == scheduler.get_params()
    bayes = BayesSearch(n_initial=4)
    minimizing = Study("b", storage=url, direction="minimize", strategy=bayes)
    assert bayes.direction == "maximize" and minimizing.strategy.direction == "minimize"


def test_finite_strategies_need_no_budget_and_others_say_so(url):
    from tunelab.spec import parse_spec

    with pytest.raises(SpecError, match="budget: give trials and/or minutes, or the search"):
        Study("b", storage=url, strategy="bayes").optimize(objectives.quadratic, X)
    base = {
        "name": "n",
        "data": {"source": "iris"},
        "metric": {"name": "val_accuracy", "direction": "maximize"},
        "space": {"lr": {"type": "float", "low": 0.001, "high": 0.1, "grid": [0.01]}},
        "budget": {},
    }
    with pytest.raises(SpecError, match="budget: .* a bayes search never ends"):
        parse_spec({**base, "strategy": "bayes"})
    assert parse_spec({**base, "strategy": "grid"}).strategy.name == "grid"


def test_executors_are_named_like_strategies(url):
    from tunelab.executors import EXECUTORS, ProcessExecutor, make_executor

    assert set(EXECUTORS) == {"inline", "processes", "ray", "simulated"}
    assert make_executor("processes", n_workers=3).get_params()["n_workers"] == 3
    with pytest.raises(SpecError, match="executor: 'processes' has no option 'n_worker'; did you"):
        make_executor("processes", n_worker=3)
    with pytest.raises(SpecError, match="unknown executor 'dask'"):
        make_executor("dask")
    study = Study("e", storage=url, direction="minimize", seed=0)
    study.optimize(objectives.quadratic, X, trials=4, executor=ProcessExecutor(2))
    assert len(study.trials) == 4


def test_readers_import_neither_torch_nor_scipy():
    import subprocess
    import sys

    code = "import sys, tunelab.readers, tunelab.storage; print(sorted({'torch', 'scipy'} & set(sys.modules)))"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
        == "[]\n"
    )


# Reproducible mode --------------------------------------------------------------------------------
def _record(study):
    return [(t.number, t.state, t.params, t.value, t.intermediate) for t in study.trials]


def _burn(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_reproducible_studies_do_not_depend_on_which_trial_finishes_first(tmp_path):
    """Bayes proposals and median pruning both depend on other trials; with two workers, random
    pauses in every trial, and a busy machine in one of the runs, every stored trial is the same."""
    import multiprocessing as mp

    from tunelab.schedulers import MedianScheduler
    from tunelab.strategies import BayesSearch

    records = []
    for run, busy in enumerate([False, True]):
        burner = mp.get_context("spawn").Process(target=_burn, args=(60,), daemon=True)
        if busy:
            burner.start()
        study = Study(
            "r",
            storage=f"sqlite:///{tmp_path}/run{run}.db",
            metric="score",
            strategy=BayesSearch(n_initial=4),
            scheduler=MedianScheduler(warmup_steps=1, min_trials=2),
            seed=3,
        )
        study.optimize(
            objectives.jittery_curve, {"x": Float(0, 1)}, trials=12, workers=2, reproducible=True
        )
        if busy:
            burner.kill()
        records.append(_record(study))
        assert study.attrs["reproducible_lag"] == 2
    assert records[0] == records[1]
    assert {state for _, state, *_ in records[0]} == {TrialState.COMPLETE, TrialState.PRUNED}
