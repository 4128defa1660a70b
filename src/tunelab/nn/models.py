"""Network builders: the architectures a search space can describe with plain numbers and names,
and the loader for a model builder of your own (``module:function`` or ``path/file.py:function``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from tunelab.errors import SpecError
from tunelab.nn.masks import active

__all__ = ["ACTIVATIONS", "POOLINGS", "build_cnn", "build_mlp", "import_builder", "builder_path"]

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

#: Pooling after each convolution block: halves every spatial size (``none`` keeps it).
POOLINGS = ("max", "avg", "none")


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose masks, while a :class:`~tunelab.nn.Trainer` trains, come from the
    trainer's own :class:`~tunelab.nn.masks.DropoutStream`, so a trial draws the same masks alone
    or in a fused group (:mod:`tunelab.nn.fused`), on the CPU and on CUDA. Outside a trainer's
    training it is torch's own dropout.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stream = active()
        if not self.training or self.p == 0 or stream is None:
            return super().forward(x)
        return x * stream.mask(x, self.p)


#: ``build_model(params, input_shape, n_outputs) -> nn.Module``: a model of your own.
ModelBuilder = Callable[[dict[str, Any], tuple[int, ...], int], nn.Module]


def build_mlp(
    input_shape: int | Sequence[int],
    n_outputs: int,
    n_layers: int = 2,
    units: int | Sequence[int] = 64,
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> nn.Sequential:
    """A multilayer perceptron: ``n_layers`` hidden blocks, then a linear head.

    Each hidden block is ``Linear -> [BatchNorm1d] -> activation -> [dropout]``: batch norm sits
    before the activation as in Ioffe & Szegedy (2015), and then the linear layer needs no bias
    of its own. Dropout is alpha dropout with SELU, which keeps its self-normalising property.
    ``n_layers=0`` gives a linear model. The head emits raw logits (or a raw value), because the
    losses expect them. Inputs of more than one dimension (images) are flattened first.

    Args:
        input_shape: the shape of one sample (or its number of features).
        n_outputs: classes, or 1 for a regression.
        n_layers: hidden layers.
        units: the width of every hidden layer, or one width per layer.
        activation: a name from :data:`ACTIVATIONS`.
        dropout: the drop probability after each hidden layer (0 for none).
        batch_norm: whether each hidden layer normalises its outputs over the batch.

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
    shape = _as_shape(input_shape)
    if n_layers < 0:
        raise SpecError("space.n_layers", f"must be >= 0 (0 gives a linear model), got {n_layers}")
    widths = _widths("units", units, n_layers)
    layers: list[nn.Module] = [nn.Flatten()] if len(shape) > 1 else []
    layers += _dense_blocks(math.prod(shape), widths, activation, dropout, batch_norm)
    layers.append(nn.Linear(widths[-1] if widths else math.prod(shape), n_outputs))
    return nn.Sequential(*layers)


