"""tunelab on a Ray cluster with PostgreSQL: four measures (issue 21), each a contender to pick.

1. Per-trial overhead (``tunelab``, ``ray-tune``, ``optuna``): tunelab's Ray executor beside
   Ray Tune's own Tuner on the same cluster, and Optuna on the same PostgreSQL server. The cluster
   is the tests' (`.ci/ray`: a head and two worker nodes on 127.0.0.1, one CPU each). Each
   contender runs the same trivial objective (``(x - 2)^2``, no training) N times; the figure is
   wall time per trial, so it is all overhead: proposing, placing the trial, relaying its
   result, recording it. Goal: tunelab at most half of Ray Tune's.
2. Speed-up of two worker nodes over one on a real network task (``network``): a tunelab
   experiment (the digits MLP of examples/digits.yaml, batch size fixed, more epochs, no
   scheduler, a seeded random search, so both runs train the same trials with one torch thread
   each) on a Ray cluster made here with ``ray.cluster_utils.Cluster``: a head with 0 CPUs, so
   trials land only on workers, and one, then two, worker nodes of 1 CPU. Wall time of each and
   the ratio. This machine has 2 cores that also carry the driver, Ray's own processes and
   PostgreSQL, so the ratio stays below the ideal 2.
3. Reports relayed through the hub actor (``relay``): trials that only report, on the same kind
   of cluster with fractional CPUs (8 trials at once), each report waiting for the driver's
   answer: the round trip of a report, and reports per second.
4. What the driver and storage sustain (``simulated``): the simulated executor's 256 virtual
   workers run a synthetic learning curve (27 epochs of a virtual minute each) under ASHA, so
   the real driver, strategy, scheduler and storage do everything but the training: proposals,
   trial writes, claims of promoted trials, reports, pauses, finishes. Trials per second, and the
   storage transactions per second (each call of the storage is one transaction; they are
   counted and timed, as are the strategy's proposals and the scheduler's decisions), with the
   study in PostgreSQL, and in a SQLite file for reference.

The PostgreSQL server is `.ci/postgres`'s (fsync off, as in the tests); everything this script
starts it stops by pid at the end, also on failure.

Usage:
    python bench/cluster.py [--contenders tunelab ray-tune optuna network relay simulated]
        [--trials 1000] [--network-trials 10 --epochs 60] [--relay-trials 8]
        [--sim-trials 3000 --sim-workers 256]
Writes bench/results/cluster.json and .md; a run updates the figures of the contenders it ran and
keeps the others.
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


# 1. Per-trial overhead ------------------------------------------------------------------------
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


# 2. Speed-up of two worker nodes over one on a real network task ------------------------------
NETWORK_NODES = (1, 2)


def network_spec(name: str, address: str, trials: int, epochs: int, folder: str) -> dict:
    """examples/digits.yaml with a fixed batch size (trials of similar length), ``epochs`` epochs,
    no scheduler (every trial trains to the end, whichever finishes first) and the Ray executor."""
    import yaml

    spec = yaml.safe_load((ROOT / "examples" / "digits.yaml").read_text())
    del spec["space"]["batch_size"]
    spec.update(
        name=name,
        fixed={"epochs": epochs, "batch_size": 32},
        scheduler="none",
        budget={"trials": trials},
        reproducible=False,
        executor={"name": "ray", "address": address, "cpus": 1},
        artifacts=folder,
    )
    return spec


class LocalCluster:
    """A Ray cluster of this process: a head with 0 CPUs and ``workers`` nodes of 1 CPU each,
    on 127.0.0.1. Its processes are stopped (by pid, Ray's ``Cluster.shutdown``) on exit."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def __enter__(self) -> str:
        from ray.cluster_utils import Cluster

        local = {"node_ip_address": "127.0.0.1"}
        head = {**local, "num_cpus": 0, "include_dashboard": False}
        self.cluster = Cluster(initialize_head=True, head_node_args=head)
        try:
            for _ in range(self.workers):
                self.cluster.add_node(**local, num_cpus=1)
            self.cluster.wait_for_nodes()
        except BaseException:
            self.cluster.shutdown()
            raise
        return self.cluster.address

    def __exit__(self, *exc: object) -> None:
        self.cluster.shutdown()


def run_network(database: str, trials: int, epochs: int, nodes: int) -> dict:
    """One run of the network study on ``nodes`` worker nodes: wall time, the seconds of its
    trials from start to end as stored (summed), and the torch threads they trained with."""
    from tunelab.experiment import Experiment
    from tunelab.spec import parse_spec

    logging.getLogger("tunelab").setLevel(logging.WARNING)
    name = f"cluster-network-{nodes}-{uuid.uuid4().hex[:8]}"
    load = os.getloadavg()[0]  # the machine is shared: what else ran, over the last minute
    with LocalCluster(nodes) as address, tempfile.TemporaryDirectory() as folder:
        spec = parse_spec(network_spec(name, address, trials, epochs, folder))
        experiment = Experiment.from_spec(spec, storage=database)  # loads the data once
        start = time.perf_counter()
        experiment.search()
        seconds = time.perf_counter() - start
    done = experiment.study.trials
    broken = [
        t.error for t in done if t.state.name != "COMPLETE" and "diverged" not in (t.error or "")
    ]
    if len(done) != trials or broken:  # a diverged trial stops early, alike in both runs
        raise RuntimeError(f"the network study did not run its {trials} trials: {broken}")
    return {
        "nodes": nodes,
        "trials": trials,
        "epochs": epochs,
        "seconds": seconds,
        "train_seconds": sum(t.finished_at - t.started_at for t in done),
        "torch_threads": sorted({t.user_attrs.get("torch_threads") for t in done}),
        "load_before": load,
        "diverged": sum(t.state.name == "FAILED" for t in done),
        "params": [(t.params, t.state.name) for t in done],
    }


def run_network_pair(database: str, trials: int, epochs: int) -> dict:
    runs = {}
    for nodes in NETWORK_NODES:
        runs[nodes] = run_network(database, trials, epochs, nodes)
        print(f"network, {nodes} worker node(s): {runs[nodes]['seconds']:.1f} s", flush=True)
    one, two = runs[1], runs[2]
    if one["params"] != two["params"]:
        raise RuntimeError("the two runs trained different trials, or ended them differently")
    return {
        "date": time.strftime("%Y-%m-%d"),
        "trials": trials,
        "epochs": epochs,
        "runs": {str(n): {k: v for k, v in r.items() if k != "params"} for n, r in runs.items()},
        "speedup": one["seconds"] / two["seconds"],
    }


# 3. Reports relayed through the hub actor ------------------------------------------------------
RELAY_REPORTS = 200


def reporter(trial) -> dict[str, float]:
    """A trial that only reports, :data:`RELAY_REPORTS` times, each as soon as the driver's answer
    to the last is back; it says when its second and last report came back (the first waits for
    the other trials' workers to start, on these two cores)."""
    trial.report(1, value=0.0)
    first = time.time()
    for step in range(2, RELAY_REPORTS + 1):
        trial.report(step, value=float(step))
    last = time.time()
    return {"value": 0.0, "first_at": first, "last_at": last}


def run_relay(database: str, concurrent: int) -> dict:
    """Reports through the hub actor: ``concurrent`` trials at once (fractional CPUs on the two
    worker nodes), each reporting as soon as the answer to its last report is back. The median
    round trip of a report, and the reports per second relayed (all reports after each trial's
    first, over the span from the earliest to the latest of them)."""
    from tunelab import Float, Study
    from tunelab.executors import RayExecutor

    logging.getLogger("tunelab").setLevel(logging.WARNING)
    study = Study(f"cluster-relay-{uuid.uuid4().hex[:8]}", storage=database, seed=0)
    with LocalCluster(2) as address:
        executor = RayExecutor(address, cpus=2 / concurrent)
        study.optimize(reporter, {"x": Float(0.0, 1.0)}, trials=concurrent, executor=executor)
    done = study.trials
    assert [t.state.name for t in done] == ["COMPLETE"] * concurrent, [t.error for t in done]
    trips = sorted(
        (t.metrics["last_at"] - t.metrics["first_at"]) / (RELAY_REPORTS - 1) for t in done
    )
    span = max(t.metrics["last_at"] for t in done) - min(t.metrics["first_at"] for t in done)
    return {
        "date": time.strftime("%Y-%m-%d"),
        "concurrent": concurrent,
        "reports": concurrent * RELAY_REPORTS,
        "report_ms_median": 1000 * trips[len(trips) // 2],
        "reports_per_s": concurrent * (RELAY_REPORTS - 1) / span,
    }


# 4. Trials per second the driver and storage sustain: the simulated executor --------------------
STEPS = 27  # epochs of a full training: ASHA's rungs at 1, 3 and 9 (eta 3)
STEP_S = 60.0  # virtual seconds per epoch
WRITES = (
    "create_trial",
    "claim_trial",
    "set_trial_params",
    "add_report",
    "pause_trial",
    "finish_trial",
    "set_trial_attr",
    "requeue_trials",
    "heartbeat",
)
READS = ("changes", "get_trials")


class Curves:
    """A synthetic benchmark: accuracy rises to a ceiling set by ``lr`` and ``width``, one
    report per epoch of :data:`STEP_S` virtual seconds, :data:`STEPS` epochs."""

    def curve(self, params: dict, seed: int) -> list[tuple[float, dict[str, float]]]:
        import numpy as np

        noise = np.random.default_rng(seed).normal(0.0, 0.01, STEPS)
        ceiling = 0.95 - 0.05 * (np.log10(params["lr"]) + 2.5) ** 2 + 0.03 * params["width"]
        return [
            (STEP_S * step, {"acc": float(ceiling * (1 - np.exp(-step / 5)) + noise[step - 1])})
            for step in range(1, STEPS + 1)
        ]


def counted(obj: object, names: tuple[str, ...], tally: dict[str, list[float]]) -> None:
    """Count and time every call of these methods of ``obj`` (of this object only) in ``tally``:
    ``{name: [calls, seconds]}``, filled as the study runs."""

    def timed(name: str, method):
        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                tally[name][0] += 1
                tally[name][1] += time.perf_counter() - start

        return call

    for name in names:
        tally[name] = [0, 0.0]
        setattr(obj, name, timed(name, getattr(obj, name)))


def run_simulated(url: str, trials: int, workers: int) -> dict:
    """``trials`` trials of :class:`Curves` under ASHA on ``workers`` virtual workers; what the
    driver and the storage at ``url`` did, and how fast. Each storage call is one transaction;
    the strategy's proposals and the scheduler's decisions are timed too."""
    from tunelab import Float, Study
    from tunelab.clock import VirtualClock
    from tunelab.executors import SimulatedExecutor
    from tunelab.schedulers import ASHAScheduler
    from tunelab.storage import SQLStorage

    logging.getLogger("tunelab").setLevel(logging.WARNING)
    clock = VirtualClock()
    study = Study(
        f"cluster-sim-{uuid.uuid4().hex[:8]}",
        storage=SQLStorage(url, clock),
        metric="acc",
        scheduler=ASHAScheduler(min_resource=1, max_resource=STEPS, reduction_factor=3),
        seed=0,
        clock=clock,
    )
    tally: dict[str, list[float]] = {}
    counted(study.storage, WRITES + READS, tally)
    counted(study.strategy, ("ask",), tally)
    counted(study.scheduler, ("on_report", "resume_next"), tally)
    space = {"lr": Float(1e-4, 1e-1, log=True), "width": Float(0.0, 1.0)}
    start = time.perf_counter()
    study.optimize(Curves(), space, trials=trials, executor=SimulatedExecutor(n_workers=workers))
    seconds = time.perf_counter() - start
    done = study.trials
    assert len(done) == trials
    result = {
        "trials": trials,
        "workers": workers,
        "seconds": seconds,
        "virtual_hours": clock.now() / 3600,
        "reports": sum(len(t.intermediate) for t in done),
        "completed": sum(t.state.name == "COMPLETE" for t in done),
        "writes": sum(tally[name][0] for name in WRITES),
        "reads": sum(tally[name][0] for name in READS),
        "storage_seconds": sum(tally[name][1] for name in WRITES + READS),
        "strategy_seconds": tally["ask"][1],
        "scheduler_seconds": tally["on_report"][1] + tally["resume_next"][1],
        "calls": {name: count for name, (count, _) in tally.items() if count},
        "call_seconds": {name: spent for name, (count, spent) in tally.items() if count},
        "revision": study.storage.changes(study.id, 0)[1],  # = writes, heartbeats aside
    }
    study.storage.close()
    return result


def run_simulated_pair(database: str, trials: int, workers: int) -> dict:
    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        for label, url in (("PostgreSQL", database), ("SQLite file", f"sqlite:///{folder}/s.db")):
            runs[label] = run_simulated(url, trials, workers)
            run = runs[label]
            print(
                f"simulated, {label}: {run['trials'] / run['seconds']:.0f} trials/s, "
                f"{run['writes'] / run['seconds']:.0f} writes/s",
                flush=True,
            )
    return {"date": time.strftime("%Y-%m-%d"), "runs": runs}


# Results ---------------------------------------------------------------------------------------
def overhead_markdown(rows: dict[str, dict]) -> list[str]:
    tune = rows.get("ray-tune")
    trials = sorted({row["trials"] for row in rows.values()})
    lines = [
        "## Per-trial overhead: tunelab's Ray executor, Ray Tune's Tuner, Optuna",
        "",
        f"{', '.join(map(str, trials))} trials of a trivial objective per contender; a local Ray "
        "cluster (a head and two worker nodes on 127.0.0.1, one CPU each) and a PostgreSQL "
        "server on this machine (`.ci/ray`, `.ci/postgres`). Wall time per trial: all of it "
        "overhead. Goal (issue 21): tunelab at most half of Ray Tune's.",
        "",
        "| contender | trials | ms per trial | against Ray Tune | date |",
        "|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        per_trial = row["seconds"] / row["trials"]
        ratio = f"{per_trial * tune['trials'] / tune['seconds']:.2f}" if tune else "-"
        lines.append(
            f"| {name} | {row['trials']} | {1000 * per_trial:.1f} | {ratio} | {row['date']} |"
        )
    return lines


def network_markdown(result: dict) -> list[str]:
    runs = result["runs"]
    lines = [
        "## Speed-up of two worker nodes over one on a real network task",
        "",
        f"{result['date']}. The digits MLP of examples/digits.yaml (batch size 32, "
        f"{result['epochs']} epochs, no scheduler), {result['trials']} trials of a seeded random "
        f"search ({runs['1']['diverged']} stopped early as diverged), the same trials in both "
        "runs; each trial a Ray task of 1 CPU with torch "
        f"threads {runs['1']['torch_threads']}; study in PostgreSQL. A Ray cluster on 127.0.0.1: "
        "a head with 0 CPUs (the driver's node) and one, then two, worker nodes of 1 CPU. "
        "Wall time from the start of the search to its end (the workers' start-up included); "
        "trial s: each trial's start to end as stored, summed (longer when two trials share the "
        "two cores); load: the machine's 1-minute load average before the run (it is shared).",
        "",
        "| worker nodes | wall s | trial s, summed | speed-up | load before |",
        "|---|---|---|---|---|",
    ]
    for nodes, run in runs.items():
        speedup = runs["1"]["seconds"] / run["seconds"]
        lines.append(
            f"| {nodes} | {run['seconds']:.1f} | {run['train_seconds']:.1f} | {speedup:.2f}x "
            f"| {run.get('load_before', float('nan')):.1f} |"
        )
    lines += [
        "",
        "The ideal is below 2x here: the machine has 2 cores, which also carry the driver, Ray's "
        "own processes (GCS, three raylets, the hub actor) and PostgreSQL; on separate machines "
        "only the driver and the network are shared.",
    ]
    return lines


def relay_markdown(result: dict) -> list[str]:
    return [
        "## Reports relayed through the hub actor",
        "",
        f"{result['date']}. {result['concurrent']} trials at once on two worker nodes (a 0-CPU "
        f"head), each reporting {RELAY_REPORTS} times with no work between: a report goes to the "
        "hub actor on the driver's node, the driver takes the hub's reports every 20 ms, stores "
        "each (PostgreSQL), asks the scheduler (none) and answers; the trial's report call "
        "returns the answer.",
        "",
        "| trials at once | reports | round trip of a report, median | reports/s relayed |",
        "|---|---|---|---|",
        f"| {result['concurrent']} | {result['reports']} | {result['report_ms_median']:.1f} ms "
        f"| {result['reports_per_s']:.0f} |",
    ]


def simulated_markdown(result: dict) -> list[str]:
    runs = result["runs"]
    first = next(iter(runs.values()))
    lines = [
        "## Trials per second the driver and storage sustain (simulated executor)",
        "",
        f"{result['date']}. {first['trials']} trials on {first['workers']} virtual workers "
        f"(the simulated executor), ASHA (rungs 1, 3, 9 of {STEPS} epochs, eta 3), random "
        "search, a synthetic curve of one report per epoch: the real driver, strategy, scheduler "
        "and storage, no training. Writes: storage write transactions (create, claim, report, "
        "pause, finish, heartbeat); reads: the driver's incremental reads and dead-trial checks. "
        "PostgreSQL: `.ci/postgres` on this machine (fsync off); SQLite: a WAL file.",
        "",
        "| storage | wall s | trials/s | reports/s | writes/s | writes per trial "
        "| ms per trial: storage | strategy | scheduler | rest of the driver |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, run in runs.items():
        wall, n = run["seconds"], run["trials"]
        parts = [run[f"{part}_seconds"] for part in ("storage", "strategy", "scheduler")]
        split = " | ".join(f"{1000 * part / n:.2f}" for part in [*parts, wall - sum(parts)])
        lines.append(
            f"| {label} | {wall:.1f} | {n / wall:.0f} | {run['reports'] / wall:.0f} "
            f"| {run['writes'] / wall:.0f} | {run['writes'] / n:.2f} | {split} |"
        )
    lines += ["", "Calls per trial, and milliseconds per call (storage: one transaction each):", ""]
    every = (*WRITES, *READS, "ask", "on_report", "resume_next")
    names = [name for name in every if any(name in run["calls"] for run in runs.values())]
    lines += ["| storage | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for label, run in runs.items():
        cells = []
        for name in names:
            count = run["calls"].get(name, 0)
            spent = run["call_seconds"].get(name, 0.0)
            cells.append(f"{count / run['trials']:.2f} ({1000 * spent / max(count, 1):.2g} ms)")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def markdown(results: dict) -> str:
    lines = [
        "# tunelab on a Ray cluster with PostgreSQL",
        "",
        f"{results['machine']}. Made by `python bench/cluster.py` (see its docstring); each "
        "section dated by its last run.",
    ]
    sections = (
        ("overhead", overhead_markdown),
        ("network", network_markdown),
        ("relay", relay_markdown),
        ("simulated", simulated_markdown),
    )
    for key, render in sections:
        if results.get(key):
            lines += ["", *render(results[key])]
    return "\n".join(lines) + "\n"


def load_results() -> dict:
    """What bench/results/cluster.json holds, in this script's layout (the first version had only
    the overhead figures, at the top level)."""
    path = RESULTS / "cluster.json"
    if not path.exists():
        return {}
    stored = json.loads(path.read_text())
    if "seconds" in stored:  # the first layout
        rows = {
            name: {"trials": stored["trials"], "seconds": seconds, "date": stored["date"]}
            for name, seconds in stored["seconds"].items()
        }
        stored = {"machine": stored["machine"], "overhead": rows}
    return stored


OVERHEAD = ("tunelab", "ray-tune", "optuna")


def run_overhead(names: list[str], database: str, trials: int, folder: Path) -> dict[str, dict]:
    """The overhead contenders, on `.ci/ray`'s cluster (started here, stopped at the end)."""
    rows = {}
    try:
        if "tunelab" in names or "ray-tune" in names:
            address = _service("ray", folder)
        for name in names:
            if name == "tunelab":
                seconds = run_tunelab(address, database, trials)
            elif name == "ray-tune":
                seconds = run_ray_tune(address, trials)
            else:
                seconds = run_optuna(database, trials)
            rows[name] = {"trials": trials, "seconds": seconds, "date": time.strftime("%Y-%m-%d")}
            print(name, f"{1000 * seconds / trials:.1f} ms per trial", flush=True)
    finally:
        _stop("ray", folder)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="trials of each overhead run")
    parser.add_argument(
        "--contenders",
        nargs="+",
        default=[*OVERHEAD, "network", "relay", "simulated"],
        choices=[*OVERHEAD, "network", "relay", "simulated"],
    )
    parser.add_argument("--network-trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=60, help="epochs of each network trial")
    parser.add_argument("--relay-trials", type=int, default=8, help="reporting trials at once")
    parser.add_argument("--sim-trials", type=int, default=3000)
    parser.add_argument("--sim-workers", type=int, default=256)
    args = parser.parse_args()
    results = load_results()
    with tempfile.TemporaryDirectory() as pg, tempfile.TemporaryDirectory() as cluster:
        try:
            database = _service("postgres", Path(pg))
            names = [name for name in OVERHEAD if name in args.contenders]
            if names:
                rows = {
                    **results.get("overhead", {}),
                    **run_overhead(names, database, args.trials, Path(cluster)),
                }
                results["overhead"] = {name: rows[name] for name in OVERHEAD if name in rows}
            if "network" in args.contenders:
                results["network"] = run_network_pair(database, args.network_trials, args.epochs)
            if "relay" in args.contenders:
                results["relay"] = run_relay(database, args.relay_trials)
            if "simulated" in args.contenders:
                results["simulated"] = run_simulated_pair(
                    database, args.sim_trials, args.sim_workers
                )
        finally:
            _stop("postgres", Path(pg))
    results["machine"] = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cluster.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / "cluster.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
