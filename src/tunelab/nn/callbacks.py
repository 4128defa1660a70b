"""Callbacks: small objects the :class:`~tunelab.nn.Trainer` (and so :func:`~tunelab.nn.fit`)
calls at fixed points of training.

The interface is skorch's and Keras's. Every hook receives the running
:class:`~tunelab.nn.Trainer` (model, optimizer, history so far); override the ones you need::

    on_train_begin(trainer)                     before the first epoch: reset your state here
    on_epoch_begin(trainer, epoch)              epochs count from 1
    on_batch_end(trainer, batch, loss)          after each optimizer step; loss is a 0-d tensor
    on_epoch_end(trainer, epoch, logs) -> bool  logs: train_loss, lr, val_*; True stops training
    on_train_end(trainer)                       after the last epoch (not after an exception)

All callbacks see every epoch's end even when one of them asks to stop, so the epoch that stops
training is still recorded and reported. One callback object may serve many trials in a
process: each resets its state in ``on_train_begin``; what it learned ends in ``_``.

A paused training resumes where it stopped only if every callback resumes too: a callback with
state names it in :attr:`~Callback.state_attributes` (or overrides ``state_dict`` and
``load_state_dict``), and :meth:`Trainer.state_dict <tunelab.nn.Trainer.state_dict>` saves it.

Example:
    >>> class PrintLoss(Callback):
    ...     def on_epoch_end(self, trainer, epoch, logs):
    ...         print(epoch, round(logs["train_loss"], 2))
    >>> # fit(model, train, val, task="classification", callbacks=[PrintLoss()])
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from tunelab.errors import SpecError, TrialDiverged
from tunelab.nn.metrics import metric_mode

if TYPE_CHECKING:
    from tunelab.nn.train import Trainer
    from tunelab.trial import Trial

__all__ = [
    "Callback",
    "DivergenceGuard",
    "EarlyStopping",
    "History",
    "LRSchedulerCallback",
    "ModelCheckpoint",
    "ProgressBar",
    "TrialReporter",
]


class Callback:
    """The base of every callback: each hook does nothing until overridden.

    Attributes:
        state_attributes: the attributes :meth:`state_dict` saves: what the callback learned
            during training (set in ``on_train_begin``), as tensors and plain values.
    """

    state_attributes: tuple[str, ...] = ()

    def state_dict(self) -> dict[str, Any]:
        """What this callback learned so far, so that a resumed training goes on with it.

        Tensors, numbers, strings, lists, dicts and None only: a checkpoint is loaded with
        ``torch.load(..., weights_only=True)``, which runs no pickled code.
        """
        return {name: copy.copy(getattr(self, name)) for name in self.state_attributes}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Take back what :meth:`state_dict` returned (after ``on_train_begin`` has run)."""
        for name in self.state_attributes:
            setattr(self, name, copy.copy(state[name]))

    def on_train_begin(self, trainer: Trainer) -> None:
        """Before the first epoch."""

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        """Before the first batch of ``epoch`` (counted from 1)."""

    def on_batch_end(self, trainer: Trainer, batch: int, loss: torch.Tensor) -> None:
        """After the optimizer step of batch ``batch`` (counted from 0 in each epoch)."""

    def acts_per_batch(self) -> bool:
        """Whether :meth:`on_batch_end` does anything in the coming epoch. Fused training
        (:mod:`tunelab.nn.fused`) calls it for those members only: with hundreds of members,
        a call per member per step that does nothing is much of a step's cost."""
        return type(self).on_batch_end is not Callback.on_batch_end

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> bool | None:
        """After ``epoch`` is scored; return True to stop training after it."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the last epoch that ran."""


class History(Callback):
    """Keeps every epoch's logs in ``history_`` (:func:`~tunelab.nn.fit` also returns them).

    Example:
        >>> history = History()  # fit(..., callbacks=[history]); history.history_[-1]["val_loss"]
    """

    state_attributes = ("history_",)

    def on_train_begin(self, trainer: Trainer) -> None:
        self.history_: list[dict[str, float]] = []

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        self.history_.append(dict(logs))


class ProgressBar(Callback):
    """Shows training's epochs as they pass: a rich bar on a terminal, a line at the start and
    the end elsewhere (a log file gets no bar redrawn in place). ``tunelab run`` shows the final
    retrain with it.

    Example:
        >>> bar = ProgressBar(description="retraining")  # fit(..., callbacks=[bar])
    """

    def __init__(self, description: str = "training", console: Any = None) -> None:
        self.description = description
        self.console = console

    def on_train_begin(self, trainer: Trainer) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        console = self.console or Console()
        self.progress_ = Progress(
            f"[bold]{self.description}",
            BarColumn(),
            MofNCompleteColumn(),
            "epochs",
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
        )
        if not console.is_terminal:
            console.print(
                f"{self.description}: {trainer.epochs} epochs", highlight=False, soft_wrap=True
            )
        self.progress_.start()
        self.task_ = self.progress_.add_task(self.description, total=trainer.epochs)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        self.progress_.update(self.task_, completed=epoch)

    def on_train_end(self, trainer: Trainer) -> None:
        self.progress_.stop()
        if not self.progress_.console.is_terminal:
            self.progress_.console.print(f"{self.description}: done", highlight=False)


