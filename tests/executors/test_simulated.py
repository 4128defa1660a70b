"""The simulated executor: benchmark curves on virtual workers, driver and storage for real."""

import pytest

from tunelab import Float, Study, TrialState
from tunelab.clock import VirtualClock
from tunelab.errors import TunelabError
from tunelab.executors import SimulatedExecutor
from tunelab.schedulers import ASHAScheduler, MedianScheduler

EPOCHS = 9


class Curves:
    """Accuracy climbing to a level set by x; each epoch costs 1 + 9 x seconds."""

    def curve(self, params, seed):
        x = params["x"]
        return [((1 + 9 * x) * s, {"acc": x * (1 - 0.5**s)}) for s in range(1, EPOCHS + 1)]


def simulate(workers=1, trials=20, scheduler=None, seed=0):
    study = Study("sim", "sqlite://", metric="acc", scheduler=scheduler, seed=seed,
                  clock=VirtualClock())  # fmt: skip
    study.optimize(Curves(), {"x": Float(0, 1)}, trials=trials,
                   executor=SimulatedExecutor(n_workers=workers))  # fmt: skip
    return study


def test_one_worker_takes_the_sum_of_the_trials_costs():
    study = simulate(workers=1, trials=5)
    cost = sum((1 + 9 * t.params["x"]) * EPOCHS for t in study.trials)
    assert study.clock.now() == pytest.approx(cost)
    assert all(
        t.state is TrialState.COMPLETE and len(t.intermediate) == EPOCHS for t in study.trials
    )
    assert [t.duration for t in study.trials] == pytest.approx(
        [(1 + 9 * t.params["x"]) * EPOCHS for t in study.trials]
    )


def test_more_workers_finish_sooner_and_run_trials_side_by_side():
    one, four = simulate(workers=1), simulate(workers=4)
    assert four.clock.now() < one.clock.now() / 2
    starts = sorted(t.started_at for t in four.trials)
    assert starts[:4] == [0.0] * 4, "four trials start at once"


def test_promoted_trials_pay_only_for_the_steps_after_their_checkpoint():
    asha = ASHAScheduler(min_resource=1, max_resource=EPOCHS, reduction_factor=3)
    study = simulate(workers=1, trials=27, scheduler=asha)
    trials = study.trials
    paid = sum((1 + 9 * t.params["x"]) * max(t.intermediate) for t in trials)
    assert study.clock.now() == pytest.approx(paid), "a resumed trial never re-trains its epochs"
    assert {t.state for t in trials} == {TrialState.COMPLETE, TrialState.PAUSED}


def test_paused_trials_say_which_rung_they_reached():
    asha = ASHAScheduler(min_resource=1, max_resource=EPOCHS, reduction_factor=3)
    paused = [t for t in simulate(trials=27, scheduler=asha).trials if t.state is TrialState.PAUSED]
    assert paused
    for trial in paused:
        rung = {1: 1, 3: 2}[trial.last_step]
        assert trial.attrs["stopped"] == {
            "decision": "PAUSE",
            "step": trial.last_step,
            "by": "asha",
            "why": f"reached rung {rung} of 2 (step {trial.last_step}); "
            "resumes if it ranks in the top 1/3 there",
        }


def test_a_stop_at_the_last_step_completes_the_trial():
    """The median rule checks only the last epoch here: every trial below the median is told
    to stop when its training is already over."""
    median = MedianScheduler(warmup_steps=EPOCHS, min_trials=1)
    study = simulate(trials=10, scheduler=median)
    assert all(t.state is TrialState.COMPLETE for t in study.trials)
    assert not any("stopped" in t.attrs for t in study.trials)
    pruned = simulate(trials=10, scheduler=MedianScheduler(warmup_steps=EPOCHS - 1, min_trials=1))
    assert TrialState.PRUNED in {t.state for t in pruned.trials}, "a step earlier, it prunes"


def test_a_seeded_simulation_reproduces_exactly():
    asha = ASHAScheduler(min_resource=1, max_resource=EPOCHS, reduction_factor=3)
    runs = [simulate(workers=3, trials=30, scheduler=asha, seed=4) for _ in range(2)]
    records = [
        [(t.number, t.state, t.params, t.value, t.intermediate, t.started_at) for t in run.trials]
        for run in runs
    ]
    assert records[0] == records[1] and runs[0].clock.now() == runs[1].clock.now()


def test_it_needs_a_benchmark_and_a_virtual_clock():
    study = Study("sim", "sqlite://", metric="acc", seed=0)
    with pytest.raises(TunelabError, match="needs the study's clock to be a VirtualClock"):
        study.optimize(Curves(), {"x": Float(0, 1)}, trials=1, executor=SimulatedExecutor())
    virtual = Study("v", "sqlite://", metric="acc", seed=0, clock=VirtualClock())
    with pytest.raises(TunelabError, match="runs a benchmark: an object with curve"):
        virtual.optimize(lambda t: 1.0, {"x": Float(0, 1)}, trials=1, executor=SimulatedExecutor())


def test_the_docstring_example_runs():
    import doctest

    import tunelab.executors.simulated as module

    assert doctest.testmod(module).failed == 0
