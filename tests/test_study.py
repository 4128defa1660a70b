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

    assert set(EXECUTORS) == {"fused", "inline", "processes", "ray", "simulated"}
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


# Python API conveniences (issue 23) ---------------------------------------------------------------


def _messages(caplog, level=None):
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "tunelab" and (level is None or r.levelno == level)
    ]


def _counting(base):
    """A strategy class that records the trial numbers of every ask (the study works on a copy,
    so the record lives on ``study.strategy``)."""

    class Counting(base):
        def ask(self, space, history, numbers):
            self.__dict__.setdefault("asks_", []).append(list(numbers))
            return super().ask(space, history, numbers)

    return Counting


def test_strategies_and_schedulers_are_exported_and_taken_as_objects_or_names(url):
    import tunelab
    from tunelab import schedulers, strategies

    for name in ("RandomSearch", "GridSearch", "BayesSearch", "Manual", "Strategy"):
        assert getattr(tunelab, name) is getattr(strategies, name) and name in tunelab.__all__
        assert getattr(tunelab, name).__doc__
    for name in ("MedianScheduler", "ASHAScheduler", "HyperbandScheduler", "Scheduler"):
        assert getattr(tunelab, name) is getattr(schedulers, name) and name in tunelab.__all__
        assert getattr(tunelab, name).__doc__
    study = Study(
        "o",
        storage=url,
        direction="minimize",
        strategy=tunelab.BayesSearch(n_initial=5),
        scheduler=tunelab.ASHAScheduler(min_resource=2, max_resource=18),
    )
    assert study.strategy.n_initial == 5 and study.strategy.direction == "minimize"
    assert study.scheduler.rungs(0) == [2, 6]
    named = Study("n", storage=url, strategy="bayes", scheduler="hyperband")
    assert isinstance(named.strategy, tunelab.BayesSearch)
    assert isinstance(named.scheduler, tunelab.HyperbandScheduler)
    strategy_options = ("n_initial", "n_candidates", "max_observations", "seed")
    scheduler_options = ("warmup_steps", "min_trials", "reduction_factor", "max_resource")
    for text, options in (
        (Study.__doc__, strategy_options + scheduler_options),
        (tunelab.strategies.__doc__, strategy_options),
        (tunelab.schedulers.__doc__, scheduler_options),
    ):
        assert all(option in text for option in options)


def test_the_docstring_examples_of_study_strategies_and_schedulers_run():
    import doctest
    import importlib

    for name in ("tunelab.study", "tunelab.strategies", "tunelab.schedulers"):
        module = importlib.import_module(name)
        assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0, name


def test_best_params_and_best_value(url):
    study = Study("b", storage=url, direction="minimize", seed=0)
    best = study.optimize(objectives.quadratic, X, trials=6)
    assert study.best_params == best.params and study.best_value == best.value
    assert isinstance(study.best_value, float)
    study.best_params["x"] = 99.0  # a copy: the study is not changed
    assert study.best_params == best.params


def test_best_params_and_value_before_any_trial_completes_are_one_line_value_errors(url):
    from tunelab import NoCompletedTrials

    empty = Study("empty", storage=url)
    assert empty.best_trial is None  # unchanged: None, not an error
    with pytest.raises(ValueError, match="^study 'empty' has no completed trial yet, so no best_"):
        _ = empty.best_params
    with pytest.raises(NoCompletedTrials, match="no best_value; it has no trials"):
        _ = empty.best_value

    def failing(trial):
        raise RuntimeError("out of memory")

    broken = Study("broken", storage=url, seed=0)
    broken.optimize(failing, X, trials=2)
    with pytest.raises(TunelabError) as caught:
        _ = broken.best_value
    message = str(caught.value)
    assert "\n" not in message
    assert message.endswith("2 trials: 2 failed; the last failure: RuntimeError: out of memory")


