"""Network builders: the architectures a search space can describe with plain numbers and names."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from torch import nn

from tunelab.errors import SpecError

__all__ = ["ACTIVATIONS", "build_mlp"]

ACTIVATIONS: Mapping[str, type[nn.Module]] = MappingProxyType(
    {
        "relu": nn.ReLU,
        "leaky_relu": nn.LeakyReLU,
        "elu": nn.ELU,
        "selu": nn.SELU,
        "gelu": nn.GELU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
    }
)


def build_mlp(
    n_inputs: int,
    n_outputs: int,
    n_layers: int = 2,
    units: int = 64,
    activation: str = "relu",
    dropout: float = 0.0,
) -> nn.Sequential:
    """A multilayer perceptron: ``n_layers`` hidden blocks, then a linear head.

    Each hidden block is ``Linear -> activation`` followed by dropout when ``dropout > 0``
    (alpha dropout with SELU, which keeps its self-normalising property). ``n_layers=0`` gives a
    linear model. The head emits raw logits (or a raw value), because the losses expect them.

    Example:
        >>> build_mlp(4, 3, n_layers=1, units=8)
        Sequential(
          (0): Linear(in_features=4, out_features=8, bias=True)
          (1): ReLU()
          (2): Linear(in_features=8, out_features=3, bias=True)
        )

    Raises:
        SpecError: on ``space.<name>`` for an unknown activation or an out-of-range size or rate.
    """
    if activation not in ACTIVATIONS:
        raise SpecError(
            "space.activation",
            f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}",
        )
    if n_layers < 0:
        raise SpecError("space.n_layers", f"must be >= 0 (0 gives a linear model), got {n_layers}")
    if units < 1:
        raise SpecError("space.units", f"must be >= 1, got {units}")
    if not 0.0 <= dropout < 1.0:
        raise SpecError("space.dropout", f"must be in [0, 1), got {dropout}")
    dropout_type = nn.AlphaDropout if activation == "selu" else nn.Dropout
    layers: list[nn.Module] = []
    width = n_inputs
    for _ in range(n_layers):
        layers += [nn.Linear(width, units), ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(dropout_type(dropout))
        width = units
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)
