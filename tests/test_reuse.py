"""Reproduce a stored trial, export a model into a folder of its own, predict with it: real
studies on iris (a few epochs), the CLI in-process through typer's runner, and ``tunelab
predict`` in a fresh process where the point is that nothing of the study is needed."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sklearn.datasets import load_iris
from typer.testing import CliRunner

from tunelab.cli import app
from tunelab.errors import SpecError, StorageError, TunelabError
from tunelab.experiment import Experiment
from tunelab.lr_range import ATTR
from tunelab.nn import NetworkObjective, load_model
from tunelab.nn import predict as network_outputs
from tunelab.reuse import export, predict, reproduce
from tunelab.spec import load_spec
from tunelab.trial import TrialState

EPOCHS = 4

SPEC = {
    "name": "iris-reuse",
    "data": {"source": "iris"},
    "metric": {"name": "val_accuracy", "direction": "maximize"},
    "space": {
        "lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True},
        "units": {"type": "categorical", "choices": [8, 16]},
    },
    "fixed": {"epochs": EPOCHS, "n_layers": 1, "batch_size": 16},
    "scheduler": {"name": "median", "warmup_steps": 1},
    "budget": {"trials": 8},
    "seed": 0,
    "device": "cpu",
}

USER_MODELS = """
from torch import nn


def build_model(params, input_shape, n_outputs):
    return nn.Sequential(nn.Linear(input_shape[0], params["width"]), nn.Tanh(),
                         nn.Linear(params["width"], n_outputs))
