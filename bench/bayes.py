"""Search quality: tunelab bayes beside random search and Optuna's samplers, in one run.

Two kinds of task, same spaces, budgets and seeds for every contender:

* ``lcbench``: the LCBench surrogate (../shared/lcbench, an ONNX model of MLP training curves): the
  eight development instances at full fidelity (epoch 52), 100 trials, 10 seeds. Evaluations take a
  millisecond, so this judges the optimiser itself. A surrogate can reward what real networks do not
  (see its README), so it is judged beside real training.
* ``real``: real PyTorch training on data that ships offline or is generated offline (an MLP on
  digits, an MLP and a 1-D CNN on MNIST-1D, short epochs), 60 trials, 5 seeds.

Contenders: tunelab random, tunelab bayes, Optuna TPE (Optuna 5's default, which is multivariate),
Optuna TPE independent (multivariate=False, the default before Optuna 5), Optuna
GPSampler, SMAC3 (its hyperparameter-optimisation facade). HEBO does not install beside numpy 2 here
(the results file says why).

Outputs in bench/results/: ``raw/bayes_<suite>_<contender>.json`` (each contender's runs; a run of
this script replaces those of the contenders it ran, so slow ones can run apart), ``bayes_<suite>.json`` (every run's best-so-far curve and test score),
``bayes_<suite>.md`` (tables: median best at 10/30/100 trials, mean rank, test score of the chosen
config, trials for bayes to reach random's final result) and ``bayes_<suite>.png`` (best-so-far
curves, median and interquartile range).

Usage:
    python bench/bayes.py lcbench [--seeds 10] [--trials 100] [--jobs 16]
    python bench/bayes.py real [--seeds 5] [--trials 60] [--jobs 16]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
LCBENCH = Path(
    os.environ.get("TUNELAB_LCBENCH", Path(__file__).resolve().parents[2] / "shared" / "lcbench")
)
LCBENCH_INSTANCES = ["3945", "7593", "34539", "126025", "126026", "126029", "146212", "167104"]
CONTENDERS = [
    "tunelab random",
    "tunelab bayes",
    "optuna tpe",
    "optuna tpe independent",
    "optuna gp",
    "smac",
]
LEFT_OUT = {
    "HEBO": "HEBO 0.3.6 pins numpy<1.25; it cannot install beside numpy 2 and torch 2.13 here",
}


# Parameters, shared by every contender -------------------------------------------------------------
@dataclass(frozen=True)
class P:
    """One parameter, described once and translated to tunelab and Optuna alike."""

    kind: str  # float | int | cat
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    choices: tuple = ()
    when: tuple[str, Any] | None = None  # (parent, value)


def tunelab_space(params: dict[str, P]) -> dict:
    from tunelab import Categorical, Float, Int

    space = {}
    for name, p in params.items():
        when = {p.when[0]: p.when[1]} if p.when else {}
        if p.kind == "cat":
            space[name] = Categorical(list(p.choices), when=when)
        elif p.kind == "int":
            space[name] = Int(int(p.low), int(p.high), log=p.log, when=when)
        else:
            space[name] = Float(p.low, p.high, log=p.log, when=when)
    return space


def optuna_params(trial: Any, params: dict[str, P]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name, p in params.items():
        if p.when and config.get(p.when[0]) != p.when[1]:
            continue
        if p.kind == "cat":
            config[name] = trial.suggest_categorical(name, list(p.choices))
        elif p.kind == "int":
            config[name] = trial.suggest_int(name, int(p.low), int(p.high), log=p.log)
        else:
            config[name] = trial.suggest_float(name, p.low, p.high, log=p.log)
    return config


# Tasks ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """A black box: ``evaluate(config, seed) -> (validation score, test score)``, maximised."""

    name: str
    params: dict[str, P]
    evaluate: Callable[[dict[str, Any], int], tuple[float, float]]


LCBENCH_PARAMS = {
    "batch_size": P("int", 16, 512, log=True),
    "learning_rate": P("float", 1e-4, 0.1, log=True),
    "momentum": P("float", 0.1, 0.99),
    "weight_decay": P("float", 1e-5, 0.1),
    "num_layers": P("int", 1, 5),
    "max_units": P("int", 64, 1024, log=True),
    "max_dropout": P("float", 0.0, 1.0),
}
_ORDER = [
    "batch_size",
    "learning_rate",
    "momentum",
    "weight_decay",
    "num_layers",
    "max_units",
    "max_dropout",
]


class LCBench:
    """The surrogate for one instance: val accuracy (percent) and test balanced accuracy at epoch 52."""

    _session = None

    def __init__(self, instance: str) -> None:
        self.instance = instance

    def __call__(self, config: dict[str, Any], seed: int) -> tuple[float, float]:
        import onnxruntime as ort

        if LCBench._session is None:
            options = ort.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = 1
            LCBench._session = ort.InferenceSession(str(LCBENCH / "model.onnx"), options)
            LCBench._codes = json.loads((LCBENCH / "encoding.json").read_text())["OpenML_task_id"]
        x_cat = np.array([[LCBench._codes[self.instance]]], dtype=np.int32)
        x_cont = np.array([[52.0, *(float(config[k]) for k in _ORDER)]], dtype=np.float32)
        out = LCBench._session.run(None, {"x_cat": x_cat, "x_cont": x_cont})[0][0]
        return float(out[1]), float(out[5])


NET_PARAMS = {
    "lr": P("float", 1e-4, 0.3, log=True),
    "n_layers": P("int", 1, 3),
    "units": P("cat", choices=(32, 64, 128, 256)),
    "dropout": P("float", 0.0, 0.5),
    "optimizer": P("cat", choices=("sgd", "adam")),
    "momentum": P("float", 0.0, 0.99, when=("optimizer", "sgd")),
    "batch_size": P("cat", choices=(16, 32, 64, 128)),
}
CNN_PARAMS = {
    "lr": P("float", 1e-4, 3e-2, log=True),
    "conv_layers": P("int", 1, 3),
    "channels": P("cat", choices=(8, 16, 32)),
    "kernel_size": P("cat", choices=(3, 5, 7)),
    "dropout": P("float", 0.0, 0.5),
    "optimizer": P("cat", choices=("sgd", "adam")),
    "momentum": P("float", 0.0, 0.99, when=("optimizer", "sgd")),
    "batch_size": P("cat", choices=(32, 64, 128)),
}
#: name: (data source, model, epochs, parameters)
NET_TASKS = {
    "digits-mlp": ("digits", "mlp", 8, NET_PARAMS),
    "mnist1d-mlp": ("mnist1d", "mlp", 6, NET_PARAMS),
    "mnist1d-cnn1d": ("mnist1d", "cnn1d", 5, CNN_PARAMS),
}


class Network:
    """Real training with tunelab's built-in objective: validation accuracy; the test score is that
    of the config retrained on train+validation (what a user of each tuner would get)."""

    def __init__(self, source: str, model: str, epochs: int) -> None:
        self.source, self.model, self.epochs = source, model, epochs
        self._objective = None

    def objective(self) -> Any:
        from tunelab.nn import NetworkObjective

        if self._objective is None:
            self._objective = NetworkObjective(
                {"source": self.source}, self.model, fixed={"epochs": self.epochs}, device="cpu"
            )
        return self._objective

    def __call__(self, config: dict[str, Any], seed: int) -> tuple[float, float]:
        from tunelab.errors import TrialDiverged
        from tunelab.trial import Decision, Trial

        trial = Trial(0, config, seed, Path("/tmp/tunelab-bench"), lambda *a: Decision.CONTINUE)
        try:
            return float(self.objective()(trial)["val_accuracy"]), math.nan
        except TrialDiverged:  # scored as a useless network, alike for every contender
            return 0.0, math.nan

    def test_score(self, config: dict[str, Any], seed: int) -> float:
        import tempfile

        with tempfile.TemporaryDirectory() as out:
            result = self.objective().final_fit(config, seed=seed, out_dir=Path(out))
        return float(result["test_metrics"]["test_accuracy"])


def tasks(suite: str) -> list[Task]:
    if suite == "lcbench":
        return [Task(f"lcbench-{i}", LCBENCH_PARAMS, LCBench(i)) for i in LCBENCH_INSTANCES]
    return [
        Task(name, params, Network(source, model, epochs))
        for name, (source, model, epochs, params) in NET_TASKS.items()
    ]


# Contenders -------------------------------------------------------------------------------------
def run_tunelab(
    task: Task, strategy: str, seed: int, trials: int
) -> list[tuple[dict, float, float]]:
    from tunelab import Study

    records = []

    def objective(trial: Any) -> float:
        value, test = task.evaluate(trial.params, trial.seed)
        records.append((trial.params, value, test))
        return value

    study = Study(
        f"{task.name}-{strategy}-{seed}", storage="sqlite://", strategy=strategy, seed=seed
    )
    study.optimize(objective, tunelab_space(task.params), trials=trials)
    return records


def run_optuna(task: Task, sampler: str, seed: int, trials: int) -> list[tuple[dict, float, float]]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    samplers = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        # Optuna 5's default TPE is already multivariate; the independent one was its default
        # before, and what most published comparisons ran.
        "tpe independent": lambda: optuna.samplers.TPESampler(seed=seed, multivariate=False),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
    }
    records = []

    def objective(trial: Any) -> float:
        config = optuna_params(trial, task.params)
        value, test = task.evaluate(config, seed * 100_000 + trial.number)
        records.append((config, value, test))
        return value

    study = optuna.create_study(direction="maximize", sampler=samplers[sampler]())
    study.optimize(objective, n_trials=trials)
    return records


def run_smac(task: Task, seed: int, trials: int) -> list[tuple[dict, float, float]]:
    """SMAC3's hyperparameter-optimisation facade (random forest + local search), minimising."""
    import tempfile

    from ConfigSpace import Categorical, ConfigurationSpace, EqualsCondition, Float, Integer
    from smac import HyperparameterOptimizationFacade, Scenario

    space = ConfigurationSpace(seed=seed)
    hyperparameters = {}
    for name, p in task.params.items():
        if p.kind == "cat":
            hp = Categorical(name, list(p.choices))
        elif p.kind == "int":
            hp = Integer(name, (int(p.low), int(p.high)), log=p.log)
        else:
            hp = Float(name, (p.low, p.high), log=p.log)
        hyperparameters[name] = hp
        space.add(hp)
    for name, p in task.params.items():
        if p.when:
            space.add(EqualsCondition(hyperparameters[name], hyperparameters[p.when[0]], p.when[1]))
    records = []

    def train(config: Any, seed: int = 0) -> float:
        params = dict(config)
        value, test = task.evaluate(params, seed)
        records.append((params, value, test))
        return -value

    with tempfile.TemporaryDirectory() as out:
        scenario = Scenario(
            space, deterministic=True, n_trials=trials, seed=seed, output_directory=Path(out)
        )
        HyperparameterOptimizationFacade(
            scenario, train, overwrite=True, logging_level=40
        ).optimize()
    return records[:trials]