def test_optimize_returns_none_and_says_why_when_no_trial_completed(url, log_lines):
    def failing(trial):
        raise RuntimeError("out of memory")

    study = Study("f", storage=url, seed=0)
    assert study.optimize(failing, X, trials=2) is None
    assert _messages(log_lines)[-1] == (
        "study 'f': no trial has completed, so optimize returns None; "
        "2 trials: 2 failed; the last failure: RuntimeError: out of memory"
    )


def test_rerunning_a_finished_study_says_so_in_one_line_and_how_to_run_more(url, log_lines):
    import logging

    Study("q", storage=url, direction="minimize", seed=0).optimize(
        objectives.quadratic, X, trials=4
    )
    assert not _messages(log_lines, logging.WARNING)
    again = Study("q", storage=url, direction="minimize", seed=0)
    best = again.optimize(objectives.quadratic, X, trials=4)
    assert best == again.best_trial  # the best of the earlier run, not None
    warnings = _messages(log_lines, logging.WARNING)
    assert warnings == [
        "study 'q' already has 4 trials, the total trials=4 asks for, so nothing ran; trials= is "
        "the study's total across runs: pass a larger one (trials=14), or n_trials=N to run N more"
    ]
    again.optimize(objectives.quadratic, X, n_trials=3)  # as the line says
    assert len(again.trials) == 7
    assert len(_messages(log_lines, logging.WARNING)) == 1


def test_a_finished_grid_and_an_empty_manual_queue_say_why_nothing_ran(url, log_lines):
    import logging

    space = {"a": Categorical([1, 2])}
    grid = Study("g", storage=url, strategy="grid")
    grid.optimize(lambda t: float(t.params["a"]), space)
    grid.optimize(lambda t: float(t.params["a"]), space)
    manual = Study("m", storage=url, strategy="manual")
    assert manual.optimize(lambda t: 1.0, space) is None
    assert _messages(log_lines, logging.WARNING) == [
        "study 'g' already has 2 trials and GridSearch has nothing more to propose, so nothing ran",
        "study 'm' has no queued config, so nothing ran; the manual strategy runs only the "
        "configs given to study.enqueue(params)",
    ]


def test_n_trials_counts_this_calls_trials_as_optuna_does(url):
    study = Study("n", storage=url, direction="minimize", seed=0)
    study.optimize(objectives.quadratic, X, n_trials=3)
    study.optimize(objectives.quadratic, X, n_trials=3)
    assert len(study.trials) == 6
    study.optimize(objectives.quadratic, X, trials=8, n_trials=5)  # the total caps it
    assert len(study.trials) == 8
    study.enqueue({"x": 2.0})
    study.optimize(objectives.quadratic, X, n_trials=2)  # a queued config is one of them
    assert [t.source for t in study.trials[8:]] == ["queue", "strategy"]
    with pytest.raises(SpecError, match="n_trials: must be an integer >= 1, got 0"):
        study.optimize(objectives.quadratic, X, n_trials=0)


def test_optimize_asks_the_strategy_only_for_trials_it_can_create(url):
    """The budget is checked before the ask: no proposal is computed and thrown away after the
    last trial (a Gaussian-process proposal costs up to a second)."""
    from tunelab.clock import VirtualClock
    from tunelab.executors import SimulatedExecutor
    from tunelab.strategies import BayesSearch, RandomSearch

    study = Study("a", storage=url, direction="minimize", strategy=_counting(RandomSearch)())
    study.optimize(objectives.quadratic, X, trials=5)
    assert study.strategy.asks_ == [[0], [1], [2], [3], [4]]
    study.optimize(objectives.quadratic, X, trials=5)  # finished: no ask at all
    study.optimize(objectives.quadratic, X, trials=7)
    assert study.strategy.asks_ == [[0], [1], [2], [3], [4], [5], [6]]

    class Line:
        def curve(self, params, seed):
            return [(10.0, {"value": params["x"]})]

    parallel = Study(
        "p", storage=url, strategy=_counting(RandomSearch)(), seed=0, clock=VirtualClock()
    )
    parallel.optimize(Line(), X, trials=5, executor=SimulatedExecutor(n_workers=3))
    assert parallel.strategy.asks_ == [[0, 1, 2], [3], [4]]  # never more numbers than budget
    parallel.optimize(Line(), X, n_trials=2, executor=SimulatedExecutor(n_workers=3))
    assert parallel.strategy.asks_[3:] == [[5, 6]]

    bayes = Study("b", storage=url, strategy=_counting(BayesSearch)(n_initial=2), seed=0)
    bayes.optimize(objectives.quadratic, X, trials=4)
    assert bayes.strategy.asks_ == [[0], [1], [2], [3]]


