from __future__ import annotations

import pytest
import torch
from torch import nn

from tunelab.errors import SpecError
from tunelab.nn.models import ACTIVATIONS, build_mlp


def layers_of(model, kind):
    return [layer for layer in model if type(layer) is kind]


def test_hidden_blocks_then_a_linear_head():
    model = build_mlp(10, 3, n_layers=3, units=16)
    linears = layers_of(model, nn.Linear)
    assert [(lin.in_features, lin.out_features) for lin in linears] == [
        (10, 16),
        (16, 16),
        (16, 16),
        (16, 3),
    ]
    assert len(layers_of(model, nn.ReLU)) == 3
    assert not layers_of(model, nn.Dropout)
    assert isinstance(model[-1], nn.Linear)
    assert model(torch.zeros(5, 10)).shape == (5, 3)


def test_zero_layers_is_a_linear_model():
    model = build_mlp(4, 2, n_layers=0, activation="tanh", dropout=0.5)
    assert len(model) == 1 and isinstance(model[0], nn.Linear)
    assert (model[0].in_features, model[0].out_features) == (4, 2)


def test_dropout_follows_each_activation():
    model = build_mlp(4, 2, n_layers=2, units=8, dropout=0.3)
    assert [type(layer) for layer in model] == [
        nn.Linear,
        nn.ReLU,
        nn.Dropout,
        nn.Linear,
        nn.ReLU,
        nn.Dropout,
        nn.Linear,
    ]
    assert all(d.p == 0.3 for d in layers_of(model, nn.Dropout))


def test_selu_gets_alpha_dropout():
    model = build_mlp(4, 2, n_layers=1, activation="selu", dropout=0.1)
    assert [type(layer) for layer in model] == [nn.Linear, nn.SELU, nn.AlphaDropout, nn.Linear]


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_every_activation_is_used_by_name(name):
    model = build_mlp(3, 1, n_layers=2, activation=name)
    assert len(layers_of(model, ACTIVATIONS[name])) == 2


def test_unknown_activation_lists_the_known_ones():
    with pytest.raises(SpecError, match="unknown activation 'swish'; known: relu, leaky_relu") as e:
        build_mlp(3, 1, activation="swish")
    assert e.value.field == "space.activation"


@pytest.mark.parametrize(
    "field, kwargs",
    [
        ("space.n_layers", {"n_layers": -1}),
        ("space.units", {"units": 0}),
        ("space.dropout", {"dropout": 1.0}),
    ],
)
def test_out_of_range_sizes_name_their_field(field, kwargs):
    with pytest.raises(SpecError) as e:
        build_mlp(3, 1, **kwargs)
    assert e.value.field == field
