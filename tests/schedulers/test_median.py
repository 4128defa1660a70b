import pytest

from tunelab.errors import SpecError
from tunelab.schedulers import MedianScheduler, NoScheduler, StudyView, make_scheduler
from tunelab.trial import Decision, FrozenTrial, TrialState


def finished(i, curve, state=TrialState.COMPLETE):
    return FrozenTrial(
        id=i,
        number=i,
        state=state,
        params={},
        intermediate={s: {"acc": v} for s, v in enumerate(curve)},
    )


def running(curve):
    return FrozenTrial(
        id=99,
        number=99,
        state=TrialState.RUNNING,
        params={},
        intermediate={s: {"acc": v} for s, v in enumerate(curve)},
    )


COMPLETED = [finished(i, [0.5, 0.6, 0.7, 0.8]) for i in range(5)]


def decide(trial, step, trials=COMPLETED, direction="maximize", **options):
    view = StudyView("acc", direction, [*trials, trial])
    return MedianScheduler(**options).on_report(trial, step, view)


def test_stops_a_trial_below_the_median_after_warmup():
    assert decide(running([0.1, 0.2, 0.3]), 2, warmup_steps=1, min_trials=3) is Decision.STOP


def test_keeps_a_trial_at_or_above_the_median():
    assert decide(running([0.5, 0.6, 0.75]), 2, warmup_steps=1, min_trials=3) is Decision.CONTINUE


def test_never_stops_during_warmup():
    assert decide(running([0.1, 0.1, 0.1]), 2, warmup_steps=3, min_trials=3) is Decision.CONTINUE


def test_needs_enough_completed_trials():
    assert decide(running([0.1, 0.1, 0.1]), 2, warmup_steps=0, min_trials=6) is Decision.CONTINUE


def test_pruned_and_paused_trials_that_reached_the_step_count_failed_ones_never():
    for state in (TrialState.PRUNED, TrialState.PAUSED):
        others = [finished(i, [0.9, 0.9, 0.9], state) for i in range(5)]
        stop = decide(running([0.1, 0.1, 0.1]), 2, trials=others, warmup_steps=0, min_trials=1)
        assert stop is Decision.STOP, state
    failed = [finished(i, [0.9, 0.9, 0.9], TrialState.FAILED) for i in range(5)]
    assert (
        decide(running([0.1, 0.1, 0.1]), 2, trials=failed, warmup_steps=0, min_trials=1)
        is Decision.CONTINUE
    )


def test_a_trial_pruned_before_the_step_does_not_count_there():
    early = [finished(i, [0.9, 0.9], TrialState.PRUNED) for i in range(5)]  # steps 0 and 1
    assert (
        decide(running([0.1, 0.1, 0.1]), 2, trials=early, warmup_steps=0, min_trials=1)
        is Decision.CONTINUE
    )


def test_the_median_is_of_every_trial_at_the_step_not_of_the_survivors():
    """Three completed trials at 0.9 and four pruned at 0.3: the median at step 2 is 0.3, so a
    trial at 0.5 goes on (counting completed trials only, it would be stopped against 0.9)."""
    survivors = [finished(i, [0.9, 0.9, 0.9]) for i in range(3)]
    cut = [finished(i, [0.3, 0.3, 0.3], TrialState.PRUNED) for i in range(3, 7)]
    me = running([0.5, 0.5, 0.5])
    assert (
        decide(me, 2, trials=[*survivors, *cut], warmup_steps=0, min_trials=3) is Decision.CONTINUE
    )
    assert decide(me, 2, trials=survivors, warmup_steps=0, min_trials=3) is Decision.STOP


def test_uses_best_so_far_so_one_noisy_step_does_not_stop_a_good_trial():
    assert decide(running([0.5, 0.9, 0.2]), 2, warmup_steps=0, min_trials=3) is Decision.CONTINUE


def test_minimize_direction():
    losses = [finished(i, [1.0, 0.8, 0.6]) for i in range(5)]
    assert (
        decide(
            running([2.0, 1.9, 1.8]),
            2,
            trials=losses,
            direction="minimize",
            warmup_steps=0,
            min_trials=3,
        )
        is Decision.STOP
    )
    assert (
        decide(
            running([1.0, 0.7, 0.5]),
            2,
            trials=losses,
            direction="minimize",
            warmup_steps=0,
            min_trials=3,
        )
        is Decision.CONTINUE
    )


@pytest.mark.parametrize(
    ("direction", "curve", "others", "why"),
    [
        (
            "maximize",
            [0.1, 0.3, 0.2],
            [0.5, 0.6, 0.7],
            "best acc 0.3 by step 2, below the median 0.7",
        ),
        (
            "minimize",
            [2.0, 1.9, 1.8],
            [1.0, 0.8, 0.6],
            "best acc 1.8 by step 2, above the median 0.6",
        ),
    ],
)
def test_explains_a_stop_by_the_values_it_compared(direction, curve, others, why):
    trial = running(curve)
    view = StudyView("acc", direction, [*[finished(i, others) for i in range(4)], trial])
    scheduler = MedianScheduler(warmup_steps=0, min_trials=3)
    assert scheduler.on_report(trial, 2, view) is Decision.STOP
    assert scheduler.explain(trial, 2, Decision.STOP, view) == why + " of 4 other trials there"


def test_interval():
    trial = running([0.1] * 5)
    assert decide(trial, 3, warmup_steps=2, min_trials=1, interval=2) is Decision.CONTINUE
    assert decide(trial, 2, warmup_steps=2, min_trials=1, interval=2) is Decision.STOP


def test_factory_and_bad_options():
    assert isinstance(make_scheduler(None), NoScheduler)
    assert make_scheduler("median", warmup_steps=2).get_params() == {
        "warmup_steps": 2,
        "min_trials": 5,
        "interval": 1,
    }
    with pytest.raises(SpecError, match="scheduler: unknown scheduler .pbt."):
        make_scheduler("pbt")
    with pytest.raises(SpecError, match="warmup_steps must be an integer >= 0"):
        make_scheduler("median", warmup_steps=-1)


@pytest.mark.parametrize("steps", [[3, 5, 7, 9], [3, 6, 9], [5], [2, 7], [4, 8, 12]])
def test_prunes_a_clearly_worse_trial_whatever_its_reporting_steps(steps):
    """Completed trials reported every step; this one reports on its own grid, which before the
    fix never met the interval grid (steps 3, 5, 7... with warm-up 2 and interval 2)."""
    completed = [finished(i, [0.5 + 0.04 * s for s in range(11)]) for i in range(5)]
    scheduler = MedianScheduler(warmup_steps=2, min_trials=3, interval=2)
    reports = {}
    decisions = []
    for step in steps:
        reports[step] = {"acc": 0.1}
        trial = FrozenTrial(
            id=99, number=99, state=TrialState.RUNNING, params={}, intermediate=dict(reports)
        )
        decisions.append(
            scheduler.on_report(trial, step, StudyView("acc", "maximize", [*completed, trial]))
        )
    assert Decision.STOP in decisions
