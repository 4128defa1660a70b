"""What every Scheduler must do. Subclass ``SchedulerContract`` and provide a ``scheduler`` fixture."""

from __future__ import annotations

import math

import pytest

from tunelab._params import clone
from tunelab.schedulers.base import Scheduler, StudyView
from tunelab.space import Float, Int
from tunelab.testing.executors import counting
from tunelab.trial import Decision, FrozenTrial, TrialState


def curve_trial(number: int, level: float, steps: int, state=TrialState.COMPLETE) -> FrozenTrial:
    """A trial whose metric climbs towards ``level`` over ``steps`` reports."""
    reports = {s: {"acc": level * (1 - 0.5**s)} for s in range(1, steps + 1)}
    value = reports[steps]["acc"] if state is TrialState.COMPLETE and steps else None
    return FrozenTrial(
        id=number + 1, number=number, state=state, params={}, value=value, intermediate=reports
    )


def study_views() -> list[tuple[FrozenTrial, int, StudyView]]:
    """(trial, step, view) cases: empty and crowded studies, both directions, odd values."""
    crowd = [curve_trial(i, 0.5 + 0.04 * i, 8) for i in range(10)]
    odd = [
        curve_trial(20, 0.9, 0, TrialState.FAILED),
        FrozenTrial(id=22, number=21, state=TrialState.COMPLETE, params={}, value=math.nan),
        curve_trial(22, 0.7, 3, TrialState.PRUNED),
        curve_trial(23, 0.8, 4, TrialState.PAUSED),
    ]
    cases = []
    for trials in ([], crowd, crowd + odd):
        for level, step in ((0.1, 1), (0.3, 5), (0.95, 8)):
            me = curve_trial(99, level, step, TrialState.RUNNING)
            for direction in ("maximize", "minimize"):
                cases.append((me, step, StudyView("acc", direction, [*trials, me])))
    nan = FrozenTrial(
        id=100, number=100, state=TrialState.RUNNING, params={}, intermediate={1: {"acc": math.nan}}
    )
    cases.append((nan, 1, StudyView("acc", "maximize", [*crowd, nan])))
    return cases


class SchedulerContract:
    """Every scheduler decides from the study view alone, for any study it may meet."""

    def test_decides_every_case(self, scheduler):
        for trial, step, view in study_views():
            assert scheduler.on_report(trial, step, view) in Decision

    def test_keeps_no_state_between_calls(self, scheduler):
        """A fresh copy decides as the one that saw every earlier report: a study resumed in
        another process gets the same decisions."""
        cases = study_views()
        seen = [scheduler.on_report(trial, step, view) for trial, step, view in cases]
        fresh = [clone(scheduler).on_report(trial, step, view) for trial, step, view in cases]
        assert seen == fresh

    def test_explains_every_pause_and_stop(self, scheduler):
        """The reason stored with a paused or pruned trial: a sentence, the same from a fresh
        copy (a study resumed in another process explains alike)."""
        for trial, step, view in study_views():
            decision = scheduler.on_report(trial, step, view)
            if decision is not Decision.CONTINUE:
                why = scheduler.explain(trial, step, decision, view)
                assert isinstance(why, str) and why.strip(), (trial.number, step, decision)
                assert clone(scheduler).explain(trial, step, decision, view) == why

    def test_resumes_only_paused_trials_of_the_view(self, scheduler):
        for _, _, view in study_views():
            chosen = scheduler.resume_next(view)
            assert chosen is None or (chosen in view.trials and chosen.state is TrialState.PAUSED)
        running_only = StudyView("acc", "maximize", [curve_trial(0, 0.5, 3, TrialState.RUNNING)])
        assert scheduler.resume_next(running_only) is None

    def test_params_round_trip(self, scheduler):
        assert isinstance(scheduler, Scheduler)
        assert type(scheduler)(**scheduler.get_params()).get_params() == scheduler.get_params()

    @pytest.mark.parametrize("direction", ["maximize", "minimize"])
    def test_a_whole_study_ends_with_nothing_left_running(self, scheduler, direction):
        from tunelab.study import Study

        study = Study("contract", "sqlite://", direction, "value", scheduler=scheduler, seed=0)
        study.optimize(counting, {"steps": Int(4, 9), "x": Float(0, 1)}, trials=16)
        states = {t.state for t in study.trials}
        assert len(study.trials) == 16
        assert states <= {TrialState.COMPLETE, TrialState.PRUNED, TrialState.PAUSED}