def run_one(job: tuple[str, int, str, int, int]) -> dict[str, Any]:
    """One (task, contender, seed) run: its best-so-far curve and the chosen configs' test scores."""
    import torch
    from threadpoolctl import threadpool_limits

    # One core per run: 16 runs beside each other with BLAS threads each ran 5x slower.
    torch.set_num_threads(1)
    threadpool_limits(1)
    suite, task_index, contender, seed, trials = job
    task = tasks(suite)[task_index]
    start = time.perf_counter()
    if contender.startswith("tunelab"):
        records = run_tunelab(task, contender.split()[1], seed, trials)
    elif contender == "smac":
        records = run_smac(task, seed, trials)
    else:
        records = run_optuna(task, contender.removeprefix("optuna "), seed, trials)
    elapsed = time.perf_counter() - start
    values = np.array([v for _, v, _ in records])
    curve = np.maximum.accumulate(values).tolist()
    chosen = {}
    for budget in sorted({min(30, trials), trials}):
        best = int(np.argmax(values[:budget]))
        config, _, test = records[best]
        if isinstance(task.evaluate, Network):
            test = task.evaluate.test_score(config, seed)
        chosen[str(budget)] = {"config": config, "value": float(values[best]), "test": test}
    return {
        "task": task.name,
        "contender": contender,
        "seed": seed,
        "curve": curve,
        "chosen": chosen,
        "seconds": elapsed,
    }


