from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from tunelab.errors import SpecError
from tunelab.nn.data import Split, Standardizer, load_dataset, split_dataset
from tunelab.nn.models import build_mlp
from tunelab.nn.objective import HYPERPARAMETERS, NetworkObjective, load_model
from tunelab.nn.train import evaluate, fit, seed_everything
from tunelab.trial import Trial

DIGITS_FAST = {"epochs": 5, "batch_size": 64, "units": 32, "lr": 1e-2}


def make_trial(tmp_path, reporter, params=None, seed=0, number=0):
    return Trial(number, params or {}, seed, tmp_path / f"trial-{number}", reporter)


@pytest.fixture
def digits_objective():
    return NetworkObjective({"source": "digits"}, fixed=DIGITS_FAST, device="cpu")


def test_defaults_cover_the_model_and_training_knobs():
    assert HYPERPARAMETERS["lr"] == 1e-3 and HYPERPARAMETERS["epochs"] == 20
    assert HYPERPARAMETERS["activation"] == "relu" and HYPERPARAMETERS["optimizer"] == "adam"


def test_constructor_only_stores_arguments():
    objective = NetworkObjective({"source": "no-such-file.csv"}, model="mlp", split_seed=3)
    assert objective.data == {"source": "no-such-file.csv"} and objective.split_seed == 3


def test_digits_reaches_high_accuracy_and_reports_every_epoch(
    tmp_path, digits_objective, make_reporter
):
    reporter = make_reporter()
    trial = make_trial(tmp_path, reporter, params={"n_layers": 1}, number=4)
    result = digits_objective(trial)
    assert result["val_accuracy"] >= 0.9
    assert reporter.steps == [1, 2, 3, 4, 5]
    assert all(number == 4 for number, _, _ in reporter.calls)
    assert reporter.calls[-1][2] == result
    assert set(result) == {"train_loss", "val_loss", "val_accuracy"}


def test_trial_params_override_fixed_which_override_defaults(
    tmp_path, digits_objective, make_reporter
):
    reporter = make_reporter()
    digits_objective(make_trial(tmp_path, reporter, params={"epochs": 2}))
    assert reporter.steps == [1, 2]


def test_scheduler_stop_ends_training(tmp_path, digits_objective, make_reporter):
    reporter = make_reporter(stop_at=2)
    trial = make_trial(tmp_path, reporter)
    digits_objective(trial)
    assert reporter.steps == [1, 2]
    assert trial.should_stop()


def test_same_trial_seed_gives_the_same_result(tmp_path, digits_objective, make_reporter):
    params = {"dropout": 0.2, "epochs": 2}
    first = digits_objective(make_trial(tmp_path, make_reporter(), params, seed=1))
    again = digits_objective(make_trial(tmp_path, make_reporter(), params, seed=1))
    other = digits_objective(make_trial(tmp_path, make_reporter(), params, seed=2))
    assert first == again != other


def test_trial_seed_sets_the_initial_weights(tmp_path, digits_objective, make_reporter):
    # lr=0 keeps the weights where they started, so the loss depends on the initialisation only
    params = {"lr": 0.0, "epochs": 1}
    first = digits_objective(make_trial(tmp_path, make_reporter(), params, seed=1))
    other = digits_objective(make_trial(tmp_path, make_reporter(), params, seed=2))
    assert first["val_loss"] != other["val_loss"]


def test_trial_is_trained_on_train_standardised_with_train_statistics(
    tmp_path, digits_objective, make_reporter
):
    params = {"epochs": 2}
    result = digits_objective(make_trial(tmp_path, make_reporter(), params, seed=3))

    train, val, _ = split_dataset(load_dataset("digits"), test_size=0.2, holdout=0.2, seed=0)
    scaler = Standardizer().fit(train.X)
    config = {**HYPERPARAMETERS, **DIGITS_FAST, **params}
    seed_everything(3)
    model = build_mlp(64, 10, config["n_layers"], config["units"])
    history = fit(
        model,
        Split(scaler.transform(train.X), train.y),
        Split(scaler.transform(val.X), val.y),
        task="classification",
        epochs=2,
        batch_size=config["batch_size"],
        lr=config["lr"],
        seed=3,
        device="cpu",
    )
    assert result == history[-1]


def test_pickle_drops_the_data_and_keeps_behaviour(tmp_path, digits_objective, make_reporter):
    params = {"epochs": 2}
    before = digits_objective(make_trial(tmp_path, make_reporter(), params))
    payload = pickle.dumps(digits_objective)
    assert len(payload) < 2_000  # the loaded digits (~460 kB) stay behind
    clone = pickle.loads(payload)
    assert clone(make_trial(tmp_path, make_reporter(), params)) == before


