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


def test_resume_never_imports_code_that_the_database_names(tmp_path):
    """Whoever can write a shared database could name any file: resume refuses user code and
    says to run the spec file the user trusts instead (which continues the same study)."""
    import pytest

    from tunelab.errors import SpecError
    from tunelab.experiment import open_experiment
    from tunelab.spec import load_spec

    (tmp_path / "mine.py").write_text(
        "import torch\n"
        "def build(params, shape, n_outputs):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, n_outputs))\n"
    )
    import yaml

    url = f"sqlite:///{tmp_path}/t.db"
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({**SPEC, "model": "mine.py:build"}))
    Experiment.from_spec(load_spec(tmp_path / "spec.yaml"), url)
    with pytest.raises(SpecError, match=r"model: study 'iris' trains your code .*mine\.py:build"):
        open_experiment("iris", url)
    assert Experiment.from_spec(load_spec(tmp_path / "spec.yaml"), url).study.name == "iris"


def test_a_reproducible_spec_runs_the_study_in_trial_number_order(tmp_path):
    spec = parse_spec({**SPEC, "reproducible": True, "workers": 1})
    experiment = Experiment.from_spec(spec, f"sqlite:///{tmp_path}/t.db")
    experiment.search()
    assert experiment.study.attrs["reproducible_lag"] == 1


def test_processes_sharing_a_study_retrain_its_best_once(tmp_path, monkeypatch):
    """Two drivers finishing one study at once: one retrains, the other waits for its result."""
    import threading
    import time

    from tunelab.nn import NetworkObjective

    url = f"sqlite:///{tmp_path}/t.db"
    Experiment.from_spec(parse_spec(SPEC), url).search()
    retrains = []
    original = NetworkObjective.final_fit

    def counted(self, *args, **kwargs):
        retrains.append(threading.get_ident())
        time.sleep(0.3)  # the other driver arrives while this one retrains
        return original(self, *args, **kwargs)

    monkeypatch.setattr(NetworkObjective, "final_fit", counted)
    monkeypatch.setattr("tunelab.experiment._POLL_S", 0.05)
    experiments = [Experiment.from_spec(parse_spec(SPEC), url) for _ in range(2)]
    results = [None, None]

    def finish(i):
        results[i] = experiments[i].finalize()

    threads = [threading.Thread(target=finish, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(retrains) == 1
    assert results[0] == results[1] and results[0]["test_metrics"]
    assert experiments[0].study.attrs["retraining"] is None  # the claim is given back


def test_a_claim_whose_holder_is_gone_is_taken_over(tmp_path):
    url = f"sqlite:///{tmp_path}/t.db"
    experiment = Experiment.from_spec(parse_spec(SPEC), url)
    experiment.search()
    best = experiment.study.best_trial.number
    gone = {"owner": "no-such-host:1", "trial": best, "expires": 0.0}  # expired, elsewhere
    experiment.study.set_attr("retraining", gone)
    assert experiment.finalize()["trial"] == best


def test_fuse_trains_same_shaped_trials_as_fused_groups_in_process_or_per_worker(
    tmp_path, monkeypatch
):
    import tunelab.executors
    import tunelab.nn.fused
    from tunelab.executors import FusedExecutor, InlineExecutor, executor_for

    monkeypatch.setattr(tunelab.executors, "available_cores", lambda: 4)
    assert isinstance(executor_for(1, fuse=True), FusedExecutor)
    assert type(executor_for(1)) is InlineExecutor
    workers = executor_for(2, fuse=True)
    assert isinstance(workers, ProcessExecutor) and workers.fuse and workers.n_workers == 2

    groups, original = [], tunelab.nn.fused.run_epochs_fused
    monkeypatch.setattr(
        tunelab.nn.fused, "run_epochs_fused", lambda ts: groups.append(len(ts)) or original(ts)
    )
    spec = parse_spec({**SPEC, "fuse": True, "budget": {"trials": 4}, "device": "cpu"})
    best = Experiment.from_spec(spec, f"sqlite:///{tmp_path}/t.db").search()
    assert best is not None and groups and max(groups) >= 3  # 3 when the first epoch measures


def test_fuse_beside_a_named_executor_that_can_fuse_turns_its_fuse_on(tmp_path):
    from tunelab.executors import FusedRayExecutor

    def executor(**spec):
        made = Experiment.from_spec(parse_spec({**SPEC, **spec}), f"sqlite:///{tmp_path}/e.db")
        return made._executor()

    processes = {"name": "processes", "n_workers": 2}
    assert executor(fuse=True, executor=processes).fuse
    assert not executor(fuse=True, executor={**processes, "fuse": False}).fuse
    assert not executor(executor=processes).fuse
    assert type(executor(fuse=True, executor={"name": "ray"})) is FusedRayExecutor
