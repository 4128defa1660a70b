"""Per-trial overhead on a Ray cluster with PostgreSQL: tunelab's Ray executor beside Ray Tune's
own Tuner on the same cluster, and Optuna on the same PostgreSQL server.

The cluster is the tests' (`.ci/ray`: a head and two worker nodes on 127.0.0.1, one CPU each),
the server `.ci/postgres`'s; both are started here and stopped by pid at the end. Each contender
runs the same trivial objective (``(x - 2)^2``, no training) N times; the figure is wall time
per trial, so it is all overhead: proposing, placing the trial, relaying its result, recording
it. Goal of issue 21: tunelab at most half of Ray Tune's.

Usage: python bench/cluster.py [--trials 1000] [--contenders tunelab ray-tune optuna]
Writes bench/results/cluster.json and .md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback stays loopback
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def trivial(trial) -> float:
    return (trial.params["x"] - 2.0) ** 2


def run_tunelab(address: str, database: str, trials: int) -> float:
    from tunelab import Float, Study
    from tunelab.executors import RayExecutor

    logging.getLogger("tunelab").setLevel(logging.WARNING)
    study = Study(f"cluster-{uuid.uuid4().hex[:8]}", storage=database, seed=0)
    start = time.perf_counter()
    study.optimize(trivial, {"x": Float(-5.0, 5.0)}, trials=trials, executor=RayExecutor(address))
    seconds = time.perf_counter() - start
    assert len(study.trials) == trials
    return seconds


def run_ray_tune(address: str, trials: int) -> float:
    import ray
    from ray import tune

    ray.init(address=address, logging_level="WARNING", log_to_driver=False)

    def objective(config: dict) -> dict:
        return {"score": (config["x"] - 2.0) ** 2}

    with tempfile.TemporaryDirectory() as folder:
        tuner = tune.Tuner(
            objective,
            param_space={"x": tune.uniform(-5.0, 5.0)},
            tune_config=tune.TuneConfig(num_samples=trials, metric="score", mode="min"),
            run_config=tune.RunConfig(storage_path=folder, verbose=0),
        )
        start = time.perf_counter()
        results = tuner.fit()
        seconds = time.perf_counter() - start
    assert len(results) == trials
    ray.shutdown()
    return seconds


def run_optuna(database: str, trials: int) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=f"cluster-{uuid.uuid4().hex[:8]}",
        storage=database,
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    start = time.perf_counter()
    study.optimize(lambda t: (t.suggest_float("x", -5.0, 5.0) - 2.0) ** 2, n_trials=trials)
    return time.perf_counter() - start


def _service(name: str, folder: Path) -> str:
    """Start ``.ci/<name>`` in ``folder``; its address."""
    done = subprocess.run(
        [str(ROOT / ".ci" / name), "start", str(folder)], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _stop(name: str, folder: Path) -> None:
    subprocess.run([str(ROOT / ".ci" / name), "stop", str(folder)], check=False)


def markdown(rows: dict[str, float], meta: dict) -> str:
    tune = rows.get("ray-tune")
    lines = [
        "# Per-trial overhead on a Ray cluster with PostgreSQL",
        "",
        f"{meta['machine']}; {meta['date']}; {meta['trials']} trials of a trivial objective per "
        "contender; a local Ray cluster (a head and two worker nodes on 127.0.0.1, one CPU each) "
        "and a PostgreSQL server on this machine (`.ci/ray`, `.ci/postgres`). Wall time per trial: "
        "all of it overhead. Goal (issue 21): tunelab at most half of Ray Tune's.",
        "",
        "| contender | ms per trial | against Ray Tune |",
        "|---|---|---|",
    ]
    for name, seconds in rows.items():
        per_trial = 1000 * seconds / meta["trials"]
        ratio = f"{seconds / tune:.2f}" if tune else "-"
        lines.append(f"| {name} | {per_trial:.1f} | {ratio} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument(
        "--contenders",
        nargs="+",
        default=["tunelab", "ray-tune", "optuna"],
        choices=["tunelab", "ray-tune", "optuna"],
    )
    args = parser.parse_args()
    rows: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as pg, tempfile.TemporaryDirectory() as cluster:
        try:
            database = _service("postgres", Path(pg))
            address = _service("ray", Path(cluster))
            for name in args.contenders:
                if name == "tunelab":
                    rows[name] = run_tunelab(address, database, args.trials)
                elif name == "ray-tune":
                    rows[name] = run_ray_tune(address, args.trials)
                else:
                    rows[name] = run_optuna(database, args.trials)
                print(name, f"{1000 * rows[name] / args.trials:.1f} ms per trial", flush=True)
        finally:
            _stop("ray", Path(cluster))
            _stop("postgres", Path(pg))
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "trials": args.trials,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cluster.json").write_text(json.dumps({**meta, "seconds": rows}, indent=1))
    (RESULTS / "cluster.md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))


if __name__ == "__main__":
    main()
