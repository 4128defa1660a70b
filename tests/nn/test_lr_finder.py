"""The learning-rate range test: its curve, its suggestions, its refusals, and that it leaves no
trace on the network or the random streams."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from tunelab.errors import SpecError, TrialDiverged, TunelabError
from tunelab.nn.callbacks import Callback
from tunelab.nn.data import Scaler, Split
from tunelab.nn.lr_finder import SUGGESTIONS, NoUsableRange, RangeTest, _suggest, range_test
from tunelab.nn.models import build_mlp
from tunelab.nn.optimizers import OPTIMIZERS
from tunelab.nn.train import Trainer, evaluate, fit, seed_everything

CPU = {"task": "classification", "device": "cpu"}
QUICK = {"start": 1e-3, "end": 0.1, "steps": 20}  # a short ramp on which Adam's loss falls


def blobs(seed: int = 0, n: int = 256, features: int = 8, classes: int = 3) -> Split:
    """Gaussian points labelled by a random linear teacher: learnable, and quick to learn."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, features)).astype(np.float32)
    return Split(X, (X @ rng.standard_normal((features, classes))).argmax(1))


def mlp(seed: int = 0, **options) -> nn.Module:
    seed_everything(seed)
    return build_mlp(8, 3, n_layers=1, units=16, **options)


# --- the suggestion against trainings at fixed rates ----------------------------------------------

GRID = np.logspace(-3, 1, 17)  # quarter decades, from too small to diverging
SGD = {"optimizer": "sgd", "momentum": 0.9}


def test_suggestion_lands_in_the_range_that_trains_well():
    """The good range is measured, not assumed: train the network afresh at each rate of a grid
    for 10 epochs (80 steps, about the test's 100) and call a rate good when it makes at least
    half the loss reduction the best rate makes. Measured: untrained loss 1.06, best 0.037 (at
    0.1), so good means a final loss <= 0.55: the rates 0.01 (0.47) to 0.316 (0.085); 0.00562
    ends at 0.70, 0.562 at 0.81, 1.0 at 8.1, and from 1.78 the divergence guard stops training.
    The range test's valley (0.0148) and minimum/10 (0.129) must land in that range, at the
    grid's resolution with no further tolerance; its steepest point (0.42) lies just above it.
    The test is deterministic on the CPU, so these numbers are what it checks every run."""
    train = blobs()
    test = range_test(mlp(), train, **CPU, **SGD)
    final = {}
    for lr in GRID:
        try:
            final[lr] = fit(mlp(), train, **CPU, **SGD, epochs=10, lr=lr)[-1]["train_loss"]
        except TrialDiverged:
            final[lr] = math.inf
    untrained = evaluate(mlp(), train, "classification", "cpu", "train")["train_loss"]
    enough = untrained - 0.5 * (untrained - min(final.values()))
    good = [lr for lr in GRID if final[lr] <= enough]
    assert good == [lr for lr in GRID if good[0] <= lr <= good[-1]]  # one interval of the grid
    assert good[0] <= test.suggestion <= good[-1], (test.suggestions, good[0], good[-1])
    assert good[0] <= test.suggestions["minimum/10"] <= good[-1]
    assert test.suggestion == test.suggestions["valley"]


# --- the ramp ---------------------------------------------------------------------------------


def test_divergence_stops_the_ramp_early():
    test = range_test(mlp(), blobs(), **CPU, optimizer="sgd", end=1e3)
    assert test.stopped.startswith("diverged at lr=")
    assert "exceeded 4 times its best" in test.stopped
    assert len(test.lrs) == len(test.losses) == len(test.smoothed) < 100
    assert test.lrs == pytest.approx(np.geomspace(1e-7, 1e3, 100)[: len(test.lrs)].tolist())
    assert test.smoothed[-1] > 4 * min(test.smoothed)


def test_a_non_finite_loss_stops_the_ramp_and_is_not_recorded():
    test = range_test(mlp(), blobs(), **CPU, optimizer="sgd", end=1e6, diverge=math.inf)
    assert test.stopped.startswith("diverged at lr=")
    assert test.stopped.endswith(("the loss is nan", "the loss is inf"))
    assert all(math.isfinite(value) for value in test.losses + test.smoothed)


def test_ramp_runs_to_the_end_of_a_range_without_divergence():
    test = range_test(mlp(), blobs(), **CPU, **QUICK)
    assert test.stopped == "end of range"
    assert test.lrs == pytest.approx(np.geomspace(1e-3, 0.1, 20).tolist())


def test_linear_mode_spaces_the_rates_evenly():
    test = range_test(mlp(), blobs(), **CPU, optimizer="adam", start=0.0, end=0.1, mode="linear")
    assert test.lrs[0] == 0.0 and test.lrs[-1] == pytest.approx(0.1)
    assert np.diff(test.lrs) == pytest.approx(np.full(99, 0.1 / 99))
    assert test.mode == "linear"


