"""What the driver tells listeners and the log as trials run."""

import logging

import pytest

from tunelab import Categorical, Float, Study, TrialState
from tunelab.events import StudyListener, set_verbosity


def _reporting(trial):
    for step in (1, 2, 3):
        trial.report(step, score=trial.params["x"] * step)
    return trial.params["x"] * 3


class Recorder(StudyListener):
    def __init__(self):
        self.events = []

    def trial_started(self, study, trial):
        self.events.append(("started", trial.number))

    def trial_reported(self, study, trial, step):
        self.events.append(("reported", trial.number, step, *trial.intermediate[step].values()))

    def trial_paused(self, study, trial):
        self.events.append(("paused", trial.number))

    def trial_finished(self, study, trial):
        self.events.append(("finished", trial.number, trial.state.value))


@pytest.mark.parametrize("workers", [1, 2])
def test_listeners_hear_each_start_report_and_end_in_order(workers):
    recorder, ended = Recorder(), []
    study = Study("s", storage="sqlite://", metric="score", seed=0)
    study.optimize(
        _reporting,
        {"x": Float(0, 1)},
        trials=3,
        workers=workers,
        callbacks=[recorder, lambda s, t: ended.append(t.number)],
    )
    for number in range(3):
        mine = [e for e in recorder.events if e[1] == number]
        x = study.trials[number].params["x"]
        assert mine == [
            ("started", number),
            *[("reported", number, step, pytest.approx(x * step)) for step in (1, 2, 3)],
            ("finished", number, "COMPLETE"),
        ]
    assert sorted(ended) == [0, 1, 2]


def test_a_paused_trial_is_heard_paused_then_started_again():
    from tests.schedulers.pausing import PauseOnce
    from tunelab.testing.executors import counting

    recorder = Recorder()
    study = Study("p", storage="sqlite://", scheduler=PauseOnce(step=2, min_paused=2), seed=0)
    study.optimize(counting, {"steps": Categorical([4])}, trials=4, callbacks=[recorder])
    resumed = [t.number for t in study.trials if t.state is TrialState.COMPLETE]
    assert resumed
    for number in resumed:
        kinds = [e[0] for e in recorder.events if e[1] == number]
        assert kinds == [
            "started",
            "reported",
            "reported",
            "paused",
            "started",
            *["reported"] * 2,
            "finished",
        ]


def test_each_finished_trial_is_one_log_line_with_value_params_and_best(log_lines):
    study = Study("s", storage="sqlite://", direction="minimize", seed=0)
    study.optimize(lambda t: t.params["x"], {"x": Float(0, 1)}, trials=3)
    lines = [r.getMessage() for r in log_lines.records if r.name == "tunelab"]
    assert len(lines) == 3
    best = min(study.trials, key=lambda t: t.value)
    assert lines[-1].startswith("Trial 2 finished with value = ")
    assert "and params {'x': " in lines[-1]
    assert lines[-1].endswith(f"Best is trial {best.number} with value = {best.value:.6g}.")


def test_failed_trials_log_a_warning_and_set_verbosity_quiets_the_rest(log_lines):
    def objective(trial):
        if trial.number == 1:
            raise ValueError("bad batch")
        return trial.params["x"]

    set_verbosity(logging.WARNING)
    try:
        Study("s", storage="sqlite://", seed=0).optimize(objective, {"x": Float(0, 1)}, trials=3)
    finally:
        set_verbosity(logging.INFO)
    records = [r for r in log_lines.records if r.name == "tunelab"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.WARNING, "Trial 1 failed: ValueError: bad batch")
    ]


def test_a_callback_that_is_neither_callable_nor_a_listener_is_refused():
    with pytest.raises(
        TypeError, match="callbacks: expected f\\(study, trial\\) or a StudyListener"
    ):
        Study("s", storage="sqlite://").optimize(
            lambda t: 0.0, {"x": Float(0, 1)}, trials=1, callbacks=[3]
        )


def test_a_level_set_before_tunelab_is_imported_stays():
    """An application that quiets the logger first must not be overridden by tunelab's import."""
    import subprocess
    import sys

    code = (
        "import logging; logging.getLogger('tunelab').setLevel(logging.WARNING)\n"
        "from tunelab import Float, Study\n"
        "Study('q', storage='sqlite://').optimize(lambda t: t.params['x'], {'x': Float(0, 1)}, "
        "trials=2)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Trial 0 finished" not in run.stderr
