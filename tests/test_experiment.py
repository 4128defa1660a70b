"""A spec bound to its study: the spec's executor section reaches the search."""

from tunelab.executors import ProcessExecutor
from tunelab.experiment import Experiment
from tunelab.spec import parse_spec

SPEC = {
    "name": "iris",
    "data": {"source": "iris"},
    "metric": {"name": "val_accuracy", "direction": "maximize"},
    "space": {"lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}},
    "fixed": {"epochs": 2},
    "budget": {"trials": 2},
}


def test_the_spec_names_its_executor_with_options(tmp_path):
    spec = parse_spec({**SPEC, "executor": {"name": "processes", "n_workers": 3}})
    experiment = Experiment.from_spec(spec, f"sqlite:///{tmp_path}/t.db")
    executor = experiment._executor()
    assert isinstance(executor, ProcessExecutor) and executor.n_workers == 3


def test_without_an_executor_section_workers_decide(tmp_path):
    experiment = Experiment.from_spec(parse_spec(SPEC), f"sqlite:///{tmp_path}/t.db")
    assert experiment._executor() is None
