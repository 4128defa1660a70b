"""Trains trials of same-shaped networks together, as fused groups, in this process.

Each submitted trial's training is built by the objective (``objective.training(trial)``, which
:class:`~tunelab.nn.NetworkObjective` has). Trainings of one architecture (one
:func:`~tunelab.nn.fused.signature`) run their epochs as one computation; every member still
reports after each epoch, is paused, stopped or pruned by the scheduler on its own, and ends as
its own trial. A member that ends frees its slot at once, and the next submitted trial of that
architecture joins the group at its next epoch.

A cross-validated trial trains its folds in turn, each fold's epochs with those of the other
trials on the same fold. Trials that cannot be stepped an epoch at a time (an objective of your
own) run one at a time, as :class:`~tunelab.executors.InlineExecutor` runs them; so
do networks that cannot be fused (batch norm, say), and architectures for which fusing was
measured not to pay. The measurement: the first epoch of a new architecture with three or more
trials trains one of them alone and the others fused; if the fused epoch per trial is not at
least ``min_speedup`` times faster, that architecture trains one trial at a time from then on, and
the executor says so once. Nothing is trained twice for it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from tunelab.clock import Clock
from tunelab.errors import SpecError
from tunelab.executors.base import (
    Executor,
    Objective,
    TrialOutcome,
    TrialTask,
    make_trial,
    trial_outcome,
)
from tunelab.executors.inline import InlineExecutor
from tunelab.trial import Decision, Reporter, Trial

__all__ = ["FusedExecutor"]

logger = logging.getLogger("tunelab")


@dataclass
class _Member:
    task: TrialTask
    trial: Trial
    training: Any  # a TrialTraining, or a FoldsTraining (whose trainer changes with its fold)
    error: BaseException | None = None
    _signed: tuple[Any, Hashable | None] | None = None  # (trainer, its signature)

    @property
    def signature(self) -> Hashable | None:
        """The current trainer's :func:`~tunelab.nn.fused.signature`, worked out once per
        trainer."""
        trainer = self.training.trainer
        if self._signed is None or self._signed[0] is not trainer:
            from tunelab.nn.fused import signature

            self._signed = (trainer, signature(trainer))
        return self._signed[1]


class FusedExecutor(Executor):
    """Trials of same-shaped networks trained as fused groups (``executor: fused``).

    Args:
        group_size: trials in flight at once: the most members a group holds (on a GPU, 64 or
            more pays; on a CPU, 8 to 16).
        min_speedup: the speed-up per trial below which an architecture is trained one trial
            at a time instead (measured on its first epoch; 0: always fused, unmeasured).

    Example:
        >>> study.optimize(NetworkObjective(...), space, trials=64,
        ...                executor=FusedExecutor(group_size=16))  # doctest: +SKIP
    """

    def __init__(self, group_size: int = 16, min_speedup: float = 1.2) -> None:
        if not isinstance(group_size, int) or isinstance(group_size, bool) or group_size < 1:
            raise SpecError("executor.group_size", f"must be an integer >= 1, got {group_size!r}")
        if not isinstance(min_speedup, int | float) or min_speedup < 0:
            raise SpecError("executor.min_speedup", f"must be a number >= 0, got {min_speedup!r}")
        self.group_size = group_size
        self.min_speedup = min_speedup
        self._objective: Objective | None = None
        self._clock: Clock | None = None
        self._alone = InlineExecutor()
        self._members: list[_Member] = []
        self._ended: list[TrialOutcome] = []
        self._fuses: dict[Hashable, bool] = {}  # the measured verdict per architecture
        self._on_report: Reporter | None = None

    # Executor ----------------------------------------------------------------------------------
    def start(self, objective: Objective, clock: Clock | None = None) -> None:
        self._objective, self._clock = objective, clock
        self._alone = InlineExecutor()
        self._alone.start(objective, clock)

    def free_slots(self) -> int:
        return max(0, self.group_size - len(self.running()))

    def running(self) -> list[TrialTask]:
        return [m.task for m in self._members] + self._alone.running()

    def submit(self, tasks: Sequence[TrialTask]) -> None:
        if len(tasks) > self.free_slots():
            raise RuntimeError("submit() beyond free_slots()")
        build = getattr(self._objective, "training", None)
        for task in tasks:
            trial = make_trial(task, self._report, self._clock)
            try:
                training = build(trial) if build is not None else None
            except Exception as exc:  # noqa: BLE001 - the trial's failure, recorded as such
                self._ended.append(trial_outcome(task, trial, error=exc))
                continue
            if training is None:
                self._alone.submit([task])
            else:
                self._members.append(_Member(task, trial, training))

    def wait(self, on_report: Reporter, timeout: float) -> list[TrialOutcome]:
        self._on_report = on_report
        if not self._ended:
            if self._alone.running():
                return self._alone.wait(on_report, timeout)
            if self._members:
                self._run_epoch()
        ended, self._ended = self._ended, []
        return ended

    def shutdown(self) -> None:
        self._alone.shutdown()
        self._members.clear()
        self._ended.clear()

    # Helpers -----------------------------------------------------------------------------------
    def _report(self, number: int, step: int, metrics: dict[str, float]) -> Decision:
        return self._on_report(number, step, metrics)

    def _run_epoch(self) -> None:
        """One epoch of every member: fused by architecture where it pays, else alone."""
        groups: dict[Hashable, list[_Member]] = {}
        for member in self._members:
            signature = member.signature
            fuses = signature is not None and self._fuses.get(_network(signature), True)
            groups.setdefault(signature if fuses else id(member), []).append(member)
        for key, group in groups.items():
            if len(group) == 1:
                _alone(group[0])
            elif _network(key) not in self._fuses and len(group) >= 3 and self.min_speedup > 0:
                self._measure(_network(key), group)
            else:
                _fused(group)
        for member in list(self._members):
            if member.error is None:
                try:
                    member.training.after_epoch()
                except Exception as exc:  # noqa: BLE001
                    member.error = exc
            if member.error is not None or member.training.over:
                self._members.remove(member)
                self._ended.append(_outcome(member))

    def _measure(self, key: Hashable, group: list[_Member]) -> None:
        """Train the first member alone and the rest fused, and keep whether fusing paid."""
        start = time.perf_counter()
        _alone(group[0])
        alone = time.perf_counter() - start
        start = time.perf_counter()
        _fused(group[1:])
        fused = (time.perf_counter() - start) / (len(group) - 1)
        speedup = alone / fused if fused > 0 else float("inf")
        self._fuses[key] = speedup >= self.min_speedup
        if not self._fuses[key]:
            logger.warning(
                "fused training does not pay for this network here: %d trials together took "
                "%.3g s each for an epoch, one alone %.3g s (%.2fx, below min_speedup %.2g); "
                "its trials train one at a time from now on",
                len(group) - 1,
                fused,
                alone,
                speedup,
                self.min_speedup,
                extra={"once": _said_once_key(key)},
            )


def _said_once_key(signature: Hashable) -> str:
    """The same architecture's key in every process (worker processes each measure; their
    driver says a verdict once: see ``ProcessExecutor``)."""
    return "fused-fallback:" + hashlib.blake2b(repr(signature).encode(), digest_size=8).hexdigest()


def _network(signature: Hashable) -> Hashable:
    """What the verdict on fusing is kept by: the signature less the data's identity (the
    folds of a cross-validation train alike), which is its last part."""
    return signature[:-1]


def _alone(member: _Member) -> None:
    try:
        member.training.trainer.run_epoch()
    except Exception as exc:  # noqa: BLE001 - the member's failure alone
        member.error = exc


def _fused(group: list[_Member]) -> None:
    from tunelab.nn.fused import run_epochs_fused

    results = run_epochs_fused([member.training.trainer for member in group])
    for member, result in zip(group, results, strict=True):
        if isinstance(result, BaseException):
            member.error = result


def _outcome(member: _Member) -> TrialOutcome:
    if member.error is not None:
        return trial_outcome(member.task, member.trial, error=member.error)
    try:
        result = member.training.result()
    except Exception as exc:  # noqa: BLE001
        return trial_outcome(member.task, member.trial, error=exc)
    return trial_outcome(member.task, member.trial, result)
