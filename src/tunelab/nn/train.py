"""A plain, fast training loop for in-memory data, and the pieces it is made of.

The data of a tuning run fits in memory, so the loop keeps the tensors on the device and draws
shuffled mini-batches by indexing: no DataLoader, no worker processes, no copies per epoch.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from types import MappingProxyType

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, mean_absolute_error, mean_squared_error, r2_score
from torch import nn

from tunelab.errors import SpecError, TrialDiverged
from tunelab.nn.data import CLASSIFICATION, REGRESSION, Split, check_task

__all__ = [
    "METRICS",
    "OPTIMIZERS",
    "evaluate",
    "fit",
    "make_optimizer",
    "predict",
    "resolve_device",
    "seed_everything",
]

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")

#: What :func:`evaluate` reports per task, each under ``{prefix}_{name}``.
METRICS = MappingProxyType(
    {CLASSIFICATION: ("loss", "accuracy"), REGRESSION: ("loss", "mse", "mae", "r2")}
)

EpochCallback = Callable[[int, dict[str, float]], bool | None]

_EVAL_BATCH_SIZE = 8192  # bounds memory when predicting; large enough to be one pass on small data


def resolve_device(name: str = "auto") -> torch.device:
    """The device to train on: ``"auto"`` picks CUDA when present, anything else passes through.

    Raises:
        SpecError: on ``device`` when torch does not know the name.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise SpecError(
            "device", f"expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}"
        ) from exc


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (CUDA too), for repeatable trials."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(
    name: str,
    parameters: Iterable[nn.Parameter],
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """Build a torch optimizer by name. ``momentum`` applies to SGD and RMSprop only.

    Raises:
        SpecError: on ``space.optimizer`` for a name not in :data:`OPTIMIZERS`.
    """
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    known = ", ".join(OPTIMIZERS)
    raise SpecError("space.optimizer", f"unknown optimizer {name!r}; known: {known}")


def predict(model: nn.Module, X: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
    """Raw network outputs (logits, or values for regression) for ``X``, in eval mode.

    The model's train/eval mode is restored afterwards.
    """
    device = _as_device(device)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        inputs = torch.as_tensor(X, dtype=torch.float32, device=device)
        outputs = [model(chunk).cpu() for chunk in inputs.split(_EVAL_BATCH_SIZE)]
    model.train(was_training)
    return torch.cat(outputs).numpy()


def evaluate(
    model: nn.Module,
    split: Split,
    task: str,
    device: str | torch.device = "cpu",
    prefix: str = "val",
) -> dict[str, float]:
    """Score ``model`` on ``split``; the keys are ``{prefix}_loss`` and the task's metrics.

    Classification gives cross-entropy loss and accuracy; regression gives MSE loss, MSE, MAE
    and R². The loss is the one :func:`fit` minimises, so train and validation losses compare.
    """
    outputs = torch.from_numpy(predict(model, split.X, device))
    if check_task(task) == CLASSIFICATION:
        targets = torch.as_tensor(split.y, dtype=torch.long)
        return {
            f"{prefix}_loss": F.cross_entropy(outputs, targets).item(),
            f"{prefix}_accuracy": float(accuracy_score(split.y, outputs.argmax(dim=1).numpy())),
        }
    values = outputs.reshape(-1).numpy()
    mse = float(mean_squared_error(split.y, values))
    return {
        f"{prefix}_loss": mse,
        f"{prefix}_mse": mse,
        f"{prefix}_mae": float(mean_absolute_error(split.y, values)),
        f"{prefix}_r2": float(r2_score(split.y, values)),
    }


def fit(
    model: nn.Module,
    train: Split,
    val: Split | None,
    *,
    task: str,
    epochs: int,
    batch_size: int,
    lr: float,
    optimizer: str = "adam",
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: str | torch.device = "auto",
    on_epoch_end: EpochCallback | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place with mini-batch gradient descent.

    After each epoch the logs hold ``train_loss`` (the mean over the epoch's batches) and, when
    ``val`` is given, :func:`evaluate`'s validation metrics. ``on_epoch_end(epoch, logs)`` sees
    them (epochs count from 1) and stops training by returning True: that is how a scheduler's
    decision reaches the loop.

    ``seed`` fixes the batch order (its own generator, so the order does not depend on how many
    random numbers dropout drew) and reseeds torch's global generator, which dropout uses. Two
    calls with the same model weights and seed give identical logs on CPU.

    Returns:
        One logs dict per epoch that ran.

    Raises:
        TrialDiverged: as soon as an epoch's training loss is NaN or infinite.
        SpecError: on ``space.epochs`` / ``space.batch_size`` when they are not positive.
    """
    if epochs < 1:
        raise SpecError("space.epochs", f"must be >= 1, got {epochs}")
    if batch_size < 1:
        raise SpecError("space.batch_size", f"must be >= 1, got {batch_size}")
    device = _as_device(device)
    model.to(device)
    inputs, targets = _tensors(train, task, device)
    loss_fn = nn.CrossEntropyLoss() if task == CLASSIFICATION else nn.MSELoss()
    opt = make_optimizer(optimizer, model.parameters(), lr, momentum, weight_decay)
    batch_order = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    history: list[dict[str, float]] = []
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(inputs), generator=batch_order).to(device)
        train_loss = _train_epoch(model, inputs, targets, order.split(batch_size), loss_fn, opt)
        if not math.isfinite(train_loss):
            raise TrialDiverged(f"diverged: training loss became {train_loss} at epoch {epoch}")
        logs = {"train_loss": train_loss}
        if val is not None:
            logs.update(evaluate(model, val, task, device))
        history.append(logs)
        if on_epoch_end is not None and on_epoch_end(epoch, logs):
            break
    return history


def _train_epoch(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    batches: Iterable[torch.Tensor],
    loss_fn: nn.Module,
    opt: torch.optim.Optimizer,
) -> float:
    """One pass over the batches; returns the mean loss per sample (one device sync per epoch)."""
    model.train()
    total = torch.zeros((), device=inputs.device)
    for batch in batches:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(inputs[batch]), targets[batch])
        loss.backward()
        opt.step()
        total += loss.detach() * len(batch)
    return total.item() / len(inputs)


def _tensors(split: Split, task: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    inputs = torch.as_tensor(split.X, dtype=torch.float32, device=device)
    if check_task(task) == CLASSIFICATION:
        return inputs, torch.as_tensor(split.y, dtype=torch.long, device=device)
    return inputs, torch.as_tensor(split.y, dtype=torch.float32, device=device).reshape(-1, 1)


def _as_device(device: str | torch.device) -> torch.device:
    return device if isinstance(device, torch.device) else resolve_device(device)
