"""ASHA and asynchronous Hyperband: rung arithmetic, promotions from scripted reports, and whole
studies whose promoted trials resume from their checkpoints."""

from dataclasses import dataclass, replace

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
    dealt = [hb.bracket(trial(n, [0.5])) for n in range(49)]
    assert dealt[:6] == [0, 1, 0, 2, 0, 3], "interleaved, the most aggressive bracket first"
    assert [dealt.count(b) for b in range(4)] == [27, 12, 6, 4], "Hyperband's n_s per bracket"


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
        (HyperbandScheduler(1, 27, 3), 1, 3, "reached rung 1 of 2 (step 3) in bracket 1; resumes if it ranks in the top 1/3 there"),
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


def test_across_hyperband_brackets_the_rung_at_the_highest_step_is_promoted_first():
    hb = HyperbandScheduler(min_resource=1, max_resource=27, reduction_factor=3)
    numbers = {b: [n for n in range(60) if hb.bracket(trial(n, [0.5])) == b][:3] for b in (0, 2)}
    at_step_3 = [trial(n, [0.5, 0.5, 0.9 - 0.1 * i]) for i, n in enumerate(numbers[0])]
    at_step_9 = [trial(n, [0.5] * 9) for n in numbers[2]]  # bracket 2's first rung is step 9
    chosen = hb.resume_next(StudyView("acc", "maximize", [*at_step_3, *at_step_9]))
    assert chosen.number == numbers[2][0], "step 9 (a first rung) comes before step 3 (a second)"


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


# Whole simulated studies ---------------------------------------------------------------------
# Scripted curves on the simulated executor: a trial's accuracy at step s is level(x) * s / steps,
# so trials rank the same at every step and every rung is judged on the final ranking.


class Scripted:
    """acc = level(x) * s / steps; a step costs ``cost(x)`` virtual seconds."""

    def __init__(self, steps, cost, level):
        self.steps, self.cost, self.level = steps, cost, level

    def curve(self, params, seed):
        x, steps = params["x"], self.steps
        return [(self.cost(x) * s, {"acc": self.level(x) * s / steps}) for s in range(1, steps + 1)]


@dataclass
class Simulated:
    """A finished simulated study and what its scheduler and strategy were asked, in order."""

    study: Study
    decisions: list  # (the trials resume_next saw, its answer)
    reports: list  # (trial number, step) of every report the scheduler judged
    asks: list  # the trials the strategy saw each time it was asked for new ones


def simulate(scheduler, space, trials, workers, strategy="random", seed=0, cost=None, level=None):
    """Run a simulated study with logging wrappers around its own scheduler and strategy."""
    from tunelab.clock import VirtualClock
    from tunelab.executors import SimulatedExecutor

    study = Study("sim", "sqlite://", metric="acc", strategy=strategy, scheduler=scheduler,
                  seed=seed, clock=VirtualClock())  # fmt: skip
    run = Simulated(study, [], [], [])
    decide, judge, ask = study.scheduler.resume_next, study.scheduler.on_report, study.strategy.ask

    def logged_resume_next(view):
        chosen = decide(view)
        run.decisions.append((tuple(view.trials), chosen))
        return chosen

    def logged_on_report(trial, step, view):
        run.reports.append((trial.number, step))
        return judge(trial, step, view)

    def logged_ask(space, history, numbers):
        run.asks.append(tuple(history))
        return ask(space, history, numbers)

    study.scheduler.resume_next = logged_resume_next
    study.scheduler.on_report = logged_on_report
    study.strategy.ask = logged_ask
    curves = Scripted(scheduler.max_resource, cost or (lambda x: 1.0), level or (lambda x: x))
    study.optimize(curves, space, trials=trials, executor=SimulatedExecutor(n_workers=workers))
    return run


def rung_table(scheduler, trials):
    """(bracket, level) -> [(acc at the rung, number)] of the trials that reached that rung."""
    table = {}
    for t in trials:
        bracket = scheduler.bracket(t)
        for level, step in enumerate(scheduler.rungs(bracket), start=1):
            if t.last_step is not None and t.last_step >= step:
                table.setdefault((bracket, level), []).append(
                    (t.intermediate[step]["acc"], t.number)
                )
    return table


def promotable(scheduler, trials):
    """Reference rule, written from the README: at each rung, the best PAUSED trial there may go
    on when fewer than floor(reached / eta) of the trials that reached the rung rank above it
    (ties: lower number first). Returns {(bracket, level): number} of the promotable ones."""
    by_number = {t.number: t for t in trials}
    found = {}
    for (bracket, level), reached in rung_table(scheduler, trials).items():
        ranked = sorted(reached, key=lambda vn: (-vn[0], vn[1]))
        step = scheduler.rungs(bracket)[level - 1]
        for above, (_, number) in enumerate(ranked):
            t = by_number[number]
            if t.state is TrialState.PAUSED and t.last_step == step:
                if above < len(reached) // scheduler.reduction_factor:
                    found[(bracket, level)] = number
                break
    return found


