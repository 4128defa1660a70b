"""The Trainer: stepped one epoch at a time, saved, and resumed in another process bit for bit."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tunelab.nn.callbacks import Callback, EarlyStopping, History
from tunelab.nn.data import CLASSIFICATION, Scaler, Split, load_dataset, split_dataset
from tunelab.nn.models import build_mlp
from tunelab.nn.train import Trainer, fit, seed_everything

from .test_callbacks import SCRIPT, Scripted

ROOT = Path(__file__).resolve().parents[2]
EPOCHS, PAUSE = 10, 4

#: Settings whose state matters: momentum and Adam's moments, a warm-up then cosine (per epoch),
#: one-cycle (per batch), and dropout (its draws so far are the trainer's state).
CASES = {
    "sgd-cosine": {"optimizer": "sgd", "momentum": 0.9, "schedule": "cosine", "warmup_epochs": 2},
    "adam-onecycle": {"optimizer": "adam", "schedule": "onecycle", "lr": 0.01},
}


def iris() -> tuple[Split, Split]:
    train, val, _ = split_dataset(load_dataset("iris"), test_size=0.2, holdout=0.2, seed=0)
    scaler = Scaler().fit(train.X)
    return Split(scaler.transform(train.X), train.y), Split(scaler.transform(val.X), val.y)


def make_trainer(case: str, callbacks=None) -> Trainer:
    """The same trainer, built from scratch, in this process or another one."""
    train, val = iris()
    seed_everything(3)
    model = build_mlp(4, 3, n_layers=2, units=16, dropout=0.3)
    settings = {"lr": 0.05, "batch_size": 16, **CASES[case]}
    if callbacks is None:
        callbacks = [EarlyStopping("val_loss", patience=EPOCHS), History()]
    return Trainer(
        model,
        train,
        val,
        task="classification",
        epochs=EPOCHS,
        seed=7,
        device="cpu",
        callbacks=callbacks,
        **settings,
    )


def resume_from_files(folder: str) -> None:
    """What the new process runs: load each case's state, train to the end, save the outcome."""
    torch.set_num_threads(1)  # as the tests' own process (conftest), so the kernels match
    for case in CASES:
        trainer = make_trainer(case)
        trainer.load_state_dict(torch.load(Path(folder) / f"{case}.pt", weights_only=True))
        logs = []
        while not trainer.done:
            logs.append(trainer.run_epoch())
        last = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        trainer.finish()
        outcome = {
            "logs": logs,
            "last": last,
            "final": trainer.model.state_dict(),
            "history": trainer.callbacks[2].history_,
            "best_epoch": trainer.callbacks[1].best_epoch_,
        }
        torch.save(outcome, Path(folder) / f"{case}-resumed.pt")


