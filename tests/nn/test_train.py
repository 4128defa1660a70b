from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import (
    balanced_accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)

from tunelab.errors import SpecError, TrialDiverged
from tunelab.nn.callbacks import Callback
from tunelab.nn.data import Scaler, Split, load_dataset, split_dataset
from tunelab.nn.models import build_cnn, build_mlp
from tunelab.nn.train import (
    TRAINING_DEFAULTS,
    evaluate,
    fit,
    predict,
    resolve_device,
    seed_everything,
)

FAST = {"task": "classification", "epochs": 4, "batch_size": 16, "lr": 1e-2, "device": "cpu"}


def iris_model(seed=0, dropout=0.0):
    seed_everything(seed)
    return build_mlp(4, 3, n_layers=2, units=16, dropout=dropout)


# --- devices, seeds, optimizers ---------------------------------------------------------------


def test_auto_device_follows_cuda_availability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device() == torch.device("cuda")


@pytest.mark.parametrize("name", ["cpu", "cuda", "cuda:1"])
def test_explicit_devices_pass_through(name):
    assert resolve_device(name) == torch.device(name)


def test_unknown_device_is_a_spec_error():
    with pytest.raises(SpecError, match="expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu0'"):
        resolve_device("gpu0")


def test_seed_everything_seeds_python_numpy_and_torch():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    seed_everything(3)
    first = draw()
    seed_everything(3)
    assert draw() == first


def test_training_defaults_cover_every_knob_fit_takes():
    assert TRAINING_DEFAULTS["lr"] == 1e-3 and TRAINING_DEFAULTS["optimizer"] == "adam"
    assert TRAINING_DEFAULTS["schedule"] == "constant" and TRAINING_DEFAULTS["beta1"] is None
    expected = {"epochs", "batch_size", "momentum", "nesterov", "warmup_epochs", "T_0", "loss"}
    assert expected <= set(TRAINING_DEFAULTS)
    assert {"label_smoothing", "huber_delta", "reference_batch", "pct_start"} <= set(
        TRAINING_DEFAULTS
    )


# --- evaluate ---------------------------------------------------------------------------------


def test_evaluate_classification_matches_direct_computation(iris_splits):
    _, val, _ = iris_splits
    model = iris_model()
    model.train()
    metrics = evaluate(model, val, "classification", "cpu", prefix="holdout")
    assert list(metrics) == [
        "holdout_loss",
        "holdout_accuracy",
        "holdout_balanced_accuracy",
        "holdout_f1_macro",
        "holdout_log_loss",
    ]
    with torch.no_grad():
        logits = model(torch.from_numpy(val.X))
    targets = torch.from_numpy(val.y)
    predicted = logits.argmax(1).numpy()
    probabilities = torch.softmax(logits.double(), 1).numpy()
    assert metrics["holdout_loss"] == pytest.approx(F.cross_entropy(logits, targets).item())
    expected = (logits.argmax(1) == targets).float().mean().item()
    assert metrics["holdout_accuracy"] == pytest.approx(expected)
    assert metrics["holdout_balanced_accuracy"] == balanced_accuracy_score(val.y, predicted)
    assert metrics["holdout_f1_macro"] == f1_score(val.y, predicted, average="macro")
    assert metrics["holdout_log_loss"] == pytest.approx(log_loss(val.y, probabilities), rel=1e-6)
    assert model.training  # evaluation leaves the mode as it found it


def test_evaluate_loss_is_the_training_loss(iris_splits):
    _, val, _ = iris_splits
    model = iris_model()
    smoothed = torch.nn.CrossEntropyLoss(label_smoothing=0.2)
    metrics = evaluate(model, val, "classification", "cpu", loss_fn=smoothed)
    with torch.no_grad():
        logits = model(torch.from_numpy(val.X))
    assert metrics["val_loss"] == pytest.approx(smoothed(logits, torch.from_numpy(val.y)).item())
    assert metrics["val_loss"] != pytest.approx(metrics["val_log_loss"])


