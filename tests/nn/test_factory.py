"""The model factory: builtin architectures and builders of your own, seeded and initialised."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tunelab.errors import SpecError
from tunelab.nn import ModelFactory, hyperparameters

BUILDER = """
from torch import nn


def build(params, input_shape, n_outputs):
    return nn.Linear(input_shape[0], n_outputs)
"""


def weights(model):
    return [p.detach().clone() for p in model.parameters()]


def test_the_seed_alone_decides_the_first_weights():
    factory, config = ModelFactory("mlp"), {**hyperparameters("mlp"), "init": "lecun_normal"}
    first = weights(factory.build(config, {}, (4,), 3, seed=1))
    torch.rand(100)  # whatever ran before does not matter
    again = weights(factory.build(config, {}, (4,), 3, seed=1))
    other = weights(factory.build(config, {}, (4,), 3, seed=2))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])
    assert not first[1].any()  # lecun_normal zeroes the biases: init reached the layers


def test_a_builder_file_is_found_beside_the_spec(tmp_path):
    (tmp_path / "nets.py").write_text(BUILDER)
    factory = ModelFactory("nets.py:build", base_dir=tmp_path)
    model = factory.build({"init": "default", "init_scale": 0.05}, {}, (4,), 3, seed=0)
    assert isinstance(model, nn.Linear) and factory.name() == "nets.py:build"


def test_a_builder_function_is_named_by_its_import_path():
    assert ModelFactory(weights).name() == f"{__name__}:weights"
    assert ModelFactory("cnn1d").name() == "cnn1d" and ModelFactory("cnn1d").builder() is None


def test_an_unknown_model_or_a_shape_a_cnn_cannot_take_is_named():
    with pytest.raises(SpecError, match="unknown model 'mpl'; did you mean 'mlp'") as e:
        ModelFactory("mpl").builder()
    assert e.value.field == "model"
    with pytest.raises(SpecError, match=r"needs samples of 2 or 3 dimensions, but \[64\]") as e:
        ModelFactory("cnn2d").check_input_shape((64,))
    assert e.value.field == "data.shape"
