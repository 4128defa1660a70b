"""Every schedule, run through fit(), against its closed form."""

from __future__ import annotations

import math

import pytest
import torch

from tunelab.errors import SpecError
from tunelab.nn.callbacks import Callback
from tunelab.nn.models import build_mlp
from tunelab.nn.schedules import BATCH, EPOCH, SCHEDULES, make_schedule
from tunelab.nn.train import fit

LR = 0.1


class BatchRates(Callback):
    """The learning rate each batch used (seen before the scheduler steps after it)."""

    def on_train_begin(self, trainer):
        self.rates = []

    def on_batch_end(self, trainer, batch, loss):
        self.rates.append(trainer.lr)


def epoch_rates(iris_splits, epochs, **options):
    train, val, _ = iris_splits
    torch.manual_seed(0)
    history = fit(
        build_mlp(4, 3, n_layers=1, units=8),
        train,
        val,
        task="classification",
        epochs=epochs,
        batch_size=32,
        lr=LR,
        optimizer="sgd",
        device="cpu",
        **options,
    )
    return [logs["lr"] for logs in history]


def batch_rates(iris_splits, epochs, **options):
    train, _, _ = iris_splits  # 96 rows, batches of 32: 3 steps per epoch
    recorder = BatchRates()
    torch.manual_seed(0)
    fit(
        build_mlp(4, 3, n_layers=1, units=8),
        train,
        None,
        task="classification",
        epochs=epochs,
        batch_size=32,
        lr=LR,
        optimizer="sgd",
        device="cpu",
        callbacks=[recorder],
        **options,
    )
    return recorder.rates


def cosine(t, period, low=0.0):
    return low + (LR - low) * (1 + math.cos(math.pi * t / period)) / 2


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"schedule": "constant"}, lambda e: LR),
        ({"schedule": "step", "step_size": 2, "gamma": 0.5}, lambda e: LR * 0.5 ** (e // 2)),
        ({"schedule": "exponential", "decay": 0.3}, lambda e: LR * math.exp(-0.3 * e)),
        ({"schedule": "time", "decay": 0.5}, lambda e: LR / (1 + 0.5 * e)),
        ({"schedule": "cosine", "min_lr": 0.01}, lambda e: cosine(e, 8, 0.01)),
    ],
)
def test_per_epoch_schedules_follow_their_closed_form(iris_splits, options, expected):
    rates = epoch_rates(iris_splits, 8, **options)
    assert rates == pytest.approx([expected(e) for e in range(8)], rel=1e-9, abs=1e-15)


def test_time_based_decay_gives_the_exact_keras_rates(iris_splits):
    rates = epoch_rates(iris_splits, 4, schedule="time", decay=1.0)
    assert rates == [LR, LR / 2, LR / 3, LR / 4]


def test_warm_restarts_restart_and_grow_their_period(iris_splits):
    rates = epoch_rates(iris_splits, 10, schedule="warm_restarts", T_0=3, T_mult=2)
    # periods of 3, then 6 epochs; each restart jumps back to lr0
    expected = [cosine(e, 3) for e in range(3)] + [cosine(e, 6) for e in range(6)] + [LR]
    assert rates == pytest.approx(expected, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(
    "options, after_warmup",
    [
        ({"schedule": "cosine"}, lambda t: cosine(t, 6)),
        ({"schedule": "step", "step_size": 2, "gamma": 0.1}, lambda t: LR * 0.1 ** (t // 2)),
        ({"schedule": "time", "decay": 1.0}, lambda t: LR / (1 + t)),
        ({"schedule": "constant"}, lambda t: LR),
    ],
)
def test_warmup_rises_linearly_then_hands_over(iris_splits, options, after_warmup):
    rates = epoch_rates(iris_splits, 8, warmup_epochs=2, **options)
    expected = [LR / 3, 2 * LR / 3] + [after_warmup(t) for t in range(6)]
    assert rates == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_cyclic_is_a_triangle_per_batch(iris_splits):
    rates = batch_rates(iris_splits, 4, schedule="cyclic", cycle_epochs=2, min_lr=0.01)
    half = 3  # one cycle = 2 epochs = 6 batches: 3 up, 3 down

    def triangle(i):
        cycle = math.floor(1 + i / (2 * half))
        x = abs(i / half - 2 * cycle + 1)
        return 0.01 + (LR - 0.01) * max(0.0, 1 - x)

    assert rates == pytest.approx([triangle(i) for i in range(12)], rel=1e-9)
    assert max(rates) == pytest.approx(LR) and min(rates) == pytest.approx(0.01)


def test_onecycle_climbs_then_anneals_per_batch(iris_splits):
    rates = batch_rates(iris_splits, 4, schedule="onecycle", pct_start=0.25)
    total, start, end = 12, LR / 25, LR / 25 / 1e4
    peak = 0.25 * total - 1  # the step at which the rate reaches lr0

    def annealed(high, low, fraction):
        return low + (high - low) / 2 * (1 + math.cos(math.pi * fraction))

    expected = [
        annealed(start, LR, i / peak) if i <= peak else annealed(LR, end, (i - peak) / (11 - peak))
        for i in range(total)
    ]
    assert rates == pytest.approx(expected, rel=1e-9)
    assert rates[0] == pytest.approx(LR / 25) and rates[-1] == pytest.approx(end)


def test_reference_batch_scales_the_learning_rate_linearly(iris_splits):
    train, _, _ = iris_splits
    for batch_size, expected in [(16, 0.025), (64, 0.1), (128, 0.2)]:
        history = fit(
            build_mlp(4, 3),
            train,
            None,
            task="classification",
            epochs=1,
            batch_size=batch_size,
            lr=0.05,
            reference_batch=32,
            optimizer="sgd",
            device="cpu",
        )
        assert history[0]["lr"] == pytest.approx(expected, rel=1e-12)


def test_intervals_and_no_scheduler_for_a_constant_rate():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    assert make_schedule("constant", opt, epochs=5, steps_per_epoch=2) == (None, EPOCH)
    for name in SCHEDULES:
        _, interval = make_schedule(name, opt, epochs=5, steps_per_epoch=2)
        assert interval == (BATCH if name in ("cyclic", "onecycle") else EPOCH)


@pytest.mark.parametrize(
    "name, options, field, message",
    [
        ("linear", {}, "space.schedule", "unknown schedule 'linear'; known: constant, step"),
        ("onecycle", {"warmup_epochs": 2}, "space.warmup_epochs", "warms up by itself"),
        ("cosine", {"warmup_epochs": 5}, "space.warmup_epochs", r"in \[0, 5\)"),
        ("cosine", {"min_lr": 0.5}, "space.min_lr", r"in \[0, lr=0.1\)"),
        ("step", {"step_size": 0}, "space.step_size", ">= 1"),
        ("exponential", {"decay": -1.0}, "space.decay", ">= 0"),
        ("warm_restarts", {"T_0": 0}, "space.T_0", ">= 1"),
        ("onecycle", {"pct_start": 1.0}, "space.pct_start", r"in \(0, 1\)"),
        ("cyclic", {"cycle_epochs": 0}, "space.cycle_epochs", "> 0"),
    ],
)
def test_bad_schedule_settings_name_their_field(name, options, field, message):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    with pytest.raises(SpecError, match=message) as e:
        make_schedule(name, opt, epochs=5, steps_per_epoch=2, **options)
    assert e.value.field == field
