"""Runs trials as tasks on a Ray cluster: per-trial resources, the objective (and its data) in the
object store once, reports relayed to the driver, worker and node failures recorded or retried.

Each trial is a Ray task that runs :func:`~tunelab.executors.run_trial` where Ray places it (a node
with the CPUs and GPUs it asks for; a fraction of a GPU packs several trials on one). Its reports
go to a small actor on the driver's node (the *hub*); the driver takes them in :meth:`wait`, asks
the scheduler, and answers, and the trial's report call returns that answer: the same relay the
local worker processes have over their pipes, so every scheduler (median, ASHA, Hyperband)
decides across the cluster exactly as on one machine.

The objective, with the data set it has loaded, is put in the object store once per run of the
study (:attr:`RayExecutor.puts` counts it) and every trial reads it from there, on whichever
node it runs. Checkpoints are files in the trial's directory, so a trial paused on one node
resumes on another only when the artifacts folder is one every node reaches (a shared
filesystem, or one machine); see the README, "Run on a cluster".

A worker process that dies (killed, out of memory) or a node that leaves the cluster fails the
trial's task; the trial is run again (from the checkpoint it started from) up to ``max_retries``
times, else recorded FAILED with what happened. A trial past its time limit that does not stop
by itself is cancelled (its worker process killed).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunelab.clock import Clock
from tunelab.errors import SpecError, TunelabError
from tunelab.executors.base import Executor, Objective, TrialOutcome, TrialTask, run_trial
from tunelab.trial import Decision, Reporter, TrialState

__all__ = ["RayExecutor"]

_POLL_S = 0.02  # how often the driver takes reports while trials run
_KILL_GRACE_S = 5.0  # a trial's own time-limit check comes first


@dataclass
class _Running:
    task: TrialTask
    ref: Any  # the Ray task's ObjectRef
    submitted_at: float
    attempt: int = 0


class RayExecutor(Executor):
    """Trials on a Ray cluster (or a local Ray instance when ``address`` is ``"local"``).

    Args:
        address: the cluster to join: ``"auto"`` (the one ``ray start`` made on this machine,
            or ``RAY_ADDRESS``), ``"HOST:PORT"``, or ``"local"`` for a Ray instance of this
            process. Ignored when Ray is already initialised here.
        cpus: CPUs each trial asks for.
        gpus: GPUs each trial asks for; a fraction (0.25) packs several trials on one GPU.
        max_retries: how many times a trial whose worker process or node died is run again
            before it is recorded FAILED.
        max_running: trials at once; default as many as the cluster's resources fit.

    Example:
        >>> study.optimize(objective, space, executor=RayExecutor("auto", cpus=1))  # doctest: +SKIP
    """

    def __init__(
        self,
        address: str = "auto",
        cpus: float = 1.0,
        gpus: float = 0.0,
        max_retries: int = 0,
        max_running: int | None = None,
    ) -> None:
        for name, value, low in (
            ("cpus", cpus, 0),
            ("gpus", gpus, 0),
            ("max_retries", max_retries, 0),
        ):
            if not isinstance(value, int | float) or isinstance(value, bool) or value < low:
                raise SpecError(f"executor.{name}", f"must be a number >= {low}, got {value!r}")
        if cpus == 0 and gpus == 0:
            raise SpecError("executor.cpus", "a trial needs some CPU or GPU; give cpus: 1 (say)")
        if max_running is not None and (not isinstance(max_running, int) or max_running < 1):
            raise SpecError("executor.max_running", f"must be >= 1, got {max_running!r}")
        self.address = address
        self.cpus = cpus
        self.gpus = gpus
        self.max_retries = max_retries
        self.max_running = max_running
        #: How many times an objective went into the object store (once per :meth:`start`).
        self.puts = 0
        self._running: dict[Any, _Running] = {}
        self._objective_ref: Any = None
        self._hub: Any = None
        self._owns_ray = False
        self._capacity = 0

    # Executor ----------------------------------------------------------------------------------
    def start(self, objective: Objective, clock: Clock | None = None) -> None:
        ray = _ray()
        if not ray.is_initialized():
            address = None if self.address == "local" else self.address
            _check_reachable(self.address)
            try:
                ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
            except ConnectionError as exc:
                raise TunelabError(
                    f"executor.address: no Ray cluster at {self.address!r} ({exc}); start one "
                    "with: ray start --head, or give its HOST:PORT"
                ) from None
            self._owns_ray = True
        self._objective_ref = ray.put(objective)
        self.puts += 1
        self._hub = _hub_actor().options(scheduling_strategy=_here()).remote()
        self._capacity = self.max_running or self._fits()

    def free_slots(self) -> int:
        return max(0, self._capacity - len(self._running))

    def running(self) -> list[TrialTask]:
        return [run.task for run in self._running.values()]

    def submit(self, tasks: Sequence[TrialTask]) -> None:
        if len(tasks) > self.free_slots():
            raise RuntimeError("submit() beyond free_slots()")
        for task in tasks:
            self._launch(task, attempt=0)

    def wait(self, on_report: Reporter, timeout: float) -> list[TrialOutcome]:
        ray = _ray()
        deadline = time.monotonic() + timeout
        outcomes: list[TrialOutcome] = []
        while self._running:
            self._relay(on_report)
            done, _ = ray.wait(list(self._running), num_returns=len(self._running), timeout=0)
            for ref in done:
                outcome = self._finish(self._running.pop(ref))
                if outcome is not None:
                    outcomes.append(outcome)
            outcomes += self._cancel_overdue()
            if outcomes or time.monotonic() >= deadline:
                break
            time.sleep(_POLL_S)
        return outcomes

    def shutdown(self) -> None:
        ray = _ray()
        for run in self._running.values():
            ray.cancel(run.ref, force=True)
        self._running.clear()
        if self._hub is not None:
            ray.kill(self._hub)
            self._hub = None
        self._objective_ref = None
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False

    # Helpers -----------------------------------------------------------------------------------
    def _launch(self, task: TrialTask, attempt: int) -> None:
        options: dict[str, Any] = {"num_cpus": self.cpus, "max_retries": 0}
        if self.gpus:
            options["num_gpus"] = self.gpus
        ref = _trial_task().options(**options).remote(self._objective_ref, task, self._hub)
        self._running[ref] = _Running(task, ref, time.time(), attempt)

    def _relay(self, on_report: Reporter) -> None:
        """Answer every report the hub holds: the scheduler decides, the trial goes on."""
        ray = _ray()
        reports = ray.get(self._hub.take.remote())
        if reports:
            answers = [
                (key, on_report(number, step, metrics)) for key, number, step, metrics in reports
            ]
            self._hub.answer.remote(answers)

    def _finish(self, run: _Running) -> TrialOutcome | None:
        """The outcome of a task that ended; None when a lost worker's trial was run again."""
        ray = _ray()
        try:
            return ray.get(run.ref)
        except ray.exceptions.TaskCancelledError:
            return _failed(run.task, "cancelled")
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as exc:
            reason = _lost(exc)
        except ray.exceptions.RayError as exc:  # the object store or the cluster failed it
            reason = f"the Ray cluster failed the trial: {type(exc).__name__}: {exc}"
        if run.attempt < self.max_retries:
            logging.getLogger("tunelab").warning(
                "trial %d: %s; running it again (retry %d of %d)",
                run.task.number,
                reason,
                run.attempt + 1,
                self.max_retries,
            )
            self._launch(run.task, run.attempt + 1)
            return None
        retried = f" (after {run.attempt} retries)" if run.attempt else ""
        return _failed(run.task, reason + retried)

    def _cancel_overdue(self) -> list[TrialOutcome]:
        """Trials past their time limit that did not stop themselves: their workers are killed."""
        ray, now, outcomes = _ray(), time.time(), []
        for ref, run in list(self._running.items()):
            limit = run.task.timeout_s
            if limit is not None and now > run.submitted_at + limit + _KILL_GRACE_S:
                ray.cancel(ref, force=True)
                del self._running[ref]
                outcomes.append(
                    _failed(
                        run.task,
                        f"timed out: still running {_KILL_GRACE_S:.0f} s past its time limit of "
                        f"{limit:g} s, so its worker was killed",
                    )
                )
        return outcomes

    def _fits(self) -> int:
        """How many trials the cluster's resources hold at once."""
        total = _ray().cluster_resources()
        counts = [math.floor(total.get("CPU", 0) / self.cpus + 1e-9)] if self.cpus else []
        if self.gpus:
            counts.append(math.floor(total.get("GPU", 0) / self.gpus + 1e-9))
        fits = min(counts)
        if fits < 1:
            what = f"{self.cpus:g} CPUs" + (f" and {self.gpus:g} GPUs" if self.gpus else "")
            raise TunelabError(
                f"executor: the Ray cluster has {total.get('CPU', 0):g} CPUs and "
                f"{total.get('GPU', 0):g} GPUs, too few for one trial of {what}; lower cpus or "
                "gpus, or add nodes"
            )
        return fits


