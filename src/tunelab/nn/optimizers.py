"""Optimizers and losses by name, built from ``torch.optim`` and ``torch.nn``.

A knob an optimizer does not have (``momentum`` for Adam, ``beta1`` for SGD) is ignored, so one
search space can mix optimizers; give it a ``when:`` condition to record it only where it applies.
A knob left at None takes the optimizer's own torch default.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from tunelab.errors import SpecError

__all__ = ["LOSSES", "OPTIMIZERS", "make_loss", "make_optimizer"]

#: Each optimizer and the knobs it takes besides ``lr``.
OPTIMIZERS: dict[str, tuple[str, ...]] = {
    "sgd": ("momentum", "nesterov", "weight_decay"),
    "adam": ("beta1", "beta2", "eps", "weight_decay"),
    "adamw": ("beta1", "beta2", "eps", "weight_decay"),
    "rmsprop": ("rho", "momentum", "eps", "weight_decay"),
    "adagrad": ("eps", "weight_decay"),
    "adadelta": ("rho", "eps", "weight_decay"),
}

_CLASSES = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
    "adadelta": torch.optim.Adadelta,
}

#: The losses of each task; the first is the default.
LOSSES: dict[str, tuple[str, ...]] = {
    "classification": ("cross_entropy",),
    "regression": ("mse", "mae", "huber"),
}


def make_optimizer(
    name: str,
    parameters: Iterable[nn.Parameter],
    lr: float,
    *,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float | None = None,
    beta1: float | None = None,
    beta2: float | None = None,
    eps: float | None = None,
    rho: float | None = None,
) -> torch.optim.Optimizer:
    """Build a ``torch.optim`` optimizer by name (see :data:`OPTIMIZERS` for who takes what).

    Args:
        name: ``sgd``, ``adam``, ``adamw``, ``rmsprop``, ``adagrad`` or ``adadelta``.
        parameters: the model's parameters.
        lr: the learning rate (Adadelta's torch default is 1.0; give it explicitly).
        momentum: SGD's and RMSprop's momentum.
        nesterov: Nesterov momentum for SGD (needs ``momentum > 0``).
        weight_decay: L2 penalty (decoupled for AdamW, whose torch default is 0.01; 0 for others).
        beta1, beta2: Adam's and AdamW's running-average coefficients (0.9, 0.999).
        eps: the denominator's guard term (Adam 1e-8, RMSprop 1e-8, Adagrad 1e-10, Adadelta 1e-6).
        rho: the squared-gradient average's decay: RMSprop's ``alpha`` (0.99), Adadelta's ``rho``
            (0.9); Keras calls both ``rho``.

    Example:
        >>> opt = make_optimizer("sgd", nn.Linear(2, 1).parameters(), 0.1, momentum=0.9)
        >>> opt.param_groups[0]["momentum"]
        0.9

    Raises:
        SpecError: on ``space.optimizer`` for an unknown name, or the knob torch rejects.
    """
    if name not in _CLASSES:
        known = ", ".join(OPTIMIZERS)
        raise SpecError("space.optimizer", f"unknown optimizer {name!r}; known: {known}")
    given = {
        "momentum": momentum,
        "nesterov": nesterov,
        "weight_decay": weight_decay,
        "eps": eps,
        "rho": rho,
    }
    options: dict[str, Any] = {
        ("alpha" if knob == "rho" and name == "rmsprop" else knob): given[knob]
        for knob in OPTIMIZERS[name]
        if knob in given and given[knob] is not None
    }
    if name in ("adam", "adamw") and (beta1 is not None or beta2 is not None):
        options["betas"] = (0.9 if beta1 is None else beta1, 0.999 if beta2 is None else beta2)
    if name == "sgd" and nesterov and momentum <= 0:
        raise SpecError(
            "space.nesterov", f"needs momentum > 0, got momentum={momentum}; set a momentum"
        )
    try:
        return _CLASSES[name](parameters, lr=lr, **options)
    except ValueError as exc:  # torch names the bad value: "Invalid beta parameter at index 0"
        raise SpecError(f"space.{name}", f"torch rejects {options | {'lr': lr}}: {exc}") from exc


def make_loss(
    task: str, name: str | None = None, *, label_smoothing: float = 0.0, huber_delta: float = 1.0
) -> nn.Module:
    """The training loss: cross-entropy for classification; MSE, MAE or Huber for regression.

    Args:
        task: ``"classification"`` or ``"regression"``.
        name: a name from :data:`LOSSES` for the task; None takes its first (the default).
        label_smoothing: classification only: the share of probability spread evenly over all
            classes in the targets (Szegedy et al. 2016); 0 for plain cross-entropy.
        huber_delta: where the Huber loss turns from quadratic to linear.

    Example:
        >>> make_loss("classification", label_smoothing=0.1)
        CrossEntropyLoss()

    Raises:
        SpecError: on ``space.loss`` for a loss of the other task, ``space.label_smoothing`` out of
            [0, 1), ``space.huber_delta`` <= 0.
    """
    known = LOSSES.get(task, ())
    name = known[0] if name is None and known else name
    if name not in known:
        raise SpecError(
            "space.loss",
            f"{name!r} is not a {task} loss; known: {', '.join(known)}",
        )
    if not 0.0 <= label_smoothing < 1.0:
        raise SpecError("space.label_smoothing", f"must be in [0, 1), got {label_smoothing}")
    if name == "cross_entropy":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    if name == "huber":
        if not huber_delta > 0:
            raise SpecError("space.huber_delta", f"must be > 0, got {huber_delta}")
        return nn.HuberLoss(delta=huber_delta)
    return nn.MSELoss() if name == "mse" else nn.L1Loss()
