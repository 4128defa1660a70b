"""What a network is scored by, per task.

Every metric is reported as ``val_<name>`` during the search and ``test_<name>`` after the final
fit; any of them can be the study's metric, in either direction.

The metrics follow scikit-learn's definitions (the tests hold them to scikit-learn's functions),
computed here from one confusion matrix or one error vector: scikit-learn's functions check
their input at every call, which costs as much as an epoch of a small network, paid every epoch
of every trial.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np
import torch

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
    classes = logits.shape[1]
    y = np.asarray(y, dtype=np.int64)
    predicted = logits.argmax(dim=1).numpy()
    matrix = np.bincount(y * classes + predicted, minlength=classes * classes)
    matrix = matrix.reshape(classes, classes)  # rows: true class, columns: predicted
    hits, support, guessed = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    present = support > 0  # balanced accuracy: the recall of each class that occurs
    f1_denominator = 2 * hits + (guessed - hits) + (support - hits)
    f1 = np.divide(2 * hits, f1_denominator, out=np.zeros(classes), where=f1_denominator > 0)
    probabilities = torch.softmax(logits.double(), dim=1).numpy()
    eps = np.finfo(probabilities.dtype).eps
    true_class = np.clip(probabilities[np.arange(len(y)), y], eps, 1 - eps)
    return {
        "accuracy": float(hits.sum() / len(y)),
        "balanced_accuracy": float(np.mean(hits[present] / support[present])),
        "f1_macro": float(f1.mean()),
        "log_loss": float(-np.log(true_class).mean()),
    }


def regression_metrics(predicted: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """MSE, MAE and R² of ``predicted`` against ``y``, both in the target's own units (NaN
    everywhere when a prediction is not finite)."""
    if not np.isfinite(predicted).all():
        return dict.fromkeys(METRICS["regression"][1:], math.nan)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    error = y - np.asarray(predicted).reshape(-1)
    spread = np.square(y - y.mean()).sum()
    squares = np.square(error).sum()
    if spread > 0:
        r2 = 1 - squares / spread
    else:  # a constant target: scikit-learn's convention (1 when perfect, else 0)
        r2 = 1.0 if squares == 0 else 0.0
    return {"mse": float(squares / len(error)), "mae": float(np.abs(error).mean()), "r2": float(r2)}


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
