"""The LR range test against tuned results, on the tasks of bench/bayes.py (real training).

(a) The suggested learning rate (fastai's valley; minimum/10 beside it), every other
    hyperparameter at tunelab's defaults, trained as a trial of the task (same epochs): its
    validation accuracy against the best tuned one, the highest median best after 60 trials of
    any contender in bench/results/bayes_real.json (goal of issue 19: within 1 point).
(c) The range test's wall time against one trial's training at the defaults (goal: under 2).
(b) Search with ``auto`` ranges against the plain wide range is not built yet: not measured.

Median over seeds; figures go to bench/results/lr_find.json and .md.

Usage: python bench/lr_find.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bayes import NET_TASKS  # noqa: E402 - the tasks bench/bayes.py tunes, with its epochs

RESULTS = Path(__file__).resolve().parent / "results"


def best_tuned() -> dict[str, float]:
    """Per task, the highest median best-after-60-trials of any contender in bayes_real.json."""
    summary = json.loads((RESULTS / "bayes_real.json").read_text())["summary"]["median_best"]
    return {task: max(c["60"] for c in contenders.values()) for task, contenders in summary.items()}


def run_task(name: str, seeds: int) -> dict:
    from tunelab.nn import NetworkObjective
    from tunelab.trial import Decision, Trial

    source, model, epochs, _ = NET_TASKS[name]
    objective = NetworkObjective({"source": source}, model, fixed={"epochs": epochs}, device="cpu")
    rows = []
    for seed in range(seeds):
        start = time.perf_counter()
        test = objective.lr_range_test(seed=seed)
        test_s = time.perf_counter() - start
        row = {"seed": seed, "range_test_s": test_s, "suggestions": test.suggestions}
        for rule in ("valley", "minimum/10"):
            trial = Trial(
                0,
                {"lr": test.suggestions[rule]},
                seed,
                Path("/tmp/tunelab-bench"),
                lambda *a: Decision.CONTINUE,
            )
            start = time.perf_counter()
            row[rule] = float(objective(trial)["val_accuracy"])
            row[f"{rule} train_s"] = time.perf_counter() - start
        rows.append(row)
        print(name, json.dumps(row), flush=True)
    return {"task": name, "epochs": epochs, "runs": rows}


def summarise(result: dict, tuned: float) -> dict:
    runs = result["runs"]
    median = {rule: statistics.median(r[rule] for r in runs) for rule in ("valley", "minimum/10")}
    test_s = statistics.median(r["range_test_s"] for r in runs)
    train_s = statistics.median(r["valley train_s"] for r in runs)
    return {
        "task": result["task"],
        "best_tuned": tuned,
        "valley": median["valley"],
        "minimum/10": median["minimum/10"],
        "gap_valley_points": 100 * (tuned - median["valley"]),
        "gap_minimum10_points": 100 * (tuned - median["minimum/10"]),
        "range_test_s": test_s,
        "trial_s": train_s,
        "cost_in_trials": test_s / train_s,
    }


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# LR range test against tuned results",
        "",
        f"{meta['machine']}; {meta['date']}; median over {meta['seeds']} seeds; one torch thread.",
        "Validation accuracy of the suggested rate with every other hyperparameter at its default "
        "(trained as a trial of the task), against the best tuned (the highest median best after "
        "60 trials of any contender in bayes_real.json). Goals (issue 19): within 1 point; the "
        "test under 2 trials' time.",
        "",
        "| task | best tuned | valley | gap | minimum/10 | gap | range test | one trial "
        "| cost in trials |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['best_tuned']:.4f} | {r['valley']:.4f} "
            f"| {r['gap_valley_points']:+.1f} pt | {r['minimum/10']:.4f} "
            f"| {r['gap_minimum10_points']:+.1f} pt | {r['range_test_s']:.2f} s "
            f"| {r['trial_s']:.2f} s | {r['cost_in_trials']:.2f} |"
        )
    lines += [
        "",
        "A positive gap is how far below the tuned result the suggestion stays. Search with "
        "`auto` ranges (goal b) is not built yet.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--tasks", nargs="+", default=list(NET_TASKS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    tuned = best_tuned()
    results = [run_task(name, args.seeds) for name in args.tasks]
    rows = [summarise(result, tuned[result["task"]]) for result in results]
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "seeds": args.seeds,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lr_find.json").write_text(
        json.dumps({**meta, "summary": rows, "runs": results}, indent=2)
    )
    (RESULTS / "lr_find.md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))


if __name__ == "__main__":
    main()
