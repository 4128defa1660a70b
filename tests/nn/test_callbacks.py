from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.optim.lr_scheduler import StepLR

from tunelab.errors import SpecError, TrialDiverged
from tunelab.nn.callbacks import (
    Callback,
    DivergenceGuard,
    EarlyStopping,
    History,
    LRSchedulerCallback,
    ModelCheckpoint,
    TrialReporter,
)
from tunelab.nn.models import build_mlp
from tunelab.nn.train import fit
from tunelab.trial import Trial

FAST = {"task": "classification", "batch_size": 16, "lr": 1e-2, "device": "cpu"}


class Scripted(Callback):
    """Overwrites one logged value with a scripted sequence, so a monitor sees exactly that."""

    def __init__(self, name, values):
        self.name, self.values = name, values

    def on_epoch_end(self, trainer, epoch, logs):
        logs[self.name] = self.values[epoch - 1]


class Snapshots(Callback):
    """The model's weights at the end of every epoch."""

    def on_train_begin(self, trainer):
        self.states = {}

    def on_epoch_end(self, trainer, epoch, logs):
        self.states[epoch] = {k: v.clone() for k, v in trainer.model.state_dict().items()}


class Calls(Callback):
    def on_train_begin(self, trainer):
        self.calls = ["train_begin"]

    def on_epoch_begin(self, trainer, epoch):
        self.calls.append(f"epoch_begin {epoch}")

    def on_batch_end(self, trainer, batch, loss):
        assert loss.ndim == 0
        self.calls.append(f"batch {batch}")

    def on_epoch_end(self, trainer, epoch, logs):
        self.calls.append(f"epoch_end {epoch}")

    def on_train_end(self, trainer):
        self.calls.append("train_end")


def model(seed=0):
    torch.manual_seed(seed)
    return build_mlp(4, 3, n_layers=1, units=8)


def same_weights(module, state):
    return all(torch.equal(v, state[k]) for k, v in module.state_dict().items())


# --- EarlyStopping ------------------------------------------------------------------------------

SCRIPT = [1.0, 0.8, 0.85, 0.9, 0.79, 0.81, 0.82, 0.83, 0.84, 0.85]


def test_early_stopping_stops_at_the_right_epoch_and_restores_the_best_weights(iris_splits):
    train, val, _ = iris_splits
    stopper, snapshots, net = EarlyStopping("val_loss", patience=3), Snapshots(), model()
    history = fit(
        net,
        train,
        val,
        epochs=10,
        callbacks=[Scripted("val_loss", SCRIPT), stopper, snapshots],
        **FAST,
    )
    # best 0.79 at epoch 5; epochs 6, 7, 8 do not improve: the third of them stops training
    assert len(history) == 8 and stopper.stopped_epoch_ == 8
    assert (stopper.best_, stopper.best_epoch_) == (0.79, 5)
    assert same_weights(net, snapshots.states[5]) and not same_weights(net, snapshots.states[8])


def test_early_stopping_min_delta_ignores_tiny_improvements(iris_splits):
    train, val, _ = iris_splits
    stopper = EarlyStopping("val_loss", patience=2, min_delta=0.05, restore_best_weights=False)
    net, snapshots = model(), Snapshots()
    history = fit(
        net,
        train,
        val,
        epochs=10,
        callbacks=[Scripted("val_loss", SCRIPT), stopper, snapshots],
        **FAST,
    )
    # 0.8 beats 1.0 by more than 0.05; nothing later beats 0.8 by 0.05: stop at epoch 4
    assert len(history) == 4 and stopper.best_epoch_ == 2
    assert same_weights(net, snapshots.states[4])  # not restored


def test_early_stopping_maximises_scores_and_patience_zero_stops_at_once(iris_splits):
    train, val, _ = iris_splits
    stopper = EarlyStopping("val_accuracy", patience=0)
    scores = [0.5, 0.6, 0.6, 0.9, 0.95]
    history = fit(
        model(), train, val, epochs=5, callbacks=[Scripted("val_accuracy", scores), stopper], **FAST
    )
    assert stopper.mode_ == "max" and len(history) == 3 and stopper.best_epoch_ == 2


