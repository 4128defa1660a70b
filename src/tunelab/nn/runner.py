"""The training of one configuration: for a trial (reporting, stopping, pausing and resuming), for
the replay of a trial's early stopping, and for the final model.

A pause-and-resume scheduler pauses a trial at a report; the runner then saves the whole
:class:`~tunelab.nn.Trainer` state in the trial's checkpoint and returns. When the trial is resumed
(``trial.resumed_from`` set), possibly in another process, the runner builds the same trainer,
loads the checkpoint and trains on from the next epoch, so the trial reports what it would have
reported without the pause.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tunelab.nn.callbacks import Callback, EarlyStopping, TrialReporter
from tunelab.nn.data import CLASSIFICATION, Preprocessing, Split
from tunelab.nn.factory import ModelFactory
from tunelab.nn.provider import DataProvider
from tunelab.nn.splits import Fold
from tunelab.nn.train import TRAINING_DEFAULTS, Trainer, evaluate
from tunelab.trial import Trial

__all__ = ["TrialRunner", "TrialTraining", "early_stopping"]


class TrialRunner:
    """Trains configurations on the provider's data with the factory's networks.

    Args:
        provider: the data: the data set's task and shape, and the preprocessing each training
            split is fitted with.
        factory: builds and initialises the network of a configuration.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        callbacks: more callbacks for each trial's training (not for the replay or the final
            model); they must reset in ``on_train_begin``.

    Example:
        >>> from tunelab.nn import ConfigResolver, DataProvider, HoldoutSplitter, ModelFactory
        >>> from tunelab.trial import Decision, Trial
        >>> runner = TrialRunner(DataProvider({"source": "iris"}, HoldoutSplitter()),
        ...                      ModelFactory("mlp"), device="cpu")
        >>> config, given = ConfigResolver("mlp", {"epochs": 2}).resolve({})
        >>> fold = runner.provider.splits().folds[0]
        >>> trial = Trial(0, {}, 0, "/tmp/trial-0", lambda number, step, metrics: Decision.CONTINUE)
        >>> sorted(runner.run(trial, config, given, fold))[:4]
        ['lr', 'train_accuracy', 'train_loss', 'val_accuracy']
    """

    def __init__(
        self,
        provider: DataProvider,
        factory: ModelFactory,
        device: str = "auto",
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.provider = provider
        self.factory = factory
        self.device = device
        self.callbacks = callbacks

    def run(
        self, trial: Trial, config: Mapping[str, Any], params: Mapping[str, Any], fold: Fold
    ) -> dict[str, float]:
        """Train a trial on ``fold``, report every epoch, stop when the scheduler says so.

        A pause saves the trainer's state with ``trial.save_checkpoint`` and returns; a trial
        with ``resumed_from`` set loads it and goes on with the next epoch (or starts again from
        the first when ``trial.load_checkpoint`` finds no usable checkpoint, which it records).
        The last epoch is the trial's ``final_step``: a stop or pause there leaves it complete.

        Args:
            trial: the trial; its seed sets the weights, the batch order and dropout.
            config: the whole configuration.
            params: the values given (fixed and the trial's), which a builder of your own gets.
            fold: the training and validation splits.

        Returns:
            The metrics of the best epoch when early stopping restores the best weights, else
            of the last epoch (at a pause: of the epoch it paused after).
        """
        training = self.start(trial, config, params, fold)
        while not training.over:
            training.trainer.run_epoch()
            training.after_epoch()
        return training.result()

    def start(
        self,
        trial: Trial,
        config: Mapping[str, Any],
        params: Mapping[str, Any],
        fold: Fold,
        own_generator: bool = False,
    ) -> TrialTraining:
        """A trial's training, built and (when resumed) loaded from its checkpoint, before its
        next epoch: :meth:`run` steps it to its end; a fused executor steps many at once.

        Args:
            own_generator: torch's own random layers (``nn.Dropout`` in a model of your own)
                draw from a generator of the trainer's own, not torch's global one (fused
                training: several trainers share a process).
        """

        def fresh() -> tuple[Trainer, EarlyStopping | None]:
            stopper = early_stopping(config)
            callbacks = [*self.callbacks, TrialReporter(trial, stop_on_pause=False)]
            hooks = [stopper, *callbacks] if stopper is not None else callbacks
            trainer, _ = self.trainer(config, params, trial.seed, fold.train, fold.val, hooks)
            if own_generator:
                trainer.generator = torch.Generator(trainer.device)
            return trainer, stopper

        trial.final_step = config["epochs"]
        trainer, stopper = fresh()
        state = trial.load_checkpoint()
        if state is not None:
            try:
                trainer.load_state_dict(state)
            except (KeyError, ValueError, RuntimeError, TypeError) as exc:
                trial.restart(f"the checkpoint does not fit this training ({exc})")
                trainer, stopper = fresh()
        return TrialTraining(trial, trainer, stopper)

    def epochs_kept(
        self, config: Mapping[str, Any], params: Mapping[str, Any], seed: int, fold: Fold
    ) -> int:
        """How many epochs a trial with this configuration and seed kept: its best epoch when
        early stopping restores the best weights, else the epoch it stopped at.

        The trial is replayed on the same fold with the same seed, which gives the same epochs;
        without ``patience`` in the configuration that is simply its ``epochs``.
        """
        stopper = early_stopping(config)
        if stopper is None:
            return config["epochs"]
        trainer, _ = self.trainer(config, params, seed, fold.train, fold.val, [stopper])
        _train(trainer)
        kept = stopper.best_epoch_ if stopper.restore_best_weights else len(trainer.history)
        return kept or len(trainer.history)

    def final(
        self,
        config: Mapping[str, Any],
        params: Mapping[str, Any],
        seed: int,
        train: Split,
        test: Split,
        callbacks: Sequence[Callback] = (),
    ) -> tuple[nn.Module, Preprocessing, dict[str, float]]:
        """Train the chosen configuration on ``train`` for its ``epochs`` and score it on ``test``.

        Returns:
            The network, the preprocessing fitted on ``train``, and the ``test_*`` metrics.
        """
        trainer, prep = self.trainer(config, params, seed, train, callbacks=callbacks)
        _train(trainer)
        test_metrics = evaluate(
            trainer.model,
            prep.transform_split(test),
            trainer.task,
            trainer.device,
            "test",
            trainer.loss_fn,
            _target_scaler(prep, trainer.task),
        )
        return trainer.model, prep, test_metrics

    def trainer(
        self,
        config: Mapping[str, Any],
        params: Mapping[str, Any],
        seed: int,
        train: Split,
        val: Split | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> tuple[Trainer, Preprocessing]:
        """A :class:`~tunelab.nn.Trainer` for a configuration, before its first epoch.

        The features (and regression targets) are scaled with ``train``'s statistics only; the
        network is seeded with ``seed``, built and initialised by the factory.
        """
        dataset = self.provider.splits().dataset
        prep, ready_train, ready_val = self.provider.prepared(train, val)
        model = self.factory.build(config, params, dataset.shape, dataset.n_outputs, seed)
        trainer = Trainer(
            model,
            ready_train,
            ready_val,
            task=dataset.task,
            callbacks=callbacks,
            target_scaler=_target_scaler(prep, dataset.task),
            seed=seed,
            device=self.device,
            **{name: config[name] for name in TRAINING_DEFAULTS},
        )
        return trainer, prep


@dataclass
class TrialTraining:
    """One trial's training, stepped an epoch at a time: after each epoch :meth:`after_epoch`
    saves a checkpoint if the scheduler paused the trial; once :attr:`over`, :meth:`result`
    finishes the training and gives the trial's metrics."""

    trial: Trial
    trainer: Trainer
    stopper: EarlyStopping | None
    paused: bool = False

    @property
    def over(self) -> bool:
        """True once the training ended (its epochs, early stopping, a STOP) or was paused."""
        return self.paused or self.trainer.done

    def after_epoch(self) -> None:
        """Keep a paused trial's state (it resumes from here, in this process or another)."""
        if self.trial.should_pause():
            self.trial.save_checkpoint(self.trainer.state_dict())
            self.paused = True

    def result(self) -> dict[str, float]:
        """The metrics of the best epoch when early stopping restores the best weights, else of
        the last (of the epoch it paused after, when paused)."""
        history = self.trainer.history
        if self.paused:
            return history[-1]
        self.trainer.finish()
        stopper = self.stopper
        if stopper is not None and stopper.restore_best_weights and stopper.best_epoch_:
            return history[stopper.best_epoch_ - 1]
        return history[-1]


def _train(trainer: Trainer) -> None:
    """Run ``trainer`` to its end and finish it."""
    while not trainer.done:
        trainer.run_epoch()
    trainer.finish()


def early_stopping(config: Mapping[str, Any]) -> EarlyStopping | None:
    """The configuration's early stopping: None while ``patience`` is None."""
    if config["patience"] is None:
        return None
    return EarlyStopping(
        config["monitor"],
        config["patience"],
        config["min_delta"],
        restore_best_weights=config["restore_best_weights"],
    )


def _target_scaler(prep: Preprocessing, task: str) -> Any:
    return None if task == CLASSIFICATION else prep.target_
