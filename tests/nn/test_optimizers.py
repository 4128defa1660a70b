from __future__ import annotations

import pytest
import torch
from torch import nn

from tunelab.errors import SpecError
from tunelab.nn.optimizers import LOSSES, OPTIMIZERS, make_loss, make_optimizer


def params():
    return nn.Linear(3, 2).parameters()


def group(opt):
    return opt.param_groups[0]


@pytest.mark.parametrize(
    "name, kind",
    [
        ("sgd", torch.optim.SGD),
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
        ("rmsprop", torch.optim.RMSprop),
        ("adagrad", torch.optim.Adagrad),
        ("adadelta", torch.optim.Adadelta),
    ],
)
def test_each_optimizer_by_name_with_torch_defaults(name, kind):
    opt = make_optimizer(name, params(), lr=0.05)
    assert type(opt) is kind and group(opt)["lr"] == 0.05
    reference = group(kind(params(), lr=0.05))
    assert {k: v for k, v in group(opt).items() if k != "params"} == {
        k: v for k, v in reference.items() if k != "params"
    }


def test_sgd_takes_momentum_nesterov_and_weight_decay():
    g = group(make_optimizer("sgd", params(), 0.1, momentum=0.9, nesterov=True, weight_decay=1e-4))
    assert (g["momentum"], g["nesterov"], g["weight_decay"]) == (0.9, True, 1e-4)


def test_nesterov_without_momentum_is_a_spec_error():
    with pytest.raises(SpecError, match="needs momentum > 0") as e:
        make_optimizer("sgd", params(), 0.1, nesterov=True)
    assert e.value.field == "space.nesterov"


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_takes_betas_eps_and_weight_decay(name):
    g = group(
        make_optimizer(name, params(), 0.1, beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.1)
    )
    assert (g["betas"], g["eps"], g["weight_decay"]) == ((0.8, 0.95), 1e-6, 0.1)
    assert group(make_optimizer(name, params(), 0.1, beta2=0.9))["betas"] == (0.9, 0.9)


def test_rho_is_rmsprops_alpha_and_adadeltas_rho():
    g = group(make_optimizer("rmsprop", params(), 0.1, rho=0.9, momentum=0.5, eps=1e-7))
    assert (g["alpha"], g["momentum"], g["eps"]) == (0.9, 0.5, 1e-7)
    g = group(make_optimizer("adadelta", params(), 1.0, rho=0.95, eps=1e-5, weight_decay=0.01))
    assert (g["rho"], g["eps"], g["weight_decay"]) == (0.95, 1e-5, 0.01)
    g = group(make_optimizer("adagrad", params(), 0.1, eps=1e-8, weight_decay=0.01))
    assert (g["eps"], g["weight_decay"]) == (1e-8, 0.01)


def test_knobs_an_optimizer_does_not_have_are_ignored():
    g = group(make_optimizer("adam", params(), 0.1, momentum=0.9, rho=0.5, nesterov=False))
    assert "momentum" not in g and g["betas"] == (0.9, 0.999)
    assert set(OPTIMIZERS) == {"sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta"}


def test_torch_rejections_become_spec_errors():
    with pytest.raises(SpecError, match="Invalid beta parameter"):
        make_optimizer("adam", params(), 0.1, beta1=1.5)


def test_unknown_optimizer_lists_the_known_ones():
    with pytest.raises(SpecError, match="unknown optimizer 'lbfgs'; known: sgd, adam") as e:
        make_optimizer("lbfgs", params(), lr=0.1)
    assert e.value.field == "space.optimizer"


# --- losses -----------------------------------------------------------------------------------


def test_losses_by_task_and_name():
    assert type(make_loss("classification")) is nn.CrossEntropyLoss
    assert type(make_loss("regression")) is nn.MSELoss
    assert type(make_loss("regression", "mae")) is nn.L1Loss
    huber = make_loss("regression", "huber", huber_delta=2.0)
    assert type(huber) is nn.HuberLoss and huber.delta == 2.0
    assert LOSSES == {"classification": ("cross_entropy",), "regression": ("mse", "mae", "huber")}


def test_label_smoothing_changes_the_loss_as_its_formula_says():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    targets = torch.tensor([0, 1])
    plain = make_loss("classification")(logits, targets).item()
    smoothed = make_loss("classification", label_smoothing=0.3)(logits, targets).item()
    log_p = torch.log_softmax(logits, dim=1)
    # target distribution: 1 - 0.3 on the class, plus 0.3 / 3 spread over all three classes
    expected = -((0.7 * log_p[[0, 1], targets]) + 0.1 * log_p.sum(dim=1)).mean().item()
    assert smoothed == pytest.approx(expected) and smoothed != pytest.approx(plain)


def test_huber_is_quadratic_then_linear():
    huber = make_loss("regression", "huber", huber_delta=1.0)
    errors = torch.tensor([[0.5], [3.0]])
    assert huber(errors[:1], torch.zeros(1, 1)).item() == pytest.approx(0.5 * 0.5**2)
    assert huber(errors[1:], torch.zeros(1, 1)).item() == pytest.approx(1.0 * (3.0 - 0.5))


@pytest.mark.parametrize(
    "args, kwargs, field",
    [
        (("classification", "mse"), {}, "space.loss"),
        (("regression", "cross_entropy"), {}, "space.loss"),
        (("classification",), {"label_smoothing": 1.0}, "space.label_smoothing"),
        (("regression", "huber"), {"huber_delta": 0.0}, "space.huber_delta"),
    ],
)
def test_bad_loss_settings_name_their_field(args, kwargs, field):
    with pytest.raises(SpecError) as e:
        make_loss(*args, **kwargs)
    assert e.value.field == field
