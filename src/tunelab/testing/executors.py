"""What every Executor must do. Subclass ``ExecutorContract`` and provide an ``executor`` fixture.

The objectives below live at module level so that executors with worker processes can send them
by name.
"""

from __future__ import annotations

import time

from tunelab.executors.base import Executor, TrialOutcome, TrialTask
from tunelab.trial import Decision, TrialState


def counting(trial):
    """Reports steps 1..params['steps'] (after ``resumed_from``), pausing or stopping when told;
    saves a checkpoint when paused; returns the last step reached. Declares its last step, as a
    training loop that knows its epochs does."""
    trial.final_step = trial.params["steps"]
    start = (trial.resumed_from or 0) + 1
    if trial.resumed_from is not None and trial.load_checkpoint() is None:
        start = 1
    for step in range(start, trial.params["steps"] + 1):
        trial.report(step, value=float(step))
        if trial.should_pause():
            trial.save_checkpoint({"step": step})
            return float(step)
        if trial.should_stop():
            break
    return float(trial.last_step)


def failing(trial):
    raise RuntimeError(f"boom in trial {trial.number}")


def warning(trial):
    trial.warn("something odd")
    return 1.0


def hanging(trial):
    """Never reports: only a time limit enforced from outside the trial's own code stops it."""
    time.sleep(60)
    return 0.0


def slow_reporter(trial):
    """Reports every 50 ms for 10 s: a time limit must stop it."""
    for step in range(200):
        time.sleep(0.05)
        trial.report(step, value=float(step))
    return 0.0


class ExecutorContract:
    """Every executor runs, relays, pauses, stops, fails and times out trials alike."""

    @staticmethod
    def task(number, tmp_path, timeout_s=None, resumed_from=None, **params):
        directory = str(tmp_path / f"trial_{number}")
        return TrialTask(number + 1, number, params, 7, directory, timeout_s, resumed_from)

    @staticmethod
    def run_all(executor: Executor, objective, tasks, on_report=None) -> list[TrialOutcome]:
        """Submit every task as slots free up; the outcomes in the order they came."""
        on_report = on_report or (lambda number, step, metrics: Decision.CONTINUE)
        executor.start(objective)
        pending, outcomes = list(tasks), []
        try:
            while pending or executor.running():
                free = executor.free_slots()
                if pending and free:
                    executor.submit(pending[:free])
                    pending = pending[free:]
                outcomes.extend(executor.wait(on_report, timeout=10.0))
        finally:
            executor.shutdown()
        return outcomes

    def test_runs_each_task_once_and_relays_every_report(self, executor, tmp_path):
        reports = []

        def on_report(number, step, metrics):
            reports.append((number, step, metrics["value"]))
            return Decision.CONTINUE

        tasks = [self.task(n, tmp_path, steps=3) for n in range(3)]
        outcomes = self.run_all(executor, counting, tasks, on_report)
        assert sorted(o.task.number for o in outcomes) == [0, 1, 2]
        assert all(o.state is TrialState.COMPLETE and o.result == 3.0 for o in outcomes)
        for n in range(3):
            assert [r for r in reports if r[0] == n] == [(n, s, float(s)) for s in (1, 2, 3)]

    def test_free_slots_running_and_shutdown(self, executor, tmp_path):
        executor.start(counting)
        free = executor.free_slots()
        assert free >= 1 and executor.running() == []
        executor.submit([self.task(0, tmp_path, steps=1)])
        assert executor.free_slots() == free - 1
        assert [t.number for t in executor.running()] == [0]
        executor.shutdown()
        assert executor.running() == []

    def test_stop_prunes_and_pause_keeps_a_checkpoint_to_resume_from(self, executor, tmp_path):
        def on_report(number, step, metrics):
            if step == 2:
                return Decision.STOP if number == 0 else Decision.PAUSE
            return Decision.CONTINUE

        tasks = [self.task(n, tmp_path, steps=5) for n in range(2)]
        outcomes = {o.task.number: o for o in self.run_all(executor, counting, tasks, on_report)}
        assert (outcomes[0].state, outcomes[0].last_metrics) == (TrialState.PRUNED, {"value": 2.0})
        assert (outcomes[1].state, outcomes[1].checkpoint_step) == (TrialState.PAUSED, 2)
        steps = []

        def record(number, step, metrics):
            steps.append(step)
            return Decision.CONTINUE

        again = self.task(1, tmp_path, resumed_from=2, steps=5)
        (resumed,) = self.run_all(executor, counting, [again], record)
        assert steps == [3, 4, 5] and resumed.state is TrialState.COMPLETE
        assert resumed.result == 5.0 and resumed.warnings == ()

    def test_a_stop_or_pause_at_the_last_step_completes_the_trial(self, executor, tmp_path):
        """The training is over by then: a pruned or paused label would hide a finished trial."""

        def on_report(number, step, metrics):
            if step == 3:
                return Decision.STOP if number == 0 else Decision.PAUSE
            return Decision.CONTINUE

        tasks = [self.task(n, tmp_path, steps=3) for n in range(2)]
        outcomes = self.run_all(executor, counting, tasks, on_report)
        assert sorted((o.task.number, o.state, o.result) for o in outcomes) == [
            (0, TrialState.COMPLETE, 3.0),
            (1, TrialState.COMPLETE, 3.0),
        ]
        assert all(o.checkpoint_step is None for o in outcomes)

    def test_a_resume_without_its_checkpoint_starts_over_with_a_warning(self, executor, tmp_path):
        (outcome,) = self.run_all(executor, counting, [self.task(0, tmp_path, 4, 2, steps=3)])
        assert outcome.state is TrialState.COMPLETE and outcome.result == 3.0
        assert len(outcome.warnings) == 1 and "restarted from step 0" in outcome.warnings[0]

    def test_a_raising_trial_fails_with_its_traceback(self, executor, tmp_path):
        (outcome,) = self.run_all(executor, failing, [self.task(4, tmp_path)])
        assert outcome.state is TrialState.FAILED
        assert "RuntimeError: boom in trial 4" in outcome.error

    def test_warnings_come_back_with_the_outcome(self, executor, tmp_path):
        (outcome,) = self.run_all(executor, warning, [self.task(0, tmp_path)])
        assert outcome.warnings == ("something odd",) and outcome.result == 1.0

    def test_a_trial_past_its_time_limit_fails(self, executor, tmp_path):
        (outcome,) = self.run_all(executor, slow_reporter, [self.task(0, tmp_path, 0.5)])
        assert outcome.state is TrialState.FAILED and outcome.error.startswith("timed out")

    def test_a_trial_that_hangs_between_reports_is_stopped_by_its_time_limit(
        self, executor, tmp_path
    ):
        start = time.monotonic()
        (outcome,) = self.run_all(executor, hanging, [self.task(0, tmp_path, 0.5)])
        assert outcome.state is TrialState.FAILED and outcome.error.startswith("timed out")
        assert time.monotonic() - start < 30, "stopped long before the trial would have ended"

    def test_params_round_trip(self, executor):
        assert type(executor)(**executor.get_params()).get_params() == executor.get_params()