# Report -----------------------------------------------------------------------------------------
def present(runs: list[dict]) -> list[str]:
    return [c for c in CONTENDERS if any(r["contender"] == c for r in runs)]


def summarise(runs: list[dict], trials: int) -> dict[str, Any]:
    contenders = present(runs)
    task_names = sorted({r["task"] for r in runs}, key=lambda n: [r["task"] for r in runs].index(n))
    checkpoints = [b for b in (10, 30, trials) if b <= trials]
    median_best: dict[str, dict[str, dict[str, float]]] = {}
    ranks: dict[int, dict[str, list[float]]] = {b: {c: [] for c in contenders} for b in checkpoints}
    tests: dict[str, dict[str, float]] = {}
    to_reach: dict[str, float] = {}
    for name in task_names:
        mine = [r for r in runs if r["task"] == name]
        median_best[name] = {}
        tests[name] = {}
        for contender in contenders:
            rows = [r for r in mine if r["contender"] == contender]
            curves = np.array([r["curve"] for r in rows])
            median_best[name][contender] = {
                str(b): float(np.median(curves[:, b - 1])) for b in checkpoints
            }
            tests[name][contender] = float(
                np.median([r["chosen"][str(trials)]["test"] for r in rows])
            )
        for b in checkpoints:  # rank of each contender's median at b within this task (1 = best)
            scores = {c: median_best[name][c][str(b)] for c in contenders}
            order = sorted(scores, key=lambda c: -scores[c])
            for c in contenders:
                tied = [i + 1 for i, o in enumerate(order) if scores[o] == scores[c]]
                ranks[b][c].append(float(np.mean(tied)))
        if not {"tunelab random", "tunelab bayes"} <= set(contenders):
            continue
        random_final = median_best[name]["tunelab random"][str(trials)]
        bayes = np.median(
            np.array([r["curve"] for r in mine if r["contender"] == "tunelab bayes"]), 0
        )
        reached = np.nonzero(bayes >= random_final)[0]
        to_reach[name] = float(reached[0] + 1) if reached.size else math.inf
    return {
        "median_best": median_best,
        "mean_rank": {
            str(b): {c: float(np.mean(v)) for c, v in ranks[b].items()} for b in checkpoints
        },
        "median_test_of_chosen": tests,
        "bayes_trials_to_reach_random_final": to_reach,
        "checkpoints": checkpoints,
    }