def build_cnn(
    input_shape: Sequence[int],
    n_outputs: int,
    conv_layers: int = 2,
    channels: int | Sequence[int] = 32,
    kernel_size: int = 3,
    pool: str = "max",
    n_layers: int = 1,
    units: int | Sequence[int] = 64,
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
    dims: int | None = None,
) -> nn.Sequential:
    """A small convolutional network: conv blocks, then a dense head.

    ``dims=1`` gives a 1-D CNN for sequences such as MNIST-1D, inputs shaped ``(channels,
    length)`` or ``(length,)``; ``dims=2`` a 2-D CNN for images, ``(channels, height, width)`` or
    ``(height, width)``. A shape without channels gets one. ``dims=None`` goes by the shape: 3
    sizes are an image, 1 or 2 a sequence. Each block is ``Conv ('same' padding) -> [BatchNorm] -> activation ->
    [pool by 2]``; pooling is skipped once a side is down to 1. The head flattens, then has
    ``n_layers`` dense blocks like :func:`build_mlp` (with the dropout), and a linear output.

    Args:
        input_shape: ``(L,)``, ``(C, L)``, ``(H, W)`` or ``(C, H, W)``.
        n_outputs: classes, or 1 for a regression.
        conv_layers: convolution blocks (>= 1).
        channels: the output channels of every block, or one number per block.
        kernel_size: the side of each convolution kernel.
        pool: ``"max"``, ``"avg"`` or ``"none"``.
        n_layers, units, activation, dropout, batch_norm: the dense head, as in :func:`build_mlp`
            (batch norm also follows each convolution).
        dims: 1 or 2 spatial dimensions, or None to go by the shape.

    Example:
        >>> import torch
        >>> model = build_cnn((1, 8, 8), 10, conv_layers=2, channels=[8, 16])
        >>> model(torch.zeros(5, 1, 8, 8)).shape
        torch.Size([5, 10])

    Raises:
        SpecError: on ``data.shape`` for a shape that is not a sequence or an image, and on
            ``space.<name>`` for an out-of-range size or an unknown name.
    """
    shape = _as_shape(input_shape)
    dims = dims or (2 if len(shape) == 3 else 1)
    if dims not in (1, 2) or len(shape) not in (dims, dims + 1):
        expected = {1: "(channels, length) or (length,)", 2: "(channels, height, width)"}
        raise SpecError(
            "data.shape",
            f"a {dims}-D CNN needs samples shaped {expected.get(dims, '(channels, ...)')}, "
            f"got {list(shape)}; set data.shape, e.g. [1, 8, 8] for 8x8 images or [1, 40] for "
            "sequences of 40",
        )
    if conv_layers < 1:
        raise SpecError("space.conv_layers", f"must be >= 1, got {conv_layers}")
    if kernel_size < 1:
        raise SpecError("space.kernel_size", f"must be >= 1, got {kernel_size}")
    if pool not in POOLINGS:
        raise SpecError("space.pool", f"unknown pooling {pool!r}; known: {', '.join(POOLINGS)}")
    _check_activation(activation)
    layers: list[nn.Module] = []
    if len(shape) == dims:  # no channel axis: one channel
        layers.append(nn.Unflatten(1, (1, shape[0])))
        shape = (1, *shape)
    conv, norm, pooling = {
        1: (nn.Conv1d, nn.BatchNorm1d, {"max": nn.MaxPool1d, "avg": nn.AvgPool1d}),
        2: (nn.Conv2d, nn.BatchNorm2d, {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}),
    }[dims]
    in_channels, sizes = shape[0], list(shape[1:])
    for out_channels in _widths("channels", channels, conv_layers):
        layers.append(
            conv(in_channels, out_channels, kernel_size, padding="same", bias=not batch_norm)
        )
        if batch_norm:
            layers.append(norm(out_channels))
        layers.append(ACTIVATIONS[activation]())
        if pool != "none" and min(sizes) >= 2:
            layers.append(pooling[pool](2))
            sizes = [size // 2 for size in sizes]
        in_channels = out_channels
    flat = in_channels * math.prod(sizes)
    widths = _widths("units", units, n_layers)
    layers.append(nn.Flatten())
    layers += _dense_blocks(flat, widths, activation, dropout, batch_norm)
    layers.append(nn.Linear(widths[-1] if widths else flat, n_outputs))
    return nn.Sequential(*layers)


def import_builder(path: str) -> ModelBuilder:
    """The model builder a spec names: ``package.module:function`` or ``path/to/file.py:function``.

    A file path is loaded as it is (relative paths from the current folder; a spec anchors them
    to its own folder), so a spec can point at a ``models.py`` beside it without installing it.

    Raises:
        SpecError: on ``model`` when the module, the file or the function cannot be found.
    """
    module_name, sep, function = path.rpartition(":")
    if not sep or not module_name or not function:
        raise SpecError(
            "model",
            f"expected a builtin model or 'module:function', got {path!r}; "
            "e.g. mypkg.models:build_model or models.py:build_model",
        )
    if module_name.endswith(".py"):
        module = _module_from_file(Path(module_name))
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise SpecError(
                "model",
                f"cannot import {module_name!r} ({exc}); install the package, or name the file: "
                f"path/to/{module_name.rpartition('.')[2]}.py:{function}",
            ) from exc
    builder = getattr(module, function, None)
    if not callable(builder):
        raise SpecError(
            "model", f"{module_name!r} has no function {function!r}; check the name after ':'"
        )
    return builder


def builder_path(builder: ModelBuilder) -> str:
    """The string :func:`import_builder` turns back into ``builder``: ``module:function``, or
    ``/abs/file.py:function`` for a function defined in a script (``__main__``)."""
    module = builder.__module__
    if module == "__main__" or module.startswith("_tunelab_model_"):
        return f"{Path(inspect.getfile(builder)).resolve()}:{builder.__qualname__}"
    return f"{module}:{builder.__qualname__}"


def _module_from_file(path: Path) -> Any:
    path = path.expanduser().resolve()
    name = "_tunelab_model_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    if name in sys.modules:  # loaded once per process: the code checked is the code trained
        return sys.modules[name]
    if not path.is_file():
        raise SpecError("model", f"model file {str(path)!r} not found")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so the module's own classes resolve (dataclasses, pickling)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _as_shape(input_shape: int | Sequence[int]) -> tuple[int, ...]:
    return (int(input_shape),) if isinstance(input_shape, int) else tuple(map(int, input_shape))


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise SpecError(
            "space.activation",
            f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}",
        )


def _widths(name: str, value: int | Sequence[int], count: int) -> list[int]:
    """One width per layer from a single width or a list of them."""
    widths = [value] * count if isinstance(value, int) else list(value)
    if len(widths) != count:
        raise SpecError(f"space.{name}", f"needs {count} values (one per layer), got {widths}")
    for width in widths:
        if width < 1:
            raise SpecError(f"space.{name}", f"must be >= 1, got {width}")
    return widths


def _dense_blocks(
    width: int, widths: Sequence[int], activation: str, dropout: float, batch_norm: bool
) -> list[nn.Module]:
    _check_activation(activation)
    if not 0.0 <= dropout < 1.0:
        raise SpecError("space.dropout", f"must be in [0, 1), got {dropout}")
    dropout_type = nn.AlphaDropout if activation == "selu" else Dropout
    layers: list[nn.Module] = []
    for units in widths:
        layers.append(nn.Linear(width, units, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(units))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(dropout_type(dropout))
        width = units
    return layers
