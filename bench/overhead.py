"""tunelab's own cost per trial beside Optuna's, in one run: propose + record, trivial objective.

Each contender runs N trials of the same 3-parameter space (a log float, an int, a categorical) with
a trivial objective on a fresh SQLite file, one process; tunelab both with the space declared and
define-by-run (suggested inside the objective; issue 23's goal: within 20% of the declared one). What is measured is the tuner itself:
proposing, writing the trial, its params and its result. Figures go to bench/results/overhead.json
and .md as milliseconds per trial and as ratios to tunelab random.

With ``--baseline DIR`` (the ``src`` folder of another tunelab checkout, e.g. a ``git worktree`` of
the previous release) that version runs too, in a subprocess, in the same interleaved rounds: a
change's cost is measured against the code before it on the same machine at the same time.

Usage: python bench/overhead.py [--trials 1000] [--repeats 3] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def objective_value(lr: float, layers: int, act: str) -> float:
    return (lr - 0.01) ** 2 + layers * 0.1 + (act == "relu") * 0.05


def run_tunelab(url: str, trials: int) -> None:
    from tunelab import Categorical, Float, Int, Study

    space = {
        "lr": Float(1e-5, 1e-1, log=True),
        "layers": Int(1, 5),
        "act": Categorical(["relu", "tanh", "gelu"]),
    }
    study = Study("bench", storage=url, direction="minimize", strategy="random", seed=0)
    study.optimize(lambda t: objective_value(**t.params), space, trials=trials)


def run_tunelab_define_by_run(url: str, trials: int) -> None:
    """The same space, suggested inside the objective as an Optuna script has it."""
    from tunelab import Study

    def objective(trial) -> float:
        return objective_value(
            trial.suggest_float("lr", 1e-5, 1e-1, log=True),
            trial.suggest_int("layers", 1, 5),
            trial.suggest_categorical("act", ["relu", "tanh", "gelu"]),
        )

    study = Study("bench", storage=url, direction="minimize", strategy="random", seed=0)
    study.optimize(objective, trials=trials)


def run_optuna(url: str, trials: int, sampler_name: str) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = {
        "random": optuna.samplers.RandomSampler(seed=0),
        "tpe": optuna.samplers.TPESampler(seed=0),
    }[sampler_name]

    def objective(trial: optuna.Trial) -> float:
        return objective_value(
            trial.suggest_float("lr", 1e-5, 1e-1, log=True),
            trial.suggest_int("layers", 1, 5),
            trial.suggest_categorical("act", ["relu", "tanh", "gelu"]),
        )

    study = optuna.create_study(storage=url, sampler=sampler, direction="minimize")
    study.optimize(objective, n_trials=trials)


def run_baseline(src: str, url: str, trials: int) -> None:
    """tunelab random from another checkout's ``src``, in a subprocess (its imports are its own)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2]); "
        "import overhead; overhead.run_tunelab(sys.argv[3], int(sys.argv[4]))"
    )
    env = {**os.environ, "PYTHONPATH": ""}
    here = str(Path(__file__).resolve().parent)
    subprocess.run([sys.executable, "-c", code, src, here, url, str(trials)], env=env, check=True)


DEFINE_BY_RUN = "tunelab random + SQLite, define-by-run"
CONTENDERS = {
    "tunelab random + SQLite": lambda url, n: run_tunelab(url, n),
    DEFINE_BY_RUN: lambda url, n: run_tunelab_define_by_run(url, n),
    "Optuna random + SQLite": lambda url, n: run_optuna(url, n, "random"),
    "Optuna TPE + SQLite": lambda url, n: run_optuna(url, n, "tpe"),
}


def measure(name: str, trials: int) -> float:
    """Milliseconds per trial on a fresh SQLite file. A subprocess contender is timed from
    outside, so the same run with 1 trial is taken off (its start-up and imports)."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        CONTENDERS[name](f"sqlite:///{tmp}/bench.db", trials)
        elapsed = time.perf_counter() - start
        if name.startswith(BASELINE):
            start = time.perf_counter()
            CONTENDERS[name](f"sqlite:///{tmp}/startup.db", 1)
            elapsed -= time.perf_counter() - start
        return elapsed * 1000 / trials


BASELINE = "tunelab random + SQLite, baseline"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", help="the src folder of another tunelab to run beside")
    args = parser.parse_args()
    if args.baseline:
        label = f"{BASELINE} ({args.baseline})"
        CONTENDERS[label] = lambda url, n: run_baseline(args.baseline, url, n)

    runs: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for repeat in range(args.repeats):  # interleaved, so drift in the machine hits all alike
        for name in CONTENDERS:
            runs[name].append(measure(name, args.trials))
            print(f"repeat {repeat + 1}: {name}: {runs[name][-1]:.2f} ms/trial", flush=True)

    medians = {name: statistics.median(values) for name, values in runs.items()}
    ours = medians["tunelab random + SQLite"]
    import optuna
    import sqlalchemy

    import tunelab

    result = {
        "trials": args.trials,
        "repeats": args.repeats,
        "ms_per_trial_median": medians,
        "ms_per_trial_runs": runs,
        "ratio_to_tunelab_random": {name: value / ours for name, value in medians.items()},
        "target_ms_per_trial": 5.0,
        "versions": {
            "tunelab": tunelab.__version__,
            "optuna": optuna.__version__,
            "sqlalchemy": sqlalchemy.__version__,
            "python": platform.python_version(),
        },
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Overhead per trial ({args.trials} trials, trivial objective, SQLite file, "
        f"median of {args.repeats})",
        "",
        "| contender | ms per trial | ratio to tunelab random |",
        "|---|---|---|",
        *(f"| {name} | {medians[name]:.2f} | {medians[name] / ours:.2f} |" for name in CONTENDERS),
        "",
        f"Machine: {result['machine']}, Python {result['versions']['python']}; the contenders "
        "run interleaved in one process (a baseline in a subprocess, its start-up subtracted).",
        f"Target: tunelab random + SQLite at most 5 ms per trial. Measured: {ours:.2f} ms.",
        f"Define-by-run against the declared space: {medians[DEFINE_BY_RUN] / ours:.2f} "
        "(goal: at most 1.20).",
    ]
    (RESULTS / "overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
