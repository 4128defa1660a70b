"""Learning-rate schedules by name, built from ``torch.optim.lr_scheduler``.

``lr`` is the base learning rate ``lr0``; ``t`` counts epochs from 0 after the warm-up (or batches,
for ``cyclic`` and ``onecycle``, which change the rate within an epoch).

===================  ===========================================================  ==============
schedule             learning rate at ``t``                                       torch piece
===================  ===========================================================  ==============
``constant``         lr0                                                          (none)
``step``             lr0 * gamma ** floor(t / step_size)                          StepLR
``exponential``      lr0 * exp(-decay * t)                                        ExponentialLR
``time``             lr0 / (1 + decay * t), Keras's time-based decay              LambdaLR
``cosine``           min_lr + (lr0 - min_lr) * (1 + cos(pi t / T)) / 2, T the     CosineAnnealingLR
                     epochs after warm-up (Loshchilov & Hutter 2017)
``warm_restarts``    cosine restarted every T_0 epochs, each period T_mult        CosineAnnealing-
                     times longer: SGDR, the "random restarts" idea               WarmRestarts
``cyclic``           triangle between min_lr and lr0, one cycle every             CyclicLR
                     ``cycle_epochs`` epochs (Smith 2017), per batch
``onecycle``         up from lr0/25 to lr0 over ``pct_start`` of training, then   OneCycleLR
                     down to lr0/25e4 (Smith & Topin 2019), per batch
===================  ===========================================================  ==============

``warmup_epochs = w > 0`` first raises the rate linearly, ``lr0 * (e + 1) / (w + 1)`` in epoch
``e < w`` (LinearLR), then runs the schedule for the remaining epochs (SequentialLR). ``cyclic`` and
``onecycle`` start low and climb by design, so they take no extra warm-up.

Schedules change only the learning rate; momentum stays what ``momentum``/``beta1`` say (torch's
cyclic schedules would cycle it too: that is switched off so each knob means one thing).
"""

from __future__ import annotations

import math

import torch
from torch.optim import lr_scheduler

from tunelab.errors import SpecError

__all__ = ["BATCH", "EPOCH", "SCHEDULES", "make_schedule"]

#: When a schedule steps: after each epoch, or after each batch.
EPOCH, BATCH = "epoch", "batch"

#: Each schedule and the knobs it takes.
SCHEDULES: dict[str, tuple[str, ...]] = {
    "constant": ("warmup_epochs",),
    "step": ("step_size", "gamma", "warmup_epochs"),
    "exponential": ("decay", "warmup_epochs"),
    "time": ("decay", "warmup_epochs"),
    "cosine": ("min_lr", "warmup_epochs"),
    "warm_restarts": ("T_0", "T_mult", "min_lr", "warmup_epochs"),
    "cyclic": ("cycle_epochs", "min_lr"),
    "onecycle": ("pct_start",),
}