class _Monitor(Callback):
    """Tracks the best value of one logged metric."""

    state_attributes: tuple[str, ...] = ("best_", "best_epoch_")

    def _reset(self) -> None:
        self.mode_ = metric_mode(self.monitor) if self.mode == "auto" else self.mode
        if self.mode_ not in ("min", "max"):
            raise SpecError("mode", f"expected 'auto', 'min' or 'max', got {self.mode!r}")
        self.best_: float | None = None
        self.best_epoch_: int | None = None

    def _improved(self, epoch: int, logs: dict[str, float]) -> bool:
        if self.monitor not in logs:
            raise SpecError(
                "monitor",
                f"{self.monitor!r} is not logged; this fit logs {', '.join(logs)} "
                "(val_* metrics need a validation split)",
            )
        value = logs[self.monitor]
        if self.best_ is None:
            better = math.isfinite(value)
        elif self.mode_ == "min":
            better = value < self.best_ - self.min_delta
        else:
            better = value > self.best_ + self.min_delta
        if better:
            self.best_, self.best_epoch_ = value, epoch
        return better


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    Args:
        monitor: a logged metric, e.g. ``val_loss`` or ``val_accuracy``.
        patience: how many epochs in a row without improvement end training (Keras's meaning:
            with 2, an improvement at epoch 3 and none after stops training at epoch 5).
        min_delta: the smallest change that counts as an improvement.
        mode: ``"min"``, ``"max"``, or ``"auto"`` (losses and errors go down, scores go up).
        restore_best_weights: load the weights of the best epoch when training ends, so the
            model in hand is the one whose score was best.

    Attributes:
        best_, best_epoch_: the best value seen and its epoch.
        stopped_epoch_: the epoch training stopped at, or None if it ran to the end.

    Example:
        >>> stopper = EarlyStopping("val_accuracy", patience=3)
    """

    state_attributes = (*_Monitor.state_attributes, "wait_", "stopped_epoch_", "best_state_")

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 5,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best_weights: bool = True,
    ) -> None:
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        self.mode = mode
        self.restore_best_weights = restore_best_weights

    def on_train_begin(self, trainer: Trainer) -> None:
        if self.patience < 0:
            raise SpecError("patience", f"must be >= 0, got {self.patience}")
        self._reset()
        self.wait_ = 0
        self.stopped_epoch_: int | None = None
        self.best_state_: dict[str, torch.Tensor] | None = None

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> bool:
        if self._improved(epoch, logs):
            self.wait_ = 0
            if self.restore_best_weights:
                state = trainer.model.state_dict()
                self.best_state_ = {name: t.detach().clone() for name, t in state.items()}
            return False
        self.wait_ += 1
        if self.wait_ >= self.patience:
            self.stopped_epoch_ = epoch
            return True
        return False

    def on_train_end(self, trainer: Trainer) -> None:
        if self.restore_best_weights and self.best_state_ is not None:
            trainer.model.load_state_dict(self.best_state_)


class ModelCheckpoint(_Monitor):
    """Save the model's ``state_dict`` to ``path`` whenever ``monitor`` improves, and only then.

    The file is written whole or not at all (write, then rename). Load it with
    ``model.load_state_dict(torch.load(path, weights_only=True))``: plain tensors, no pickled code.

    Args:
        path: the file to write (its folder is created).
        monitor, mode, min_delta: as for :class:`EarlyStopping`.

    Attributes:
        saved_epochs_: the epochs whose weights were written, in order.

    Example:
        >>> checkpoint = ModelCheckpoint("runs/best.pt", monitor="val_accuracy")
    """

    state_attributes = (*_Monitor.state_attributes, "saved_epochs_")

    def __init__(
        self,
        path: str | os.PathLike[str],
        monitor: str = "val_loss",
        mode: str = "auto",
        min_delta: float = 0.0,
    ) -> None:
        self.path = path
        self.monitor = monitor
        self.mode = mode
        self.min_delta = min_delta

    def on_train_begin(self, trainer: Trainer) -> None:
        self._reset()
        self.saved_epochs_: list[int] = []

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        if not self._improved(epoch, logs):
            return
        path = Path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({k: t.detach().cpu() for k, t in trainer.model.state_dict().items()}, tmp)
        tmp.replace(path)
        self.saved_epochs_.append(epoch)


class LRSchedulerCallback(Callback):
    """Step a ``torch.optim.lr_scheduler`` scheduler after each epoch or each batch.

    :func:`~tunelab.nn.fit` builds the optimizer when training starts, so this takes a function
    that builds the scheduler from it (or a scheduler already bound to that optimizer). ``fit``
    adds one for its own ``schedule`` by itself.

    Args:
        schedule: ``optimizer -> scheduler``, or a scheduler.
        interval: ``"epoch"`` (most schedules) or ``"batch"`` (CyclicLR, OneCycleLR).

    Example:
        >>> from torch.optim.lr_scheduler import StepLR
        >>> callback = LRSchedulerCallback(lambda opt: StepLR(opt, step_size=5, gamma=0.5))
    """

    def __init__(
        self,
        schedule: Callable[[torch.optim.Optimizer], LRScheduler] | LRScheduler,
        interval: str = "epoch",
    ) -> None:
        self.schedule = schedule
        self.interval = interval

    def on_train_begin(self, trainer: Trainer) -> None:
        if self.interval not in ("epoch", "batch"):
            raise SpecError("interval", f"expected 'epoch' or 'batch', got {self.interval!r}")
        built = isinstance(self.schedule, LRScheduler)
        self.scheduler_ = self.schedule if built else self.schedule(trainer.optimizer)

    def on_batch_end(self, trainer: Trainer, batch: int, loss: torch.Tensor) -> None:
        if self.interval == "batch":
            self.scheduler_.step()

    def acts_per_batch(self) -> bool:
        return self.interval == "batch"

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        if self.interval == "epoch":
            self.scheduler_.step()

    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler_.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.scheduler_.load_state_dict(state["scheduler"])


class DivergenceGuard(Callback):
    """End training as diverged when a logged value is NaN or infinite, or when an epoch's
    training loss grows past ``max_ratio`` times the loss of the untrained network.

    The reference is the loss of the very first batch, before any update: a learning rate that
    explodes within the first epoch (Adam at lr=10 reaches losses near 1e5 and then settles at
    chance level) would make the first epoch's mean useless as a yardstick.

    Raises :class:`~tunelab.errors.TrialDiverged` with a message starting ``diverged``, which a
    study records as a FAILED trial with that reason (not a crash). :func:`~tunelab.nn.fit` adds
    one unless you pass your own.

    Args:
        max_ratio: how many times the untrained network's loss counts as exploding.

    Example:
        >>> guard = DivergenceGuard(max_ratio=10.0)
    """

    state_attributes = ("initial_loss_",)

    def __init__(self, max_ratio: float = 100.0) -> None:
        self.max_ratio = max_ratio

    def on_train_begin(self, trainer: Trainer) -> None:
        self.initial_loss_: float | None = None

    def on_batch_end(self, trainer: Trainer, batch: int, loss: torch.Tensor) -> None:
        if self.initial_loss_ is None:
            self.initial_loss_ = loss.item()  # one device sync, once per fit

    def acts_per_batch(self) -> bool:
        return self.initial_loss_ is None

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        for name, value in logs.items():
            if not math.isfinite(value):
                label = "training loss" if name == "train_loss" else name
                raise TrialDiverged(f"diverged: {label} became {value} at epoch {epoch}")
        loss, initial = logs["train_loss"], self.initial_loss_
        if initial is not None and math.isfinite(initial) and loss > self.max_ratio * initial:
            raise TrialDiverged(
                f"diverged: training loss {loss:.4g} at epoch {epoch} is over {self.max_ratio:g} "
                f"times the untrained network's {initial:.4g}"
            )


class TrialReporter(Callback):
    """Forward each epoch's logs to ``trial.report`` and stop when the study's scheduler says so.

    This is how :class:`~tunelab.nn.NetworkObjective` joins a study; add it yourself to train
    with :func:`~tunelab.nn.fit` inside your own objective.

    Args:
        trial: the trial to report to.
        stop_on_pause: stop training when the scheduler pauses the trial, too (its answer is
            then in ``trial.should_pause()``). A loop that saves a checkpoint on a pause and
            leaves by itself passes False, so that a pause is not saved as a stopped training
            and the resumed trial trains on.

    Example:
        >>> def objective(trial):  # doctest: +SKIP
        ...     history = fit(model, train, val, task="classification",
        ...                   callbacks=[TrialReporter(trial)])
        ...     return history[-1]
    """

    def __init__(self, trial: Trial, stop_on_pause: bool = True) -> None:
        self.trial = trial
        self.stop_on_pause = stop_on_pause

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> bool:
        self.trial.report(epoch, **logs)
        stop = self.trial.should_stop()  # checks the trial's time limit, too
        return stop and (self.stop_on_pause or not self.trial.should_pause())
