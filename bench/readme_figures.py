"""Re-make the README's example figures: run each example as the README says, from a fresh
folder, and record its wall time, best validation score and test score.

The spec examples run with ``reproducible: true``, so on a machine with the same number of cores
(torch threads per worker = cores / workers) the scores come out the same every time; the times
are this machine's.

Usage: python bench/readme_figures.py [--only digits ...]
Writes bench/results/readme_figures.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

#: name -> (command after `python -m`, study name, test metric shown)
EXAMPLES = {
    "digits": (["tunelab.cli", "run", "digits.yaml"], "digits-mlp", "test_accuracy"),
    "digits_cnn": (["tunelab.cli", "run", "digits_cnn.yaml"], "digits-cnn", "test_accuracy"),
    "mnist1d_cnn": (["tunelab.cli", "run", "mnist1d_cnn.yaml"], "mnist1d-cnn", "test_accuracy"),
    "diabetes_mlp": (["tunelab.cli", "run", "diabetes_mlp.yaml"], "diabetes-mlp", "test_r2"),
    "mnist1d_auto_lr": (
        ["tunelab.cli", "run", "mnist1d_auto_lr.yaml"],
        "mnist1d-auto-lr",
        "test_accuracy",
    ),
    "mnist1d_fused": (
        ["tunelab.cli", "run", "mnist1d_fused.yaml"],
        "mnist1d-fused",
        "test_accuracy",
    ),
    "custom_model": (["custom_model"], None, "test_accuracy"),  # prints its own result
}


def run(name: str) -> dict:
    command, study, metric = EXAMPLES[name]
    with tempfile.TemporaryDirectory() as folder:
        for path in (ROOT / "examples").iterdir():
            if path.is_file():
                shutil.copy(path, folder)
        env = {**os.environ, "PYTHONPATH": folder}
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", *command], cwd=folder, env=env, check=True,
                              capture_output=True, text=True)  # fmt: skip
        seconds = time.perf_counter() - start
        if study is None:
            return {"seconds": round(seconds, 1), **_printed(done.stdout, metric)}
        best = subprocess.run(
            [sys.executable, "-m", "tunelab.cli", "best", study, "--json"],
            cwd=folder, env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        listed = subprocess.run(
            [sys.executable, "-m", "tunelab.cli", "trials", study, "--format", "json"],
            cwd=folder, env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
    result = json.loads(best.stdout)
    states = [row["state"] for row in json.loads(listed.stdout)]
    return {
        "seconds": round(seconds, 1),
        "trial": result["trial"],
        "validation": {result["metric"]: result["value"]},
        "shown": {metric: round(result["test_metrics"][metric], 4)},
        "pruned": f"{states.count('PRUNED')}/{len(states)}",
    }


def _printed(stdout: str, metric: str) -> dict:
    """What examples/custom_model.py prints: its best trial and its test score."""
    best = re.search(r"best trial (\d+): (\w+) ([0-9.]+)", stdout)
    test = re.search(rf"{metric} ([0-9.]+)", stdout)
    return {
        "trial": int(best.group(1)),
        "validation": {best.group(2): float(best.group(3))},
        "shown": {metric: float(test.group(1))},
    }


def linear_baseline() -> dict:
    """Plain linear regression on the diabetes example's split (train+validation -> test): the
    yardstick the README gives beside the tuned MLP."""
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    from tunelab.nn import load_dataset, split_dataset

    train, val, test = split_dataset(load_dataset("diabetes"), 0.2, 0.25, seed=0)
    X = np.concatenate([train.X, val.X])
    y = np.concatenate([train.y, val.y])
    start = time.perf_counter()
    r2 = r2_score(test.y, LinearRegression().fit(X, y).predict(test.X))
    seconds = time.perf_counter() - start
    return {
        "seconds": round(seconds, 3),
        "trial": None,
        "validation": {},
        "shown": {"test_r2": round(r2, 4)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [*EXAMPLES, "diabetes_linear"]
    parser.add_argument("--only", nargs="*", choices=names, default=names)
    args = parser.parse_args()
    path = RESULTS / "readme_figures.json"
    figures = json.loads(path.read_text())["examples"] if path.exists() else {}
    for name in args.only:
        figures[name] = linear_baseline() if name == "diabetes_linear" else run(name)
        print(name, figures[name]["seconds"], "s", figures[name]["shown"], flush=True)
    import torch

    machine = (
        f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}"
    )
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps({"machine": machine, "examples": figures}, indent=2) + "\n")
    lines = [
        "# The README's example figures",
        "",
        f"Made by `python bench/readme_figures.py` on {machine}.",
        "",
        "| example | wall time | best trial | validation | test | pruned |",
        "|---|---|---|---|---|---|",
    ]
    for name, f in figures.items():
        validation = ", ".join(f"{k} {v:.4f}" for k, v in f["validation"].items()) or "-"
        shown = ", ".join(f"{k} {v}" for k, v in f["shown"].items())
        trial = "-" if f["trial"] is None else f["trial"]
        pruned = f.get("pruned", "-")
        lines.append(f"| {name} | {f['seconds']} s | {trial} | {validation} | {shown} | {pruned} |")
    (RESULTS / "readme_figures.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
