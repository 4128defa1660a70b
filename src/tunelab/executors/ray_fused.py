"""Fused groups on a Ray cluster: ``RayExecutor(fuse=True)``, or ``executor: {name: ray, fuse:
true}`` in a spec.

Each group is a Ray actor hosting a :class:`~tunelab.executors.FusedExecutor`, with the CPUs,
GPUs and resources one trial would ask for: on a GPU cluster, a GPU per group, which a fused
group fills where one trial would leave it idle. The driver places each trial on the least
loaded actor with room and starts another actor while every actor has some, as many actors as
the cluster's resources hold (or ``max_running / group_size``). An actor runs one epoch of its
trials per call; a trial sent between two calls joins at the next epoch, so a slot freed by a
trial that ended is refilled as on one machine. Reports go through the hub, and a trial's folder
travels to its actor and back (``artifacts: ship``), as they do for a trial task.

An actor that dies (its worker process killed, out of memory, its node gone) takes its trials
with it: each is run again on another actor, from the checkpoint it started from, up to
``max_retries`` times, else recorded FAILED with what happened. A trial past its time limit that
does not stop by itself has its actor killed: it is recorded "timed out", the others of its
group "worker killed". What an actor logs (fusing found not to pay, say) the driver says, once.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tunelab.clock import Clock
from tunelab.errors import SpecError
from tunelab.executors.base import Objective, TrialOutcome, TrialTask
from tunelab.executors.fused import FusedExecutor
from tunelab.executors.ray import (
    _KILL_GRACE_S,
    _POLL_S,
    _REMOTES,
    RayExecutor,
    _failed,
    _pack,
    _ray,
    _Running,
    _unpack,
)
from tunelab.trial import Decision, Reporter

__all__ = ["FusedRayExecutor"]

logger = logging.getLogger("tunelab")


@dataclass
class _Group:
    """One actor and the trials it holds."""

    actor: Any
    runs: dict[int, _Running] = field(default_factory=dict)  # by trial number
    epoch: Any = None  # the reference of the epoch it is running, if any


class FusedRayExecutor(RayExecutor):
    """Trials on a Ray cluster, trained as fused groups in actors (see the module's docstring);
    ``RayExecutor(fuse=True)`` makes one. The options are :class:`RayExecutor`'s, and
    ``group_size`` and ``min_speedup`` as :class:`~tunelab.executors.FusedExecutor` has them."""

    def __init__(
        self,
        address: str = "auto",
        cpus: float = 1.0,
        gpus: float = 0.0,
        max_retries: int = 0,
        max_running: int | None = None,
        resources: Mapping[str, float] | None = None,
        artifacts: str = "ship",
        runtime_env: Mapping[str, Any] | None = None,
        fuse: bool = True,
        group_size: int = 16,
        min_speedup: float = 1.2,
    ) -> None:
        if fuse is not True:
            raise SpecError(
                "executor.fuse", "a FusedRayExecutor fuses; for one trial per task use RayExecutor"
            )
        super().__init__(
            address,
            cpus,
            gpus,
            max_retries,
            max_running,
            resources,
            artifacts,
            runtime_env,
            fuse=fuse,
            group_size=group_size,
            min_speedup=min_speedup,
        )
        self._groups: list[_Group] = []
        self._most_groups = 0  # the actors the cluster holds (or max_running asks for)
        self._said: set[str | None] = set()

    # Executor ----------------------------------------------------------------------------------
    def start(self, objective: Objective, clock: Clock | None = None) -> None:
        super().start(objective, clock)
        fits = self._fits()
        if self.max_running is None:
            self._most_groups, self._capacity = fits, fits * self.group_size
        else:
            self._most_groups = min(fits, math.ceil(self.max_running / self.group_size))
            self._capacity = min(self.max_running, self._most_groups * self.group_size)

    def wait(self, on_report: Reporter, timeout: float) -> list[TrialOutcome]:
        ray = _ray()
        deadline = time.monotonic() + timeout
        outcomes: list[TrialOutcome] = []
        while self._running:
            self._relay(on_report)
            epochs = {group.epoch: group for group in self._groups if group.epoch is not None}
            done, _ = ray.wait(list(epochs), num_returns=len(epochs), timeout=0)
            for ref in done:
                outcomes += self._epoch_ended(epochs[ref], ref)
            outcomes += self._cancel_overdue()
            if outcomes or time.monotonic() >= deadline:
                break
            time.sleep(_POLL_S)
        return outcomes

    def shutdown(self) -> None:
        ray = _ray()
        for group in self._groups:
            ray.kill(group.actor)
        self._groups.clear()
        self._running.clear()
        super().shutdown()

    # Helpers -----------------------------------------------------------------------------------
    def _launch(self, task: TrialTask, attempt: int) -> None:
        group = self._place()
        files = _pack(Path(task.directory)) if self.artifacts == "ship" else None
        launch = next(self._launches)
        group.actor.submit.remote(task, launch, files)
        group.runs[task.number] = self._running[task.number] = _Running(task, launch, attempt)
        if group.epoch is None:
            group.epoch = group.actor.epoch.remote()

    def _place(self) -> _Group:
        """The least loaded actor with room; a new one while every actor has some trials."""
        open_groups = [g for g in self._groups if len(g.runs) < self.group_size]
        least = min(open_groups, key=lambda g: len(g.runs), default=None)
        if len(self._groups) < self._most_groups and (least is None or least.runs):
            least = _Group(self._new_actor())
            self._groups.append(least)
        return least

    def _new_actor(self) -> Any:
        options: dict[str, Any] = {"num_cpus": self.cpus, "max_restarts": 0}
        if self.gpus:
            options["num_gpus"] = self.gpus
        if self.resources:
            options["resources"] = self.resources
        if self.runtime_env:
            options["runtime_env"] = self.runtime_env
        return (
            _group_actor()
            .options(**options)
            .remote(
                self._objective_ref,
                self._hub,
                self.group_size,
                self.min_speedup,
                self.artifacts == "ship",
            )
        )

    def _epoch_ended(self, group: _Group, ref: Any) -> list[TrialOutcome]:
        """The trials that ended in the epoch an actor ran; the next epoch started if it holds
        more. An actor that died: its trials run again or fail."""
        ray = _ray()
        group.epoch = None
        try:
            ended, said = ray.get(ref)
        except ray.exceptions.RayError as exc:
            return self._lost(group, _why_lost(exc))
        for level, message, once in said:
            if once is None or once not in self._said:
                self._said.add(once)
                logger.log(level, message)
        outcomes = []
        for outcome, files in ended:
            run = group.runs.pop(outcome.task.number)
            del self._running[outcome.task.number]
            if files is not None:
                _unpack(files, Path(run.task.directory))
            outcomes.append(replace(outcome, task=run.task))
        if group.runs:
            group.epoch = group.actor.epoch.remote()
        return outcomes

    def _lost(
        self, group: _Group, reason: str, own: Mapping[int, str] | None = None
    ) -> list[TrialOutcome]:
        """An actor gone with its trials: each run again, or FAILED with ``reason`` (or its
        ``own``, not retried)."""
        own = own or {}
        self._groups.remove(group)
        outcomes = []
        for number, run in group.runs.items():
            del self._running[number]
            if number not in own and run.attempt < self.max_retries:
                logger.warning(
                    "trial %d: %s; running it again (retry %d of %d)",
                    number,
                    reason,
                    run.attempt + 1,
                    self.max_retries,
                )
                self._launch(run.task, run.attempt + 1)
                continue
            retried = f" (after {run.attempt} retries)" if run.attempt else ""
            outcomes.append(_failed(run.task, own.get(number, reason + retried)))
        return outcomes

    def _cancel_overdue(self) -> list[TrialOutcome]:
        """A trial past its time limit that did not stop by itself: its actor is killed."""
        ray, now, outcomes = _ray(), time.time(), []
        for group in list(self._groups):
            for run in group.runs.values():
                limit, started = run.task.timeout_s, run.started_at
                if limit is None or started is None or now <= started + limit + _KILL_GRACE_S:
                    continue
                ray.kill(group.actor)
                why = (
                    f"still running {_KILL_GRACE_S:.0f} s past its time limit of {limit:g} s, "
                    "so its worker was killed"
                )
                number = run.task.number
                outcomes += self._lost(
                    group,
                    f"worker killed: trial {number} of its fused group was {why}",
                    {number: f"timed out: {why}"},
                )
                break
        return outcomes


def _why_lost(exc: Exception) -> str:
    ray = _ray()
    if isinstance(exc, ray.exceptions.ActorDiedError | ray.exceptions.ActorUnavailableError):
        return "its Ray worker process died (killed, out of memory, or its node left the cluster)"
    return f"the Ray cluster failed the trial: {type(exc).__name__}: {exc}"


def _group_actor() -> Any:
    """The actor that trains a fused group (made once Ray is imported)."""
    if "group" not in _REMOTES:

        class Group:
            def __init__(
                self,
                objective: Objective,
                hub: Any,
                group_size: int,
                min_speedup: float,
                ship: bool,
            ) -> None:
                self.hub, self.ship = hub, ship
                self.group = FusedExecutor(group_size, min_speedup)
                self.group.start(objective)
                self.scratch: dict[int, tuple[TrialTask, tempfile.TemporaryDirectory]] = {}
                self.said: list[tuple[int, str, str | None]] = []
                handler = _Keep(self.said)
                logger.handlers[:] = [handler]
                logger.setLevel(logging.INFO)
                logger.propagate = False

            def submit(self, task: TrialTask, launch: int, files: bytes | None) -> None:
                """Take a trial (into a scratch folder holding ``files``, with ``ship``); it
                joins the group at the next epoch."""
                self.hub.started.remote(launch)
                if self.ship:
                    scratch = tempfile.TemporaryDirectory(prefix=f"tunelab-trial{task.number}-")
                    if files is not None:
                        _unpack(files, Path(scratch.name))
                    self.scratch[task.number] = (task, scratch)
                    task = replace(task, directory=scratch.name)
                self.group.submit([task])

            def epoch(self) -> tuple[list[tuple[TrialOutcome, bytes | None]], list]:
                """One epoch of the trials held: those that ended, each with its folder's files
                (with ``ship``), and what was logged meanwhile."""
                ray = _ray()

                def report(number: int, step: int, metrics: dict[str, float]) -> Decision:
                    return ray.get(self.hub.report.remote(number, step, metrics))

                ended = []
                for outcome in self.group.wait(report, 0.0):
                    files = None
                    if outcome.task.number in self.scratch:
                        task, scratch = self.scratch.pop(outcome.task.number)
                        files = _pack(Path(scratch.name))
                        scratch.cleanup()
                        outcome = replace(outcome, task=task)
                    ended.append((outcome, files))
                said, self.said[:] = list(self.said), []
                return ended, said

        _REMOTES["group"] = _ray().remote(Group)
    return _REMOTES["group"]


class _Keep(logging.Handler):
    """An actor's ``tunelab`` log records, kept for the driver to say."""

    def __init__(self, kept: list[tuple[int, str, str | None]]) -> None:
        super().__init__()
        self.kept = kept

    def emit(self, record: logging.LogRecord) -> None:
        self.kept.append((record.levelno, record.getMessage(), getattr(record, "once", None)))
