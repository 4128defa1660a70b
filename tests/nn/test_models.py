from __future__ import annotations

import pytest
import torch
from torch import nn

from tunelab.errors import SpecError
from tunelab.nn.models import (
    ACTIVATIONS,
    Dropout,
    build_cnn,
    build_mlp,
    builder_path,
    import_builder,
)


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
    assert not layers_of(model, Dropout)
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
        Dropout,
        nn.Linear,
        nn.ReLU,
        Dropout,
        nn.Linear,
    ]
    assert all(d.p == 0.3 for d in layers_of(model, Dropout))


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


# --- batch norm, per-layer widths, images ------------------------------------------------------


def test_batch_norm_sits_between_linear_and_activation_and_drops_the_bias():
    model = build_mlp(4, 2, n_layers=2, units=8, batch_norm=True, dropout=0.1)
    assert [type(layer) for layer in model] == [
        nn.Linear,
        nn.BatchNorm1d,
        nn.ReLU,
        Dropout,
        nn.Linear,
        nn.BatchNorm1d,
        nn.ReLU,
        Dropout,
        nn.Linear,
    ]
    hidden = layers_of(model, nn.Linear)[:-1]
    assert all(layer.bias is None for layer in hidden) and model[-1].bias is not None


def test_units_may_differ_per_layer():
    model = build_mlp(5, 2, n_layers=3, units=[32, 16, 8])
    widths = [(lin.in_features, lin.out_features) for lin in layers_of(model, nn.Linear)]
    assert widths == [(5, 32), (32, 16), (16, 8), (8, 2)]
    with pytest.raises(SpecError, match=r"needs 3 values \(one per layer\), got \[32, 16\]"):
        build_mlp(5, 2, n_layers=3, units=[32, 16])


def test_mlp_flattens_image_shaped_inputs():
    model = build_mlp((1, 8, 8), 10, n_layers=1, units=16)
    assert isinstance(model[0], nn.Flatten) and model[1].in_features == 64
    assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


@pytest.mark.parametrize(
    "shape, dims, conv, pooled",
    [
        ((1, 8, 8), 2, nn.Conv2d, 16 * 2 * 2),  # 8 -> 4 -> 2
        ((8, 8), 2, nn.Conv2d, 16 * 2 * 2),  # no channel axis: one channel
        ((1, 40), 1, nn.Conv1d, 16 * 10),  # 40 -> 20 -> 10
        ((40,), 1, nn.Conv1d, 16 * 10),
        ((3, 40), None, nn.Conv1d, 16 * 10),  # dims from the shape
    ],
)
def test_cnn_output_shapes(shape, dims, conv, pooled):
    model = build_cnn(shape, 10, conv_layers=2, channels=[8, 16], n_layers=1, units=12, dims=dims)
    convs = layers_of(model, conv)
    channels_in = 1 if len(shape) == (dims or 1) else shape[0]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(channels_in, 8), (8, 16)]
    assert all(c.kernel_size[0] == 3 and c.padding == "same" for c in convs)
    assert layers_of(model, nn.Linear)[0].in_features == pooled
    assert model(torch.zeros(5, *shape)).shape == (5, 10)


def test_cnn_pooling_stops_at_one_and_none_keeps_the_size():
    model = build_cnn((1, 8, 8), 3, conv_layers=5, channels=4, n_layers=0)
    assert len(layers_of(model, nn.MaxPool2d)) == 3  # 8 -> 4 -> 2 -> 1, then no more
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
    flat = build_cnn((1, 8, 8), 3, conv_layers=2, channels=4, pool="none", n_layers=0)
    assert layers_of(flat, nn.Linear)[0].in_features == 4 * 8 * 8
    avg = build_cnn((1, 40), 3, conv_layers=1, channels=4, pool="avg", kernel_size=5)
    assert len(layers_of(avg, nn.AvgPool1d)) == 1
    assert layers_of(avg, nn.Conv1d)[0].kernel_size == (5,)


def test_cnn_batch_norm_and_dropout_layers_are_present():
    model = build_cnn(
        (1, 40), 10, conv_layers=2, channels=8, n_layers=2, units=16, dropout=0.2, batch_norm=True
    )
    assert len(layers_of(model, nn.BatchNorm1d)) == 4  # two conv blocks, two dense blocks
    assert len(layers_of(model, Dropout)) == 2  # the dense head only
    assert all(c.bias is None for c in layers_of(model, nn.Conv1d))
    model.eval()
    assert model(torch.zeros(1, 1, 40)).shape == (1, 10)


@pytest.mark.parametrize("shape, dims", [((64,), 2), ((1, 8, 8), 1), ((1, 2, 3, 4), None)])
def test_cnn_with_a_shape_of_the_wrong_rank_asks_for_data_shape(shape, dims):
    with pytest.raises(SpecError, match=r"set data\.shape, e\.g\. \[1, 8, 8\]") as e:
        build_cnn(shape, 10, dims=dims)
    assert e.value.field == "data.shape"


@pytest.mark.parametrize(
    "field, kwargs",
    [
        ("space.conv_layers", {"conv_layers": 0}),
        ("space.kernel_size", {"kernel_size": 0}),
        ("space.pool", {"pool": "max2"}),
        ("space.channels", {"channels": 0}),
        ("space.activation", {"activation": "swish"}),
    ],
)
def test_cnn_out_of_range_settings_name_their_field(field, kwargs):
    with pytest.raises(SpecError) as e:
        build_cnn((1, 8, 8), 2, **kwargs)
    assert e.value.field == field


# --- your own builder ---------------------------------------------------------------------------

USER_MODULE = """
from torch import nn

def build_model(params, input_shape, n_outputs):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[-1], params.get("width", 4)),
                         nn.ReLU(), nn.Linear(params.get("width", 4), n_outputs))
"""


def test_import_builder_from_a_file_and_from_a_module(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(USER_MODULE)
    from_file = import_builder(f"{tmp_path / 'my_models.py'}:build_model")
    assert from_file({"width": 7}, (3,), 2)[1].out_features == 7
    assert builder_path(from_file) == f"{tmp_path / 'my_models.py'}:build_model"
    monkeypatch.syspath_prepend(str(tmp_path))
    from_module = import_builder("my_models:build_model")
    assert from_module({}, (3,), 2)[-1].out_features == 2
    assert builder_path(from_module) == "my_models:build_model"


@pytest.mark.parametrize(
    "path, message",
    [
        ("no_such_module_xyz:build", "cannot import 'no_such_module_xyz'"),
        ("missing.py:build", "model file .*missing.py' not found"),
        ("tunelab.nn.models:no_such_function", "has no function 'no_such_function'"),
        ("just_a_name", "expected a builtin model or 'module:function'"),
    ],
)
def test_import_builder_errors_name_the_model_field(path, message):
    with pytest.raises(SpecError, match=message) as e:
        import_builder(path)
    assert e.value.field == "model"
