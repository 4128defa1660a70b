"""The live view of ``tunelab run``, drawn on a recording console during a real short study."""

import io
import re

from rich.console import Console

from tunelab.experiment import Experiment
from tunelab.live import LiveView, PlainLog
from tunelab.spec import parse_spec

SPEC = {
    "name": "iris",
    "data": {"source": "iris"},
    "metric": {"name": "val_accuracy", "direction": "maximize"},
    "space": {"lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True}},
    "fixed": {"epochs": 4},
    "scheduler": "median",
    "budget": {"trials": 3},
    "workers": 1,
    "seed": 0,
}


def _experiment(tmp_path, **changes):
    return Experiment.from_spec(parse_spec({**SPEC, **changes}), f"sqlite:///{tmp_path}/t.db")


def test_running_rows_with_their_epochs_appear_before_any_trial_ends(tmp_path):
    experiment = _experiment(tmp_path)
    console = Console(record=True, force_terminal=True, width=160, file=io.StringIO())
    with LiveView(console, experiment.study, 3, lambda params: 4, min_interval_s=0) as view:
        experiment.search(callbacks=[view])
    text = console.export_text()
    first_end = text.index("Trial 0 finished")
    running_row = re.search(r"\n0\s+lr=\S+\s+2/4\s+0\.\d+", text)  # frames follow each other
    assert running_row is not None and running_row.start() < first_end
    assert re.search(r"iris\s+0/3 done\s+running 1", text[:first_end])
    assert re.search(r"iris\s+3/3 done\s+running 0\s+paused 0\s+pruned \d\s+failed 0", text)
    assert "best val_accuracy" in text and "(trial " in text


def test_the_study_line_counts_resumed_paused_trials_once(tmp_path):
    experiment = _experiment(
        tmp_path,
        scheduler={"name": "asha", "reduction_factor": 2, "min_resource": 1},
        budget={"trials": 4},
    )
    console = Console(record=True, force_terminal=True, width=160, file=io.StringIO())
    with LiveView(console, experiment.study, 4) as view:
        experiment.search(callbacks=[view])
    counts = view.tally.counts
    states = [t.state for t in experiment.study.trials]
    assert {s: n for s, n in counts.items() if n} == {s: states.count(s) for s in set(states)}
    assert view.running == {}


def test_without_a_terminal_each_finished_trial_is_one_line_as_it_happens(tmp_path):
    experiment = _experiment(tmp_path)
    stream = io.StringIO()
    seen = []

    def lines_so_far(study, trial):
        seen.append(stream.getvalue().count("\n"))

    experiment.search(
        callbacks=[PlainLog(Console(file=stream, width=40), experiment.study), lines_so_far]
    )
    lines = stream.getvalue().splitlines()
    assert seen == [1, 2, 3]  # written when each trial ended, not at the end
    assert [line.split(" ")[:2] for line in lines] == [
        ["Trial", "0"],
        ["Trial", "1"],
        ["Trial", "2"],
    ]
    assert all("Best is trial" in line and "params {'lr':" in line for line in lines)
