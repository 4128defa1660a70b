"""Multi-fidelity search on the LCBench surrogate, judged on time to a target, side by side.

Protocol (issue 17): epochs are the resource (1..52); one worker. Per instance, the budget is the
simulated training time of 50 full-fidelity random trials (a fixed set, seed 12345) and the target
is random search's median best at that budget (over the seeds). An incumbent counts only once a
configuration was evaluated at the full 52 epochs. Reported per contender: time to target as a
fraction of the budget (median over instances of the median over seeds; misses counted), and the
best full-fidelity validation accuracy at 25% and 100% of the budget.

tunelab runs its real driver, strategy, scheduler and storage on the simulated executor (virtual
clock; promoted trials resume from their checkpoint, paying only for the epochs after it). The
Optuna contenders train every trial from its first epoch, as Optuna does; their time is the same
surrogate's. Needs ``pip install onnxruntime`` and ../shared/lcbench.

Usage: python bench/multifidelity.py [--instances 3945 7593 ...] [--seeds 10]
Writes bench/results/multifidelity.json and .md.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bayes import _ORDER, LCBENCH, LCBENCH_INSTANCES, LCBENCH_PARAMS, optuna_params, tunelab_space  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
EPOCHS = 52
METRIC = "val_accuracy"


class Curves:
    """One LCBench instance as a benchmark: every epoch's cumulative time and val accuracy."""

    _session = None

    def __init__(self, instance: str) -> None:
        self.instance = instance

    def curve(self, params: dict[str, Any], seed: int = 0) -> list[tuple[float, dict[str, float]]]:
        import onnxruntime as ort

        if Curves._session is None:
            options = ort.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = 1
            Curves._session = ort.InferenceSession(str(LCBENCH / "model.onnx"), options)
            Curves._codes = json.loads((LCBENCH / "encoding.json").read_text())["OpenML_task_id"]
        x_cat = np.full((EPOCHS, 1), Curves._codes[self.instance], dtype=np.int32)
        config = [float(params[k]) for k in _ORDER]
        x_cont = np.array([[e, *config] for e in range(1, EPOCHS + 1)], dtype=np.float32)
        out = Curves._session.run(None, {"x_cat": x_cat, "x_cont": x_cont})[0]
        seconds = np.maximum.accumulate(np.maximum(out[:, 0], 1e-3))  # cumulative, never falling
        return [(float(t), {METRIC: float(v)}) for t, v in zip(seconds, out[:, 1], strict=True)]


# Contenders: each returns [(simulated seconds, full-fidelity val accuracy)] for the configs that
# reached epoch 52, in the order they got there.
def run_tunelab(curves: Curves, budget: float, seed: int, strategy: str, scheduler: Any) -> list:
    from tunelab import Study
    from tunelab.clock import VirtualClock
    from tunelab.executors import SimulatedExecutor

    study = Study("mf", "sqlite://", metric=METRIC, strategy=strategy, scheduler=scheduler,
                  seed=seed, clock=VirtualClock())  # fmt: skip
    study.optimize(curves, tunelab_space(LCBENCH_PARAMS), minutes=budget / 60,
                   executor=SimulatedExecutor(1))  # fmt: skip
    full = [t for t in study.trials if max(t.intermediate or {0: 0}) >= EPOCHS]
    return sorted((t.finished_at, t.intermediate[EPOCHS][METRIC]) for t in full)


def run_optuna(curves: Curves, budget: float, seed: int, sampler: str, pruner: str | None) -> list:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    samplers = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
    }
    pruners = {
        None: lambda: optuna.pruners.NopPruner(),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(1, EPOCHS, 3),
        "sha": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
    }
    study = optuna.create_study(direction="maximize", sampler=samplers[sampler](),
                                pruner=pruners[pruner]())  # fmt: skip
    clock, reached = 0.0, []
    while clock < budget:
        trial = study.ask()
        curve = curves.curve(optuna_params(trial, LCBENCH_PARAMS))
        paid, pruned = 0.0, False
        for epoch, (seconds, metrics) in enumerate(curve, start=1):
            clock += seconds - paid
            paid = seconds
            trial.report(metrics[METRIC], epoch)
            if epoch < EPOCHS and trial.should_prune():
                pruned = True
                break
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, curve[-1][1][METRIC])
            reached.append((clock, curve[-1][1][METRIC]))
    return reached