def _check_reachable(address: str) -> None:
    """Fail at once on a HOST:PORT nothing listens on (Ray itself retries for minutes)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local": Ray finds (or starts) the cluster itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise TunelabError(
            f"executor.address: no Ray cluster answers at {address} ({exc.strerror or exc}); "
            "start one there with: ray start --head --port PORT, or give the right HOST:PORT"
        ) from None


def _failed(task: TrialTask, reason: str) -> TrialOutcome:
    return TrialOutcome(task, TrialState.FAILED, error=reason)


def _lost(exc: Exception) -> str:
    ray = _ray()
    if isinstance(exc, ray.exceptions.NodeDiedError):
        return "its Ray node died (the machine left the cluster)"
    return "its worker process died (killed, or out of memory)"


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise TunelabError(
            "executor: ray needs Ray installed; pip install 'tunelab[ray]'"
        ) from None
    return ray


def _here() -> Any:
    """A scheduling strategy that keeps an actor on the driver's node (the hub talks to it)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(_ray().get_runtime_context().get_node_id(), soft=False)


_REMOTES: dict[str, Any] = {}


def _trial_task() -> Any:
    """The Ray task that runs one trial (made once Ray is imported)."""
    if "trial" not in _REMOTES:

        def run_one(objective: Objective, task: TrialTask, hub: Any) -> TrialOutcome:
            ray = _ray()

            def report(number: int, step: int, metrics: dict[str, float]) -> Decision:
                return ray.get(hub.report.remote(number, step, metrics))

            return run_trial(objective, task, report)

        _REMOTES["trial"] = _ray().remote(run_one)
    return _REMOTES["trial"]


def _hub_actor() -> Any:
    """The actor that holds each trial's report until the driver answers it (made once)."""
    if "hub" not in _REMOTES:

        class Hub:
            def __init__(self) -> None:
                self._reports: list[tuple[int, int, int, dict[str, float]]] = []
                self._answers: dict[int, asyncio.Future] = {}
                self._keys = itertools.count()

            async def report(self, number: int, step: int, metrics: dict[str, float]) -> Decision:
                key = next(self._keys)
                answer = asyncio.get_running_loop().create_future()
                self._answers[key] = answer
                self._reports.append((key, number, step, metrics))
                return await answer

            async def take(self) -> list[tuple[int, int, int, dict[str, float]]]:
                reports, self._reports = self._reports, []
                return reports

            async def answer(self, answers: list[tuple[int, Decision]]) -> None:
                for key, decision in answers:
                    waiting = self._answers.pop(key, None)
                    if waiting is not None and not waiting.done():
                        waiting.set_result(decision)

        _REMOTES["hub"] = _ray().remote(num_cpus=0, max_concurrency=10_000)(Hub)
    return _REMOTES["hub"]
