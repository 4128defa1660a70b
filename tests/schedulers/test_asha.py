"""ASHA and asynchronous Hyperband: rung arithmetic, promotions from scripted reports, and whole
studies whose promoted trials resume from their checkpoints."""

from dataclasses import replace

import pytest

from tunelab import Categorical, Float, Study, TrialState
from tunelab.schedulers import ASHAScheduler, HyperbandScheduler, StudyView, make_scheduler
from tunelab.testing import SchedulerContract
from tunelab.testing.executors import counting
from tunelab.trial import Decision, FrozenTrial


class TestASHAContract(SchedulerContract):
    @pytest.fixture
    def scheduler(self):
        return ASHAScheduler(min_resource=1, max_resource=9, reduction_factor=3)


class TestHyperbandContract(SchedulerContract):
    @pytest.fixture
    def scheduler(self):
        return HyperbandScheduler(min_resource=1, max_resource=9, reduction_factor=3)


def trial(number, values, state=TrialState.PAUSED):
    """A trial with one report per step 1..len(values)."""
    reports = {s: {"acc": v} for s, v in enumerate(values, start=1)}
    return FrozenTrial(id=number + 1, number=number, state=state, params={}, intermediate=reports)


@pytest.mark.parametrize(
    ("options", "rungs"),
    [
        ({"min_resource": 1, "max_resource": 27, "reduction_factor": 3}, [1, 3, 9]),
        ({"min_resource": 1, "max_resource": 16, "reduction_factor": 2}, [1, 2, 4, 8]),
        ({"min_resource": 2, "max_resource": 20, "reduction_factor": 3}, [2, 6, 18]),
        ({"min_resource": 0.5, "max_resource": 4, "reduction_factor": 2}, [0.5, 1, 2]),
    ],
)
def test_rungs(options, rungs):
    assert ASHAScheduler(**options).rungs(0) == rungs


def test_hyperband_brackets_start_later_and_the_last_trains_fully():
    hb = HyperbandScheduler(min_resource=1, max_resource=27, reduction_factor=3)
    assert hb.brackets == 4
    assert [hb.rungs(b) for b in range(4)] == [[1, 3, 9], [3, 9], [9], []]
    assert [hb.bracket(trial(n, [0.5])) for n in range(6)] == [0, 1, 2, 3, 0, 1]


@pytest.mark.parametrize(("step", "decision"), [(1, Decision.PAUSE), (2, Decision.CONTINUE),
                                                 (3, Decision.PAUSE), (9, Decision.CONTINUE)])  # fmt: skip
def test_a_trial_pauses_at_each_rung_it_reaches_below_max_resource(step, decision):
    asha = ASHAScheduler(min_resource=1, max_resource=9, reduction_factor=3)
    me = trial(0, [0.5] * step, TrialState.RUNNING)
    assert asha.on_report(me, step, StudyView("acc", "maximize", [me])) is decision


def test_a_report_that_jumps_over_a_rung_pauses_and_a_restart_does_not_pause_again():
    asha = ASHAScheduler(min_resource=2, max_resource=20, reduction_factor=3)
    jumper = FrozenTrial(id=1, number=0, state=TrialState.RUNNING, params={},
                         intermediate={1: {"acc": 0.1}, 4: {"acc": 0.2}})  # fmt: skip
    assert asha.on_report(jumper, 4, StudyView("acc", "maximize", [jumper])) is Decision.PAUSE
    # paused at 6 without a checkpoint, restarted from step 1: its old reports are still there
    restarted = replace(trial(1, [0.3] * 6, TrialState.RUNNING), attrs={"paused_at": 6})
    view = StudyView("acc", "maximize", [restarted])
    assert [asha.on_report(restarted, s, view) for s in (1, 2, 6)] == [Decision.CONTINUE] * 3


@pytest.mark.parametrize(
    ("scheduler", "number", "step", "why"),
    [
        (ASHAScheduler(1, 9, 3), 0, 3, "reached rung 2 of 2 (step 3); resumes if it ranks in the top 1/3 there"),
        (ASHAScheduler(2, None, 2.5), 0, 5, "reached rung 2 (step 5); resumes if it ranks in the top 1/2.5 there"),
        (HyperbandScheduler(1, 27, 3), 5, 3, "reached rung 1 of 2 (step 3) in bracket 1; resumes if it ranks in the top 1/3 there"),
    ],
)  # fmt: skip
def test_a_pause_is_explained_by_the_rung_reached(scheduler, number, step, why):
    me = trial(number, [0.5] * step, TrialState.RUNNING)
    view = StudyView("acc", "maximize", [me])
    assert scheduler.on_report(me, step, view) is Decision.PAUSE
    assert scheduler.explain(me, step, Decision.PAUSE, view) == why