def run_to_end(trainer: Trainer) -> dict[str, torch.Tensor]:
    while not trainer.done:
        trainer.run_epoch()
    last = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.finish()
    return last


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_training_resumed_in_a_new_process_is_bitwise_the_one_that_never_stopped(tmp_path):
    straight = {}
    for case in CASES:
        trainer = make_trainer(case)
        straight[case] = (trainer, run_to_end(trainer))
        paused = make_trainer(case)
        for _ in range(PAUSE):
            paused.run_epoch()
        torch.save(paused.state_dict(), tmp_path / f"{case}.pt")

    code = (
        f"from tests.nn.test_trainer import resume_from_files; resume_from_files({str(tmp_path)!r})"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr

    for case, (trainer, last) in straight.items():
        resumed = torch.load(tmp_path / f"{case}-resumed.pt", weights_only=True)
        assert resumed["logs"] == trainer.history[PAUSE:]  # every metric of epochs 5..10
        assert len(resumed["logs"]) == EPOCHS - PAUSE
        assert same_weights(resumed["last"], last), case
        assert same_weights(resumed["final"], trainer.model.state_dict()), case
        assert resumed["history"] == trainer.callbacks[2].history_ == trainer.history
        assert resumed["best_epoch"] == trainer.callbacks[1].best_epoch_
    lrs = [logs["lr"] for logs in straight["sgd-cosine"][0].history]
    assert lrs[0] < lrs[2] > lrs[-1]  # the schedule is not constant: warm-up, then cosine


def test_early_stopping_resumed_mid_count_stops_at_the_same_epoch():
    def stopper_run(pause_at=None):
        stopper = EarlyStopping("val_loss", patience=3)
        callbacks = [Scripted("val_loss", SCRIPT), stopper]
        trainer = make_trainer("sgd-cosine", callbacks)
        if pause_at is not None:
            for _ in range(pause_at):
                trainer.run_epoch()
            state = trainer.state_dict()
            stopper = EarlyStopping("val_loss", patience=3)
            trainer = make_trainer("sgd-cosine", [Scripted("val_loss", SCRIPT), stopper])
            trainer.load_state_dict(state)
        run_to_end(trainer)
        return trainer, stopper

    straight, stopper = stopper_run()
    assert stopper.stopped_epoch_ == 8 and straight.stopped  # best at 5, then 3 without
    resumed, resumed_stopper = stopper_run(pause_at=6)  # one epoch into the count
    assert resumed.epoch == 8 and resumed_stopper.stopped_epoch_ == 8
    assert resumed_stopper.best_epoch_ == 5 and resumed.history == straight.history
    assert same_weights(resumed.model.state_dict(), straight.model.state_dict())


def test_a_stopped_or_finished_training_runs_no_more_epochs():
    trainer = make_trainer("sgd-cosine")
    run_to_end(trainer)
    assert trainer.done and trainer.epoch == EPOCHS and not trainer.stopped
    with pytest.raises(RuntimeError, match=f"training is done \\(all {EPOCHS} epochs ran\\)"):
        trainer.run_epoch()


def test_deterministic_algorithms_are_on_in_each_epoch_only():
    seen = []

    class Probe(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            seen.append(torch.are_deterministic_algorithms_enabled())

    trainer = make_trainer("sgd-cosine", [Probe()])
    trainer.run_epoch()
    assert seen == [True] and not torch.are_deterministic_algorithms_enabled()


def test_the_state_names_its_callbacks_and_refuses_others():
    trainer = make_trainer("sgd-cosine")
    state = trainer.state_dict()
    assert list(state["callbacks"]) == [
        "0.DivergenceGuard",
        "1.EarlyStopping",
        "2.History",
        "3.LRSchedulerCallback",
    ]
    other = make_trainer("sgd-cosine", [History()])
    with pytest.raises(ValueError, match="saved with the callbacks .* build the trainer with the"):
        other.load_state_dict(state)


def test_fit_takes_what_the_trainer_takes():
    fit_args = inspect.signature(fit).parameters
    assert fit_args == inspect.signature(Trainer).parameters


def test_callbacks_save_what_they_learned(iris_splits):
    train, val, _ = iris_splits
    stopper, history = EarlyStopping(patience=5), History()
    seed_everything(0)
    callbacks = [stopper, history]
    fit(build_mlp(4, 3), train, val, task="classification", epochs=3, callbacks=callbacks)
    state = stopper.state_dict()
    assert set(state) == {"best_", "best_epoch_", "wait_", "stopped_epoch_", "best_state_"}
    fresh = EarlyStopping(patience=5)
    fresh.load_state_dict(state)
    assert (fresh.best_, fresh.best_epoch_) == (stopper.best_, stopper.best_epoch_)
    assert fresh.wait_ == stopper.wait_ and fresh.best_state_.keys() == stopper.best_state_.keys()
    assert history.state_dict() == {"history_": history.history_}
    assert Callback().state_dict() == {}


def test_trainers_alive_on_one_split_share_its_tensors():
    """A fused group's K members on a GPU hold the training data once, not K times; a scaled
    regression target or another split is a copy of its own."""
    train, val = iris()
    first, second = (
        Trainer(build_mlp(4, 3), train, val, task=CLASSIFICATION, seed=s) for s in (0, 1)
    )
    assert first._inputs is second._inputs and first._targets is second._targets
    copied = Split(train.X.copy(), train.y.copy())
    assert Trainer(build_mlp(4, 3), copied, val, task=CLASSIFICATION)._inputs is not first._inputs
    regression = Split(train.X, train.y.astype("float32"))
    scaler = Scaler().fit(regression.y.reshape(-1, 1))
    scaled = Trainer(build_mlp(4, 1), regression, task="regression", target_scaler=scaler)
    again = Trainer(build_mlp(4, 1), regression, task="regression", target_scaler=scaler)
    assert scaled._targets is again._targets
    unscaled = Trainer(build_mlp(4, 1), regression, task="regression")
    assert unscaled._targets is not scaled._targets