def test_evaluate_regression_reports_mse_mae_r2():
    X = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    y = (X @ np.array([1.0, -2.0, 0.5])).astype(np.float32)
    model = build_mlp(3, 1, n_layers=0)
    metrics = evaluate(model, Split(X, y), "regression", "cpu")
    values = predict(model, X).reshape(-1)
    assert set(metrics) == {"val_loss", "val_mse", "val_mae", "val_r2"}
    assert metrics["val_mse"] == pytest.approx(np.mean((values - y) ** 2), rel=1e-5)
    assert metrics["val_loss"] == pytest.approx(metrics["val_mse"], rel=1e-6)
    assert metrics["val_mae"] == pytest.approx(mean_absolute_error(y, values))
    assert metrics["val_r2"] == pytest.approx(r2_score(y, values))


def test_evaluate_with_a_target_scaler_reports_metrics_in_the_targets_units():
    X = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    y = (100 + 50 * X[:, 0]).astype(np.float32)
    scaler = Scaler("standard").fit(y.reshape(-1, 1))
    model = build_mlp(3, 1, n_layers=0)
    metrics = evaluate(model, Split(X, y), "regression", "cpu", target_scaler=scaler)
    outputs = predict(model, X).reshape(-1)
    in_units = predict(model, X, target_scaler=scaler).reshape(-1)
    np.testing.assert_allclose(in_units, outputs * y.std() + y.mean(), rtol=1e-5)
    assert metrics["val_mse"] == pytest.approx(mean_squared_error(y, in_units), rel=1e-5)
    scaled_y = (y - y.mean()) / y.std()
    assert metrics["val_loss"] == pytest.approx(np.mean((outputs - scaled_y) ** 2), rel=1e-4)


# --- fit --------------------------------------------------------------------------------------


def test_fit_learns_and_logs_every_epoch(iris_splits):
    train, val, _ = iris_splits
    history = fit(iris_model(), train, val, **{**FAST, "epochs": 10})
    assert len(history) == 10
    assert list(history[0])[:5] == [
        "train_loss",
        "train_accuracy",
        "lr",
        "val_loss",
        "val_accuracy",
    ]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["train_accuracy"] > history[0]["train_accuracy"]
    assert history[-1]["val_accuracy"] >= 0.85


def test_fit_without_validation_logs_only_the_training_loss_and_accuracy(iris_splits):
    train, _, _ = iris_splits
    history = fit(iris_model(), train, None, **FAST)
    assert [set(logs) for logs in history] == [{"train_loss", "train_accuracy", "lr"}] * 4


