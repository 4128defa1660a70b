"""The metrics agree with scikit-learn's functions, whose definitions they follow."""

import numpy as np
import pytest
import torch
from sklearn import metrics as sk

from tunelab.nn.metrics import classification_metrics, regression_metrics


@pytest.mark.parametrize("case", ["plain", "a class never occurs", "a class never predicted"])
def test_classification_metrics_are_scikit_learns(case):
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(size=(200, 5)) * 3, dtype=torch.float32)
    y = rng.integers(0, 5, size=200)
    if case == "a class never occurs":
        y[y == 3] = 0
    if case == "a class never predicted":
        logits[:, 2] -= 100
    predicted = logits.argmax(1).numpy()
    probabilities = torch.softmax(logits.double(), 1).numpy()
    labels = np.arange(5)
    ours = classification_metrics(logits, y)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = {
            "accuracy": sk.accuracy_score(y, predicted),
            "balanced_accuracy": sk.balanced_accuracy_score(y, predicted),
            "f1_macro": sk.f1_score(y, predicted, average="macro", labels=labels, zero_division=0),
            "log_loss": sk.log_loss(y, probabilities, labels=labels),
        }
    assert ours == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("constant", [False, True])
def test_regression_metrics_are_scikit_learns(constant):
    rng = np.random.default_rng(1)
    y = np.full(50, 2.0) if constant else rng.normal(size=50)
    predicted = y + rng.normal(size=50) * 0.3
    expected = {
        "mse": sk.mean_squared_error(y, predicted),
        "mae": sk.mean_absolute_error(y, predicted),
        "r2": sk.r2_score(y, predicted),
    }
    assert regression_metrics(predicted, y) == pytest.approx(expected, rel=1e-12)
    assert regression_metrics(y.copy(), y)["r2"] == 1.0


def test_a_diverged_network_scores_nan():
    logits = torch.tensor([[float("nan"), 0.0]])
    assert all(np.isnan(v) for v in classification_metrics(logits, np.array([0])).values())
