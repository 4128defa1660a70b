"""Runs trials in N local worker processes (spawn start method): one trial per worker at a time,
or with ``fuse=True`` a fused group of same-shaped trials per worker.

Each worker talks to the driver over its own pipe: it sends reports and waits for the decision, then
sends the outcome; what it logs, the driver says (a ``once`` record only the first time any worker
sends it). The driver watches the pipes and the process sentinels together, so a worker that
dies (killed, out of memory, segfault) is noticed at once, its trials recorded FAILED with the exit
code, and a fresh worker takes its place. A trial past its time limit is killed the same way.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from tunelab.clock import Clock
from tunelab.errors import SpecError, TunelabError
from tunelab.executors.base import Executor, Objective, TrialOutcome, TrialTask, run_trial
from tunelab.executors.fused import FusedExecutor
from tunelab.trial import Reporter, TrialState

__all__ = ["ProcessExecutor"]

logger = logging.getLogger("tunelab")

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_KILL_GRACE_S = 5.0
_PARENT_CHECK_S = 0.2
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass
class _Worker:
    process: Any
    conn: Connection
    tasks: dict[int, TrialTask] = field(default_factory=dict)  # by trial number
    started_at: dict[int, float] = field(default_factory=dict)  # after the worker's start-up
    trials_run: int = 0

    def overdue(self) -> tuple[float, TrialTask] | None:
        """The first of its trials to pass its time limit, and when the worker is killed for
        it (the trial's own check at its reports comes first)."""
        limits = [
            (self.started_at[number] + task.timeout_s + _KILL_GRACE_S, task)
            for number, task in self.tasks.items()
            if task.timeout_s is not None and number in self.started_at
        ]
        return min(limits, key=lambda limit: limit[0], default=None)


class ProcessExecutor(Executor):
    """N worker processes on this machine.

    Args:
        n_workers: worker processes.
        threads_per_worker: torch/BLAS threads in each worker; default: cores // n_workers, so N
            workers never oversubscribe the machine.
        max_trials_per_worker: recycle a worker after this many trials (bounds memory creep); a
            fused worker takes no new trial past it, and is recycled once its last one ends.
        fuse: each worker trains up to ``group_size`` trials at once, those of one network shape
            as a fused group (:class:`~tunelab.executors.FusedExecutor`, with ``min_speedup``):
            fusing's gain per process, and a process per core.
        group_size: with ``fuse``, the trials each worker holds.
        min_speedup: with ``fuse``, as :class:`~tunelab.executors.FusedExecutor` has it.
    """

    def __init__(
        self,
        n_workers: int = 2,
        threads_per_worker: int | None = None,
        max_trials_per_worker: int | None = None,
        fuse: bool = False,
        group_size: int = 16,
        min_speedup: float = 1.2,
    ) -> None:
        if n_workers < 1:
            raise ValueError(f"n_workers must be >= 1, got {n_workers}")
        if not isinstance(fuse, bool):
            raise SpecError("executor.fuse", f"must be true or false, got {fuse!r}")
        FusedExecutor(group_size, min_speedup)  # the same checks of the same options
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self.max_trials_per_worker = max_trials_per_worker
        self.fuse = fuse
        self.group_size = group_size
        self.min_speedup = min_speedup
        self._workers: list[_Worker] = []
        self._payload: bytes | None = None
        self._said: set[str] = set()  # the workers' ``once`` records already said
        self._context = mp.get_context("spawn")

    def start(self, objective: Objective, clock: Clock | None = None) -> None:
        try:
            self._payload = pickle.dumps(objective)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise TunelabError(
                f"workers > 1 runs trials in separate processes, so the objective must be picklable: "
                f"{exc}. Define it as a module-level function (not a lambda or a closure), "
                "or use workers=1"
            ) from None

    def _threads(self) -> int:
        return self.threads_per_worker or max(1, available_cores() // self.n_workers)

    @property
    def _slots(self) -> int:
        """The trials one worker holds at once."""
        return self.group_size if self.fuse else 1

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe(duplex=True)
        fused = (self.group_size, self.min_speedup) if self.fuse else None
        process = self._context.Process(
            target=_worker_main,
            args=(child, self._payload, self._threads(), os.getpid(), fused),
            daemon=True,
            name="tunelab-worker",
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def _takes_more(self, worker: _Worker) -> bool:
        spent = self.max_trials_per_worker and worker.trials_run >= self.max_trials_per_worker
        return not spent and len(worker.tasks) < self._slots

    def free_slots(self) -> int:
        unstarted = (self.n_workers - len(self._workers)) * self._slots
        return unstarted + sum(
            self._slots - len(w.tasks) for w in self._workers if self._takes_more(w)
        )

    def running(self) -> list[TrialTask]:
        return [task for w in self._workers for task in w.tasks.values()]

    def submit(self, tasks: Sequence[TrialTask]) -> None:
        if len(tasks) > self.free_slots():
            raise RuntimeError("submit() beyond free_slots()")
        for task in tasks:
            worker = self._place()
            worker.conn.send(("run", task))
            worker.tasks[task.number] = task

    def _place(self) -> _Worker:
        """The least loaded worker that takes a trial; a new one while every worker has some
        (so trials spread over the processes, and so over the cores)."""
        open_workers = [w for w in self._workers if self._takes_more(w)]
        least = min(open_workers, key=lambda w: len(w.tasks), default=None)
        if len(self._workers) < self.n_workers and (least is None or least.tasks):
            least = self._spawn()
            self._workers.append(least)
        return least

    def wait(self, on_report: Reporter, timeout: float) -> list[TrialOutcome]:
        busy = [w for w in self._workers if w.tasks]
        if not busy:
            return []
        kill_at = min((o[0] for w in busy if (o := w.overdue()) is not None), default=None)
        if kill_at is not None:
            timeout = max(0.0, min(timeout, kill_at - time.time()))
        by_handle = {}
        for w in busy:
            by_handle[w.conn] = w
            by_handle[w.process.sentinel] = w
        outcomes = []
        for handle in wait(list(by_handle), timeout):
            worker = by_handle[handle]
            if handle is worker.conn:
                outcomes.extend(self._drain(worker, on_report))
        for worker in busy:  # a pipe may end with a death: look at the sentinels after the pipes
            if worker.tasks and not worker.process.is_alive():
                outcomes.extend(self._fail(worker, _death_reason(worker.process.exitcode)))
            elif worker.tasks and (o := worker.overdue()) and time.time() > o[0]:
                worker.process.kill()
                worker.process.join()
                overdue = o[1]
                limit = (
                    f"still running {_KILL_GRACE_S:.0f} s past its time limit of "
                    f"{overdue.timeout_s:g} s; worker killed"
                )
                outcomes.extend(
                    self._fail(
                        worker,
                        f"worker killed: trial {overdue.number} of its fused group was {limit}",
                        {overdue.number: f"timed out: {limit}"},
                    )
                )
        return outcomes

    def _drain(self, worker: _Worker, on_report: Reporter) -> list[TrialOutcome]:
        """Handle every message waiting on a worker's pipe."""
        outcomes = []
        try:
            while worker.tasks and worker.conn.poll():
                kind, *payload = worker.conn.recv()
                if kind == "started":
                    worker.started_at[payload[0]] = time.time()
                elif kind == "log":
                    self._say(*payload)
                elif kind == "report":
                    number, step, metrics = payload
                    worker.conn.send(("decision", on_report(number, step, metrics)))
                elif kind == "done":
                    outcome = payload[0]
                    worker.tasks.pop(outcome.task.number, None)
                    worker.started_at.pop(outcome.task.number, None)
                    outcomes.append(outcome)
                    worker.trials_run += 1
                    spent = self.max_trials_per_worker and (
                        worker.trials_run >= self.max_trials_per_worker
                    )
                    if spent and not worker.tasks:
                        self._retire(worker)
        except (EOFError, OSError):
            pass  # the worker died; its sentinel tells the rest
        return outcomes

    def _say(self, level: int, message: str, once: str | None) -> None:
        if once is None or once not in self._said:
            self._said.add(once)
            logger.log(level, message)

    def _fail(
        self, worker: _Worker, reason: str, own: dict[int, str] | None = None
    ) -> list[TrialOutcome]:
        """Every trial of a worker that died, FAILED with ``reason`` (or its ``own``)."""
        own = own or {}
        outcomes = [
            TrialOutcome(task, TrialState.FAILED, error=own.get(number, reason))
            for number, task in worker.tasks.items()
        ]
        worker.tasks.clear()
        self._retire(worker)
        return outcomes

    def _retire(self, worker: _Worker) -> None:
        if worker.process.is_alive():
            try:
                worker.conn.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
            worker.process.join(timeout=_KILL_GRACE_S)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
        worker.conn.close()
        self._workers.remove(worker)

    def shutdown(self) -> None:
        for worker in list(self._workers):
            if worker.tasks:
                worker.process.kill()
                worker.process.join()
            self._retire(worker)


def _death_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (out of memory, or killed from outside)" if name == "SIGKILL" else ""
        return f"worker process died: killed by {name}{hint}"
    return f"worker process died with exit code {exitcode}"


def _worker_main(
    conn: Connection,
    payload: bytes,
    threads: int,
    driver: int,
    fused: tuple[int, float] | None = None,
) -> None:
    """A worker's loop: run each task it is sent, relaying reports to the driver; with
    ``fused`` (group size, min speed-up), train the tasks it holds as fused groups, taking new
    ones between epochs.

    A worker whose driver is gone has no one to report to: it exits at once and silently, from
    the watchdog (within a fraction of a second, even mid-epoch) or at its next message."""
    for name in _THREAD_VARIABLES:
        os.environ[name] = str(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    _die_with(driver)
    objective = pickle.loads(payload)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    arrived: list[tuple] = []  # tasks sent while a report waited for its decision

    def send(message: tuple) -> None:
        try:
            conn.send(message)
        except OSError:  # BrokenPipeError, ConnectionResetError: the driver is gone
            os._exit(0)

    def receive() -> tuple:
        try:
            return conn.recv()
        except (EOFError, OSError):  # the driver is gone
            os._exit(0)

    _log_to_driver(send)

    def report(number: int, step: int, metrics: dict[str, float]):
        send(("report", number, step, metrics))
        while (message := receive())[0] != "decision":
            arrived.append(message)
        return message[1]

    group = None
    if fused is not None:
        group = FusedExecutor(*fused)
        group.start(objective)
    while True:
        if group is not None and not arrived and not conn.poll():
            ended = group.wait(report, 0.0)  # an epoch of the groups, between messages
            for outcome in ended:
                send(("done", outcome))
            if ended or group.running():
                continue
        message = arrived.pop(0) if arrived else receive()
        if message[0] == "stop":
            return
        task = message[1]
        send(("started", task.number))
        if group is None:
            send(("done", run_trial(objective, task, report)))
        else:
            group.submit([task])


class _ToDriver(logging.Handler):
    def __init__(self, send) -> None:
        super().__init__()
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        self.send(("log", record.levelno, record.getMessage(), getattr(record, "once", None)))


def _log_to_driver(send) -> None:
    """The ``tunelab`` logger's records go to the driver, which says them in its terminal, with
    its handlers and level: N workers do not each print the same warning, unformatted."""
    logger.handlers[:] = [_ToDriver(send)]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _die_with(driver: int) -> None:
    """End this worker the moment its driver dies: on Linux the kernel sends SIGKILL
    (PR_SET_PDEATHSIG); elsewhere a thread polls. A driver already gone means exit now."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux
        pass
    if os.getppid() != driver:
        os._exit(0)
    threading.Thread(target=_exit_with, args=(driver,), daemon=True).start()


def _exit_with(driver: int) -> None:
    """Watch the driver; when it dies (this process is handed to another parent, perhaps before
    this thread even started), exit."""
    while os.getppid() == driver:
        time.sleep(_PARENT_CHECK_S)
    os._exit(0)
