"""Objectives the tests run in worker processes (importable, so spawn can pickle them by name)."""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path


def quadratic(trial):
    """Fast, smooth, minimum at x = 2."""
    return (trial.params["x"] - 2.0) ** 2


def slow_quadratic_5ms(trial):
    """As quadratic, taking 5 ms: long enough for processes sharing a study to interleave."""
    time.sleep(0.005)
    return quadratic(trial)


def curve(trial):
    """A learning curve whose level is set by x: reports every step, stops when told."""
    x = trial.params["x"]
    for step in range(1, 11):
        trial.report(step, score=x * (1 - 0.5**step))
        if trial.should_stop():
            break
    return None  # the last reported score is the value


def misbehaving(trial):
    """Each kind of failure a trial can have, chosen by params['kind']."""
    kind = trial.params["kind"]
    if kind == "ok":
        return 1.0
    if kind == "raise":
        raise RuntimeError("boom in user code")
    if kind == "nan":
        return math.nan
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "hang":
        time.sleep(600)
    if kind == "wrong-type":
        return "high"
    raise AssertionError(kind)


def slow_quadratic(trial):
    """Reports a few times over about half a second (long enough to be killed mid-study)."""
    for step in range(5):
        time.sleep(0.1)
        trial.report(step, value=(trial.params["x"] - 2.0) ** 2)
    return (trial.params["x"] - 2.0) ** 2


def seed_and_dir(trial):
    """Returns the trial's seed; writes into its directory."""
    trial.dir.mkdir(parents=True, exist_ok=True)
    (trial.dir / "note.txt").write_text(str(trial.seed))
    return float(trial.seed % 1000)


def long_reporting(trial):
    """Reports, then works for 30 s before its next report: a trial mid-epoch when its driver is
    killed, which only a watch on the driver (not the next report) can end quickly."""
    for step in range(3):
        trial.report(step, value=float(step))
        time.sleep(30)
    return 0.0


def jittery_curve(trial):
    """A learning curve set by the params, with random pauses between reports (from the OS, not
    the seed): which trial finishes first changes from run to run."""
    import random

    jitter = random.SystemRandom()
    level = 1 - (trial.params["x"] - 0.3) ** 2
    for step in range(1, 6):
        time.sleep(jitter.uniform(0.0, 0.06))
        trial.report(step, score=level * (1 - 0.5**step))
        if trial.should_stop():
            break
    return None


def where_it_ran(trial):
    """Keeps the Ray node that ran it, and returns a value from its params."""
    import ray

    trial.set_user_attr("node", ray.get_runtime_context().get_node_id())
    time.sleep(0.2)  # long enough for the trials to spread over the nodes
    return (trial.params["x"] - 2.0) ** 2


def killed_once(trial):
    """Its worker process dies the first time it runs (a marker file in the folder
    ``params["markers"]`` says so: not the trial's own, which a dead attempt does not send back
    from its node); then it completes."""
    marker = Path(trial.params["markers"]) / f"died-once-{trial.number}"
    if not marker.exists():
        marker.write_text("x")
        os.kill(os.getpid(), signal.SIGKILL)
    return 1.0


def slow_where(trial):
    """Reports every 0.1 s for 4 s from wherever Ray put it (long enough to lose its node)."""
    import ray

    trial.set_user_attr("node", ray.get_runtime_context().get_node_id())
    for step in range(40):
        time.sleep(0.1)
        trial.report(step, value=float(step))
    return 1.0


def resumable_where(trial):
    """Counts to ``params["steps"]``, pausing when told; its checkpoint keeps the Ray nodes its
    runs were on, and each run keeps them, and its folder, with the trial."""
    import ray

    state = trial.load_checkpoint() or {"nodes": []}
    nodes = [*state["nodes"], ray.get_runtime_context().get_node_id()]
    trial.set_user_attr("nodes", nodes)
    trial.set_user_attr("folder", str(trial.dir))
    for step in range((trial.resumed_from or 0) + 1, trial.params["steps"] + 1):
        trial.report(step, value=float(step))
        if trial.should_pause():
            trial.save_checkpoint({"nodes": nodes})
            break
    return float(trial.last_step)


def sleeping(trial):
    """Sleeps ``params["seconds"]`` without reporting."""
    time.sleep(trial.params["seconds"])
    return 1.0


def ticking(trial):
    """Touches ``<markers>/tick-N`` every 0.1 s until ``<markers>/release`` exists: a test sees
    from outside whether the trial still runs, and ends it when it likes."""
    markers = Path(trial.params["markers"])
    while not (markers / "release").exists():
        (markers / f"tick-{trial.number}").write_text(str(time.time()))
        time.sleep(0.1)
    return 1.0


def branching(trial):
    """Define-by-run, Optuna's way: a branch suggests its own parameters."""
    kind = trial.suggest_categorical("kind", ["quad", "abs"])
    if kind == "quad":
        x = trial.suggest_float("x", -10.0, 10.0)
        return (x - 2.0) ** 2
    y = trial.suggest_int("y", -10, 10)
    return abs(y - 3) + 0.5


def suggesting_curve(trial):
    """Suggests a rate, then reports Optuna's way (``report(value, step)``) and pauses or stops
    when told, keeping a checkpoint, so a resumed run must suggest the same rate."""
    rate = trial.suggest_float("rate", 0.1, 1.0, log=True)
    state = trial.load_checkpoint() or {}
    if state:
        assert state["rate"] == rate, "a resumed trial suggested another rate"
    for step in range((trial.resumed_from or 0) + 1, 10):
        trial.report(1 - (1 - rate) ** step, step)
        if trial.should_pause():
            trial.save_checkpoint({"rate": rate})
            return None
        if trial.should_prune():
            break
    return 1 - (1 - rate) ** trial.last_step
