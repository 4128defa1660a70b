"""A plain, fast training loop for in-memory data, and the pieces it is made of.

The data of a tuning run fits in memory, so the loop keeps the tensors on the device and draws
shuffled mini-batches by indexing: no DataLoader, no worker processes, no copies per epoch.
Everything around the loop (learning-rate schedules, early stopping, checkpoints, reporting to a
study, the divergence guard) is a :class:`~tunelab.nn.callbacks.Callback`.
"""

from __future__ import annotations

import contextlib
import inspect
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn

from tunelab.errors import SpecError
from tunelab.nn.callbacks import Callback, DivergenceGuard, LRSchedulerCallback
from tunelab.nn.data import CLASSIFICATION, Scaler, Split, check_task
from tunelab.nn.metrics import classification_metrics, regression_metrics
from tunelab.nn.optimizers import make_loss, make_optimizer
from tunelab.nn.schedules import make_schedule

__all__ = [
    "TRAINING_DEFAULTS",
    "Trainer",
    "evaluate",
    "fit",
    "predict",
    "resolve_device",
    "scaled_lr",
    "seed_everything",
]

_EVAL_BATCH_SIZE = 8192  # bounds memory when predicting; large enough to be one pass on small data


def _keyword_defaults(function: Any, skip: Sequence[str] = ()) -> dict[str, Any]:
    parameters = inspect.signature(function).parameters.values()
    return {
        p.name: p.default
        for p in parameters
        if p.kind is p.KEYWORD_ONLY and p.name not in skip and p.default is not p.empty
    }


_OPTIMIZER_OPTIONS = _keyword_defaults(make_optimizer)
_SCHEDULE_OPTIONS = _keyword_defaults(make_schedule, skip=("epochs", "steps_per_epoch"))
_LOSS_OPTIONS = _keyword_defaults(make_loss)


