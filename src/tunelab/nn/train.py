"""A plain, fast training loop for in-memory data, and the pieces it is made of.

The data of a tuning run fits in memory, so the loop keeps the tensors on the device and draws
shuffled mini-batches by indexing: no DataLoader, no worker processes, no copies per epoch.
Everything around the loop (learning-rate schedules, early stopping, checkpoints, reporting to a
study, the divergence guard) is a :class:`~tunelab.nn.callbacks.Callback`.

The loop is a :class:`Trainer`, which runs one epoch at a time and saves and restores its whole
state, so a paused trial resumes where it stopped; :func:`fit` runs one to the end.
"""

from __future__ import annotations

import contextlib
import inspect
import random
import weakref
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
from tunelab.nn.masks import DropoutStream, drawing
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


class Trainer:
    """Trains a network one epoch at a time, and saves and restores everything training depends on.

    :func:`fit` is a loop over :meth:`run_epoch`; a study's pause-and-resume schedulers need the
    steps themselves: run some epochs, :meth:`state_dict`, and later (in another process, say)
    build the same trainer, :meth:`load_state_dict` and go on. The state holds the model, the
    optimizer (its momentum and Adam's moments), the LR schedule, the generator of the batch
    order, the built-in dropout's draws (:class:`~tunelab.nn.masks.DropoutStream`), torch's
    global generator (``nn.Dropout`` draws from it), every callback's state, the epoch and the
    history, so a resumed training gives the same weights and logs, bit for bit on the CPU, as
    one that never stopped.

    Every callback hook receives this object. The constructor builds the optimizer, the
    schedule and the loss at once (so bad settings fail before any training, and
    :meth:`load_state_dict` has something to load into); training begins with the first
    :meth:`run_epoch`, which reseeds torch's global generator with ``seed`` and calls the
    callbacks' ``on_train_begin``.

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

    Attributes:
        model: the network being trained (on ``device``).
        optimizer: the torch optimizer; ``optimizer.param_groups[0]["lr"]`` is the current rate.
        loss_fn: the training loss.
        task: ``"classification"`` or ``"regression"``.
        epochs: the most epochs this training runs.
        steps_per_epoch: optimizer steps (batches) per epoch.
        device: where the model and data live.
        callbacks: every callback in call order: a divergence guard (unless you gave one), yours,
            and the one that steps the ``schedule``.
        history: the logs of the epochs finished so far.
        epoch: how many epochs have run.
        stopped: whether a callback asked to stop at the end of the last epoch.

    Raises:
        SpecError: on ``space.<name>`` for an out-of-range or unknown setting.
        TypeError: for an option no optimizer, schedule or loss takes.

    Example:
        >>> from tunelab.nn import build_mlp, load_dataset, split_dataset
        >>> train, val, _ = split_dataset(load_dataset("iris"), 0.2, 0.2, seed=0)
        >>> trainer = Trainer(build_mlp(4, 3), train, val, task="classification", epochs=3,
        ...                   device="cpu")
        >>> logs = trainer.run_epoch()
        >>> state = trainer.state_dict()  # torch.save(state, path) to resume elsewhere
        >>> while not trainer.done:
        ...     logs = trainer.run_epoch()
        >>> trainer.finish()
        >>> trainer.epoch, len(trainer.history)
        (3, 3)
    """

    def __init__(
        self,
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
    ) -> None:
        if epochs < 1:
            raise SpecError("space.epochs", f"must be >= 1, got {epochs}")
        if batch_size < 1:
            raise SpecError("space.batch_size", f"must be >= 1, got {batch_size}")
        optimizer_options, schedule_options, loss_options = _route(options)
        self.device = _as_device(device)
        self.model = model.to(self.device)
        self.task = check_task(task)
        self._data = _on_device(train, task, self.device, target_scaler)
        self._inputs, self._targets = self._data.inputs, self._data.targets
        self._val, self._target_scaler = val, target_scaler
        self._batch_size, self._seed = batch_size, seed
        self.epochs = epochs
        self.steps_per_epoch = len(_batch_bounds(len(self._inputs), batch_size))
        self.optimizer = make_optimizer(
            optimizer,
            model.parameters(),
            scaled_lr(lr, batch_size, reference_batch),
            **optimizer_options,
        )
        scheduler, interval = make_schedule(
            schedule,
            self.optimizer,
            epochs=epochs,
            steps_per_epoch=self.steps_per_epoch,
            **schedule_options,
        )
        self.loss_fn = make_loss(task, loss, **loss_options).to(self.device)
        self.callbacks = list(callbacks)
        if not any(isinstance(callback, DivergenceGuard) for callback in self.callbacks):
            self.callbacks.insert(0, DivergenceGuard())
        if scheduler is not None:
            self.callbacks.append(LRSchedulerCallback(scheduler, interval))
        self.history: list[dict[str, float]] = []
        self.epoch = 0
        self.stopped = False
        self._batch_order = torch.Generator().manual_seed(seed)
        #: Where the built-in models' dropout draws its masks (:mod:`tunelab.nn.masks`).
        self.dropout = DropoutStream(seed, hashed=self.device.type != "cpu")
        #: Where torch's own random layers (``nn.Dropout``) draw from: None for torch's global
        #: generator (reseeded with ``seed`` when training begins); fused training gives each
        #: trainer of a group its own.
        self.generator: torch.Generator | None = None
        self._epoch_lr = self.lr
        self._begun = self._finished = False

    @property
    def lr(self) -> float:
        """The learning rate the next optimizer step uses."""
        return float(self.optimizer.param_groups[0]["lr"])

    @property
    def done(self) -> bool:
        """True once ``epochs`` epochs have run or a callback asked to stop."""
        return self.stopped or self.epoch >= self.epochs

    def run_epoch(self) -> dict[str, float]:
        """Train one epoch, score it on the validation split, and call the callbacks.

        Returns:
            The epoch's logs: ``train_loss`` (the mean over the epoch's batches), for
            classification ``train_accuracy``, ``lr`` (the
            rate the epoch started with) and, with a validation split, :func:`evaluate`'s
            metrics. Every callback sees them; if any returns True from ``on_epoch_end``,
            :attr:`stopped` becomes True.

        Raises:
            RuntimeError: when the training is already :attr:`done`.
            TrialDiverged: from the divergence guard (NaN, infinite or exploding loss).
        """
        with _deterministic(self.device):
            order = self.begin_epoch()
            with _drawing_from(self.generator), drawing(self.dropout):
                train_logs = self._train_epoch(order)
            return self.end_epoch(train_logs)

    def begin_epoch(self) -> torch.Tensor:
        """The start of :meth:`run_epoch`, for a loop that trains the batches itself (fused
        training, :mod:`tunelab.nn.fused`): begin the training if it has not, call the callbacks'
        ``on_epoch_begin``, and draw the epoch's batch order.

        Returns:
            The epoch's order of the training samples, on the device.

        Raises:
            RuntimeError: when the training is already :attr:`done`.
        """
        if self.done:
            why = "a callback stopped it" if self.stopped else f"all {self.epochs} epochs ran"
            raise RuntimeError(f"training is done ({why}); call finish()")
        self._begin()
        for hook in self.callbacks:
            hook.on_epoch_begin(self, self.epoch + 1)
        self._epoch_lr = self.lr
        return torch.randperm(len(self._inputs), generator=self._batch_order).to(self.device)

    def end_epoch(
        self, train_logs: Mapping[str, float], val_outputs: torch.Tensor | None = None
    ) -> dict[str, float]:
        """The end of :meth:`run_epoch` once the batches were trained: score the validation
        split, keep the logs, call the callbacks' ``on_epoch_end``.

        Args:
            train_logs: ``train_loss`` and, for classification, ``train_accuracy``.
            val_outputs: the network's outputs on the validation split, on the CPU, when the
                caller computed them (fused training does, for all its members in one pass);
                by default the trainer predicts them.

        Returns:
            The epoch's logs, as :meth:`run_epoch` returns them.
        """
        logs = {**train_logs, "lr": self._epoch_lr}
        if self._val is not None:
            if val_outputs is None:
                val_outputs = torch.from_numpy(predict(self.model, self._val.X, self.device))
            logs.update(
                score(val_outputs, self._val, self.task, "val", self.loss_fn, self._target_scaler)
            )
        self.history.append(logs)
        self.epoch += 1
        stop = False
        for hook in self.callbacks:
            stop = bool(hook.on_epoch_end(self, self.epoch, logs)) or stop
        self.stopped = stop
        return logs

    def finish(self) -> None:
        """End the training: the callbacks' ``on_train_end`` (early stopping restores the best
        weights there). Call it once, after the last epoch; later calls do nothing."""
        if self._finished:
            return
        with _deterministic(self.device):
            self._begin()
            for hook in self.callbacks:
                hook.on_train_end(self)
        self._finished = True

    def state_dict(self) -> dict[str, Any]:
        """Everything the next epochs depend on, as tensors and plain values.

        Save it with ``torch.save`` and load it with ``torch.load(..., weights_only=True)``. As
        with torch's own ``state_dict``, the tensors are the live ones: save or copy the state
        before training on. Called before the first epoch, it begins the training (the seed,
        the callbacks' ``on_train_begin``), as :meth:`run_epoch` would.
        """
        self._begin()
        state = {
            "epoch": self.epoch,
            "stopped": self.stopped,
            "history": [dict(logs) for logs in self.history],
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "callbacks": {
                key: hook.state_dict()
                for key, hook in zip(self._callback_keys(), self.callbacks, strict=True)
            },
            "batch_order": self._batch_order.get_state(),
            "torch_rng": (self._own("cpu") or torch.default_generator).get_state(),
            "dropout": self.dropout.state_dict(),
        }
        if self.device.type == "cuda":  # dropout on the GPU draws from the device's generator
            own = self._own("cuda")
            state["cuda_rng"] = own.get_state() if own else torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s output: the next :meth:`run_epoch` runs the epoch
        after the saved one.

        The trainer must be built like the one that saved the state: the same model, settings
        and kinds of callbacks, in the same order.

        Raises:
            ValueError: when the saved callbacks are not this trainer's.
        """
        keys = self._callback_keys()
        if list(state["callbacks"]) != keys:
            raise ValueError(
                f"the state was saved with the callbacks {list(state['callbacks'])}, but this "
                f"trainer has {keys}; build the trainer with the same callbacks"
            )
        self._begin()
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for key, hook in zip(keys, self.callbacks, strict=True):
            hook.load_state_dict(state["callbacks"][key])
        self._batch_order.set_state(state["batch_order"])
        self.dropout.load_state_dict(state["dropout"])
        own = self._own("cpu")
        if own:
            own.set_state(state["torch_rng"])
        else:
            torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            own = self._own("cuda")
            if own:
                own.set_state(state["cuda_rng"])
            else:
                torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.history[:] = [dict(logs) for logs in state["history"]]
        self.epoch, self.stopped = int(state["epoch"]), bool(state["stopped"])

    def _begin(self) -> None:
        """Start the training, once: reseed dropout's generator, let the callbacks reset."""
        if self._begun:
            return
        self._begun = True
        if self.generator is None:
            _seed_torch(self._seed)
        else:
            self.generator.manual_seed(self._seed)
        for hook in self.callbacks:
            hook.on_train_begin(self)

    def _own(self, kind: str) -> torch.Generator | None:
        """The trainer's own dropout generator when it lives on a device of ``kind``."""
        generator = self.generator
        return generator if generator is not None and generator.device.type == kind else None

    def _callback_keys(self) -> list[str]:
        return [f"{i}.{type(hook).__name__}" for i, hook in enumerate(self.callbacks)]

    def _train_epoch(self, order: torch.Tensor) -> dict[str, float]:
        """One pass over the batches: the mean loss per sample and, for classification, the
        share of samples each batch got right as it was trained on (Keras's training accuracy:
        dropout on, weights moving), at one device sync."""
        model, opt, loss_fn = self.model, self.optimizer, self.loss_fn
        inputs, targets = self._inputs, self._targets
        classify = self.task == CLASSIFICATION
        model.train()
        total = torch.zeros(2, device=inputs.device)
        for step, batch in enumerate(_batches(order, self._batch_size)):
            opt.zero_grad(set_to_none=True)
            outputs = model(inputs[batch])
            loss = loss_fn(outputs, targets[batch])
            loss.backward()
            opt.step()
            total[0] += loss.detach() * len(batch)
            if classify:
                total[1] += (outputs.detach().argmax(1) == targets[batch]).sum()
            for hook in self.callbacks:
                hook.on_batch_end(self, step, loss)
        loss_sum, correct = total.tolist()
        logs = {"train_loss": loss_sum / len(inputs)}
        if classify:
            logs["train_accuracy"] = correct / len(inputs)
        return logs


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
    _seed_torch(seed)


