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
node it runs. User code travels inside it: modules from outside the Python installation (your
script's, a spec's ``models.py``) are pickled by value, so worker nodes need only tunelab and its
dependencies installed (``runtime_env`` adds anything else: pip packages, data files). At
start every node is asked which tunelab it runs (its release and a digest of its source): a node
with another one is refused in one line, not left to fail each trial deep in its code.

The driver's artifacts folder stays the one home of every trial's files. With ``artifacts:
ship`` (the default) a trial runs in a scratch folder on its node: the driver sends the trial's
folder along (the checkpoint a paused trial resumes from) and takes the folder back when the
trial ends or pauses, all through the object store; so a trial paused on one node resumes on any
other, with no shared filesystem. ``artifacts: shared`` skips the copies where every node mounts
the artifacts folder at the same path.

A worker process that dies (killed, out of memory) or a node that leaves the cluster fails the
trial's task; the trial is run again (from the checkpoint it started from, its last) up to
``max_retries`` times, else recorded FAILED with what happened. A trial past its time limit
(counted from when it started on its node) that does not stop by itself is cancelled (its worker
process killed). A driver that dies takes its trials with it (Ray ends a dead driver's tasks);
``tunelab resume`` re-queues the trials it left RUNNING and runs them again.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import math
import shutil
import socket
import sys
import sysconfig
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tunelab.clock import Clock
from tunelab.errors import SpecError, TunelabError
from tunelab.executors.base import Executor, Objective, TrialOutcome, TrialTask, run_trial
from tunelab.executors.fused import FusedExecutor
from tunelab.trial import Decision, Reporter, TrialState

__all__ = ["RayExecutor"]

_POLL_S = 0.02  # how often the driver takes reports while trials run
_KILL_GRACE_S = 5.0  # a trial's own time-limit check comes first
_VERSION_WAIT_S = 30.0  # for each node's answer to which tunelab it runs


_ARTIFACTS = ("ship", "shared")


@dataclass
class _Running:
    task: TrialTask
    launch: int  # tells the hub's start notice apart from an earlier attempt's
    attempt: int = 0
    started_at: float | None = None  # when the driver heard the trial start on its node


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
        resources: custom Ray resources each trial asks for (``{"large_memory": 1}``), so
            trials land only on nodes started with them (``ray start --resources``).
        artifacts: ``"ship"`` (default) sends each trial's folder to its node and back through
            the object store; ``"shared"`` when every node mounts the artifacts folder at the
            same path.
        runtime_env: a Ray runtime environment for the trials (``{"pip": [...]}``,
            ``{"working_dir": "."}``, ``{"env_vars": {...}}``), for what workers lack beyond
            your code, which travels with the objective anyway.
        fuse: train trials of one network shape as fused groups, each group a Ray actor with
            the CPUs, GPUs and resources above
            (:class:`~tunelab.executors.ray_fused.FusedRayExecutor`).
        group_size: with ``fuse``, the trials each group holds.
        min_speedup: with ``fuse``, as :class:`~tunelab.executors.FusedExecutor` has it.

    Example:
        >>> study.optimize(objective, space, executor=RayExecutor("auto", cpus=1))  # doctest: +SKIP
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> RayExecutor:
        """``RayExecutor(fuse=True)`` is a :class:`~tunelab.executors.ray_fused.FusedRayExecutor`."""
        if cls is RayExecutor and kwargs.get("fuse") is True:
            from tunelab.executors.ray_fused import FusedRayExecutor

            cls = FusedRayExecutor
        return super().__new__(cls)

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
        fuse: bool = False,
        group_size: int = 16,
        min_speedup: float = 1.2,
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
        for key, amount in (resources or {}).items():
            if not isinstance(amount, int | float) or isinstance(amount, bool) or amount <= 0:
                raise SpecError(
                    f"executor.resources.{key}", f"must be a number > 0, got {amount!r}"
                )
        if artifacts not in _ARTIFACTS:
            raise SpecError(
                "executor.artifacts",
                f"must be ship or shared, got {artifacts!r}; ship unless every node mounts the "
                "artifacts folder at the same path",
            )
        if runtime_env is not None and not isinstance(runtime_env, Mapping):
            raise SpecError(
                "executor.runtime_env",
                f"must be a mapping such as {{pip: [...]}}, got {runtime_env!r}",
            )
        if not isinstance(fuse, bool):
            raise SpecError("executor.fuse", f"must be true or false, got {fuse!r}")
        FusedExecutor(group_size, min_speedup)  # the same checks of the same options
        self.address = address
        self.cpus = cpus
        self.gpus = gpus
        self.max_retries = max_retries
        self.max_running = max_running
        self.resources = dict(resources or {})
        self.artifacts = artifacts
        self.runtime_env = dict(runtime_env) if runtime_env else None
        self.fuse = fuse
        self.group_size = group_size
        self.min_speedup = min_speedup
        #: How many times an objective went into the object store (once per :meth:`start`).
        self.puts = 0
        self._running: dict[Any, _Running] = {}
        self._launches = itertools.count()
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
        _check_versions()
        self._objective_ref = ray.put(_portable(objective))
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
                outcome = self._finish(ref, self._running.pop(ref))
                if outcome is not None:
                    outcomes.append(outcome)
            outcomes += self._cancel_overdue()
            if outcomes or time.monotonic() >= deadline:
                break
            time.sleep(_POLL_S)
        return outcomes

    def shutdown(self) -> None:
        ray = _ray()
        for ref in self._running:
            ray.cancel(ref, force=True)
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
        if self.resources:
            options["resources"] = self.resources
        if self.runtime_env:
            options["runtime_env"] = self.runtime_env
        files = _pack(Path(task.directory)) if self.artifacts == "ship" else None
        launch = next(self._launches)
        ref = (
            _trial_task()
            .options(**options)
            .remote(self._objective_ref, task, self._hub, launch, self.artifacts == "ship", files)
        )
        self._running[ref] = _Running(task, launch, attempt)

    def _relay(self, on_report: Reporter) -> None:
        """Note the trials that started; answer every report the hub holds: the scheduler
        decides, the trial goes on."""
        ray = _ray()
        started, reports = ray.get(self._hub.take.remote())
        if started:
            now = time.time()
            for run in self._running.values():
                if run.launch in started:
                    run.started_at = now
        if reports:
            answers = [
                (key, on_report(number, step, metrics)) for key, number, step, metrics in reports
            ]
            self._hub.answer.remote(answers)

    def _finish(self, ref: Any, run: _Running) -> TrialOutcome | None:
        """The outcome of a task that ended; None when a lost worker's trial was run again."""
        ray = _ray()
        try:
            outcome, files = ray.get(ref)
            if files is not None:
                _unpack(files, Path(run.task.directory))
            return outcome
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
        """Trials past their time limit that did not stop themselves: their workers are killed.
        The limit counts from the trial's start on its node, not from its submission (a node
        may take seconds to start a worker, or wait for resources)."""
        ray, now, outcomes = _ray(), time.time(), []
        for ref, run in list(self._running.items()):
            limit, started = run.task.timeout_s, run.started_at
            if limit is not None and started is not None and now > started + limit + _KILL_GRACE_S:
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
        asks = {"CPU": self.cpus, "GPU": self.gpus, **self.resources}
        asks = {name: amount for name, amount in asks.items() if amount}
        fits = min(math.floor(total.get(name, 0) / amount + 1e-9) for name, amount in asks.items())
        if fits < 1:
            has = ", ".join(f"{total.get(name, 0):g} {name}" for name in asks)
            wants = ", ".join(f"{amount:g} {name}" for name, amount in asks.items())
            raise TunelabError(
                f"executor: the Ray cluster has {has}, too few for one trial of {wants}; lower "
                "cpus, gpus or resources, or add nodes that have them"
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


def _check_versions() -> None:
    """Every node must run the driver's tunelab: a node with another one fails every trial
    deep in its code (a field the driver expects, missing). One small task per node, at start."""
    ray = _ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [node for node in ray.nodes() if node["Alive"]]
    probe = _version_task()
    refs = [
        probe.options(
            num_cpus=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
        ).remote()
        for node in nodes
    ]
    mine = _REMOTES["version here"]()
    answered, _ = ray.wait(refs, num_returns=len(refs), timeout=_VERSION_WAIT_S)
    for node, ref in zip(nodes, refs, strict=True):
        if ref not in answered:  # a node leaving the cluster, say: its trials will tell
            logging.getLogger("tunelab").warning(
                "executor: the Ray node at %s did not say which tunelab it runs within %g s",
                node["NodeManagerAddress"],
                _VERSION_WAIT_S,
            )
            ray.cancel(ref, force=True)
            continue
        theirs = ray.get(ref)
        if theirs != mine:
            raise TunelabError(
                f"executor: the Ray node at {node['NodeManagerAddress']} runs tunelab {theirs}, "
                f"the driver tunelab {mine}; install the driver's tunelab on every node (the "
                "same release, or the same checkout), then run again"
            )


def _portable(objective: Objective) -> Objective:
    """The objective as it travels to other machines: one that imports code by path (a spec's
    ``models.py``) holds that code instead (its ``portable()``), and modules that no installed
    distribution provides (your script's, your model files) are pickled by value, not by name."""
    make = getattr(objective, "portable", None)
    if callable(make):
        objective = make()
    from ray import cloudpickle

    for module in _user_modules():
        cloudpickle.register_pickle_by_value(module)
    return objective


def _user_modules() -> list[Any]:
    """Loaded top-level modules that are neither the standard library nor installed."""
    from importlib.metadata import packages_distributions

    installed = set(packages_distributions()) | set(sys.stdlib_module_names)
    python = {
        Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sysconfig.get_paths()["purelib"])
    }
    found = []
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if "." in name or name == "__main__" or name in installed or not file:
            continue
        if not any(parent in python for parent in Path(file).resolve().parents):
            found.append(module)
    return found


def _pack(folder: Path) -> bytes | None:
    """A trial's folder as a tar archive; None when it holds no files."""
    if not folder.is_dir() or not any(folder.iterdir()):
        return None
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(folder, arcname=".")
    return buffer.getvalue()


def _unpack(archive: bytes, folder: Path) -> None:
    """Make ``folder`` hold what ``archive`` holds. Each file is moved in whole (a crash leaves
    old files or new ones, never a torn one); files the archive lacks (older checkpoints the
    trial deleted) go last."""
    folder.mkdir(parents=True, exist_ok=True)
    incoming = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(incoming, filter="data")
        arrived = {path.relative_to(incoming) for path in incoming.rglob("*") if path.is_file()}
        for relative in sorted(arrived):
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (incoming / relative).replace(folder / relative)
        for path in folder.rglob("*"):
            if path.is_file() and path.relative_to(folder) not in arrived:
                path.unlink()
    finally:
        shutil.rmtree(incoming, ignore_errors=True)


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

        def run_one(
            objective: Objective,
            task: TrialTask,
            hub: Any,
            launch: int,
            ship: bool,
            files: bytes | None,
        ) -> tuple[TrialOutcome, bytes | None]:
            """Run one trial; with ``ship``, in a scratch folder holding ``files`` (the trial's
            folder from the driver), whose files go back with the outcome."""
            ray = _ray()
            hub.started.remote(launch)

            def report(number: int, step: int, metrics: dict[str, float]) -> Decision:
                return ray.get(hub.report.remote(number, step, metrics))

            if not ship:
                return run_trial(objective, task, report), None
            with tempfile.TemporaryDirectory(prefix=f"tunelab-trial{task.number}-") as scratch:
                if files is not None:
                    _unpack(files, Path(scratch))
                outcome = run_trial(objective, replace(task, directory=scratch), report)
                return replace(outcome, task=task), _pack(Path(scratch))

        _REMOTES["trial"] = _ray().remote(run_one)
    return _REMOTES["trial"]


def _version_task() -> Any:
    """A task that says which tunelab its node runs; defined here, inside a function, so that it
    travels by value and runs even where another tunelab is installed."""
    if "version" not in _REMOTES:

        def installed() -> str:
            """The node's tunelab: its release and a digest of its source (a checkout's edits
            change it)."""
            import hashlib
            from pathlib import Path

            try:
                import tunelab
            except ImportError:
                return "none (not installed)"
            root = Path(tunelab.__file__).parent
            digest = hashlib.sha256()
            for path in sorted(root.rglob("*.py")):
                digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
            return f"{tunelab.__version__} (source {digest.hexdigest()[:12]})"

        _REMOTES["version here"] = installed  # the driver's own answer, the same code
        _REMOTES["version"] = _ray().remote(installed)
    return _REMOTES["version"]


def _hub_actor() -> Any:
    """The actor that holds each trial's report until the driver answers it (made once)."""
    if "hub" not in _REMOTES:

        class Hub:
            def __init__(self) -> None:
                self._started: set[int] = set()
                self._reports: list[tuple[int, int, int, dict[str, float]]] = []
                self._answers: dict[int, asyncio.Future] = {}
                self._keys = itertools.count()

            async def report(self, number: int, step: int, metrics: dict[str, float]) -> Decision:
                key = next(self._keys)
                answer = asyncio.get_running_loop().create_future()
                self._answers[key] = answer
                self._reports.append((key, number, step, metrics))
                return await answer

            async def started(self, launch: int) -> None:
                self._started.add(launch)

            async def take(self) -> tuple[set[int], list[tuple[int, int, int, dict[str, float]]]]:
                started, self._started = self._started, set()
                reports, self._reports = self._reports, []
                return started, reports

            async def answer(self, answers: list[tuple[int, Decision]]) -> None:
                for key, decision in answers:
                    waiting = self._answers.pop(key, None)
                    if waiting is not None and not waiting.done():
                        waiting.set_result(decision)

        _REMOTES["hub"] = _ray().remote(num_cpus=0, max_concurrency=10_000)(Hub)
    return _REMOTES["hub"]