@pytest.mark.parametrize("eta", [2, 3, 4])
@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_the_best_1_in_eta_of_a_rung_are_promoted_one_by_one(eta, direction):
    asha = ASHAScheduler(min_resource=1, max_resource=100, reduction_factor=eta)
    values = [0.1 * (i + 1) for i in range(2 * eta)]  # paused at rung 1 (step 1)
    trials = [trial(n, [v]) for n, v in enumerate(values)]
    promoted = []
    for _ in range(len(trials)):
        view = StudyView("acc", direction, trials)
        chosen = asha.resume_next(view)
        if chosen is None:
            break
        promoted.append(chosen.number)
        trials = [t if t.number != chosen.number else trial(t.number, [values[t.number]],
                                                            TrialState.RUNNING) for t in trials]  # fmt: skip
    best_first = sorted(range(len(values)), key=values.__getitem__, reverse=direction == "maximize")
    assert promoted == best_first[:2], "2 eta trials reached the rung: the best 2 are promoted"


def test_a_running_trial_counts_at_a_rung_it_reached_and_waits_for_no_one():
    asha = ASHAScheduler(min_resource=1, max_resource=100, reduction_factor=3)
    ahead = trial(0, [0.9, 0.9, 0.9], TrialState.RUNNING)  # past rung 1 (and paused nowhere)
    paused = [trial(n, [v]) for n, v in ((1, 0.8), (2, 0.1))]
    chosen = asha.resume_next(StudyView("acc", "maximize", [ahead, *paused]))
    assert chosen is None, "1 of 3 goes on from rung 1, and that is the running trial 0"
    more = [*paused, ahead, trial(3, [0.2]), trial(4, [0.3]), trial(5, [0.05])]
    chosen = asha.resume_next(StudyView("acc", "maximize", more))
    assert chosen.number == 1, "6 reached rung 1: the top 2 are 0 (running on) and 1 (paused)"


def test_higher_rungs_are_promoted_first():
    asha = ASHAScheduler(min_resource=1, max_resource=100, reduction_factor=2)
    low = [trial(n, [0.5]) for n in range(4)]
    high = [trial(n, [0.1, 0.2, 0.3]) for n in range(4, 6)]  # paused at rung 2 (step 2... 3)
    chosen = asha.resume_next(StudyView("acc", "maximize", [*low, *high]))
    assert chosen.number == 5 or chosen.number == 4
    assert asha.rung_of(chosen) == 2


def test_options_are_checked_and_named():
    from tunelab.errors import SpecError

    with pytest.raises(SpecError, match="reduction_factor must be >= 2"):
        make_scheduler("asha", reduction_factor=1)
    with pytest.raises(SpecError, match="max_resource must be > min_resource"):
        make_scheduler("hyperband", min_resource=9, max_resource=3)
    with pytest.raises(SpecError, match="'asha' has no option 'eta'; did you mean|valid"):
        make_scheduler("asha", eta=3)


@pytest.mark.parametrize("workers", [1, 2])
def test_promoted_trials_resume_from_their_checkpoints_in_a_real_study(tmp_path, workers):
    """counting reports steps 1..9 and checkpoints at each pause: every trial that completes
    reported each step once (it resumed, never retrained), and the rungs thinned out by eta."""
    asha = ASHAScheduler(min_resource=1, max_resource=9, reduction_factor=3)
    study = Study("a", storage=f"sqlite:///{tmp_path}/a.db", scheduler=asha, seed=0)
    study.optimize(counting, {"steps": Categorical([9]), "x": Float(0, 1)}, trials=18,
                   workers=workers)  # fmt: skip
    trials = study.trials
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PAUSED}
    reached = {r: sum(max(t.intermediate) >= r for t in trials) for r in (1, 3, 9)}
    assert reached[1] == 18 and 0 < reached[9] <= reached[3] < 18
    for t in trials:
        assert sorted(t.intermediate) == list(range(1, max(t.intermediate) + 1))
        assert "warnings" not in t.attrs
    assert all(
        sorted(t.intermediate) == list(range(1, 10))
        for t in trials
        if t.state is TrialState.COMPLETE
    )
