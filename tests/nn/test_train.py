from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import mean_absolute_error, r2_score

from tunelab.errors import SpecError, TrialDiverged
from tunelab.nn.data import Split, Standardizer, load_dataset, split_dataset
from tunelab.nn.models import build_mlp
from tunelab.nn.train import (
    evaluate,
    fit,
    make_optimizer,
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


@pytest.mark.parametrize(
    "name, kind",
    [
        ("sgd", torch.optim.SGD),
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
        ("rmsprop", torch.optim.RMSprop),
    ],
)
def test_make_optimizer_by_name(name, kind):
    parameters = build_mlp(2, 1).parameters()
    opt = make_optimizer(name, parameters, lr=0.1, momentum=0.9, weight_decay=0.01)
    assert type(opt) is kind
    group = opt.param_groups[0]
    assert group["lr"] == 0.1 and group["weight_decay"] == 0.01
    if name in ("sgd", "rmsprop"):
        assert group["momentum"] == 0.9


def test_unknown_optimizer_lists_the_known_ones():
    with pytest.raises(SpecError, match="unknown optimizer 'adagrad'; known: sgd, adam") as e:
        make_optimizer("adagrad", build_mlp(2, 1).parameters(), lr=0.1)
    assert e.value.field == "space.optimizer"


# --- evaluate ---------------------------------------------------------------------------------


def test_evaluate_classification_matches_direct_computation(iris_splits):
    _, val, _ = iris_splits
    model = iris_model()
    model.train()
    metrics = evaluate(model, val, "classification", "cpu", prefix="holdout")
    assert set(metrics) == {"holdout_loss", "holdout_accuracy"}
    with torch.no_grad():
        logits = model(torch.from_numpy(val.X))
    targets = torch.from_numpy(val.y)
    assert metrics["holdout_loss"] == pytest.approx(F.cross_entropy(logits, targets).item())
    expected = (logits.argmax(1) == targets).float().mean().item()
    assert metrics["holdout_accuracy"] == pytest.approx(expected)
    assert model.training  # evaluation leaves the mode as it found it


def test_evaluate_regression_reports_mse_mae_r2():
    X = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    y = (X @ np.array([1.0, -2.0, 0.5])).astype(np.float32)
    model = build_mlp(3, 1, n_layers=0)
    metrics = evaluate(model, Split(X, y), "regression", "cpu")
    values = predict(model, X).reshape(-1)
    assert set(metrics) == {"val_loss", "val_mse", "val_mae", "val_r2"}
    assert metrics["val_mse"] == pytest.approx(np.mean((values - y) ** 2), rel=1e-5)
    assert metrics["val_loss"] == metrics["val_mse"]
    assert metrics["val_mae"] == pytest.approx(mean_absolute_error(y, values))
    assert metrics["val_r2"] == pytest.approx(r2_score(y, values))


# --- fit --------------------------------------------------------------------------------------


def test_fit_learns_and_logs_every_epoch(iris_splits):
    train, val, _ = iris_splits
    history = fit(iris_model(), train, val, **{**FAST, "epochs": 10})
    assert len(history) == 10
    assert set(history[0]) == {"train_loss", "val_loss", "val_accuracy"}
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_accuracy"] >= 0.85


def test_fit_without_validation_logs_only_the_training_loss(iris_splits):
    train, _, _ = iris_splits
    history = fit(iris_model(), train, None, **FAST)
    assert [set(logs) for logs in history] == [{"train_loss"}] * 4


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


def test_regression_fit_reduces_the_loss():
    train, val, _ = split_dataset(load_dataset("diabetes"), 0.2, 0.2, seed=0)
    scaler = Standardizer().fit(train.X)
    train, val = (Split(scaler.transform(s.X), s.y) for s in (train, val))
    seed_everything(0)
    history = fit(
        build_mlp(10, 1, units=32),
        train,
        val,
        task="regression",
        epochs=5,
        batch_size=32,
        lr=3e-2,
        device="cpu",
    )
    assert set(history[-1]) == {"train_loss", "val_loss", "val_mse", "val_mae", "val_r2"}
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 2


def test_divergence_raises_at_once(iris_splits):
    train, val, _ = iris_splits
    seen = []
    with pytest.raises(TrialDiverged, match=r"diverged: training loss became (nan|inf) at epoch 1"):
        fit(
            iris_model(),
            train,
            val,
            **{**FAST, "lr": 1e6, "optimizer": "sgd"},
            on_epoch_end=lambda epoch, logs: seen.append(epoch),
        )
    assert seen == []


def test_on_epoch_end_sees_each_epoch_and_can_stop(iris_splits):
    train, val, _ = iris_splits
    seen = []

    def stop_after_two(epoch, logs):
        seen.append((epoch, sorted(logs)))
        return epoch == 2

    history = fit(iris_model(), train, val, **{**FAST, "epochs": 10}, on_epoch_end=stop_after_two)
    assert len(history) == 2
    keys = ["train_loss", "val_accuracy", "val_loss"]
    assert seen == [(1, keys), (2, keys)]


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