def test_regression_objective_returns_regression_metrics(tmp_path, make_reporter):
    objective = NetworkObjective({"source": "diabetes"}, fixed={"epochs": 2}, device="cpu")
    result = objective(make_trial(tmp_path, make_reporter()))
    assert {"val_loss", "val_mse", "val_mae", "val_r2"} <= set(result)


def test_csv_source_resolves_against_base_dir(tmp_path, make_reporter):
    rng = np.random.default_rng(0)
    rows = ["a,b,label"] + [
        f"{x:.3f},{-x:.3f},{'big' if x > 0 else 'small'}" for x in rng.normal(size=60)
    ]
    (tmp_path / "pts.csv").write_text("\n".join(rows))
    data = {"source": "pts.csv", "target": "label", "base_dir": str(tmp_path), "holdout": 0.25}
    objective = NetworkObjective(data, fixed={"epochs": 20, "lr": 1e-2}, device="cpu")
    assert objective(make_trial(tmp_path, make_reporter()))["val_accuracy"] >= 0.9


@pytest.mark.parametrize(
    "source, expected",
    [
        ("iris", ["train_loss", "val_loss", "val_accuracy"]),
        ("diabetes", ["train_loss", "val_loss", "val_mse", "val_mae", "val_r2"]),
    ],
)
def test_metric_names_are_what_a_trial_returns(tmp_path, make_reporter, source, expected):
    objective = NetworkObjective({"source": source}, fixed={"epochs": 1}, device="cpu")
    assert objective.metric_names() == expected
    assert list(objective(make_trial(tmp_path, make_reporter()))) == expected


def test_metric_names_load_the_data_so_a_missing_file_fails_early(tmp_path):
    objective = NetworkObjective({"source": "missing.csv", "base_dir": tmp_path})
    with pytest.raises(SpecError, match="neither a builtin data set nor an existing file"):
        objective.metric_names()


def test_check_names_catches_typos_before_training():
    objective = NetworkObjective({"source": "no-such-file.csv"})
    objective.check_names(["lr", "units", "dropout"])  # no data is loaded to check names
    with pytest.raises(
        SpecError,
        match="unknown hyperparameter for model 'mlp'; did you mean "
        "'units'\\?.*known: lr, n_layers",
    ) as e:
        objective.check_names(["lr", "unit"])
    assert e.value.field == "space.unit"


def test_unknown_model_is_rejected():
    with pytest.raises(SpecError, match="unknown model 'cnn'; known: mlp") as e:
        NetworkObjective({"source": "digits"}, model="cnn").check_names(["lr"])
    assert e.value.field == "model"


def test_unknown_fixed_name_fails_the_trial(tmp_path, make_reporter):
    objective = NetworkObjective({"source": "iris"}, fixed={"epoch": 3})
    with pytest.raises(SpecError, match="did you mean 'epochs'") as e:
        objective(make_trial(tmp_path, make_reporter()))
    assert e.value.field == "fixed.epoch"


def test_final_fit_saves_a_model_that_load_model_restores(tmp_path, digits_objective):
    out = tmp_path / "best"
    result = digits_objective.final_fit({"n_layers": 1}, seed=0, out_dir=out, epochs=3)
    assert set(result["artifacts"]) == {"model.pt", "model.json", "preprocessing.json"}
    assert all((out / name).is_file() for name in result["artifacts"])
    assert result["test_metrics"]["test_accuracy"] >= 0.9
    assert set(result["test_metrics"]) == {"test_loss", "test_accuracy"}

    meta = json.loads((out / "model.json").read_text())
    assert meta["model"] == "mlp" and meta["task"] == "classification"
    assert (meta["n_inputs"], meta["n_outputs"]) == (64, 10)
    assert meta["classes"] == list(range(10))
    assert meta["config"] == {**HYPERPARAMETERS, **DIGITS_FAST, "n_layers": 1, "epochs": 3}

    model, scaler, loaded_meta = load_model(out)
    assert loaded_meta == meta and not model.training
    _, _, test = split_dataset(load_dataset("digits"), test_size=0.2, holdout=0.2, seed=0)
    rescored = evaluate(
        model, Split(scaler.transform(test.X), test.y), "classification", prefix="test"
    )
    assert rescored == result["test_metrics"]


def test_final_fit_standardises_with_train_and_validation_only(tmp_path, digits_objective):
    digits_objective.final_fit({}, seed=0, out_dir=tmp_path, epochs=1)
    train, val, test = split_dataset(load_dataset("digits"), test_size=0.2, holdout=0.2, seed=0)
    mean = json.loads((tmp_path / "preprocessing.json").read_text())["mean"]
    np.testing.assert_allclose(mean, np.concatenate([train.X, val.X]).mean(axis=0), atol=1e-5)
    assert not np.allclose(mean, train.X.mean(axis=0), atol=1e-3)
    everything = np.concatenate([train.X, val.X, test.X]).mean(axis=0)
    assert not np.allclose(mean, everything, atol=1e-3)