def test_early_stopping_state_resets_for_the_next_fit(iris_splits):
    train, val, _ = iris_splits
    stopper = EarlyStopping("val_loss", patience=1)
    fit(model(), train, val, epochs=6, callbacks=[Scripted("val_loss", SCRIPT), stopper], **FAST)
    rising = [5.0, 4.0, 3.0, 2.0]
    history = fit(
        model(), train, val, epochs=4, callbacks=[Scripted("val_loss", rising), stopper], **FAST
    )
    assert len(history) == 4 and stopper.stopped_epoch_ is None and stopper.best_ == 2.0


def test_a_monitor_that_is_not_logged_is_a_clear_error(iris_splits):
    train, _, _ = iris_splits
    with pytest.raises(
        SpecError, match="'val_loss' is not logged; this fit logs train_loss, train_accuracy, lr"
    ):
        fit(model(), train, None, epochs=2, callbacks=[EarlyStopping()], **FAST)
    with pytest.raises(SpecError, match="cannot tell whether 'speed'"):
        fit(model(), train, None, epochs=1, callbacks=[EarlyStopping("speed")], **FAST)


# --- ModelCheckpoint ----------------------------------------------------------------------------


def test_model_checkpoint_writes_only_on_improvement(iris_splits, tmp_path, monkeypatch):
    train, val, _ = iris_splits
    path = tmp_path / "ckpt" / "best.pt"
    checkpoint, snapshots = ModelCheckpoint(path, monitor="val_loss"), Snapshots()
    writes = []
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f: writes.append(f) or real_save(obj, f))
    fit(
        model(),
        train,
        val,
        epochs=10,
        callbacks=[Scripted("val_loss", SCRIPT), checkpoint, snapshots],
        **FAST,
    )
    assert checkpoint.saved_epochs_ == [1, 2, 5] and len(writes) == 3
    saved = torch.load(path, weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in snapshots.states[5].items())
    assert not list(path.parent.glob("*.tmp"))


# --- divergence ---------------------------------------------------------------------------------


def test_nan_loss_is_diverged_before_anything_is_reported(iris_splits):
    train, val, _ = iris_splits
    calls = Calls()
    with pytest.raises(TrialDiverged, match=r"diverged: training loss became (nan|inf) at epoch 1"):
        fit(
            model(), train, val, epochs=3, callbacks=[calls], **{**FAST, "lr": 1e6}, optimizer="sgd"
        )
    assert "epoch_end 1" not in calls.calls


def test_a_loss_exploding_past_the_ratio_is_diverged():
    guard = DivergenceGuard(max_ratio=50)
    trainer = SimpleNamespace()
    guard.on_train_begin(trainer)
    guard.on_batch_end(trainer, 0, torch.tensor(2.0))  # the untrained network's loss
    guard.on_batch_end(trainer, 1, torch.tensor(500.0))  # later batches do not move the reference
    guard.on_epoch_end(trainer, 1, {"train_loss": 99.0})
    with pytest.raises(TrialDiverged, match=r"^diverged: training loss 101 at epoch 2 is over 50"):
        guard.on_epoch_end(trainer, 2, {"train_loss": 101.0})
    with pytest.raises(TrialDiverged, match="diverged: val_loss became inf at epoch 3"):
        guard.on_epoch_end(trainer, 3, {"train_loss": 1.0, "val_loss": math.inf})


def test_fit_adds_a_guard_unless_given_one(iris_splits):
    train, _, _ = iris_splits
    explode = Scripted("train_loss", [1.0, 1e3])
    with pytest.raises(TrialDiverged, match="over 10 times"):  # a guard placed after the script
        fit(model(), train, None, epochs=2, callbacks=[explode, DivergenceGuard(10)], **FAST)

    class Silent(DivergenceGuard):
        def on_epoch_end(self, trainer, epoch, logs):
            pass

    diverging = {**FAST, "lr": 1e6, "optimizer": "sgd"}
    history = fit(model(), train, None, epochs=1, callbacks=[Silent()], **diverging)
    assert math.isnan(history[0]["train_loss"])  # no second, default guard was added


# --- the others ---------------------------------------------------------------------------------