"""


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(folder: Path, spec: dict) -> tuple[str, object]:
    """Run a spec's study and its final retrain, as ``tunelab run`` does: its storage and study."""
    storage = f"sqlite:///{folder / 'tunelab.db'}"
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump({**spec, "storage": storage}))
    experiment = Experiment.from_spec(load_spec(path))
    experiment.search()
    experiment.finalize()
    return storage, experiment.study


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A finished study with completed and pruned trials, and its final model."""
    return _run(tmp_path_factory.mktemp("study"), SPEC)


def _copy(storage: str, folder: Path) -> tuple[str, Path]:
    """A copy of a study's database, to change behind tunelab's back."""
    target = folder / "copy.db"
    with sqlite3.connect(storage.removeprefix("sqlite:///")) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return f"sqlite:///{target}", target


def _iris_csv(path: Path, columns: list[str] | None = None) -> Path:
    """Iris as a user has it: the label first, then the features named as scikit-learn names them."""
    bunch = load_iris()
    names = columns or list(bunch.feature_names)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["species", *names])
        for row, label in zip(bunch.data, bunch.target, strict=True):
            values = dict(zip(bunch.feature_names, row, strict=True))
            writer.writerow([bunch.target_names[label], *(values[n] for n in names)])
    return path


def _tunelab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tunelab.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


# reproduce ---------------------------------------------------------------------------------------
def test_a_completed_trial_reproduces_identically_and_the_cli_says_so_with_exit_0(study):
    storage, handle = study
    best = handle.best_trial
    check = reproduce("iris-reuse", best.number, storage)
    assert check.identical and check.differences() == []
    assert sorted(check.rerun_steps) == list(range(1, EPOCHS + 1))
    assert check.rerun == best.metrics and check.rerun_steps == best.intermediate
    assert [row.step for row in check.rows()][:EPOCHS] == list(range(1, EPOCHS + 1))
    shown = CliRunner().invoke(
        app, ["reproduce", "iris-reuse", str(best.number), "--storage", storage]
    )
    assert shown.exit_code == 0, shown.output
    assert "identical: the re-run of trial" in shown.output
    assert repr(best.value) in shown.output  # the numbers in full
    again = next(t for t in handle.trials if t.number == best.number)
    assert again.intermediate == best.intermediate  # the study was not written to


def test_a_pruned_trial_is_replayed_to_the_step_its_scheduler_stopped_it(study):
    storage, handle = study
    pruned = next(t for t in handle.trials if t.state is TrialState.PRUNED)
    assert pruned.last_step < EPOCHS
    check = reproduce("iris-reuse", pruned.number, storage)
    assert max(check.rerun_steps) == pruned.last_step
    assert check.identical, check.verdict()


def test_a_tampered_stored_value_is_a_mismatch_that_names_where_and_exits_1(study, tmp_path):
    storage, handle = study
    best = handle.best_trial
    copy, path = _copy(storage, tmp_path)
    reported = dict(best.intermediate[2], val_accuracy=best.intermediate[2]["val_accuracy"] - 0.25)
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE tunelab_reports SET metrics = ? WHERE step = 2 AND trial_id = ?",
            (json.dumps(reported), best.id),
        )
    check = reproduce("iris-reuse", best.number, copy)
    assert not check.identical
    assert [(r.step, r.metric) for r in check.differences()] == [(2, "val_accuracy")]
    shown = CliRunner().invoke(
        app, ["reproduce", "iris-reuse", str(best.number), "--storage", copy]
    )
    assert shown.exit_code == 1
    assert "differs: largest absolute difference 0.25, val_accuracy at step 2 (1 of" in shown.output


def test_paused_trials_replay_to_their_pause_and_resumed_ones_straight_through(tmp_path):
    spec = {
        **SPEC,
        "name": "iris-asha",
        "fixed": {**SPEC["fixed"], "epochs": 3},
        "scheduler": {"name": "asha", "min_resource": 1, "reduction_factor": 3},
        "budget": {"trials": 4},
    }
    storage, handle = _run(tmp_path, spec)
    paused = next(t for t in handle.trials if t.state is TrialState.PAUSED)
    resumed = next(t for t in handle.trials if t.state is TrialState.COMPLETE)
    assert paused.last_step == 1 and resumed.last_step == 3  # asha paused it at 1, then resumed
    check = reproduce("iris-asha", paused.number, storage)
    assert sorted(check.rerun_steps) == [1] and check.rerun == {} and check.identical
    assert check.verdict().endswith("numbers (1 step)")
    assert reproduce("iris-asha", resumed.number, storage).identical


@pytest.mark.parametrize(("state", "says"), [("FAILED", "failed"), ("RUNNING", "is running")])
def test_a_failed_or_running_trial_is_refused_in_one_line(study, tmp_path, state, says):
    storage, _ = study
    copy, path = _copy(storage, tmp_path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE tunelab_trials SET state = ? WHERE number = 0", (state,))
    with pytest.raises(TunelabError, match=f"trial 0 of 'iris-reuse' {says}, so it has no final"):
        reproduce("iris-reuse", 0, copy)
    with pytest.raises(TunelabError, match="has no trial 99 \\(it has 8 trials"):
        reproduce("iris-reuse", 99, copy)


def test_an_auto_learning_rate_comes_from_the_stored_range_test_never_a_new_one(tmp_path):
    spec = {
        **SPEC,
        "name": "iris-auto",
        "space": {"units": {"type": "categorical", "choices": [8, 16]}},
        "fixed": {**SPEC["fixed"], "lr": "auto"},
        "budget": {"trials": 2},
    }
    storage = f"sqlite:///{tmp_path / 'tunelab.db'}"
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({**spec, "storage": storage}))
    Experiment.from_spec(load_spec(tmp_path / "spec.yaml")).search()
    assert reproduce("iris-auto", 1, storage).identical
    with sqlite3.connect(tmp_path / "tunelab.db") as db:
        (attrs,) = db.execute("SELECT attrs FROM tunelab_studies").fetchone()
        attrs = json.loads(attrs)
        attrs[ATTR]["suggestions"]["adam"] *= 2  # as if the test had suggested another rate
        db.execute("UPDATE tunelab_studies SET attrs = ?", (json.dumps(attrs),))
    assert not reproduce("iris-auto", 1, storage).identical


# export and predict ------------------------------------------------------------------------------
def test_export_then_predict_in_a_fresh_process_gives_the_study_models_predictions(study, tmp_path):
    storage, handle = study
    result = export("iris-reuse", tmp_path / "model", storage=storage)
    assert result["reused"] and result["trial"] == handle.best_trial.number
    assert result["test_metrics"] == handle.attrs["result"]["test_metrics"]
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "model.json",
        "model.pt",
        "preprocessing.json",
    ]
    data = _iris_csv(tmp_path / "iris.csv")
    run = _tunelab("predict", "model", "iris.csv", "-o", "out.csv", "--proba", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    with (tmp_path / "out.csv").open() as handle_:
        rows = list(csv.DictReader(handle_))
    model, prep, meta = load_model(Path(handle.attrs["result"]["artifacts"]["model.json"]).parent)
    X = np.loadtxt(data, delimiter=",", skiprows=1, usecols=(1, 2, 3, 4), dtype=np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(prep.transform(X))).double()
    expected = [meta["classes"][i] for i in logits.argmax(dim=1).tolist()]
    assert [row["prediction"] for row in rows] == expected
    proba = np.array([[float(row[f"proba_{c}"]) for c in meta["classes"]] for row in rows])
    np.testing.assert_allclose(proba, torch.softmax(logits, dim=1).numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert (np.array(expected) == load_iris().target_names[load_iris().target]).mean() > 0.9


def test_export_without_the_study_model_retrains_exactly_what_the_run_saved(study, tmp_path):
    storage, handle = study
    copy, path = _copy(storage, tmp_path)
    with sqlite3.connect(path) as db:
        (attrs,) = db.execute("SELECT attrs FROM tunelab_studies").fetchone()
        attrs = json.loads(attrs)
        del attrs["result"]  # as after a run stopped before its retrain
        db.execute("UPDATE tunelab_studies SET attrs = ?", (json.dumps(attrs),))
    result = export("iris-reuse", tmp_path / "model", storage=copy)
    assert not result["reused"] and result["test_metrics"] == handle.attrs["result"]["test_metrics"]
    saved = torch.load(handle.attrs["result"]["artifacts"]["model.pt"], weights_only=True)
    retrained = torch.load(tmp_path / "model" / "model.pt", weights_only=True)
    assert saved.keys() == retrained.keys()
    assert all(torch.equal(saved[k], retrained[k]) for k in saved)


def test_export_of_another_trial_retrains_its_config_and_refuses_a_full_folder(study, tmp_path):
    storage, handle = study
    other = next(t for t in handle.trials if t.number != handle.best_trial.number)
    result = export("iris-reuse", tmp_path / "other", other.number, storage)
    assert not result["reused"] and result["params"] == other.params
    meta = json.loads((tmp_path / "other" / "model.json").read_text())
    assert meta["params"]["units"] == other.params["units"] and meta["seed"] == other.seed
    with pytest.raises(SpecError, match="--output: .* is not an empty folder; give a new folder"):
        export("iris-reuse", tmp_path / "other", storage=storage)


def test_a_user_model_exports_with_its_code_moves_and_predicts_only_with_trust_code(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "models.py").write_text(USER_MODELS)
    spec = {
        **SPEC,
        "name": "iris-own",
        "model": "models.py:build_model",
        "space": {"width": {"type": "categorical", "choices": [4, 8]}},
        "fixed": {"epochs": 3, "lr": 0.05},
        "scheduler": "none",
        "budget": {"trials": 2},
    }
    storage, _ = _run(project, spec)
    with pytest.raises(SpecError, match="model: study 'iris-own' trains your code .* --spec SPEC"):
        export("iris-own", tmp_path / "refused", storage=storage)
    changed = project / "changed.yaml"
    changed.write_text(yaml.safe_dump({**spec, "fixed": {"epochs": 4, "lr": 0.05}}))
    with pytest.raises(
        SpecError, match="--spec: .* differs from the stored study 'iris-own' in fixed"
    ):
        reproduce("iris-own", 0, storage, changed)
    assert reproduce("iris-own", 0, storage, project / "spec.yaml").identical

    export("iris-own", tmp_path / "model", storage=storage, spec=project / "spec.yaml")
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["model"] == "models.py:build_model"  # relative to the folder, which can move
    moved = tmp_path / "elsewhere" / "iris-model"
    shutil.move(tmp_path / "model", moved)
    shutil.rmtree(project)  # neither the study nor the original code is needed
    _iris_csv(tmp_path / "iris.csv")
    refused = _tunelab("predict", str(moved), "iris.csv", "-o", "out.csv", cwd=tmp_path)
    assert refused.returncode == 2 and not (tmp_path / "out.csv").exists()
    assert "names code to import" in refused.stderr and "--trust-code" in refused.stderr
    assert "runs that code" in refused.stderr
    trusted = _tunelab(
        "predict", str(moved), "iris.csv", "-o", "out.csv", "--trust-code", cwd=tmp_path
    )
    assert trusted.returncode == 0, trusted.stderr
    with (tmp_path / "out.csv").open() as handle:
        labels = [row["prediction"] for row in csv.DictReader(handle)]
    assert len(labels) == 150 and set(labels) <= set(load_iris().target_names)


def test_a_missing_feature_column_is_one_error_naming_it(study, tmp_path):
    storage, handle = study
    folder = Path(handle.attrs["result"]["artifacts"]["model.json"]).parent
    names = load_iris().feature_names
    data = _iris_csv(tmp_path / "three.csv", names[:3])
    with pytest.raises(SpecError, match="data: three.csv has no column 'petal width \\(cm\\)';"):
        predict(folder, data)
    with pytest.raises(SpecError, match="rows of 3 values, but the model takes 4 features"):
        predict(folder, np.zeros((2, 3)))


def test_a_regression_predicts_in_the_targets_units_and_has_no_probabilities(tmp_path):
    objective = NetworkObjective({"source": "diabetes"}, fixed={"epochs": 2}, device="cpu")
    objective.final_fit({}, seed=0, out_dir=tmp_path)
    model, prep, _ = load_model(tmp_path)
    X = objective.provider.splits().test.X
    values = predict(tmp_path, X)["prediction"]
    expected = network_outputs(model, prep.transform(X), "cpu", prep.target_).reshape(-1)
    assert np.array_equal(values, expected) and values.std() > 1  # diabetes units, not scaled
    np.savez(tmp_path / "rows.npz", X=X)
    assert np.array_equal(predict(tmp_path, tmp_path / "rows.npz")["prediction"], values)
    with pytest.raises(SpecError, match="--proba: the model is a regression"):
        predict(tmp_path, X, proba=True)


def test_a_study_made_in_python_cannot_be_rebuilt(tmp_path):
    import tunelab

    storage = f"sqlite:///{tmp_path / 'py.db'}"
    study = tunelab.Study("from-python", storage=storage, direction="maximize", metric="score")
    study.optimize(lambda trial: 1.0, {"x": tunelab.Float(0, 1)}, trials=1)
    with pytest.raises(StorageError, match="created from Python, not from a spec"):
        reproduce("from-python", 0, storage)


def test_a_trial_reproduces_with_the_thread_count_it_trained_with(tmp_path):
    """A worker of a study with 2 workers on 2 cores trains with 1 thread; a re-run in a fresh
    process has more, and CPU kernels sum in an order that depends on it: the count is kept."""
    spec = {
        **SPEC,
        "name": "digits-threads",
        "data": {"source": "digits"},
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 0.01, "log": True}},
        "fixed": {"epochs": 2, "units": 256, "n_layers": 2, "batch_size": 64},
        "budget": {"trials": 1},
    }
    storage, trained = _run(tmp_path, spec)  # one thread (the module's fixture)
    assert trained.trials[0].user_attrs["torch_threads"] == 1
    torch.set_num_threads(2)
    try:
        check = reproduce("digits-threads", 0, storage)
    finally:
        torch.set_num_threads(1)
    assert check.identical, check.verdict()
    assert torch.get_num_threads() == 1  # the re-run gave the count back