def _seed_torch(seed: int) -> None:
    """torch.manual_seed, less its cost: it queues a seeding for every accelerator kind torch
    knows, with a stack trace each, a millisecond per trial on a machine that has none of them."""
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if torch.backends.mps.is_available():
        torch.mps.manual_seed(seed)


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` intra-op torch threads (None: as they are), then restore them.

    Why it matters: CPU kernels split their sums over the threads, so another count changes the
    last digits of a training; and a tiny network gains nothing from a second thread.
    """
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
    return score(outputs, split, task, prefix, loss_fn, target_scaler)


def score(
    outputs: torch.Tensor,
    split: Split,
    task: str,
    prefix: str = "val",
    loss_fn: nn.Module | None = None,
    target_scaler: Scaler | None = None,
) -> dict[str, float]:
    """:func:`evaluate`'s metrics of a network's ``outputs`` on ``split`` (on the CPU; scaled
    values for a regression trained with ``target_scaler``)."""
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
    """Train ``model`` in place with mini-batch gradient descent: a :class:`Trainer` run to the end.

    After each epoch the logs hold ``train_loss`` (the mean over the epoch's batches), for
    classification ``train_accuracy`` (over the batches as they were trained on), ``lr``
    (the rate the epoch started with) and, when ``val`` is given, :func:`evaluate`'s validation
    metrics. Callbacks see them; any of them stops training by returning True from
    ``on_epoch_end``. A :class:`~tunelab.nn.callbacks.DivergenceGuard` is added unless you give
    one, and the ``schedule`` steps through a :class:`~tunelab.nn.callbacks.LRSchedulerCallback`.

    ``seed`` fixes the batch order (its own generator, so the order does not depend on how many
    random numbers dropout drew) and reseeds torch's global generator, which dropout uses. On the
    CPU each epoch runs with ``torch.use_deterministic_algorithms(True)`` (the previous setting
    comes back afterwards), so two calls with the same weights and seed give identical logs.

    The arguments are :class:`Trainer`'s.

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
        >>> sorted(history[-1])[:4]
        ['lr', 'train_accuracy', 'train_loss', 'val_accuracy']
    """
    trainer = Trainer(
        model,
        train,
        val,
        task=task,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        schedule=schedule,
        loss=loss,
        reference_batch=reference_batch,
        callbacks=callbacks,
        target_scaler=target_scaler,
        seed=seed,
        device=device,
        **options,
    )
    while not trainer.done:
        trainer.run_epoch()
    trainer.finish()
    return trainer.history


#: The defaults of every training hyperparameter :class:`Trainer` (and :func:`fit`) takes.
TRAINING_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        **_keyword_defaults(Trainer, skip=("task", "callbacks", "target_scaler", "seed", "device")),
        **_OPTIMIZER_OPTIONS,
        **_SCHEDULE_OPTIONS,
        **_LOSS_OPTIONS,
    }
)


def _route(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Split the extra training options between the optimizer, the schedule and the loss."""
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
                f"fit() and Trainer() got an unexpected keyword argument {name!r}; "
                f"their training options are: {', '.join(every)}"
            )
    return routed  # type: ignore[return-value]


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


@dataclass(eq=False)
class _DeviceData:
    """A training split as tensors on a device, and what identifies it (see :func:`_on_device`)."""

    split: Split
    task: str
    device: torch.device
    target_scaler: Scaler | None
    inputs: torch.Tensor
    targets: torch.Tensor
    #: Anything worked out from the data once for every trainer that holds it, by name.
    derived: dict[str, Any] = field(default_factory=dict)

    def holds(self, split: Split, task: str, device: torch.device, scaler: Scaler | None) -> bool:
        same = split is self.split and scaler is self.target_scaler
        return same and task == self.task and device == self.device


_on_devices: list[weakref.ref[_DeviceData]] = []  # the copies some trainer still holds


def _on_device(
    split: Split, task: str, device: torch.device, target_scaler: Scaler | None
) -> _DeviceData:
    """The split as tensors on the device, one copy for every trainer alive on the same split
    (the trials of a fold share it, from :meth:`DataProvider.prepared`): K members of a fused
    group on a GPU hold the training data once, not K times."""
    global _on_devices
    alive = [data for ref in _on_devices if (data := ref()) is not None]
    for data in alive:
        if data.holds(split, task, device, target_scaler):
            return data
    inputs = torch.as_tensor(split.X, dtype=torch.float32, device=device)
    if task == CLASSIFICATION:
        targets = torch.as_tensor(split.y, dtype=torch.long, device=device)
    else:
        targets = torch.as_tensor(_scaled_targets(split.y, target_scaler), device=device)
    data = _DeviceData(split, task, device, target_scaler, inputs, targets)
    _on_devices = [weakref.ref(kept) for kept in (data, *alive)]
    return data


@contextlib.contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic algorithms on the CPU for one step of a training (an epoch, say), then the
    previous setting, so that nothing leaks to the code around a trainer between its epochs.

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


@contextlib.contextmanager
def _drawing_from(generator: torch.Generator | None) -> Iterator[None]:
    """Let dropout (which draws from its device's global generator) draw from ``generator`` for
    the block: a trainer with a generator of its own draws the same masks whether it trains
    alone or fused (:mod:`tunelab.nn.fused`), and leaves the global one as it found it."""
    if generator is None:
        yield
        return
    get_state, set_state = _global_state(generator.device)
    outside = get_state()
    set_state(generator.get_state())
    try:
        yield
    finally:
        generator.set_state(get_state())
        set_state(outside)


def _global_state(device: torch.device) -> tuple[Any, Any]:
    """How to read and set the global generator of ``device``."""
    if device.type == "cuda":
        return (
            lambda: torch.cuda.get_rng_state(device),
            lambda state: torch.cuda.set_rng_state(state, device),
        )
    return torch.get_rng_state, torch.set_rng_state


def _as_device(device: str | torch.device) -> torch.device:
    return device if isinstance(device, torch.device) else resolve_device(device)