def test_smoothed_loss_is_the_bias_corrected_moving_average():
    test = range_test(mlp(), blobs(), **CPU, **QUICK, smoothing=0.1)
    average, expected = 0.0, []
    for i, loss in enumerate(test.losses):
        average = 0.9 * average + 0.1 * loss
        expected.append(average / (1 - 0.9 ** (i + 1)))
    assert test.smoothed == pytest.approx(expected)
    assert test.smoothed[0] == test.losses[0]
    raw = range_test(mlp(), blobs(), **CPU, **QUICK, smoothing=0)
    assert raw.smoothed == raw.losses


class FirstLosses(Callback):
    def on_train_begin(self, trainer):
        self.losses = []

    def on_batch_end(self, trainer, batch, loss):
        self.losses.append(loss.item())


def test_the_loss_is_the_trainers_on_the_same_batches():
    """The first step's loss comes before any update, so it must be the trainer's first loss
    with the same seed: the same loss function, the same first batch."""
    train, recorder = blobs(), FirstLosses()
    Trainer(mlp(), train, **CPU, epochs=1, seed=3, callbacks=[recorder]).run_epoch()
    test = range_test(mlp(), train, **CPU, **QUICK, seed=3)
    assert test.losses[0] == recorder.losses[0]


def test_a_regression_learns_scaled_targets_with_the_trainers_loss_and_its_options():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 8)).astype(np.float32)
    train = Split(
        X, X @ rng.standard_normal(8) * 50 + 1000
    )  # unscaled: a first loss in the hundreds
    scaler, recorder = Scaler().fit(train.y.reshape(-1, 1)), FirstLosses()
    regression = {"task": "regression", "device": "cpu", "loss": "huber", "huber_delta": 0.5}
    model = build_mlp(8, 1, n_layers=1, units=16)
    test = range_test(model, train, **regression, target_scaler=scaler, **QUICK)
    trainer = Trainer(model, train, **regression, target_scaler=scaler, callbacks=[recorder])
    trainer.run_epoch()
    assert test.losses[0] == recorder.losses[0] < 1


# --- nothing leaks ------------------------------------------------------------------------------


