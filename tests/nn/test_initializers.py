from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tunelab.errors import SpecError
from tunelab.nn.initializers import INITIALIZERS, init_weights
from tunelab.nn.models import build_cnn, build_mlp

FAN_IN, FAN_OUT = 400, 300  # 120,000 weights: sample statistics within a few per cent


def initialised(scheme, activation="relu", scale=0.05, seed=0):
    torch.manual_seed(seed)
    return init_weights(nn.Linear(FAN_IN, FAN_OUT), scheme, activation, scale)


def uniform_bound_and_std(weight):
    return weight.abs().max().item(), weight.std().item()


@pytest.mark.parametrize(
    "scheme, activation, std",
    [
        ("normal", "relu", 0.05),
        ("xavier_normal", "relu", math.sqrt(2 / (FAN_IN + FAN_OUT))),
        ("kaiming_normal", "relu", math.sqrt(2 / FAN_IN)),
        ("kaiming_normal", "tanh", 5 / 3 / math.sqrt(FAN_IN)),
        ("kaiming_normal", "selu", 0.75 / math.sqrt(FAN_IN)),
        ("lecun_normal", "relu", 1 / math.sqrt(FAN_IN)),
    ],
)
def test_normal_initialisers_have_the_expected_spread(scheme, activation, std):
    layer = initialised(scheme, activation)
    assert layer.weight.mean().item() == pytest.approx(0, abs=0.02 * std)
    assert layer.weight.std().item() == pytest.approx(std, rel=0.02)
    assert torch.equal(layer.bias, torch.zeros(FAN_OUT))


@pytest.mark.parametrize(
    "scheme, activation, bound",
    [
        ("uniform", "relu", 0.05),
        ("xavier_uniform", "relu", math.sqrt(6 / (FAN_IN + FAN_OUT))),
        ("kaiming_uniform", "relu", math.sqrt(2) * math.sqrt(3 / FAN_IN)),
        ("kaiming_uniform", "leaky_relu", math.sqrt(2 / (1 + 0.01**2)) * math.sqrt(3 / FAN_IN)),
        ("lecun_uniform", "selu", math.sqrt(3 / FAN_IN)),
    ],
)
def test_uniform_initialisers_fill_their_interval(scheme, activation, bound):
    layer = initialised(scheme, activation)
    largest, std = uniform_bound_and_std(layer.weight)
    assert bound * 0.999 < largest <= bound  # reaches the edge of U(-a, a), never beyond
    assert std == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert torch.equal(layer.bias, torch.zeros(FAN_OUT))


def test_init_scale_sets_the_width_of_uniform_and_normal():
    assert initialised("normal", scale=0.2).weight.std().item() == pytest.approx(0.2, rel=0.02)
    largest, _ = uniform_bound_and_std(initialised("uniform", scale=0.3).weight)
    assert 0.299 < largest <= 0.3


def test_orthogonal_rows_are_orthonormal():
    weight = initialised("orthogonal").weight  # 300 x 400: the rows are orthonormal
    torch.testing.assert_close(weight @ weight.T, torch.eye(FAN_OUT), atol=1e-4, rtol=0)


def test_zeros_warns_that_symmetry_is_never_broken():
    with pytest.warns(UserWarning, match="never learn different features.*symmetry"):
        layer = initialised("zeros")
    assert not layer.weight.any() and not layer.bias.any()


def test_default_keeps_torchs_own_initialisation():
    torch.manual_seed(3)
    expected = nn.Linear(FAN_IN, FAN_OUT)
    layer = initialised("default", seed=3)
    assert torch.equal(layer.weight, expected.weight) and torch.equal(layer.bias, expected.bias)


def test_every_linear_and_conv_layer_is_initialised_and_norms_are_left_alone():
    torch.manual_seed(0)
    model = build_cnn((1, 40), 10, conv_layers=2, channels=64, kernel_size=5, batch_norm=True)
    model[-1].bias.data.fill_(1.0)
    init_weights(model, "kaiming_normal", "relu")
    weighted = [m for m in model.modules() if isinstance(m, nn.Conv1d | nn.Linear)]
    assert len(weighted) == 4
    for layer in weighted:
        fan_in = layer.weight[0].numel()  # in_channels * kernel for a convolution
        std = layer.weight.std().item()
        assert std == pytest.approx(math.sqrt(2 / fan_in), rel=0.15), type(layer)
        assert layer.bias is None or not layer.bias.any()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    assert norms and all(torch.equal(n.weight, torch.ones_like(n.weight)) for n in norms)


@pytest.mark.parametrize("scheme", [s for s in INITIALIZERS if s not in ("default", "zeros")])
def test_each_scheme_changes_every_layer_of_an_mlp(scheme):
    torch.manual_seed(0)
    model = build_mlp(20, 3, n_layers=2, units=30)
    before = [layer.weight.clone() for layer in model if isinstance(layer, nn.Linear)]
    torch.manual_seed(1)
    init_weights(model, scheme)
    after = [layer.weight for layer in model if isinstance(layer, nn.Linear)]
    assert all(not torch.equal(a, b) for a, b in zip(after, before, strict=True))


def test_unknown_initialiser_and_bad_scale_name_their_fields():
    with pytest.raises(SpecError, match="unknown initialiser 'glorot'; known: default, zeros") as e:
        init_weights(nn.Linear(2, 2), "glorot")
    assert e.value.field == "space.init"
    with pytest.raises(SpecError, match="must be > 0") as e:
        init_weights(nn.Linear(2, 2), "normal", scale=0.0)
    assert e.value.field == "space.init_scale"
