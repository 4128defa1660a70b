"""A fault drill: SIGKILL the driver or one of its workers at random moments of a real study,
resume after each kill, and check that nothing recorded is lost, changed or duplicated.

After every kill: every trial that had finished is unchanged (state, params, value), trial numbers
are unique and dense, and the workers of a killed driver are gone within a second. At the end, a
last resume finishes the budget and nothing is left RUNNING or WAITING.

By hand: ``python -m tests.fault_drill --kills 50`` (prints a summary; exit 1 on a violation).
The test suite runs it with three kills (tests/test_fault_drill.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
NAME = "drill"
SPEC = {
    "name": NAME,
    "data": {"source": "iris"},
    "metric": {"name": "val_accuracy", "direction": "maximize"},
    "space": {
        "lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True},
        "units": {"type": "categorical", "choices": [8, 16]},
    },
    "fixed": {"epochs": 6, "batch_size": 16},
    "scheduler": {"name": "median", "warmup_steps": 2, "min_trials": 3},
    "workers": 2,
    "seed": 0,
}


class DrillFailure(AssertionError):
    """An invariant of the drill did not hold."""


def _rows(db: Path) -> dict[int, tuple]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT number, state, params, value FROM tunelab_trials").fetchall()
    return {number: (state, params, value) for number, state, params, value in rows}


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in found.split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _check(db: Path, finished: dict[int, tuple]) -> dict[int, tuple]:
    """The invariants after a kill; returns the finished trials now known."""
    rows = _rows(db)
    if sorted(rows) != list(range(len(rows))):
        raise DrillFailure(f"trial numbers are not dense and unique: {sorted(rows)}")
    for number, before in finished.items():
        if rows.get(number) != before:
            raise DrillFailure(f"finished trial {number} changed: {before} -> {rows.get(number)}")
    done = ("COMPLETE", "PRUNED", "FAILED")
    return {n: row for n, row in rows.items() if row[0] in done}


def drill(kills: int, folder: Path, seed: int = 0) -> dict:
    """Run the drill; returns a summary, raises DrillFailure when an invariant breaks."""
    rng = random.Random(seed)
    db = folder / "tunelab.db"
    spec = folder / "spec.yaml"
    spec.write_text(
        yaml.safe_dump({**SPEC, "budget": {"trials": 20 + 6 * kills}, "storage": f"sqlite:///{db}"})
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    command = [sys.executable, "-m", "tunelab.cli"]
    finished: dict[int, tuple] = {}
    summary = {"kills": kills, "driver_kills": 0, "worker_kills": 0, "slowest_worker_exit_s": 0.0}
    for round_ in range(kills):
        args = (
            ["run", str(spec)] if round_ == 0 else ["resume", NAME, "--storage", f"sqlite:///{db}"]
        )
        proc = subprocess.Popen(
            [*command, *args], cwd=folder, env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        if round_ == 0:  # a run killed before it stored the study leaves nothing to resume
            started = time.monotonic()
            while not db.exists() and proc.poll() is None and time.monotonic() - started < 120:
                time.sleep(0.05)
        time.sleep(rng.uniform(2.0, 5.0))  # start-up (torch import) is about 2 s
        workers = [p for p in _children(proc.pid) if _alive(p)]
        if workers and rng.random() < 0.4:  # a worker dies; the driver must go on
            os.kill(rng.choice(workers), signal.SIGKILL)
            summary["worker_kills"] += 1
            time.sleep(rng.uniform(0.5, 2.0))
            workers = [p for p in _children(proc.pid) if _alive(p)]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        summary["driver_kills"] += 1
        killed = time.monotonic()
        while any(_alive(p) for p in workers) and time.monotonic() - killed < 5:
            time.sleep(0.02)
        lived = time.monotonic() - killed
        summary["slowest_worker_exit_s"] = max(summary["slowest_worker_exit_s"], round(lived, 2))
        if lived > 1.0:
            raise DrillFailure(f"round {round_}: workers lived {lived:.1f} s after their driver")
        printed = proc.stderr.read().strip()
        if printed:
            raise DrillFailure(f"round {round_}: the killed run printed: {printed[-2000:]}")
        if db.exists():
            finished = _check(db, finished)
    last = subprocess.run(
        [*command, "resume", NAME, "--storage", f"sqlite:///{db}"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    if last.returncode != 0:
        raise DrillFailure(f"the final resume failed: {last.stderr}")
    finished = _check(db, finished)
    rows = _rows(db)
    left = [n for n, (state, _, _) in rows.items() if state in ("RUNNING", "WAITING")]
    if left or len(rows) != 20 + 6 * kills:
        raise DrillFailure(f"after the final resume: {len(rows)} trials, unfinished: {left}")
    states = [state for state, _, _ in rows.values()]
    summary.update(trials=len(rows), **{s.lower(): states.count(s) for s in set(states)})
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        try:
            summary = drill(args.kills, Path(folder), args.seed)
        except DrillFailure as exc:
            print(f"DRILL FAILED: {exc}")
            sys.exit(1)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