def write_report(suite: str, runs: list[dict], trials: int) -> None:
    summary = summarise(runs, trials)
    contenders = present(runs)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"bayes_{suite}.json").write_text(
        json.dumps(
            {
                "suite": suite,
                "trials": trials,
                "left_out": LEFT_OUT,
                "summary": summary,
                "runs": runs,
            },
            indent=1,
        )
        + "\n"
    )
    cps = summary["checkpoints"]
    counts = {c: len({r["seed"] for r in runs if r["contender"] == c}) for c in contenders}
    lines = [
        f"# Search quality: {suite} ({trials} trials, median over seeds)",
        "",
        "Seeds per contender: " + ", ".join(f"{c} {n}" for c, n in counts.items()),
        "",
    ]
    header = "| task | " + " | ".join(f"{c} @{b}" for c in contenders for b in cps[-2:]) + " |"
    lines += [header, "|" + "---|" * (1 + len(contenders) * len(cps[-2:]))]
    for name, by_contender in summary["median_best"].items():
        cells = [f"{by_contender[c][str(b)]:.4g}" for c in contenders for b in cps[-2:]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Mean rank over tasks (1 = best; ties share):",
        "",
        "| contender | " + " | ".join(f"@{b}" for b in cps) + " |",
        "|---|" + "---|" * len(cps),
    ]
    for c in contenders:
        lines.append(
            f"| {c} | " + " | ".join(f"{summary['mean_rank'][str(b)][c]:.2f}" for b in cps) + " |"
        )
    lines += [
        "",
        f"Median test score of the config each contender chose after {trials} trials:",
        "",
        "| task | " + " | ".join(contenders) + " |",
        "|---|" + "---|" * len(contenders),
    ]
    for name, by_contender in summary["median_test_of_chosen"].items():
        lines.append(
            f"| {name} | " + " | ".join(f"{by_contender[c]:.4g}" for c in contenders) + " |"
        )
    lines += [
        "",
        f"Trials tunelab bayes needs (median curve) to reach random search's median at {trials}:",
        "",
    ]
    lines += [
        f"- {name}: {v:.0f}" for name, v in summary["bayes_trials_to_reach_random_final"].items()
    ]
    small, best = min(30, trials), summary["median_best"]
    if {"tunelab random", "tunelab bayes"} <= set(contenders) and small < trials:
        behind = [
            n
            for n in best
            if best[n]["tunelab bayes"][str(small)] < best[n]["tunelab random"][str(trials)]
        ]
        lines += [
            "",
            f"tunelab bayes at {small} trials >= tunelab random at {trials} (medians) on "
            f"{len(best) - len(behind)} of {len(best)} tasks"
            + (f"; behind on: {', '.join(behind)}" if behind else ""),
        ]
    seconds = {
        c: np.median([r["seconds"] for r in runs if r["contender"] == c]) for c in contenders
    }
    lines += [
        "",
        "Median seconds per run (search + evaluations, one core each, on whichever machine ran "
        "it: a guide to cost, not a speed comparison; proposal speed is bench/bayes_speed.py): "
        + ", ".join(f"{c} {s:.1f}" for c, s in seconds.items()),
        "",
        "Left out: " + "; ".join(f"{k}: {v}" for k, v in LEFT_OUT.items()),
        "",
        f"Core-hours of all runs: {sum(r['seconds'] for r in runs) / 3600:.2f}.",
    ]
    (RESULTS / f"bayes_{suite}.md").write_text("\n".join(lines) + "\n")
    plot(suite, runs, summary)
    print("\n".join(lines))


