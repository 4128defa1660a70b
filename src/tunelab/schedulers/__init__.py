"""Schedulers decide, at each report, whether a trial goes on. ``make_scheduler`` builds one from
its spec name. All are exported from ``tunelab``, and ``Study(scheduler=...)`` takes a name or an
object (None: ``"none"``):

========= ================== ==============================================================
name      class              options
========= ================== ==============================================================
none      NoScheduler        none. Every trial runs to its end.
median    MedianScheduler    ``warmup_steps=5``, ``min_trials=5``, ``interval=1``. Stop a
                             trial whose best value so far is worse than the median of the
                             other trials' at the same step.
asha      ASHAScheduler      ``min_resource=1``, ``max_resource=None``,
                             ``reduction_factor=3``, ``brackets=1``. Pause trials at rungs
                             ``min_resource * reduction_factor ** k`` steps; resume the best
                             ``1 / reduction_factor`` of each rung from their checkpoints.
hyperband HyperbandScheduler ``min_resource=1``, ``max_resource=81``,
                             ``reduction_factor=3``. Asynchronous Hyperband: ASHA brackets
                             from aggressive to full training.
========= ================== ==============================================================

Example:
    >>> from tunelab import ASHAScheduler
    >>> ASHAScheduler(min_resource=1, max_resource=27).rungs(0)
    [1, 3, 9]
    >>> make_scheduler("median", warmup_steps=3).warmup_steps
    3
"""

from __future__ import annotations

from typing import Any

from tunelab._params import build_named
from tunelab.schedulers.asha import ASHAScheduler, HyperbandScheduler
from tunelab.schedulers.base import NoScheduler, Scheduler, StudyView
from tunelab.schedulers.median import MedianScheduler

__all__ = [
    "SCHEDULERS",
    "ASHAScheduler",
    "HyperbandScheduler",
    "MedianScheduler",
    "NoScheduler",
    "Scheduler",
    "StudyView",
    "make_scheduler",
]

SCHEDULERS: dict[str, type[Scheduler]] = {
    "none": NoScheduler,
    "median": MedianScheduler,
    "asha": ASHAScheduler,
    "hyperband": HyperbandScheduler,
}


def make_scheduler(name: str | Scheduler | None, **kwargs: Any) -> Scheduler:
    """``make_scheduler("median", warmup_steps=3)``; None means "none"."""
    return build_named(SCHEDULERS, "scheduler", name or "none", kwargs)
