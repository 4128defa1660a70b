"""Schedulers decide, at each report, whether a trial goes on. ``make_scheduler`` builds one from
its spec name."""

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
