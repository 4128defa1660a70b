"""How the median rule's defaults trade pruning against the best score, on the spec examples.

Each example runs (one process per run, its spec's workers, reproducible) with no pruning and with
the median rule at several (warmup_steps, min_trials); reported: the share of trials pruned, the
wall time, and the best validation score's loss against no pruning.

Usage: python bench/median_defaults.py
Writes bench/results/median_defaults.json and .md.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from tunelab.experiment import Experiment
from tunelab.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
EXAMPLES = ["digits", "digits_cnn", "mnist1d_cnn", "diabetes_mlp"]
SETTINGS = {
    "no pruning": {"name": "none"},
    "warm-up 5, 5 trials (default)": {"name": "median"},
    "warm-up 5, 10 trials": {"name": "median", "min_trials": 10},
    "warm-up 10, 5 trials": {"name": "median", "warmup_steps": 10},
    "warm-up 10, 10 trials": {"name": "median", "warmup_steps": 10, "min_trials": 10},
}


def run(example: str, scheduler: dict) -> dict:
    spec = load_spec(ROOT / "examples" / f"{example}.yaml")
    spec = spec.model_copy(update={"scheduler": spec.scheduler.model_validate(scheduler)})
    with tempfile.TemporaryDirectory() as folder:
        experiment = Experiment.from_spec(spec, f"sqlite:///{folder}/t.db")
        start = time.perf_counter()
        best = experiment.search()
        seconds = time.perf_counter() - start
        states = [t.state.value for t in experiment.study.trials]
    return {"seconds": round(seconds, 1), "best": best.value, "pruned": states.count("PRUNED"),
            "trials": len(states), "direction": spec.metric.direction}  # fmt: skip


def main() -> None:
    results = {ex: {name: run(ex, s) for name, s in SETTINGS.items()} for ex in EXAMPLES}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "median_defaults.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Median rule defaults on the spec examples (reproducible runs, this machine)",
        "",
        "| example | setting | pruned | seconds | best validation | loss vs no pruning |",
        "|---|---|---|---|---|---|",
    ]
    for example, by_setting in results.items():
        reference = by_setting["no pruning"]["best"]
        for name, r in by_setting.items():
            sign = 1 if r["direction"] == "maximize" else -1
            loss = sign * (reference - r["best"])
            lines.append(f"| {example} | {name} | {r['pruned']}/{r['trials']} | {r['seconds']} | "
                         f"{r['best']:.4g} | {loss:+.4g} |")  # fmt: skip
    (RESULTS / "median_defaults.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
