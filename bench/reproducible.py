"""What reproducible mode costs: the same study with and without ``reproducible: true``, side by
side in one run, as trials per minute and their ratio.

In reproducible mode a worker that is free may wait for an earlier trial to finish (trial n starts
once every trial numbered up to n - W has), so the cost grows with how unequal the trials' lengths
are: median pruning stops some trials early, which is where the waiting comes from.

Usage: python bench/reproducible.py [--trials 40] [--workers 2] [--repeats 2]
Writes bench/results/reproducible.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from tunelab.experiment import Experiment
from tunelab.spec import load_spec

RESULTS = Path(__file__).resolve().parent / "results"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits.yaml"


def trials_per_minute(reproducible: bool, trials: int, workers: int) -> float:
    spec = load_spec(EXAMPLE)
    budget = spec.budget.model_copy(update={"trials": trials, "minutes": None})
    spec = spec.model_copy(
        update={"reproducible": reproducible, "workers": workers, "budget": budget}
    )
    with tempfile.TemporaryDirectory() as folder:
        experiment = Experiment.from_spec(spec, f"sqlite:///{folder}/bench.db")
        start = time.perf_counter()
        experiment.search()
        return 60 * trials / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    runs: dict[str, list[float]] = {"as fast as possible": [], "reproducible": []}
    for repeat in range(args.repeats):  # interleaved, so drift in the machine hits both alike
        for name in runs:
            runs[name].append(trials_per_minute(name == "reproducible", args.trials, args.workers))
            print(f"repeat {repeat + 1}: {name}: {runs[name][-1]:.1f} trials/min", flush=True)
    medians = {name: statistics.median(values) for name, values in runs.items()}
    ratio = medians["reproducible"] / medians["as fast as possible"]
    result = {
        "spec": "examples/digits.yaml (random search, median pruning)",
        "trials": args.trials,
        "workers": args.workers,
        "repeats": args.repeats,
        "trials_per_minute_runs": runs,
        "trials_per_minute_median": medians,
        "throughput_ratio_reproducible": ratio,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, Python "
        f"{platform.python_version()}",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reproducible.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Reproducible mode: throughput ({args.trials} trials of examples/digits.yaml, "
        f"{args.workers} workers, median of {args.repeats})",
        "",
        "| mode | trials per minute |",
        "|---|---|",
        *(f"| {name} | {value:.1f} |" for name, value in medians.items()),
        "",
        f"Reproducible mode keeps {ratio:.0%} of the throughput. Machine: {result['machine']}.",
    ]
    (RESULTS / "reproducible.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