def test_trials_dataframe_has_a_row_per_trial_with_params_metrics_and_attrs(url):
    pd = pytest.importorskip("pandas")

    def objective(trial):
        trial.set_user_attr("fold_scores", [0.5, 0.7])
        if trial.number == 2:
            raise ValueError("bad")
        x = trial.params["x"]
        return {"value": x, "loss": 1 - x}

    space = {"x": Float(0, 1), "opt": Categorical(["sgd", "adam"])}
    study = Study("d", storage=url, seed=0)
    study.optimize(objective, space, trials=3)
    frame = study.trials_dataframe()
    assert list(frame.columns) == [
        "number",
        "value",
        "datetime_start",
        "datetime_complete",
        "duration",
        "params_opt",
        "params_x",
        "metrics_loss",
        "metrics_value",
        "user_attrs_fold_scores",
        "state",
    ]
    assert list(frame["number"]) == [0, 1, 2]
    assert list(frame["state"]) == ["COMPLETE", "COMPLETE", "FAILED"]
    assert list(frame["params_x"]) == [t.params["x"] for t in study.trials]
    assert frame["value"][0] == study.trials[0].value and pd.isna(frame["value"][2])
    assert frame["metrics_loss"][1] == pytest.approx(1 - study.trials[1].params["x"])
    assert frame["user_attrs_fold_scores"][0] == [0.5, 0.7]
    assert pd.api.types.is_datetime64_any_dtype(frame["datetime_start"])
    assert pd.api.types.is_timedelta64_dtype(frame["duration"])
    assert (frame["duration"] >= pd.Timedelta(0)).all()
    small = study.trials_dataframe(attrs=("state", "number", "params", "error"))
    assert list(small.columns) == ["number", "params_opt", "params_x", "state", "error"]
    assert small["error"][2].strip().endswith("ValueError: bad")
    with pytest.raises(ValueError, match="unknown attrs 'values'; choose from number, value"):
        study.trials_dataframe(attrs=["values"])
    assert list(Study("e", storage=url).trials_dataframe()["number"]) == []


