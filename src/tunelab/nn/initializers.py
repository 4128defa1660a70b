"""Weight initialisation by name, applied the same way to every layer, built on ``torch.nn.init``.

Every scheme sets the weights of each ``Linear`` and convolution layer and zeroes their biases
(as Keras does), so one name describes the whole network; normalisation layers keep their
(1, 0) start. ``"default"`` leaves torch's own per-layer initialisation alone.

========================  =========================================================================
name                      weights (``fan_in`` = inputs per unit, ``fan_out`` = outputs per unit)
========================  =========================================================================
``default``               torch's layer default (Kaiming uniform with a = sqrt(5))
``zeros``                 all zero; warns, because identical units never break symmetry
``uniform``               U(-scale, scale), ``scale`` = ``init_scale`` (default 0.05, as Keras)
``normal``                N(0, scale²)
``xavier_uniform``        Glorot & Bengio (2010): U(-a, a), a = sqrt(6 / (fan_in + fan_out))
``xavier_normal``         N(0, 2 / (fan_in + fan_out))
``kaiming_uniform``       He et al. (2015), fan_in mode, gain of the network's activation:
                          U(-a, a), a = gain * sqrt(3 / fan_in)
``kaiming_normal``        N(0, gain² / fan_in)
``lecun_uniform``         LeCun (1998), the SELU companion: U(-a, a), a = sqrt(3 / fan_in)
``lecun_normal``          N(0, 1 / fan_in), a plain (untruncated) normal: ``kaiming_normal_`` with
                          the linear gain. Keras truncates at 2 std; torch has no fan-based
                          truncated normal, and the difference is small for the first moments.
``orthogonal``            Saxe et al. (2014): a (semi-)orthogonal matrix per layer, gain 1
========================  =========================================================================

The Kaiming gain follows the activation (``torch.nn.init.calculate_gain``): relu sqrt(2),
leaky_relu sqrt(2 / (1 + 0.01²)), tanh 5/3, sigmoid 1, selu 3/4; elu and gelu take relu's gain.
"""

from __future__ import annotations

import warnings

from torch import nn
from torch.nn import init

from tunelab.errors import SpecError

__all__ = ["INITIALIZERS", "init_weights"]

INITIALIZERS = (
    "default",
    "zeros",
    "uniform",
    "normal",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "lecun_uniform",
    "lecun_normal",
    "orthogonal",
)

# torch.nn.init.calculate_gain knows these names; elu and gelu are relu-like
_GAIN_NAMES = {
    "relu": "relu",
    "leaky_relu": "leaky_relu",
    "elu": "relu",
    "gelu": "relu",
    "tanh": "tanh",
    "sigmoid": "sigmoid",
    "selu": "selu",
}
_LEAKY_SLOPE = 0.01  # nn.LeakyReLU's default negative slope

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def init_weights(
    model: nn.Module, scheme: str = "default", activation: str = "relu", scale: float = 0.05
) -> nn.Module:
    """Initialise every linear and convolution layer of ``model`` in place; returns ``model``.

    Args:
        model: any module; its ``Linear`` and ``Conv*`` layers are initialised.
        scheme: a name from :data:`INITIALIZERS` (see the module docstring for the formulas).
        activation: the network's activation, for the Kaiming gain.
        scale: the half-width of ``uniform`` or the standard deviation of ``normal``.

    Example:
        >>> import torch
        >>> layer = init_weights(nn.Linear(3, 2), "lecun_normal").bias
        >>> torch.equal(layer, torch.zeros(2))
        True

    Raises:
        SpecError: on ``space.init`` for an unknown name, ``space.init_scale`` for scale <= 0.
    """
    if scheme not in INITIALIZERS:
        raise SpecError(
            "space.init", f"unknown initialiser {scheme!r}; known: {', '.join(INITIALIZERS)}"
        )
    if scheme in ("uniform", "normal") and not scale > 0:
        raise SpecError("space.init_scale", f"must be > 0, got {scale}")
    if scheme == "default":
        return model
    if scheme == "zeros":
        warnings.warn(
            "init='zeros' gives every unit of a layer the same weights and the same gradients, "
            "so they never learn different features (no symmetry breaking); use it only to "
            "show that effect",
            UserWarning,
            stacklevel=2,
        )
    gain_name = _GAIN_NAMES.get(activation, "relu")
    for layer in model.modules():
        if isinstance(layer, _WEIGHTED):
            _init(layer.weight, scheme, gain_name, scale)
            if layer.bias is not None:
                init.zeros_(layer.bias)
    return model


def _init(weight, scheme: str, gain_name: str, scale: float) -> None:
    slope = _LEAKY_SLOPE if gain_name == "leaky_relu" else 0
    if scheme == "zeros":
        init.zeros_(weight)
    elif scheme == "uniform":
        init.uniform_(weight, -scale, scale)
    elif scheme == "normal":
        init.normal_(weight, 0.0, scale)
    elif scheme == "xavier_uniform":
        init.xavier_uniform_(weight)
    elif scheme == "xavier_normal":
        init.xavier_normal_(weight)
    elif scheme == "kaiming_uniform":
        init.kaiming_uniform_(weight, a=slope, mode="fan_in", nonlinearity=gain_name)
    elif scheme == "kaiming_normal":
        init.kaiming_normal_(weight, a=slope, mode="fan_in", nonlinearity=gain_name)
    elif scheme == "lecun_uniform":
        init.kaiming_uniform_(weight, mode="fan_in", nonlinearity="linear")
    elif scheme == "lecun_normal":
        init.kaiming_normal_(weight, mode="fan_in", nonlinearity="linear")
    else:  # orthogonal
        init.orthogonal_(weight)
