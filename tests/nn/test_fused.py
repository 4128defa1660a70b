"""Fused training: every member ends where it would have alone (tunelab.nn.fused)."""

import io
import math

import pytest
import torch
from torch import nn

from tunelab.errors import TrialDiverged
from tunelab.nn import Split, Trainer, build_cnn, build_mlp, load_dataset, split_dataset
from tunelab.nn.fused import run_epochs_fused, signature
from tunelab.nn.masks import DropoutStream
from tunelab.nn.models import Dropout


@pytest.fixture(scope="module")
def digits():
    return split_dataset(load_dataset("digits"), 0.2, 0.2, seed=0)


@pytest.fixture(scope="module")
def diabetes():
    return split_dataset(load_dataset("diabetes"), 0.2, 0.2, seed=0)


DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    ),
]


def trainer(splits, build, seed, task="classification", device="cpu", **settings):
    train, val, _ = splits
    torch.manual_seed(seed)
    model = build()
    return Trainer(model, train, val, task=task, seed=seed, device=device, **settings)


def alone(make, epochs):
    """Each member trained by itself, as without fusing."""
    results = []
    for member in make():
        for _ in range(epochs):
            member.run_epoch()
        results.append(member)
    return results


def together(make, epochs):
    members = make()
    for _ in range(epochs):
        outcomes = run_epochs_fused(members)
        assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    return members


def assert_same(fused, single, tol=1e-4):
    for a, b in zip(fused, single, strict=True):
        assert len(a.history) == len(b.history)
        for logs_a, logs_b in zip(a.history, b.history, strict=True):
            assert logs_a.keys() == logs_b.keys()
            for key in logs_a:
                assert math.isclose(logs_a[key], logs_b[key], rel_tol=tol, abs_tol=tol), key
        for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
            torch.testing.assert_close(p, q, atol=tol, rtol=tol)