def test_trials_dataframe_without_pandas_names_the_install(url, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas raises ImportError
    with pytest.raises(ImportError, match="needs pandas.*pip install pandas"):
        Study("d", storage=url).trials_dataframe()


def test_load_opens_an_existing_study_and_refuses_a_missing_one_in_one_line(url, tmp_path):
    from tunelab.errors import StorageError

    made = Study("l", storage=url, direction="minimize", metric="loss", seed=7)
    made.optimize(lambda t: {"loss": t.params["x"] ** 2}, X, trials=3)
    loaded = Study.load("l", storage=url, strategy="bayes")
    assert (loaded.direction, loaded.metric, loaded.seed) == ("minimize", "loss", 7)
    assert loaded.best_trial == made.best_trial and len(loaded.trials) == 3
    assert loaded.strategy.direction == "minimize" and loaded.strategy.metric == "loss"
    with pytest.raises(StorageError) as caught:
        Study.load("nope", storage=url)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("no study named 'nope' in ")
    assert "known studies: l;" in message and "Study('nope', ...) creates one" in message
    missing = tmp_path / "elsewhere" / "none.db"
    with pytest.raises(StorageError, match="no database at"):
        Study.load("l", storage=f"sqlite:///{missing}")
    assert not missing.parent.exists()  # loading creates nothing


def test_the_python_section_of_the_readme_runs(tmp_path, capsys, monkeypatch):
    import re

    pytest.importorskip("pandas")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 3
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "{'x': " in out and "params_x" in out and "{'kind': " in out


def test_define_by_run_learns_the_space_from_the_suggestions(url):
    """No space declared: the first trial draws its own answers; later ones are proposed in the
    space learned from the suggestions, each trial keeping only what it suggested."""
    for strategy in ("random", "bayes"):
        study = Study(
            f"dbr-{strategy}", storage=url, direction="minimize", strategy=strategy, seed=0
        )
        study.optimize(objectives.branching, n_trials=14)
        trials = study.trials
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 14
        assert trials[0].proposal == {} and trials[-1].proposal
        for trial in trials:
            branch = {"quad": {"kind", "x"}, "abs": {"kind", "y"}}[trial.params["kind"]]
            assert set(trial.params) == branch and set(trial.attrs["distributions"]) == branch
        assert {t.params["kind"] for t in trials} == {"quad", "abs"}
        assert study.best_value < 1.5


def test_declared_and_suggested_parameters_mix(url):
    def objective(trial):
        y = trial.suggest_float("y", 0.0, 1.0)
        return (trial.params["x"] - 1) ** 2 + y

    study = Study("mixed", storage=url, direction="minimize", seed=0)
    study.optimize(objective, X, trials=6)
    assert all(set(t.params) == {"x", "y"} for t in study.trials)
    assert all(-5 <= t.params["x"] <= 5 and 0 <= t.params["y"] <= 1 for t in study.trials)


def test_define_by_run_in_worker_processes_and_through_pauses(url):
    from tunelab.schedulers import ASHAScheduler

    asha = ASHAScheduler(min_resource=1, max_resource=9, reduction_factor=3)
    study = Study("dbr-asha", storage=url, scheduler=asha, seed=0, metric="value")
    study.optimize(objectives.suggesting_curve, n_trials=9, workers=2)
    trials = study.trials
    assert all(set(t.params) == {"rate"} for t in trials)
    resumed = [t for t in trials if (t.last_step or 0) > 1]
    assert resumed and all(t.state is not TrialState.FAILED for t in trials), [
        t.error for t in trials if t.error
    ]


def test_a_grid_over_suggested_parameters_takes_its_values_as_optunas_does(url):
    from tunelab import GridSearch

    with pytest.raises(SpecError, match="strategy: a grid needs its values"):
        Study("g", storage=url, strategy="grid").optimize(objectives.branching, n_trials=2)
    grid = GridSearch(search_space={"kind": ["quad"], "x": [1.0, 2.0, 3.0]})
    study = Study("g2", storage=url, strategy=grid, direction="minimize")
    study.optimize(objectives.branching)  # the grid is finite: it ends by itself
    assert sorted(t.params["x"] for t in study.trials) == [1.0, 2.0, 3.0]
    assert study.best_value == 0.0


def test_create_study_makes_a_study_as_optuna_does(tmp_path):
    import tunelab

    first, second = tunelab.create_study(), tunelab.create_study()
    assert first.name != second.name and first.direction == "minimize"  # in memory, named
    assert type(first.scheduler).__name__ == "MedianScheduler"  # Optuna's default pruner
    url = f"sqlite:///{tmp_path}/o.db"
    made = tunelab.create_study("o", url, "maximize", sampler=tunelab.BayesSearch(n_initial=3))
    made.optimize(objectives.branching, n_trials=2, timeout=60)
    with pytest.raises(TunelabError, match="already exists .* load_if_exists=True"):
        tunelab.create_study("o", url)
    again = tunelab.create_study("o", url, load_if_exists=True)
    assert len(again.get_trials(states=[TrialState.COMPLETE])) == 2
    assert tunelab.load_study("o", url).direction == "maximize"
    with pytest.raises(SpecError, match="sampler: takes a tunelab Strategy"):
        tunelab.create_study(sampler=object())