def contenders() -> dict[str, Any]:
    from tunelab.schedulers import ASHAScheduler, HyperbandScheduler

    asha = ASHAScheduler(min_resource=1, max_resource=EPOCHS, reduction_factor=3)
    hyperband = HyperbandScheduler(min_resource=1, max_resource=EPOCHS, reduction_factor=3)
    return {
        "tunelab random + ASHA": lambda c, b, s: run_tunelab(c, b, s, "random", asha),
        "tunelab random + Hyperband": lambda c, b, s: run_tunelab(c, b, s, "random", hyperband),
        "tunelab random (full fidelity)": lambda c, b, s: run_tunelab(c, b, s, "random", None),
        "Optuna TPE + HyperbandPruner": lambda c, b, s: run_optuna(c, b, s, "tpe", "hyperband"),
        "Optuna TPE + SuccessiveHalving": lambda c, b, s: run_optuna(c, b, s, "tpe", "sha"),
        "Optuna Random + SuccessiveHalving": lambda c, b, s: run_optuna(c, b, s, "random", "sha"),
        "Optuna GPSampler (full fidelity)": lambda c, b, s: run_optuna(c, b, s, "gp", None),
    }


def budget_of(curves: Curves) -> float:
    """Simulated time of 50 full-fidelity random configurations (fixed set, seed 12345)."""
    rng = np.random.default_rng(12345)
    total = 0.0
    for _ in range(50):
        config = {}
        for name, p in LCBENCH_PARAMS.items():
            u = rng.random()
            if p.log:
                value = math.exp(math.log(p.low) + u * (math.log(p.high) - math.log(p.low)))
            else:
                value = p.low + u * (p.high - p.low)
            config[name] = round(value) if p.kind == "int" else value
        total += curves.curve(config)[-1][0]
    return total


def best_by(reached: list, seconds: float) -> float | None:
    scores = [v for t, v in reached if t <= seconds]
    return max(scores) if scores else None


def time_to(reached: list, target: float, budget: float) -> float | None:
    """The fraction of the budget when the incumbent first met the target (None: never)."""
    best = -math.inf
    for t, v in reached:
        best = max(best, v)
        if t > budget:
            return None
        if best >= target:
            return t / budget
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", nargs="*", default=LCBENCH_INSTANCES)
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    runs: dict[str, dict[str, list]] = {}
    speed: dict[str, float] = {}
    for instance in args.instances:
        curves = Curves(instance)
        budget = budget_of(curves)
        runs[instance] = {"budget": budget}
        for name, run in contenders().items():
            start = time.perf_counter()
            runs[instance][name] = [run(curves, budget, seed) for seed in range(args.seeds)]
            speed[name] = speed.get(name, 0.0) + time.perf_counter() - start
            print(f"{instance} {name}: {time.perf_counter() - start:.1f} s", flush=True)
    report(runs, speed, args.seeds)


def report(runs: dict, speed: dict, seeds: int) -> None:
    names = list(contenders())
    rows = {
        name: {"fractions": [], "reached": 0, "runs": 0, "at25": [], "at100": []} for name in names
    }
    for by_name in runs.values():
        budget = by_name["budget"]
        target = statistics.median(
            best_by(r, budget) or 0.0 for r in by_name["tunelab random (full fidelity)"]
        )
        for name in names:
            fractions = [time_to(r, target, budget) for r in by_name[name]]
            rows[name]["reached"] += sum(f is not None for f in fractions)
            rows[name]["runs"] += len(fractions)
            ordered = sorted(f if f is not None else math.inf for f in fractions)
            rows[name]["fractions"].append(statistics.median(ordered))
            rows[name]["at25"].append(
                statistics.median(best_by(r, budget / 4) or 0.0 for r in by_name[name])
            )
            rows[name]["at100"].append(
                statistics.median(best_by(r, budget) or 0.0 for r in by_name[name])
            )
    summary = {
        name: {
            "time_to_target": statistics.median(row["fractions"]),
            "reached": f"{row['reached']}/{row['runs']}",
            "best_at_25%": statistics.median(row["at25"]),
            "best_at_100%": statistics.median(row["at100"]),
            "real_seconds": round(speed[name], 1),
        }
        for name, row in rows.items()
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "multifidelity.json").write_text(
        json.dumps({"seeds": seeds, "instances": list(runs), "summary": summary, "runs": runs})
        + "\n"
    )
    lines = [
        f"# Multi-fidelity on LCBench ({len(runs)} instances x {seeds} seeds, 1 worker)",
        "",
        "Time to target: fraction of the budget (median over instances of the median over seeds; "
        "inf = the median seed missed). Best: full-fidelity validation accuracy, median.",
        "",
        "| contender | time to target | reached | best at 25% | best at 100% | real seconds |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        lines.append(
            f"| {name} | {s['time_to_target']:.2f} | {s['reached']} | {s['best_at_25%']:.2f} | "
            f"{s['best_at_100%']:.2f} | {s['real_seconds']} |"
        )
    (RESULTS / "multifidelity.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
