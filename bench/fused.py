"""Fused training against one trial at a time and against worker processes sharing the device.

For each network (MLPs on digits and MNIST-1D at 64, 128 and 256 units, the 1-D CNN on MNIST-1D)
and each K in {4, 16, 64, 256}: K trials of one shape whose numbers differ (learning rate,
dropout, Adam's beta1, weight decay; seeded, so every contender trains the same K configs), each
the same number of epochs, run through a tunelab study three ways:

- ``alone``: the in-process executor, one trial after another;
- ``fused``: the fused executor with a group of K (``min_speedup=0``: always fused, so the
  figure is fusing's own, not the executor's fallback);
- ``processes``: min(K, 16) worker processes sharing the device (the CPU's threads split between
  them, as the process executor does), at their steady state: the pace of the 2W trials that
  finish after the first W of a study of 3W (their start-up, each importing torch, apart).

The figure is trials per hour at the same steps (K / wall seconds x 3600), and fused's ratio to
the others. One-at-a-time runs of more than ``--measured`` trials are timed on that many and
scaled linearly (they are sequential); processes are scaled from their steady state. Issue 22's
goals: on 2 CPU threads at least 4x at K=16 for 64-unit MLPs; on a GPU at least 40x at K=64 and
150x at K=256 for 256-unit MLPs, and 15x at K=64 for the 1-D CNN.

The end-to-end figure (``--end-to-end``): ``examples/mnist1d_fused.yaml`` run with 256 trials
three ways: fused in-process (``fuse: true``), fused in one worker process per core (``fuse:
true, workers: N``, their start-up included) and one at a time in-process: wall time, and the
time at which each reached its best validation accuracy.

Usage: python bench/fused.py [--ks 4 16 64 256] [--networks ...] [--epochs 1] [--end-to-end]
Writes bench/results/fused.json and .md (a run keeps the rows it did not redo).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

NETWORKS = {
    "digits-mlp64": ("digits", {"model": "mlp", "units": 64}),
    "digits-mlp128": ("digits", {"model": "mlp", "units": 128}),
    "digits-mlp256": ("digits", {"model": "mlp", "units": 256}),
    "mnist1d-mlp64": ("mnist1d", {"model": "mlp", "units": 64}),
    "mnist1d-mlp128": ("mnist1d", {"model": "mlp", "units": 128}),
    "mnist1d-mlp256": ("mnist1d", {"model": "mlp", "units": 256}),
    "mnist1d-cnn": ("mnist1d", {"model": "cnn1d", "channels": 32, "units": 64}),
}


def objective(network: str, epochs: int, device: str):
    from tunelab.nn import NetworkObjective

    source, settings = NETWORKS[network]
    model, fixed = settings["model"], {k: v for k, v in settings.items() if k != "model"}
    fixed |= {"epochs": epochs, "batch_size": 32, "n_layers": 2, "optimizer": "adam"}
    made = NetworkObjective({"source": source}, model=model, fixed=fixed, device=device)
    made.provider.splits()  # load the data before any clock starts
    return made


def space() -> dict:
    from tunelab import Float

    return {
        "lr": Float(1e-4, 1e-2, log=True),
        "dropout": Float(0.05, 0.4),
        "beta1": Float(0.8, 0.95),
        "weight_decay": Float(1e-6, 1e-3, log=True),
    }


def new_study(folder: str):
    """A fresh study, seeded: every contender trains the same configs."""
    from tunelab import Study

    name = f"fused-{time.time_ns()}"
    storage = f"sqlite:///{folder}/bench.db"
    return Study(name, storage=storage, metric="val_accuracy", direction="maximize", seed=0)


def run(made, trials: int, executor, folder: str) -> float:
    """Wall seconds of a study of ``trials`` trials on ``executor``."""
    study = new_study(folder)
    start = time.perf_counter()
    study.optimize(made, space(), trials=trials, executor=executor)
    seconds = time.perf_counter() - start
    assert len(study.trials) == trials
    return seconds


def processes_pace(made, workers: int, folder: str) -> tuple[float, float]:
    """Trials per second ``workers`` processes keep up once running (from when the first
    ``workers`` trials have finished to when the last of ``3 * workers`` did), and the seconds
    the first round took beyond that pace (the workers' start-up)."""
    from tunelab.executors import ProcessExecutor

    study = new_study(folder)
    start = time.time()
    study.optimize(made, space(), trials=3 * workers, executor=ProcessExecutor(workers))
    finished = sorted(t.finished_at for t in study.trials)
    pace = 2 * workers / (finished[-1] - finished[workers - 1])
    return pace, finished[workers - 1] - start - workers / pace


def cell(network: str, k: int, epochs: int, measured: int, device: str) -> dict:
    from tunelab.executors import FusedExecutor, InlineExecutor

    made = objective(network, epochs, device)
    row = {"network": network, "k": k, "epochs": epochs, "device": device}
    with tempfile.TemporaryDirectory() as folder:
        run(made, 1, InlineExecutor(), folder)  # untimed: torch's first calls, the study's tables
        timed = min(k, measured)
        row["alone_s"] = run(made, timed, InlineExecutor(), folder) * k / timed
        row["fused_s"] = run(made, k, FusedExecutor(group_size=k, min_speedup=0), folder)
        workers = min(k, 16)  # steady state: the pace once the first round has finished
        pace, startup = processes_pace(made, workers, folder)
        row["processes_s"] = k / pace
        row["processes_startup_s"] = startup
        row["measured_alone"] = min(k, measured)
        row["measured_processes"] = 3 * workers
    for name in ("alone", "fused", "processes"):
        row[f"{name}_per_hour"] = k / row[f"{name}_s"] * 3600
    row["fused_over_alone"] = row["alone_s"] / row["fused_s"]
    row["fused_over_processes"] = row["processes_s"] / row["fused_s"]
    return row


def end_to_end(trials: int) -> dict:
    """The MNIST-1D example with ``trials`` trials: fused in-process, fused in one worker process
    per core (``fuse: true``, their start-up included), and one at a time in-process: wall time,
    and when the best trial (the same one, given equal results) finished."""
    from tunelab.executors import available_cores
    from tunelab.experiment import Experiment
    from tunelab.spec import load_spec

    spec = load_spec(ROOT / "examples" / "mnist1d_fused.yaml")
    spec = spec.model_copy(update={"budget": spec.budget.model_copy(update={"trials": trials})})
    workers = available_cores()
    row: dict = {"trials": trials, "workers": workers}
    contenders = (
        ("fused", {"fuse": True, "workers": 1}),
        ("fused_processes", {"fuse": True, "workers": workers}),
        ("alone", {"fuse": False, "workers": 1}),
    )
    for label, how in contenders:
        with tempfile.TemporaryDirectory() as folder:
            this = spec.model_copy(
                update={
                    "storage": f"sqlite:///{folder}/e2e.db",
                    "artifacts": folder,
                    "executor": None,
                    "name": f"e2e-{label}",
                    **how,
                }
            )
            experiment = Experiment.from_spec(this)
            start = time.time()
            best = experiment.search()
            row[f"{label}_s"] = time.time() - start
            row[f"{label}_best"] = best.value
            row[f"{label}_best_trial"] = best.number
            row[f"{label}_to_best_s"] = best.finished_at - start
    for label in ("fused", "fused_processes"):
        row[f"{label}_speedup"] = row["alone_s"] / row[f"{label}_s"]
        row[f"{label}_speedup_to_best"] = row["alone_to_best_s"] / row[f"{label}_to_best_s"]
    return row


def markdown(results: dict) -> str:
    where = results["where"]
    lines = [
        "# Fused training against one trial at a time and worker processes",
        "",
        f"{where}. Made by `python bench/fused.py` (see its docstring). Trials per hour at the same "
        "steps (each trial the same epochs at batch 32, Adam, its own rate, dropout, beta1 and "
        "weight decay); one-at-a-time runs beyond the trials timed are scaled linearly; "
        "processes at their steady state (start-up apart). One run per cell, in one go on an "
        "idle machine, so a single cell varies from run to run (by up to a third between "
        "runs here): read the trend over K and network size.",
        "",
        "| network | K | epochs | device | alone /h | processes /h | fused /h | fused / alone | "
        "fused / processes | trials timed: alone, processes | processes' start-up s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(results["cells"].values(), key=lambda r: (r["network"], r["k"])):
        lines.append(
            f"| {row['network']} | {row['k']} | {row['epochs']} | {row['device']} | "
            f"{row['alone_per_hour']:.0f} | {row['processes_per_hour']:.0f} | "
            f"{row['fused_per_hour']:.0f} | {row['fused_over_alone']:.1f}x | "
            f"{row['fused_over_processes']:.1f}x | {row['measured_alone']}, "
            f"{row['measured_processes']} | {row['processes_startup_s']:.1f} |"
        )
    e2e = results.get("end_to_end")
    if e2e:
        lines += [
            "",
            "## End to end: `examples/mnist1d_fused.yaml`",
            "",
            f"{e2e['trials']} trials, random search, median rule, groups of 16. Best validation "
            "accuracy: "
            + ", ".join(
                f"{label} {e2e[f'{label}_best']:.4f} (trial {e2e[f'{label}_best_trial']})"
                for label in ("fused", "fused_processes", "alone")
            )
            + ".",
            "",
            "| executor | wall s | best reached at s | speed-up | to the best |",
            "|---|---|---|---|---|",
            f"| fused, in-process | {e2e['fused_s']:.1f} | {e2e['fused_to_best_s']:.1f} | "
            f"{e2e['fused_speedup']:.2f}x | {e2e['fused_speedup_to_best']:.2f}x |",
            f"| fused, {e2e['workers']} worker processes (`fuse: true`) | "
            f"{e2e['fused_processes_s']:.1f} | {e2e['fused_processes_to_best_s']:.1f} | "
            f"{e2e['fused_processes_speedup']:.2f}x | "
            f"{e2e['fused_processes_speedup_to_best']:.2f}x |",
            f"| in-process, one at a time | {e2e['alone_s']:.1f} | {e2e['alone_to_best_s']:.1f} | "
            "1x | 1x |",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[4, 16, 64, 256])
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--measured", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--end-to-end", type=int, default=0, metavar="TRIALS")
    parser.add_argument("--skip-cells", action="store_true")
    args = parser.parse_args()
    logging.getLogger("tunelab").setLevel(logging.ERROR)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    from tunelab.nn import resolve_device

    device = str(resolve_device(args.device))
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") else None
    where = f"{platform.machine()}, {torch.get_num_threads()} torch threads" + (
        f", {gpu}" if gpu else ""
    )
    path = RESULTS / "fused.json"
    results = json.loads(path.read_text()) if path.exists() else {"cells": {}}
    results["where"] = where
    if not args.skip_cells:
        for network in args.networks:
            for k in args.ks:
                row = cell(network, k, args.epochs, args.measured, device)
                results["cells"][f"{network}/{k}/{device}"] = row
                print(
                    f"{network} K={k}: alone {row['alone_s']:.1f}s processes "
                    f"{row['processes_s']:.1f}s fused {row['fused_s']:.1f}s: "
                    f"{row['fused_over_alone']:.1f}x alone, "
                    f"{row['fused_over_processes']:.1f}x processes",
                    flush=True,
                )
                path.write_text(json.dumps(results, indent=2))
    if args.end_to_end:
        results["end_to_end"] = end_to_end(args.end_to_end)
        print(results["end_to_end"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    (RESULTS / "fused.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