def went_past(scheduler, trials):
    """(bracket, level) -> numbers of the trials that reported beyond that rung."""
    table = {}
    for t in trials:
        for level, step in enumerate(scheduler.rungs(scheduler.bracket(t)), start=1):
            if t.last_step > step:
                table.setdefault((scheduler.bracket(t), level), set()).add(t.number)
    return table


def asha_for(eta):
    """Three rungs for each eta: 1, eta, eta^2, and full training at eta^3 steps."""
    return ASHAScheduler(min_resource=1, max_resource=eta**3, reduction_factor=eta)


@pytest.mark.parametrize("workers", [1, 2, 4])
@pytest.mark.parametrize("eta", [2, 3, 4])
@pytest.mark.parametrize("kind", [ASHAScheduler, HyperbandScheduler])
def test_every_promotion_follows_the_top_1_in_eta_rule_at_the_time_it_is_made(kind, eta, workers):
    """The invariant of asynchronous promotion. A trial goes past a rung only when the driver
    asks ``resume_next`` and it is the best paused trial there with fewer than floor(r / eta) of
    the r trials that had reached the rung *then* ranked above it (highest rung of its bracket
    first; nothing promotable: a new trial). r grows, so a count bound on the final rung holds
    only in one direction: when the study ends nothing is promotable, so the best floor(R / eta)
    of the R trials of each rung all went past it. More than floor(R / eta) may have: a trial in
    the top 1/eta when it arrived keeps its promotion when better ones arrive later (see the
    worst-first test). What does always hold: each promoted trial had at least eta - 1 worse
    trials beside it then, so the final worst eta - 1 of a rung never go past it.

    Costs grow with x, so with several workers good trials arrive at rungs late, out of order;
    the level is x rounded to eighths, so rungs hold ties (the earlier trial ranks first)."""
    scheduler = kind(min_resource=1, max_resource=eta**3, reduction_factor=eta)
    n = eta**3 + 10

    def eighths(x):
        return round(8 * x) / 8

    run = simulate(scheduler, {"x": Float(0, 1)}, trials=n, workers=workers,
                   cost=lambda x: 1 + 4 * x, level=eighths)  # fmt: skip
    trials = run.study.trials
    every_step_once = sorted((t.number, s) for t in trials for s in range(1, t.last_step + 1))
    assert sorted(run.reports) == every_step_once, "a step was reported twice: retrained"
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PAUSED}
    assert any(t.state is TrialState.COMPLETE for t in trials)
    for t in trials:  # each step reported once, from 1 on, paused exactly at a rung
        assert sorted(t.intermediate) == list(range(1, t.last_step + 1))
        if t.state is TrialState.PAUSED:
            assert t.last_step in scheduler.rungs(scheduler.bracket(t))
            assert t.attrs["paused_at"] == t.attrs["checkpoint"]["step"] == t.last_step
        else:
            assert t.last_step == eta**3 and t.value == eighths(t.params["x"])

    promoted = set()
    for seen in run.asks:
        assert promotable(scheduler, seen) == {}, "a new trial was asked for over a promotion"
    for seen, chosen in run.decisions:
        expected = promotable(scheduler, seen)
        if chosen is None:
            assert expected == {}, "a promotable trial was left paused for a new one"
            continue
        bracket = scheduler.bracket(chosen)
        level = scheduler.rungs(bracket).index(chosen.last_step) + 1
        assert expected.get((bracket, level)) == chosen.number, "not the best promotable there"
        assert not any(b == bracket and lv > level for b, lv in expected), "a higher rung waits"
        assert (bracket, level, chosen.number) not in promoted
        promoted.add((bracket, level, chosen.number))
    assert promotable(scheduler, trials) == {}, "the study ended with a promotable trial"

    past = went_past(scheduler, trials)
    for (bracket, level), reached in rung_table(scheduler, trials).items():
        gone = past.get((bracket, level), set())
        assert gone == {n for b, lv, n in promoted if (b, lv) == (bracket, level)}, (
            "a trial went past a rung without a promotion"
        )
        ranked = [number for _, number in sorted(reached, key=lambda vn: (-vn[0], vn[1]))]
        assert set(ranked[: len(ranked) // eta]) <= gone, "a top 1/eta trial stayed paused"
        assert not gone & set(ranked[len(ranked) - (eta - 1) :]), "a bottom trial went on"
    assert len(past[(0, 1)]) < len(rung_table(scheduler, trials)[(0, 1)]), "no thinning"


@pytest.mark.parametrize("workers", [1, 2, 4])
@pytest.mark.parametrize(
    ("eta", "trials", "per_rung"),
    [(2, 21, [21, 10, 5, 2]), (3, 29, [29, 9, 3, 1]), (4, 35, [35, 8, 2, 0])],
)
def test_best_first_arrivals_thin_each_rung_by_exactly_eta(eta, trials, per_rung, workers):
    """Grid order best first, every step costing the same: each rung sees its trials arrive best
    first, so each promotion's floor(r / eta) never exceeds the final floor(R / eta) and the
    rungs thin to floor(R / eta) exactly, the best ones going on (per_rung: how many trials
    reached steps 1, eta, eta^2 and completed at eta^3)."""
    asha = asha_for(eta)
    xs = [1 - k / trials for k in range(trials)]
    run = simulate(asha, {"x": Categorical(xs)}, trials, workers, strategy="grid")
    by_x = sorted(run.study.trials, key=lambda t: -t.params["x"])
    steps = [*asha.rungs(0), eta**3]
    assert [sum(t.last_step >= s for t in by_x) for s in steps] == per_rung
    for s, n in zip(steps, per_rung, strict=True):
        assert all(t.last_step >= s for t in by_x[:n]), f"not the best {n} went on to step {s}"
    assert sum(t.state is TrialState.COMPLETE for t in by_x) == per_rung[-1]


@pytest.mark.parametrize("eta", [2, 3, 4])
def test_worst_first_arrivals_promote_all_but_eta_minus_1_of_each_rung(eta):
    """Asynchronous promotion does not wait for a rung to fill: with 1 worker and each trial
    better than all before it, every trial is the best of its rung when it arrives there, so all
    but the first eta - 1 go on: R - (eta - 1) of a rung's R trials, not floor(R / eta). This is
    ASHA as published (Li et al. call these mispromotions); a search that proposes better and
    better configs sees little early stopping."""
    asha = asha_for(eta)
    n = 4 * eta
    xs = [(k + 1) / n for k in range(n)]
    run = simulate(asha, {"x": Categorical(xs)}, n, workers=1, strategy="grid")
    steps = [*asha.rungs(0), eta**3]
    reached = [sum(t.last_step >= s for t in run.study.trials) for s in steps]
    assert reached == [n - k * (eta - 1) for k in range(4)]


def test_one_worker_promotions_match_the_hand_computed_sequence():
    """6 trials, eta 2, rungs at steps 1 and 2, full training at 4, one worker, x in grid order
    0.3 0.5 0.1 0.6 0.4 0.2 (acc ranks as x). By hand, after each pause or end (R: trials that
    reached the rung, promotable while fewer than floor(R / 2) rank above):
      #0 pauses at 1: R=1, floor 0               -> new #1
      #1 pauses at 1: R=2, #1 best, 0 < 1        -> resume #1 (rung 1)
      #1 pauses at 2: rung 2 R=1; rung 1 #0 has #1 above, 1 < 1 no -> new #2
      #2 pauses at 1: R=3, floor 1, #0 has 1 above          -> new #3
      #3 pauses at 1: R=4, floor 2, #3 best       -> resume #3 (rung 1)
      #3 pauses at 2: rung 2 R=2, #3 best, 0 < 1  -> resume #3 (rung 2); it completes at 4
      #3 completes: rung 2 #1 has 1 above; rung 1 #0 has 2 above, 2 < 2 no -> new #4
      #4 pauses at 1: R=5, floor 2, #4 has 2 above (#3, #1) -> new #5
      #5 pauses at 1: R=6, floor 3, #4 has 2 above -> resume #4 (rung 1)
      #4 pauses at 2: rung 2 R=3, floor 1, #1 has #3 above; rung 1 #0 has 3 above: done."""
    asha = ASHAScheduler(min_resource=1, max_resource=4, reduction_factor=2)
    space = {"x": Categorical([0.3, 0.5, 0.1, 0.6, 0.4, 0.2])}
    run = simulate(asha, space, trials=6, workers=1, strategy="grid")
    promotions = [(c.number, c.last_step) for _, c in run.decisions if c is not None]
    assert promotions == [(1, 1), (3, 1), (3, 2), (4, 1)]
    ends = [(t.number, t.state, t.last_step) for t in run.study.trials]
    P, C = TrialState.PAUSED, TrialState.COMPLETE
    assert ends == [(0, P, 1), (1, P, 2), (2, P, 1), (3, C, 4), (4, P, 2), (5, P, 1)]


@pytest.mark.parametrize(
    "scheduler", [asha_for(3), HyperbandScheduler(1, 27, 3)], ids=["asha", "hyperband"]
)
def test_a_seeded_simulated_study_with_4_workers_reproduces_exactly(scheduler):
    """Same seed, same study: which trials ran, with what params, what each reported, where each
    paused and in what order the scheduler promoted them; another seed samples differently."""

    def record(seed):
        run = simulate(scheduler, {"x": Float(0, 1)}, trials=30, workers=4, seed=seed,
                       cost=lambda x: 1 + 4 * x)  # fmt: skip
        trials = [(t.number, t.state, t.params, t.value, t.intermediate, t.attrs.get("paused_at"),
                   t.started_at, t.finished_at) for t in run.study.trials]  # fmt: skip
        promotions = [(c.number, c.last_step) for _, c in run.decisions if c is not None]
        return trials, promotions, run.reports, run.study.clock.now()

    first = record(seed=3)
    assert first[1], "the run promoted some trials"
    assert record(seed=3) == first
    assert record(seed=4)[0] != first[0]
