"""Executors run trials: in this process, in local worker processes, or on a Ray cluster.
``make_executor`` builds one from its spec name, like the strategy and scheduler registries."""

from __future__ import annotations

import logging
from typing import Any

from tunelab._params import build_named
from tunelab.errors import SpecError
from tunelab.executors.base import Executor, TrialOutcome, TrialTask, run_trial
from tunelab.executors.fused import FusedExecutor
from tunelab.executors.inline import InlineExecutor
from tunelab.executors.processes import ProcessExecutor, available_cores
from tunelab.executors.ray import RayExecutor
from tunelab.executors.ray_fused import FusedRayExecutor
from tunelab.executors.simulated import Benchmark, SimulatedExecutor

__all__ = [
    "EXECUTORS",
    "Benchmark",
    "SimulatedExecutor",
    "Executor",
    "FusedExecutor",
    "FusedRayExecutor",
    "InlineExecutor",
    "ProcessExecutor",
    "RayExecutor",
    "TrialOutcome",
    "TrialTask",
    "executor_for",
    "make_executor",
    "run_trial",
]

logger = logging.getLogger("tunelab")

EXECUTORS: dict[str, type[Executor]] = {
    "fused": FusedExecutor,
    "inline": InlineExecutor,
    "processes": ProcessExecutor,
    "ray": RayExecutor,
    "simulated": SimulatedExecutor,
}


def make_executor(name: str | Executor, **options: Any) -> Executor:
    """``make_executor("processes", n_workers=4)``; an Executor instance passes through."""
    return build_named(EXECUTORS, "executor", name, options)


def executor_for(workers: int = 1, fuse: bool = False) -> Executor:
    """In-process for one worker, local processes for more, at most one per core: more would only
    slow every trial down (say so once; an explicit ``ProcessExecutor(n)`` is not capped). With
    ``fuse``, each trains trials of one network shape as fused groups (:class:`FusedExecutor`)."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise SpecError("workers", f"must be a positive integer, got {workers!r}")
    cores = available_cores()
    if workers > cores:
        logger.warning(
            "workers: %d asked for, this machine has %d cores; running %d (to run more anyway, "
            "use executor: {name: processes, n_workers: %d})",
            workers,
            cores,
            cores,
            workers,
        )
        workers = cores
    if workers == 1:
        return FusedExecutor() if fuse else InlineExecutor()
    return ProcessExecutor(workers, fuse=fuse)
