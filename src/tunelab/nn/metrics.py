"""What a network is scored by, per task, computed with scikit-learn's metric functions.

Every metric is reported as ``val_<name>`` during the search and ``test_<name>`` after the final
fit; any of them can be the study's metric, in either direction.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np
import torch
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)

from tunelab.errors import SpecError

__all__ = ["METRICS", "classification_metrics", "metric_mode", "regression_metrics"]

#: The metrics of each task, each reported as ``{prefix}_{name}``. ``loss`` is the training loss
#: (the one :func:`~tunelab.nn.fit` minimises, label smoothing and target scaling included), so
#: training and validation losses compare; the others use the target's own units.
METRICS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "classification": ("loss", "accuracy", "balanced_accuracy", "f1_macro", "log_loss"),
        "regression": ("loss", "mse", "mae", "r2"),
    }
)

# Better is smaller for these; larger for every other metric (accuracy, f1_macro, r2, ...).
_SMALLER_IS_BETTER = ("loss", "log_loss", "mse", "mae")


def classification_metrics(logits: torch.Tensor, y: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro F1 and log loss of ``logits`` (n, classes) against ``y``.

    NaN everywhere when the logits are not finite (a diverged network), so the caller can tell.
    """
    if not torch.isfinite(logits).all():
        return dict.fromkeys(METRICS["classification"][1:], math.nan)
    predicted = logits.argmax(dim=1).numpy()
    probabilities = torch.softmax(logits.double(), dim=1).numpy()
    labels = np.arange(logits.shape[1])
    with warnings.catch_warnings():  # a class absent from a small split is not worth a warning
        warnings.simplefilter("ignore", UserWarning)
        balanced = balanced_accuracy_score(y, predicted)
    return {
        "accuracy": float(accuracy_score(y, predicted)),
        "balanced_accuracy": float(balanced),
        "f1_macro": float(f1_score(y, predicted, average="macro", labels=labels, zero_division=0)),
        "log_loss": float(log_loss(y, probabilities, labels=labels)),
    }


def regression_metrics(predicted: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """MSE, MAE and R² of ``predicted`` against ``y``, both in the target's own units (NaN
    everywhere when a prediction is not finite)."""
    if not np.isfinite(predicted).all():
        return dict.fromkeys(METRICS["regression"][1:], math.nan)
    return {
        "mse": float(mean_squared_error(y, predicted)),
        "mae": float(mean_absolute_error(y, predicted)),
        "r2": float(r2_score(y, predicted)),
    }


def metric_mode(name: str) -> str:
    """``"min"`` for losses and errors, ``"max"`` for scores, from a metric's name.

    Example:
        >>> metric_mode("val_loss"), metric_mode("val_f1_macro"), metric_mode("train_loss")
        ('min', 'max', 'min')

    Raises:
        SpecError: on ``monitor`` for a name that is not ``train_loss`` or ``<prefix>_<metric>``.
    """
    base = name.split("_", 1)[1] if "_" in name else name
    known = {metric for metrics in METRICS.values() for metric in metrics}
    if base not in known:
        raise SpecError(
            "monitor",
            f"cannot tell whether {name!r} should go up or down; monitor one of train_loss, "
            f"val_<metric> with <metric> in {', '.join(sorted(known))}, or give mode='min'/'max'",
        )
    return "min" if base in _SMALLER_IS_BETTER else "max"
