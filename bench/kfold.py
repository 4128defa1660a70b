"""Per-fold pruning: 5-fold cross-validation with the median rule against 5-fold without, on the
MNIST-1D MLP of bench/bayes.py, the same seeds (so the same configurations are proposed).

For each seed: the best configuration each run finds (the completed trial with the highest mean
over its folds), and the epochs each run trains (every fold's epochs, summed). Goal of issue 20:
the pruned run finds the same best configuration for at most 60% of the epochs.

Figures go to bench/results/kfold.json and .md.

Usage: python bench/kfold.py [--seeds 3] [--trials 30] [--task mnist1d-mlp]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bayes import NET_TASKS  # noqa: E402 - the tasks bench/bayes.py tunes
from lr_find import _space  # noqa: E402 - bench/bayes.py's parameters as a spec's space

RESULTS = Path(__file__).resolve().parent / "results"


def run(task: str, scheduler: str, seed: int, trials: int, folds: int) -> dict:
    from tunelab.experiment import Experiment
    from tunelab.spec import parse_spec

    source, model, epochs, params = NET_TASKS[task]
    spec = parse_spec(
        {
            "name": f"{task}-{scheduler}-{seed}",
            "data": {"source": source, "validation": {"kfold": folds}},
            "model": model,
            "metric": {"name": "val_accuracy", "direction": "maximize"},
            "space": _space(params, {"type": "float", "low": 1e-4, "high": 0.3, "log": True}),
            "fixed": {"epochs": epochs},
            "strategy": "random",
            "scheduler": scheduler,
            "budget": {"trials": trials},
            "seed": seed,
            "device": "cpu",
        }
    )
    experiment = Experiment.from_spec(spec, "sqlite://")
    start = time.perf_counter()
    experiment.search()
    seconds = time.perf_counter() - start
    study = experiment.study
    trained = sum(
        len(fold["curve"]) for t in study.trials for fold in t.user_attrs.get("folds", [])
    )
    best = study.best_trial
    return {
        "scheduler": scheduler,
        "seed": seed,
        "best_number": best.number,
        "best_value": best.value,
        "best_params": best.params,
        "epochs_trained": trained,
        "pruned": sum(t.state.value == "PRUNED" for t in study.trials),
        "seconds": seconds,
    }


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Per-fold pruning",
        "",
        f"{meta['machine']}; {meta['date']}; {meta['task']}, {meta['folds']}-fold, "
        f"{meta['trials']} random trials per run, the same seeds with and without the median rule "
        "(judging from fold 1).",
        "",
        "| seed | best without pruning | best with | same best | epochs without | epochs with "
        "| ratio | pruned | time without | time with |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['seed']} | trial {row['full']['best_number']} "
            f"({row['full']['best_value']:.4f}) | trial {row['pruned']['best_number']} "
            f"({row['pruned']['best_value']:.4f}) | {'yes' if row['same_best'] else 'no'} "
            f"| {row['full']['epochs_trained']} | {row['pruned']['epochs_trained']} "
            f"| {row['ratio']:.2f} | {row['pruned']['pruned']} "
            f"| {row['full']['seconds']:.0f} s | {row['pruned']['seconds']:.0f} s |"
        )
    total = sum(r["pruned"]["epochs_trained"] for r in rows) / sum(
        r["full"]["epochs_trained"] for r in rows
    )
    lines += [
        "",
        f"Over all seeds: {total:.2f} of the epochs, the same best configuration in "
        f"{sum(r['same_best'] for r in rows)} of {len(rows)} seeds (goal: at most 0.60, same best).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--task", default="mnist1d-mlp", choices=list(NET_TASKS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("tunelab").setLevel(logging.WARNING)
    rows = []
    for seed in range(args.seeds):
        full = run(args.task, "none", seed, args.trials, args.folds)
        pruned = run(args.task, "median", seed, args.trials, args.folds)
        rows.append(
            {
                "seed": seed,
                "full": full,
                "pruned": pruned,
                "same_best": full["best_params"] == pruned["best_params"],
                "ratio": pruned["epochs_trained"] / full["epochs_trained"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "task": args.task,
        "folds": args.folds,
        "trials": args.trials,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "kfold.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
    (RESULTS / "kfold.md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))


if __name__ == "__main__":
    main()