def test_same_seed_gives_identical_logs_and_weights(iris_splits):
    train, val, _ = iris_splits
    model = iris_model(dropout=0.2)
    twin = copy.deepcopy(model)
    first = fit(model, train, val, seed=5, **FAST)
    again = fit(twin, train, val, seed=5, **FAST)
    assert first == again
    for a, b in zip(model.state_dict().values(), twin.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_another_seed_gives_other_logs(iris_splits):
    train, val, _ = iris_splits
    model = iris_model()
    first = fit(copy.deepcopy(model), train, val, seed=5, **FAST)
    other = fit(copy.deepcopy(model), train, val, seed=6, **FAST)
    assert first != other


def test_regression_fit_learns_scaled_targets_and_reports_in_their_units():
    train, val, _ = split_dataset(load_dataset("diabetes"), 0.2, 0.2, seed=0)
    scaler = Scaler().fit(train.X)
    train, val = (Split(scaler.transform(s.X), s.y) for s in (train, val))
    target = Scaler("standard").fit(train.y.reshape(-1, 1))
    seed_everything(0)
    model = build_mlp(10, 1, units=32)
    history = fit(
        model,
        train,
        val,
        task="regression",
        epochs=5,
        batch_size=32,
        lr=3e-2,
        device="cpu",
        target_scaler=target,
    )
    assert list(history[-1]) == ["train_loss", "lr", "val_loss", "val_mse", "val_mae", "val_r2"]
    assert history[-1]["train_loss"] < history[0]["train_loss"] < 1.0  # standardised targets
    assert history[-1]["val_mse"] > 1000  # the metrics are in the target's own units
    assert history[-1]["val_r2"] > 0.2


@pytest.mark.parametrize(
    "loss, error",
    [
        ("mse", lambda e: e**2),
        ("mae", np.abs),
        ("huber", lambda e: np.where(np.abs(e) < 1, 0.5 * e**2, np.abs(e) - 0.5)),
    ],
)
def test_regression_loss_by_name_is_the_one_trained_on(loss, error):
    X = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
    split = Split(X, 3 * X.sum(axis=1))
    torch.manual_seed(0)
    model = build_mlp(2, 1, n_layers=0)
    errors = predict(model, X).reshape(-1) - split.y
    # lr=0 keeps the weights: the epoch's loss is the chosen loss of the untrained model
    history = fit(model, split, split, task="regression", loss=loss, lr=0.0, epochs=1, device="cpu")
    assert history[0]["train_loss"] == pytest.approx(error(errors).mean(), rel=1e-5)
    assert history[0]["val_loss"] == pytest.approx(error(errors).mean(), rel=1e-5)


def test_label_smoothing_reaches_the_training_loss(iris_splits):
    train, _, _ = iris_splits
    plain = fit(iris_model(), train, None, **{**FAST, "epochs": 1, "lr": 0.0})
    smoothed = fit(
        iris_model(), train, None, **{**FAST, "epochs": 1, "lr": 0.0}, label_smoothing=0.5
    )
    assert smoothed[0]["train_loss"] != pytest.approx(plain[0]["train_loss"])


def test_divergence_raises_at_once(iris_splits):
    train, val, _ = iris_splits
    with pytest.raises(TrialDiverged, match=r"diverged: training loss became (nan|inf) at epoch 1"):
        fit(iris_model(), train, val, **{**FAST, "lr": 1e6, "optimizer": "sgd"})


@pytest.mark.parametrize(
    "field, override",
    [
        ("space.epochs", {"epochs": 0}),
        ("space.batch_size", {"batch_size": 0}),
    ],
)
def test_non_positive_epochs_or_batch_size_are_rejected(iris_splits, field, override):
    train, val, _ = iris_splits
    with pytest.raises(SpecError, match="must be >= 1") as e:
        fit(iris_model(), train, val, **{**FAST, **override})
    assert e.value.field == field


def test_an_unknown_option_is_a_type_error_listing_the_known_ones(iris_splits):
    train, _, _ = iris_splits
    with pytest.raises(TypeError, match="unexpected keyword argument 'momentun'.*momentum"):
        fit(iris_model(), train, None, **FAST, momentun=0.9)


def test_a_lone_last_sample_joins_the_batch_before_it(iris_splits):
    train, _, _ = iris_splits  # 96 rows: batches of 19 leave one over
    seen = []

    class Sizes(Callback):
        def on_train_begin(self, trainer):
            self.steps = trainer.steps_per_epoch

        def on_batch_end(self, trainer, batch, loss):
            seen.append(batch)

    sizes = Sizes()
    seed_everything(0)
    model = build_mlp(4, 3, units=8, batch_norm=True)  # batch norm fails on a single sample
    fit(model, train, None, **{**FAST, "epochs": 1, "batch_size": 19}, callbacks=[sizes])
    assert sizes.steps == 5 and seen == [0, 1, 2, 3, 4]


# --- reproducibility ------------------------------------------------------------------------------


def test_deterministic_algorithms_are_on_during_fit_and_restored_after(iris_splits):
    train, _, _ = iris_splits
    states = []

    class Probe(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            states.append(torch.are_deterministic_algorithms_enabled())

    assert not torch.are_deterministic_algorithms_enabled()
    fit(iris_model(), train, None, **{**FAST, "epochs": 1}, callbacks=[Probe()])
    assert states == [True] and not torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        fit(iris_model(), train, None, **{**FAST, "epochs": 1})
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_two_runs_give_the_same_metrics_to_the_last_digit(kind):
    ds = load_dataset("digits", shape=[1, 8, 8])
    train, val, _ = split_dataset(ds, 0.2, 0.2, seed=0)
    scaler = Scaler().fit(train.X)
    train, val = (Split(scaler.transform(s.X).reshape(-1, 1, 8, 8), s.y) for s in (train, val))

    def run():
        seed_everything(11)
        if kind == "mlp":
            model = build_mlp((1, 8, 8), 10, units=32, dropout=0.3, batch_norm=True)
        else:
            model = build_cnn((1, 8, 8), 10, channels=8, dropout=0.3, batch_norm=True)
        history = fit(model, train, val, **{**FAST, "epochs": 2, "batch_size": 64}, seed=11)
        return history, model.state_dict()

    (first, weights), (again, twin) = run(), run()
    assert first == again  # every metric of every epoch, bit for bit
    assert all(torch.equal(weights[k], twin[k]) for k in weights)