@dataclass
class Trainer:
    """The state of a running :func:`fit`, handed to every callback hook.

    Attributes:
        model: the network being trained (on ``device``).
        optimizer: the torch optimizer; ``optimizer.param_groups[0]["lr"]`` is the current rate.
        loss_fn: the training loss.
        task: ``"classification"`` or ``"regression"``.
        epochs: the most epochs this fit runs.
        steps_per_epoch: optimizer steps (batches) per epoch.
        device: where the model and data live.
        history: the logs of the epochs finished so far.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: nn.Module
    task: str
    epochs: int
    steps_per_epoch: int
    device: torch.device
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def lr(self) -> float:
        """The learning rate the next optimizer step uses."""
        return float(self.optimizer.param_groups[0]["lr"])


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


def scaled_lr(lr: float, batch_size: int, reference_batch: int | None) -> float:
    """The linear scaling rule: ``lr * batch_size / reference_batch`` (``lr`` when None).

    With plain SGD, a batch k times larger averages away k times more gradient noise, so it can
    take a k times larger step for the same progress per sample (Goyal et al. 2017, "Accurate,
    large minibatch SGD"). Tuning ``lr`` as the rate at a fixed ``reference_batch`` keeps good
    learning rates in one place while ``batch_size`` varies. It holds for SGD up to a few thousand
    samples per batch, with a warm-up for the largest; adaptive optimizers (Adam) scale closer to
    the square root, so leave it off there.

    Example:
        >>> scaled_lr(0.1, batch_size=512, reference_batch=256)
        0.2

    Raises:
        SpecError: on ``space.reference_batch`` when it is not positive.
    """
    if reference_batch is None:
        return lr
    if reference_batch < 1:
        raise SpecError("space.reference_batch", f"must be >= 1, got {reference_batch}")
    return lr * batch_size / reference_batch


def predict(
    model: nn.Module,
    X: np.ndarray,
    device: str | torch.device = "cpu",
    target_scaler: Scaler | None = None,
) -> np.ndarray:
    """Network outputs for ``X`` (logits, or values for a regression), in eval mode.

    With ``target_scaler`` (the one a regression was trained with) the values come back in the
    target's own units. The model's train/eval mode is restored afterwards.
    """
    device = _as_device(device)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        inputs = torch.as_tensor(X, dtype=torch.float32, device=device)
        outputs = [model(chunk).cpu() for chunk in inputs.split(_EVAL_BATCH_SIZE)]
    model.train(was_training)
    values = torch.cat(outputs).numpy()
    return values if target_scaler is None else target_scaler.inverse_transform(values)


def evaluate(
    model: nn.Module,
    split: Split,
    task: str,
    device: str | torch.device = "cpu",
    prefix: str = "val",
    loss_fn: nn.Module | None = None,
    target_scaler: Scaler | None = None,
) -> dict[str, float]:
    """Score ``model`` on ``split``: ``{prefix}_loss`` and the task's :data:`~tunelab.nn.METRICS`.

    Args:
        model: the network.
        split: inputs shaped for the network, and the targets in their own units.
        task: ``"classification"`` or ``"regression"``.
        device: where to run the model.
        prefix: ``val`` or ``test``.
        loss_fn: the training loss (default: the task's default loss), so that training and
            validation losses compare.
        target_scaler: the scaler a regression's targets were trained with; the loss is computed
            on scaled targets like in training, the other metrics in the target's own units.
    """
    outputs = torch.from_numpy(predict(model, split.X, device))
    loss_fn = make_loss(check_task(task)) if loss_fn is None else loss_fn.cpu()
    if task == CLASSIFICATION:
        targets = torch.as_tensor(split.y, dtype=torch.long)
        metrics = {
            "loss": loss_fn(outputs, targets).item(),
            **classification_metrics(outputs, split.y),
        }
    else:
        scaled = _scaled_targets(split.y, target_scaler)
        values = outputs.numpy()
        if target_scaler is not None:
            values = target_scaler.inverse_transform(values)
        metrics = {
            "loss": loss_fn(outputs, torch.from_numpy(scaled)).item(),
            **regression_metrics(values.reshape(-1), split.y),
        }
    return {f"{prefix}_{name}": value for name, value in metrics.items()}


def fit(
    model: nn.Module,
    train: Split,
    val: Split | None = None,
    *,
    task: str,
    epochs: int = 20,
    batch_size: int = 32,
    lr: float = 1e-3,
    optimizer: str = "adam",
    schedule: str = "constant",
    loss: str | None = None,
    reference_batch: int | None = None,
    callbacks: Sequence[Callback] = (),
    target_scaler: Scaler | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    **options: Any,
) -> list[dict[str, float]]:
    """Train ``model`` in place with mini-batch gradient descent.

    After each epoch the logs hold ``train_loss`` (the mean over the epoch's batches), ``lr``
    (the rate the epoch started with) and, when ``val`` is given, :func:`evaluate`'s validation
    metrics. Callbacks see them; any of them stops training by returning True from
    ``on_epoch_end``. A :class:`~tunelab.nn.callbacks.DivergenceGuard` is added unless you give
    one, and the ``schedule`` steps through a :class:`~tunelab.nn.callbacks.LRSchedulerCallback`.

    ``seed`` fixes the batch order (its own generator, so the order does not depend on how many
    random numbers dropout drew) and reseeds torch's global generator, which dropout uses. On the
    CPU the fit runs with ``torch.use_deterministic_algorithms(True)`` (the previous setting comes
    back afterwards), so two calls with the same weights and seed give identical logs.

    Args:
        model: the network; trained in place.
        train: training inputs (shaped for the network) and targets.
        val: the validation split, or None.
        task: ``"classification"`` or ``"regression"``.
        epochs: the most epochs to run.
        batch_size: samples per optimizer step. A last batch of one sample joins the one before
            (batch norm cannot normalise a single sample).
        lr: the learning rate (at ``reference_batch``, when given).
        optimizer: a name from :data:`~tunelab.nn.OPTIMIZERS`.
        schedule: a name from :data:`~tunelab.nn.SCHEDULES`.
        loss: a name from :data:`~tunelab.nn.LOSSES` for the task; None for its default.
        reference_batch: apply the linear scaling rule (:func:`scaled_lr`) from this batch size.
        callbacks: more callbacks, called in order after the divergence guard.
        target_scaler: a fitted scaler for regression targets: the network learns scaled targets.
        seed: seeds the batch order and dropout.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        **options: the knobs of the optimizer (:func:`~tunelab.nn.make_optimizer`), the schedule
            (:func:`~tunelab.nn.make_schedule`) and the loss (:func:`~tunelab.nn.make_loss`),
            e.g. ``momentum=0.9, warmup_epochs=2, label_smoothing=0.1``.

    Returns:
        One logs dict per epoch that ran.

    Raises:
        TrialDiverged: from the divergence guard (NaN, infinite or exploding loss).
        SpecError: on ``space.<name>`` for an out-of-range or unknown setting.
        TypeError: for an option no optimizer, schedule or loss takes.

    Example:
        >>> from tunelab.nn import build_mlp, load_dataset, split_dataset, EarlyStopping
        >>> train, val, _ = split_dataset(load_dataset("iris"), 0.2, 0.2, seed=0)
        >>> history = fit(build_mlp(4, 3), train, val, task="classification", epochs=3,
        ...               optimizer="sgd", momentum=0.9, schedule="cosine", device="cpu",
        ...               callbacks=[EarlyStopping(patience=2)])
        >>> sorted(history[-1])[:3]
        ['lr', 'train_loss', 'val_accuracy']
    """
    if epochs < 1:
        raise SpecError("space.epochs", f"must be >= 1, got {epochs}")
    if batch_size < 1:
        raise SpecError("space.batch_size", f"must be >= 1, got {batch_size}")
    optimizer_options, schedule_options, loss_options = _route(options)
    device = _as_device(device)
    model.to(device)
    inputs, targets = _tensors(train, check_task(task), device, target_scaler)
    steps = len(_batch_bounds(len(inputs), batch_size))
    opt = make_optimizer(
        optimizer,
        model.parameters(),
        scaled_lr(lr, batch_size, reference_batch),
        **optimizer_options,
    )
    scheduler, interval = make_schedule(
        schedule, opt, epochs=epochs, steps_per_epoch=steps, **schedule_options
    )
    trainer = Trainer(
        model, opt, make_loss(task, loss, **loss_options).to(device), task, epochs, steps, device
    )
    hooks = list(callbacks)
    if not any(isinstance(callback, DivergenceGuard) for callback in hooks):
        hooks.insert(0, DivergenceGuard())
    if scheduler is not None:
        hooks.append(LRSchedulerCallback(scheduler, interval))
    batch_order = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    with _deterministic(device):
        for hook in hooks:
            hook.on_train_begin(trainer)
        for epoch in range(1, epochs + 1):
            for hook in hooks:
                hook.on_epoch_begin(trainer, epoch)
            lr_now = trainer.lr
            order = torch.randperm(len(inputs), generator=batch_order).to(device)
            train_loss = _train_epoch(trainer, hooks, inputs, targets, order, batch_size)
            logs = {"train_loss": train_loss, "lr": lr_now}
            if val is not None:
                logs.update(
                    evaluate(model, val, task, device, "val", trainer.loss_fn, target_scaler)
                )
            trainer.history.append(logs)
            stop = False
            for hook in hooks:
                stop = bool(hook.on_epoch_end(trainer, epoch, logs)) or stop
            if stop:
                break
        for hook in hooks:
            hook.on_train_end(trainer)
    return trainer.history


#: The defaults of every training hyperparameter :func:`fit` takes, by name.
TRAINING_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        **_keyword_defaults(fit, skip=("task", "callbacks", "target_scaler", "seed", "device")),
        **_OPTIMIZER_OPTIONS,
        **_SCHEDULE_OPTIONS,
        **_LOSS_OPTIONS,
    }
)


def _route(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Split fit's extra options between the optimizer, the schedule and the loss."""
    routed: tuple[dict[str, Any], ...] = ({}, {}, {})
    for name, value in options.items():
        for target, known in zip(
            routed, (_OPTIMIZER_OPTIONS, _SCHEDULE_OPTIONS, _LOSS_OPTIONS), strict=True
        ):
            if name in known:
                target[name] = value
                break
        else:
            every = sorted([*_OPTIMIZER_OPTIONS, *_SCHEDULE_OPTIONS, *_LOSS_OPTIONS])
            raise TypeError(
                f"fit() got an unexpected keyword argument {name!r}; "
                f"its training options are: {', '.join(every)}"
            )
    return routed  # type: ignore[return-value]


def _train_epoch(
    trainer: Trainer,
    hooks: Sequence[Callback],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    order: torch.Tensor,
    batch_size: int,
) -> float:
    """One pass over the batches; returns the mean loss per sample (one device sync per epoch)."""
    model, opt, loss_fn = trainer.model, trainer.optimizer, trainer.loss_fn
    model.train()
    total = torch.zeros((), device=inputs.device)
    for step, batch in enumerate(_batches(order, batch_size)):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(inputs[batch]), targets[batch])
        loss.backward()
        opt.step()
        total += loss.detach() * len(batch)
        for hook in hooks:
            hook.on_batch_end(trainer, step, loss)
    return total.item() / len(inputs)


def _batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]  # a lone last sample joins the batch before it
    return bounds


def _batches(order: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    for start, stop in _batch_bounds(len(order), batch_size):
        yield order[start:stop]


def _scaled_targets(y: np.ndarray, target_scaler: Scaler | None) -> np.ndarray:
    column = np.asarray(y, dtype=np.float32).reshape(-1, 1)
    return column if target_scaler is None else target_scaler.transform(column)


def _tensors(
    split: Split, task: str, device: torch.device, target_scaler: Scaler | None
) -> tuple[torch.Tensor, torch.Tensor]:
    inputs = torch.as_tensor(split.X, dtype=torch.float32, device=device)
    if task == CLASSIFICATION:
        return inputs, torch.as_tensor(split.y, dtype=torch.long, device=device)
    return inputs, torch.as_tensor(_scaled_targets(split.y, target_scaler), device=device)


@contextlib.contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic algorithms on the CPU for the duration of a fit, then the previous setting.

    On CUDA the setting is left to the user: several CUDA kernels have no deterministic version
    and cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` set before the process starts.
    """
    if device.type != "cpu":
        yield
        return
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def _as_device(device: str | torch.device) -> torch.device:
    return device if isinstance(device, torch.device) else resolve_device(device)