def plot(suite: str, runs: list[dict], summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["median_best"])
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        for contender in present(runs):
            curves = np.array(
                [r["curve"] for r in runs if r["task"] == name and r["contender"] == contender]
            )
            x = np.arange(1, curves.shape[1] + 1)
            ax.plot(x, np.median(curves, 0), label=contender)
            ax.fill_between(x, *np.percentile(curves, [25, 75], axis=0), alpha=0.15)
        lo = np.percentile(
            [r["curve"][min(9, len(r["curve"]) - 1)] for r in runs if r["task"] == name], 10
        )
        ax.set_ylim(bottom=lo)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("trial")
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes.flat[0].set_ylabel("best validation score so far")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / f"bayes_{suite}.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", choices=["lcbench", "real"])
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first..first+seeds-1")
    parser.add_argument("--trials", type=int)
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    parser.add_argument("--tasks", type=int, help="only the first N tasks (a quick check)")
    parser.add_argument(
        "--report", action="store_true", help="only rebuild the report from raw runs"
    )
    parser.add_argument(
        "--contenders",
        nargs="+",
        choices=CONTENDERS,
        default=CONTENDERS,
        help="run only these, and merge them into the suite's existing results",
    )
    args = parser.parse_args()
    seeds = args.seeds or (10 if args.suite == "lcbench" else 5)
    trials = args.trials or (100 if args.suite == "lcbench" else 60)
    n_tasks = min(args.tasks or 99, len(tasks(args.suite)))
    jobs = [
        (args.suite, t, c, s, trials)
        for t in range(n_tasks)
        for s in range(args.first_seed, args.first_seed + seeds)
        for c in args.contenders
    ]
    jobs.sort(key=lambda j: j[2] != "tunelab bayes" and j[2] != "optuna gp")  # slow ones first
    if args.report:
        jobs, args.contenders = [], []
    runs = []
    raw = RESULTS / "raw"
    raw.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        """After every run, so a run cut short keeps what finished. A contender's saved runs are
        replaced run by run (same task and seed), so seeds can be added in later invocations."""
        for contender in args.contenders:
            path = raw / f"bayes_{args.suite}_{contender.replace(' ', '_')}.json"
            kept = json.loads(path.read_text()) if path.exists() else {"runs": []}
            if kept.get("trials") not in (None, trials):
                kept = {"runs": []}
            mine = [r for r in runs if r["contender"] == contender]
            fresh = {(r["task"], r["seed"]) for r in mine}
            merged = [r for r in kept["runs"] if (r["task"], r["seed"]) not in fresh] + mine
            path.write_text(json.dumps({"trials": trials, "runs": merged}) + "\n")

    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_one, job) for job in jobs]
        for i, future in enumerate(as_completed(futures), 1):
            run = future.result()
            runs.append(run)
            save()
            print(
                f"[{i}/{len(jobs)}] {run['task']} {run['contender']} seed {run['seed']}: "
                f"{run['curve'][-1]:.4g} in {run['seconds']:.1f}s",
                file=sys.stderr,
                flush=True,
            )
    everything = [json.loads(p.read_text()) for p in sorted(raw.glob(f"bayes_{args.suite}_*.json"))]
    everything = [e for e in everything if e["trials"] == trials]
    write_report(args.suite, [r for e in everything for r in e["runs"]], trials)


if __name__ == "__main__":
    main()