def make_schedule(
    name: str,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    steps_per_epoch: int,
    step_size: int = 10,
    gamma: float = 0.1,
    decay: float = 0.1,
    min_lr: float = 0.0,
    T_0: int = 10,
    T_mult: int = 1,
    cycle_epochs: float = 4.0,
    pct_start: float = 0.3,
    warmup_epochs: int = 0,
) -> tuple[lr_scheduler.LRScheduler | None, str]:
    """A torch LR scheduler for ``optimizer`` and when to step it (:data:`EPOCH` or :data:`BATCH`).

    Args:
        name: a name from :data:`SCHEDULES` (formulas in the module docstring).
        optimizer: its ``lr`` is the base rate ``lr0``.
        epochs: the length of training, for cosine's period and one-cycle's length.
        steps_per_epoch: batches per epoch, for the per-batch schedules.
        step_size, gamma: ``step``: multiply by ``gamma`` every ``step_size`` epochs.
        decay: ``exponential`` and ``time``: the decay rate k per epoch.
        min_lr: the floor of ``cosine`` and ``warm_restarts``, the bottom of ``cyclic``.
        T_0, T_mult: ``warm_restarts``: the first period in epochs, and its growth factor.
        cycle_epochs: ``cyclic``: the length of one up-and-down cycle, in epochs.
        pct_start: ``onecycle``: the share of training spent climbing.
        warmup_epochs: epochs of linear warm-up before the schedule.

    Returns:
        ``(scheduler, interval)``; the scheduler is None for a constant rate without warm-up.

    Example:
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> scheduler, interval = make_schedule("time", opt, epochs=3, steps_per_epoch=1, decay=1)
        >>> rates = []
        >>> for epoch in range(3):
        ...     rates.append(opt.param_groups[0]["lr"])
        ...     opt.step()
        ...     scheduler.step()
        >>> rates, interval
        ([1.0, 0.5, 0.3333333333333333], 'epoch')

    Raises:
        SpecError: on ``space.<knob>`` for an unknown schedule or an out-of-range knob.
    """
    if name not in SCHEDULES:
        known = ", ".join(SCHEDULES)
        raise SpecError("space.schedule", f"unknown schedule {name!r}; known: {known}")
    _check("warmup_epochs", warmup_epochs, 0 <= warmup_epochs < epochs, f"in [0, {epochs})")
    if warmup_epochs and "warmup_epochs" not in SCHEDULES[name]:
        raise SpecError(
            "space.warmup_epochs",
            f"schedule {name!r} starts low and warms up by itself, but got warmup_epochs="
            f"{warmup_epochs}; set it to 0, or give it when: {{schedule: [cosine, step, ...]}}",
        )
    lr = optimizer.param_groups[0]["lr"]
    if name in ("cosine", "warm_restarts", "cyclic"):
        _check("min_lr", min_lr, 0 <= min_lr < lr, f"in [0, lr={lr})")
    main_epochs = epochs - warmup_epochs
    if name == "cyclic":
        _check("cycle_epochs", cycle_epochs, cycle_epochs > 0, "> 0")
        half_cycle = max(1, round(cycle_epochs * steps_per_epoch / 2))
        cyclic = lr_scheduler.CyclicLR(
            optimizer, min_lr, lr, step_size_up=half_cycle, cycle_momentum=False
        )
        return cyclic, BATCH
    if name == "onecycle":
        _check("pct_start", pct_start, 0 < pct_start < 1, "in (0, 1)")
        total = epochs * steps_per_epoch
        onecycle = lr_scheduler.OneCycleLR(
            optimizer, lr, total_steps=total, pct_start=pct_start, cycle_momentum=False
        )
        return onecycle, BATCH
    main = _per_epoch(name, optimizer, main_epochs, step_size, gamma, decay, min_lr, T_0, T_mult)
    if not warmup_epochs:
        return main, EPOCH
    warmup = lr_scheduler.LinearLR(
        optimizer, start_factor=1 / (warmup_epochs + 1), end_factor=1.0, total_iters=warmup_epochs
    )
    if main is None:
        main = lr_scheduler.LambdaLR(optimizer, lambda t: 1.0)
    return lr_scheduler.SequentialLR(optimizer, [warmup, main], [warmup_epochs]), EPOCH


def _per_epoch(
    name: str,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    step_size: int,
    gamma: float,
    decay: float,
    min_lr: float,
    T_0: int,
    T_mult: int,
) -> lr_scheduler.LRScheduler | None:
    if name == "step":
        _check("step_size", step_size, step_size >= 1, ">= 1")
        _check("gamma", gamma, gamma > 0, "> 0")
        return lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
    if name in ("exponential", "time"):
        _check("decay", decay, decay >= 0, ">= 0")
        if name == "exponential":
            return lr_scheduler.ExponentialLR(optimizer, gamma=math.exp(-decay))
        return lr_scheduler.LambdaLR(optimizer, lambda t: 1 / (1 + decay * t))
    if name == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=min_lr)
    if name == "warm_restarts":
        _check("T_0", T_0, T_0 >= 1, ">= 1")
        _check("T_mult", T_mult, T_mult >= 1, ">= 1 (an integer)")
        return lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=T_0, T_mult=T_mult, eta_min=min_lr
        )
    return None  # constant


def _check(knob: str, value: object, ok: bool, expected: str) -> None:
    if not ok:
        raise SpecError(f"space.{knob}", f"must be {expected}, got {value!r}")