def test_weights_buffers_mode_and_random_state_are_as_before():
    model = mlp(dropout=0.3, batch_norm=True).eval()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    rng, deterministic = torch.get_rng_state(), torch.are_deterministic_algorithms_enabled()
    test = range_test(model, blobs(), **CPU, optimizer="sgd", momentum=0.9)
    assert max(test.smoothed) > 1.5 * min(test.smoothed)  # it did train (a copy)
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[name], value) for name, value in before.items())
    assert not model.training
    assert all(parameter.grad is None for parameter in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.are_deterministic_algorithms_enabled() == deterministic


def test_same_seed_same_result_another_seed_another_batch_order():
    model = mlp(dropout=0.3)
    first = range_test(model, blobs(), **CPU, optimizer="sgd", momentum=0.9, seed=1)
    again = range_test(model, blobs(), **CPU, optimizer="sgd", momentum=0.9, seed=1)
    other = range_test(model, blobs(), **CPU, optimizer="sgd", momentum=0.9, seed=2)
    assert first == again
    assert first.losses != other.losses


@pytest.mark.parametrize(
    ("optimizer", "options"),
    [(name, {}) for name in OPTIMIZERS] + [("sgd", {"momentum": 0.9, "nesterov": True})],
)
def test_every_optimizer_of_the_toolkit_runs(optimizer, options):
    test = range_test(mlp(batch_norm=True), blobs(), **CPU, optimizer=optimizer, **options)
    assert list(test.suggestions) == list(SUGGESTIONS)
    assert all(1e-7 < lr < 10 for lr in test.suggestions.values())
    assert test.optimizer == optimizer


# --- the rules, on curves drawn by hand --------------------------------------------------------

RATES = np.geomspace(1e-4, 1.0, 40).tolist()


def hand_drawn_curve() -> list[float]:
    """Flat at 2.0 to index 9; falls 0.05 a step to the minimum 0.5 at index 27, except for the
    steep drops 20->21 (0.5) and 21->22 (0.2); then jumps to 2.5 and plunges to 0.6 at 29 (the
    steepest fall of all, but after the minimum), and climbs."""
    drops = {20: 0.5, 21: 0.2}
    curve = [2.0] * 10
    for i in range(9, 27):
        curve.append(curve[-1] - drops.get(i, 0.05))
    return curve + [2.5, 0.6] + [0.7 + 0.3 * k for k in range(10)]


def test_hand_drawn_curve_is_what_it_says():
    curve = hand_drawn_curve()
    assert len(curve) == 40 and int(np.argmin(curve[:35])) == 27
    assert curve[27] == pytest.approx(0.5)


def test_steepest_is_the_fastest_fall_per_decade_before_the_minimum():
    # the central difference at 21 spans both steep drops (0.5 + 0.2); after the minimum, the
    # plunge to index 29 is steeper but does not count
    curve = hand_drawn_curve()
    assert _suggest(RATES, curve, curve, skip_start=0)["steepest"] == RATES[21]


def test_valley_is_fastais_point_half_way_down_the_longest_decreasing_run():
    # the longest decreasing run: one of the flat 2.0s, then indices 10..27: length 19, ending
    # at 27; fastai's start is 27 - 19 = 8, and its pick 8 + int(19/3) + int(19/6) = 17
    curve = hand_drawn_curve()
    assert _suggest(RATES, curve, curve, skip_start=0)["valley"] == RATES[17]


def test_minimum_over_ten():
    curve = hand_drawn_curve()
    assert _suggest(RATES, curve, curve, skip_start=0)["minimum/10"] == RATES[27] / 10


def test_the_first_points_and_the_last_five_are_not_read():
    curve = hand_drawn_curve()
    curve[2] = 0.1  # a lucky batch at the start, below the minimum
    curve[38] = 0.0  # and one in the blow-up
    suggestions = _suggest(RATES, curve, curve, skip_start=4)
    assert suggestions["minimum/10"] == RATES[27] / 10


# --- refusals ----------------------------------------------------------------------------------


class Constant(nn.Module):
    """Outputs the same logits whatever its weight, so no learning rate can lower the loss."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(x), 3) + 0 * self.weight


def test_a_loss_that_cannot_move_is_refused():
    with pytest.raises(NoUsableRange, match=r"^no usable range found: the smoothed loss fell by "):
        range_test(Constant(), blobs(), **CPU, optimizer="sgd")


def test_random_labels_at_tiny_rates_are_refused_with_what_to_try():
    rng = np.random.default_rng(1)
    noise = Split(blobs().X, rng.integers(0, 3, 256))
    with pytest.raises(TunelabError, match="no usable range found") as caught:
        range_test(mlp(), noise, **CPU, optimizer="sgd", start=1e-9, end=1e-8)
    message = str(caught.value)
    assert "less than the 5% a descent needs" in message
    assert "widen the range" in message and "another optimizer" in message
    assert "check the data" in message
    assert len(caught.value.lrs) == len(caught.value.smoothed) == 100  # the curve comes along


def test_a_range_that_starts_too_high_is_refused():
    with pytest.raises(NoUsableRange, match="lowest at the start of the range .* start the range"):
        range_test(mlp(), blobs(), **CPU, optimizer="sgd", start=3, end=300)


def test_a_ramp_that_diverges_at_once_is_refused():
    with pytest.raises(NoUsableRange, match=r"only \d steps ran .* too few to read a curve"):
        range_test(mlp(), blobs(), **CPU, optimizer="sgd", start=100, end=1e5)


def test_a_descent_over_the_first_points_only_is_refused():
    curve = [2.0, 1.5, 1.0] + [1.0] * 37
    with pytest.raises(NoUsableRange, match="falls only over the first 3 points .* more steps"):
        _suggest(RATES, curve, curve, skip_start=0)


# --- arguments and the record ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "field", "message"),
    [
        ({"start": 0.0}, "start", "must be > 0 for an exponential ramp, but got 0.0; use"),
        ({"start": -1.0, "mode": "linear"}, "start", "must be >= 0, got -1.0"),
        ({"start": 1e-3, "end": 1e-3}, "end", "must be > start, but got start=0.001, end=0.001"),
        ({"steps": 19}, "steps", r"must be >= 20 for a curve to read \(the suggestions skip"),
        ({"mode": "log"}, "mode", "expected one of exp, linear, got 'log'"),
        ({"smoothing": 1.0}, "smoothing", r"must be in \[0, 1\) \(0 turns it off\), got 1.0"),
        ({"smoothing": -0.1}, "smoothing", r"must be in \[0, 1\) \(0 turns it off\), got -0.1"),
        ({"diverge": 1.0}, "diverge", r"must be > 1 \(a multiple of the best smoothed loss\)"),
        ({"batch_size": 0}, "batch_size", "must be >= 1, got 0"),
    ],
)
def test_bad_arguments_name_the_field_and_the_fix(arguments, field, message):
    with pytest.raises(SpecError, match=f"^{field}: {message}") as caught:
        range_test(mlp(), blobs(), **CPU, **arguments)
    assert caught.value.field == field


def test_unknown_optimizer_and_schedule_options_are_refused():
    with pytest.raises(SpecError, match="unknown optimizer 'lamb'"):
        range_test(mlp(), blobs(), **CPU, optimizer="lamb")
    with pytest.raises(TypeError, match="unexpected keyword arguments 'warmup_epochs'.*no sched"):
        range_test(mlp(), blobs(), **CPU, warmup_epochs=2)


def test_round_trips_through_json():
    test = range_test(mlp(), blobs(), **CPU, optimizer="sgd", momentum=0.9, steps=50)
    text = json.dumps(test.to_dict())
    assert RangeTest.from_dict(json.loads(text)) == test
    assert json.loads(text)["suggestion"] == test.suggestions["valley"]
    assert test.to_dict()["batch_size"] == 32
