"""Runs trials in N local worker processes (spawn start method), one trial per worker at a time.

Each worker talks to the driver over its own pipe: it sends reports and waits for the decision, then
sends the outcome. The driver watches the pipes and the process sentinels together, so a worker that
dies (killed, out of memory, segfault) is noticed at once, its trial recorded FAILED with the exit
code, and a fresh worker takes its place. A trial past its time limit is killed the same way.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from tunelab.clock import Clock
from tunelab.errors import TunelabError
from tunelab.executors.base import Executor, Objective, TrialOutcome, TrialTask, run_trial
from tunelab.trial import Reporter, TrialState

__all__ = ["ProcessExecutor"]

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
    task: TrialTask | None = None
    started_at: float | None = None  # when the worker began the task (after its own start-up)
    trials_run: int = 0

    def kill_at(self) -> float | None:
        """When a trial past its time limit is killed: the worker's own check comes first."""
        if self.task is None or self.task.timeout_s is None or self.started_at is None:
            return None
        return self.started_at + self.task.timeout_s + _KILL_GRACE_S


class ProcessExecutor(Executor):
    """N worker processes on this machine.

    Args:
        n_workers: trials run at once.
        threads_per_worker: torch/BLAS threads in each worker; default: cores // n_workers, so N
            workers never oversubscribe the machine.
        max_trials_per_worker: recycle a worker after this many trials (bounds memory creep).
    """

    def __init__(
        self,
        n_workers: int = 2,
        threads_per_worker: int | None = None,
        max_trials_per_worker: int | None = None,
    ) -> None:
        if n_workers < 1:
            raise ValueError(f"n_workers must be >= 1, got {n_workers}")
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self.max_trials_per_worker = max_trials_per_worker
        self._workers: list[_Worker] = []
        self._payload: bytes | None = None
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

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main,
            args=(child, self._payload, self._threads(), os.getpid()),
            daemon=True,
            name="tunelab-worker",
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def free_slots(self) -> int:
        return self.n_workers - len(self.running())

    def running(self) -> list[TrialTask]:
        return [w.task for w in self._workers if w.task is not None]

    def submit(self, tasks: Sequence[TrialTask]) -> None:
        for task in tasks:
            worker = next((w for w in self._workers if w.task is None), None)
            if worker is None:
                if len(self._workers) >= self.n_workers:
                    raise RuntimeError("submit() beyond free_slots()")
                worker = self._spawn()
                self._workers.append(worker)
            worker.conn.send(("run", task))
            worker.task, worker.started_at = task, None

    def wait(self, on_report: Reporter, timeout: float) -> list[TrialOutcome]:
        busy = [w for w in self._workers if w.task is not None]
        if not busy:
            return []
        kill_at = min((k for w in busy if (k := w.kill_at()) is not None), default=None)
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
            if worker.task is not None and not worker.process.is_alive():
                outcomes.append(self._fail(worker, _death_reason(worker.process.exitcode)))
            elif worker.task is not None and (k := worker.kill_at()) and time.time() > k:
                worker.process.kill()
                worker.process.join()
                outcomes.append(
                    self._fail(
                        worker,
                        f"timed out: still running {_KILL_GRACE_S:.0f} s past its time limit of "
                        f"{worker.task.timeout_s:g} s; worker killed",
                    )
                )
        return outcomes

    def _drain(self, worker: _Worker, on_report: Reporter) -> list[TrialOutcome]:
        """Handle every message waiting on a worker's pipe."""
        outcomes = []
        try:
            while worker.task is not None and worker.conn.poll():
                kind, *payload = worker.conn.recv()
                if kind == "started":
                    worker.started_at = time.time()
                elif kind == "report":
                    number, step, metrics = payload
                    worker.conn.send(("decision", on_report(number, step, metrics)))
                elif kind == "done":
                    outcomes.append(payload[0])
                    worker.task = None
                    worker.trials_run += 1
                    if (
                        self.max_trials_per_worker
                        and worker.trials_run >= self.max_trials_per_worker
                    ):
                        self._retire(worker)
        except (EOFError, OSError):
            pass  # the worker died; its sentinel tells the rest
        return outcomes

    def _fail(self, worker: _Worker, reason: str) -> TrialOutcome:
        outcome = TrialOutcome(worker.task, TrialState.FAILED, error=reason)
        worker.task = None
        self._retire(worker)
        return outcome

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
            if worker.task is not None:
                worker.process.kill()
                worker.process.join()
            self._retire(worker)


def _death_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (out of memory, or killed from outside)" if name == "SIGKILL" else ""
        return f"worker process died: killed by {name}{hint}"
    return f"worker process died with exit code {exitcode}"


def _worker_main(conn: Connection, payload: bytes, threads: int, driver: int) -> None:
    """A worker's loop: run each task it is sent, relaying reports to the driver.

    A worker whose driver is gone has no one to report to: it exits at once and silently, from
    the watchdog (within a fraction of a second, even mid-epoch) or at its next message."""
    for name in _THREAD_VARIABLES:
        os.environ[name] = str(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    _die_with(driver)
    objective = pickle.loads(payload)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)

    def send(message: tuple) -> None:
        try:
            conn.send(message)
        except OSError:  # BrokenPipeError, ConnectionResetError: the driver is gone
            os._exit(0)

    def report(number: int, step: int, metrics: dict[str, float]):
        send(("report", number, step, metrics))
        try:
            _, decision = conn.recv()
        except (EOFError, OSError):
            os._exit(0)
        return decision

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the driver is gone
            return
        if message[0] == "stop":
            return
        send(("started",))
        send(("done", run_trial(objective, message[1], report)))


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