def test_hooks_are_called_in_order(iris_splits):
    train, _, _ = iris_splits  # 96 rows in batches of 48: two batches per epoch
    calls = Calls()
    fit(model(), train, None, epochs=2, callbacks=[calls], **{**FAST, "batch_size": 48})
    assert calls.calls == [
        "train_begin",
        "epoch_begin 1",
        "batch 0",
        "batch 1",
        "epoch_end 1",
        "epoch_begin 2",
        "batch 0",
        "batch 1",
        "epoch_end 2",
        "train_end",
    ]


def test_every_callback_sees_the_epoch_that_stops_training(iris_splits):
    train, _, _ = iris_splits

    class StopAt2(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            return epoch == 2

    history = History()
    returned = fit(model(), train, None, epochs=5, callbacks=[StopAt2(), history], **FAST)
    assert len(history.history_) == 2 and history.history_ == returned


def test_lr_scheduler_callback_builds_a_users_scheduler_from_the_optimizer(iris_splits):
    train, _, _ = iris_splits
    stepper = LRSchedulerCallback(lambda opt: StepLR(opt, step_size=1, gamma=0.5))
    history = fit(model(), train, None, epochs=3, callbacks=[stepper], **{**FAST, "lr": 0.08})
    assert [logs["lr"] for logs in history] == [0.08, 0.04, 0.02]
    with pytest.raises(SpecError, match="expected 'epoch' or 'batch', got 'step'"):
        fit(
            model(), train, None, epochs=1, callbacks=[LRSchedulerCallback(stepper, "step")], **FAST
        )


def test_trial_reporter_forwards_logs_and_stops_on_the_schedulers_word(
    iris_splits, tmp_path, make_reporter
):
    train, val, _ = iris_splits
    reporter = make_reporter(stop_at=3)
    trial = Trial(7, {}, 0, tmp_path, reporter)
    history = fit(model(), train, val, epochs=10, callbacks=[TrialReporter(trial)], **FAST)
    assert reporter.steps == [1, 2, 3] and len(history) == 3
    assert [metrics for _, _, metrics in reporter.calls] == history
    assert all(number == 7 for number, _, _ in reporter.calls)


def test_trial_reporter_stops_on_a_pause_unless_its_loop_handles_pauses(
    iris_splits, tmp_path, make_reporter
):
    train, val, _ = iris_splits
    for stop_on_pause, epochs in ((True, 2), (False, 4)):
        trial = Trial(0, {}, 0, tmp_path, make_reporter(pause_at=2))
        reporter = TrialReporter(trial, stop_on_pause=stop_on_pause)
        history = fit(model(), train, val, epochs=4, callbacks=[reporter], **FAST)
        assert len(history) == epochs


def test_callbacks_can_be_written_against_the_trainer(iris_splits):
    train, _, _ = iris_splits

    class Inspect(Callback):
        def on_train_begin(self, trainer):
            self.seen = (
                type(trainer.optimizer).__name__,
                trainer.steps_per_epoch,
                trainer.epochs,
                isinstance(trainer.loss_fn, nn.CrossEntropyLoss),
            )

    inspect = Inspect()
    fit(model(), train, None, epochs=1, callbacks=[inspect], optimizer="rmsprop", **FAST)
    assert inspect.seen == ("RMSprop", 6, 1, True)


def test_a_callback_says_whether_it_acts_per_batch_so_fused_groups_skip_the_rest():
    guard = DivergenceGuard()
    guard.on_train_begin(None)
    assert guard.acts_per_batch()
    guard.on_batch_end(None, 0, torch.tensor(2.3))
    assert not guard.acts_per_batch()  # it keeps only the first batch's loss
    step = LRSchedulerCallback(lambda opt: StepLR(opt, 1))
    assert not step.acts_per_batch()
    assert LRSchedulerCallback(lambda opt: StepLR(opt, 1), interval="batch").acts_per_batch()
    assert not Callback().acts_per_batch() and not Scripted("val_loss", []).acts_per_batch()

    class EveryBatch(Callback):
        def on_batch_end(self, trainer, batch, loss):
            pass

    assert EveryBatch().acts_per_batch()  # one of your own that acts per batch: called