def mlp_members(splits, optimizer, device="cpu", per_batch=True):
    """Four members of one shape whose numbers all differ: seeds, rates, dropout, momentum or
    betas, weight decay, label smoothing, schedules stepped per epoch and (``per_batch``) per
    batch: a group works out an epoch's learning rates at its start unless one may change."""
    second = "onecycle" if per_batch else "exponential"
    settings = [
        {"lr": 0.05, "momentum": 0.9, "schedule": "cosine", "label_smoothing": 0.1},
        {"lr": 0.01, "momentum": 0.0, "schedule": second, "weight_decay": 1e-3},
        {"lr": 0.1, "momentum": 0.5, "nesterov": True, "schedule": "step", "step_size": 1},
        {"lr": 0.02, "momentum": 0.8, "schedule": "constant", "warmup_epochs": 1},
    ]
    if optimizer != "sgd":
        betas = [(0.9, 0.999), (0.8, 0.99), (0.95, 0.9), (0.5, 0.999)]
        for one, (b1, b2) in zip(settings, betas, strict=True):
            one.pop("momentum"), one.pop("nesterov", None)
            one.update(beta1=b1, beta2=b2, lr=one["lr"] / 10)
    dropouts = [0.1, 0.5, 0.3, 0.2]

    def make():
        return [
            trainer(
                splits,
                lambda p=p: build_mlp(64, 10, n_layers=2, units=32, dropout=p),
                seed=seed,
                epochs=3,
                batch_size=64,
                optimizer=optimizer,
                device=device,
                **one,
            )
            for seed, p, one in zip([3, 1, 4, 1], dropouts, settings, strict=True)
        ]

    return make


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("per_batch", [True, False], ids=["per-batch", "per-epoch"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_members_end_where_they_would_alone(digits, optimizer, per_batch, device):
    """Dropout included: alone, a member draws from its own dropout stream; fused, the group
    draws every member's next mask from theirs at once (CUDA runs where a device is)."""
    make = mlp_members(digits, optimizer, device, per_batch)
    assert len({signature(t) for t in make()}) == 1
    assert_same(together(make, 3), alone(make, 3))


def test_schedules_see_their_optimizers_stepped_by_the_group(digits, recwarn):
    """torch's schedulers warn of a schedule stepped before its optimizer: the group steps it."""
    together(mlp_members(digits, "adam"), 2)
    assert not [w for w in recwarn if "lr_scheduler.step()" in str(w.message)]


@pytest.mark.parametrize(
    "dropout, hashed",
    [(Dropout, False), (Dropout, True), (nn.Dropout, False)],
    ids=["builtin", "builtin-hashed", "torchs"],
)
def test_dropout_of_ours_or_torchs_with_a_member_that_draws_none(digits, dropout, hashed):
    """The builtin models' dropout (by generators, as on the CPU, or hashed, as on a GPU) and
    torch's draw differently; a rate of 0 draws nothing. Batched and single matrix products
    round differently, and 72 steps at this rate grow that to 4e-4 in a few weights (on one
    thread); one mask drawn otherwise would move most weights by more than 1e-3 (a third of
    them, measured)."""

    def make():
        members = [
            trainer(
                digits,
                lambda p=p: nn.Sequential(
                    nn.Linear(64, 32), nn.ReLU(), dropout(p), nn.Linear(32, 10)
                ),
                seed=seed,
                epochs=2,
                lr=1e-2,
            )
            for seed, p in [(0, 0.0), (1, 0.4), (2, 0.2)]
        ]
        for member in members:
            member.dropout = DropoutStream(member._seed, hashed)
        return members

    assert_same(together(make, 2), alone(make, 2), tol=1e-3)


def test_a_1d_cnn_by_grouped_convolution(digits):
    def make():
        return [
            trainer(
                digits,
                lambda pool=pool: build_cnn((64,), 10, conv_layers=2, channels=8, pool=pool),
                seed=c,
                epochs=2,
                lr=lr,
            )
            for c, lr, pool in [(0, 1e-3, "max"), (1, 3e-3, "max"), (2, 1e-2, "max")]
        ]

    assert_same(together(make, 2), alone(make, 2))


@pytest.mark.parametrize("loss", ["mse", "mae", "huber"])
def test_regression_losses(diabetes, loss):
    def make():
        return [
            trainer(
                diabetes,
                lambda: build_mlp(10, 1, units=16),
                seed=seed,
                task="regression",
                epochs=2,
                loss=loss,
                huber_delta=delta,
                lr=1e-2,
            )
            for seed, delta in [(0, 1.0), (1, 0.5)]
        ]

    assert_same(together(make, 2), alone(make, 2))


def test_a_member_may_leave_and_go_on_alone_from_its_state(digits):
    """Fused for two epochs, then one alone from its state dict: as if never fused."""
    make = mlp_members(digits, "adam")
    fused = make()
    for _ in range(2):
        run_epochs_fused(fused)
    states = [member.state_dict() for member in fused]
    resumed = make()
    for member, state in zip(resumed, states, strict=True):
        member.load_state_dict(state)
        member.run_epoch()
    assert_same(resumed, alone(make, 3))
    for member, single in zip(fused, alone(make, 2), strict=True):  # the group's tensors hold
        assert _saved_size(member) <= _saved_size(single) + 1024  # K rows: a member saves its own


def _saved_size(trainer):
    saved = io.BytesIO()
    torch.save(trainer.state_dict(), saved)
    return len(saved.getvalue())


def test_a_diverging_member_fails_alone(digits):
    def make(rates):
        return lambda: [
            trainer(digits, lambda: build_mlp(64, 10, units=32), seed=s, epochs=2, lr=lr)
            for s, lr in rates
        ]

    members = make([(0, 1e-3), (1, 1e6), (2, 3e-3)])()
    outcomes = run_epochs_fused(members)
    assert isinstance(outcomes[1], TrialDiverged)
    survivors = [members[0], members[2]]
    run_epochs_fused(survivors)
    assert_same(survivors, alone(make([(0, 1e-3), (2, 3e-3)]), 2))


def test_what_cannot_be_fused_has_no_signature(digits):
    batch_norm = trainer(digits, lambda: build_mlp(64, 10, batch_norm=True), seed=0)
    rmsprop = trainer(digits, lambda: build_mlp(64, 10), seed=0, optimizer="rmsprop")
    assert signature(batch_norm) is None and signature(rmsprop) is None
    wide = trainer(digits, lambda: build_mlp(64, 10, units=128), seed=0)
    narrow = trainer(digits, lambda: build_mlp(64, 10, units=64), seed=0)
    assert signature(wide) != signature(narrow)
    with pytest.raises(ValueError, match="share one signature"):
        run_epochs_fused([wide, narrow])


def test_members_share_their_training_and_validation_data(digits):
    """The validation pass is one for the group: a member validated on other rows is apart."""
    train, val, test = digits
    one = trainer(digits, lambda: build_mlp(64, 10), seed=0)
    same = trainer((train, Split(val.X.copy(), val.y.copy()), test), lambda: build_mlp(64, 10), 1)
    other = trainer((train, test, val), lambda: build_mlp(64, 10), seed=0)
    assert signature(one) == signature(same) != signature(other)
