"""Multi-fidelity search on the LCBench surrogate, judged on time to a target, side by side.

Protocol (issue 17): epochs are the resource (1..52). Per instance, the budget is the simulated
training time of 50 full-fidelity random trials (a fixed set, seed 12345) and the target is random
search's median best at that budget (over the seeds). An incumbent counts only once a configuration
was evaluated at the full 52 epochs. Reported per contender: time to target as a fraction of the
budget (median over instances of the median over seeds; misses counted), and the best
full-fidelity validation accuracy at 25% and 100% of the budget.

tunelab runs its real driver, strategy, scheduler and storage on the simulated executor (virtual
clock; promoted trials resume from their checkpoint, paying only for the epochs after it), on one
worker, and on four for the speed-up: the same budget then counts wall-clock seconds of four
workers, so its time to target is a fraction of the same wall clock. The peers train every
evaluation from its first epoch, as they do: Optuna (TPE or random with its Hyperband or
successive-halving pruner, GPSampler at full fidelity), DEHB 0.1.2 (fidelities 1..52, eta 3) and
SMAC3 2.4's MultiFidelityFacade (Hyperband, budgets 1..52, eta 3), both by ask and tell, both
with fidelities 1.9, 5.8, 17.3 and 52 that are rounded to whole epochs. Their time is the same
surrogate's.

Needs ../shared/lcbench and, for the peers, a separate environment: DEHB 0.1.2 pins numpy<2 and SMAC
2.4 imports ``sklearn.tree._tree.DTYPE``, gone in scikit-learn 1.8 (pyarrow 20+ then needs numpy 2)::

    python3 -m venv /tmp/benchvenv && /tmp/benchvenv/bin/pip install -c constraints-cpu.txt -e . \
        optuna==5.0.0 onnxruntime dehb==0.1.2 smac==2.4.0 "scikit-learn>=1.6.1,<1.8" "pyarrow<20"

Each contender's runs go to ``bench/results/raw/multifidelity_<contender>.json``; a run of this
script replaces, run by run (instance and seed), those of the contenders it ran, so slow ones can
run apart and in parallel. The report (``multifidelity.json`` and ``.md``) reads every raw file.

Usage:
    python bench/multifidelity.py [--instances 3945 7593 ...] [--seeds 10] [--contenders ASHA smac]
        [--jobs 2]
    python bench/multifidelity.py --report
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import multiprocessing
import os
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bayes import _ORDER, LCBENCH, LCBENCH_INSTANCES, LCBENCH_PARAMS, optuna_params, tunelab_space  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
RAW = RESULTS / "raw"
EPOCHS = 52
METRIC = "val_accuracy"
REFERENCE = "tunelab random (full fidelity)"  # its median best at the budget is the target
#: name: (runner, its options). A run returns [(simulated seconds, val accuracy at epoch 52)] for
#: the evaluations at full fidelity, in the order they finished.
CONTENDERS: dict[str, tuple[str, dict[str, Any]]] = {
    "tunelab random + ASHA": ("tunelab", {"strategy": "random", "scheduler": "asha"}),
    "tunelab random + Hyperband": ("tunelab", {"strategy": "random", "scheduler": "hyperband"}),
    REFERENCE: ("tunelab", {"strategy": "random", "scheduler": None}),
    "tunelab bayes + ASHA": ("tunelab", {"strategy": "bayes", "scheduler": "asha"}),
    "tunelab bayes + Hyperband": ("tunelab", {"strategy": "bayes", "scheduler": "hyperband"}),
    # Four workers run four times the trials in the same wall clock, and reach the target early:
    # their runs stop at a quarter of the budget (their best at 100% is not measured).
    "tunelab random + ASHA, 4 workers": (
        "tunelab",
        {"strategy": "random", "scheduler": "asha", "workers": 4, "share": 0.25},
    ),
    "tunelab bayes + ASHA, 4 workers": (
        "tunelab",
        {"strategy": "bayes", "scheduler": "asha", "workers": 4, "share": 0.25},
    ),
    "Optuna TPE + HyperbandPruner": ("optuna", {"sampler": "tpe", "pruner": "hyperband"}),
    "Optuna TPE + SuccessiveHalving": ("optuna", {"sampler": "tpe", "pruner": "sha"}),
    "Optuna Random + SuccessiveHalving": ("optuna", {"sampler": "random", "pruner": "sha"}),
    "Optuna GPSampler (full fidelity)": ("optuna", {"sampler": "gp", "pruner": None}),
    "DEHB 0.1.2": ("dehb", {}),
    "SMAC3 MultiFidelityFacade": ("smac", {}),
}


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


# Contenders -------------------------------------------------------------------------------------
def run_tunelab(
    curves: Curves,
    budget: float,
    seed: int,
    strategy: str,
    scheduler: str | None,
    workers: int = 1,
    share: float = 1.0,
) -> list:
    from tunelab import Study
    from tunelab.clock import VirtualClock
    from tunelab.executors import SimulatedExecutor
    from tunelab.schedulers import make_scheduler

    if scheduler is not None:
        scheduler = make_scheduler(
            scheduler, min_resource=1, max_resource=EPOCHS, reduction_factor=3
        )
    study = Study("mf", "sqlite://", metric=METRIC, strategy=strategy, scheduler=scheduler,
                  seed=seed, clock=VirtualClock())  # fmt: skip
    study.optimize(curves, tunelab_space(LCBENCH_PARAMS), minutes=share * budget / 60,
                   executor=SimulatedExecutor(workers))  # fmt: skip
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
    # Named: HyperbandPruner puts a trial in a bracket by a hash of the study's name, and an
    # unnamed study gets a random one, so the seed alone would not fix the run.
    study = optuna.create_study(study_name=f"mf-{seed}", direction="maximize",
                                sampler=samplers[sampler](), pruner=pruners[pruner]())  # fmt: skip
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


def configspace(seed: int) -> Any:
    """LCBENCH_PARAMS as a ConfigSpace space, log scales kept (for DEHB and SMAC)."""
    from ConfigSpace import ConfigurationSpace, Float, Integer

    space = ConfigurationSpace(seed=seed)
    for name, p in LCBENCH_PARAMS.items():
        if p.kind == "int":
            space.add(Integer(name, (int(p.low), int(p.high)), log=p.log))
        else:
            space.add(Float(name, (p.low, p.high), log=p.log))
    return space


def evaluate(curves: Curves, config: Any, fidelity: float) -> tuple[int, float, float]:
    """A from-scratch training to ``fidelity`` epochs (rounded): (epochs, seconds, accuracy)."""
    epochs = min(EPOCHS, max(1, round(fidelity)))
    seconds, metrics = curves.curve(dict(config))[epochs - 1]
    return epochs, seconds, metrics[METRIC]


def run_dehb(curves: Curves, budget: float, seed: int) -> list:
    from dehb import DEHB

    clock, reached = 0.0, []
    with tempfile.TemporaryDirectory() as out:
        dehb = DEHB(cs=configspace(seed), min_fidelity=1, max_fidelity=EPOCHS, eta=3, n_workers=1,
                    seed=seed, output_path=out, save_freq="end", log_level="ERROR")  # fmt: skip
        while clock < budget:
            job = dehb.ask()
            epochs, seconds, accuracy = evaluate(curves, job["config"], job["fidelity"])
            clock += seconds
            if epochs == EPOCHS:
                reached.append((clock, accuracy))
            dehb.tell(job, {"fitness": -accuracy, "cost": seconds})
        dehb.logger.remove()  # its file handler (loguru's, process-wide) would outlive the run
    return reached


def run_smac(curves: Curves, budget: float, seed: int) -> list:
    from smac import MultiFidelityFacade, Scenario
    from smac.runhistory.dataclasses import TrialValue

    clock, reached = 0.0, []
    with tempfile.TemporaryDirectory() as out:
        scenario = Scenario(configspace(seed), deterministic=True, min_budget=1, max_budget=EPOCHS,
                            n_trials=100_000,  # never reached: the budget ends the run
                            seed=seed, output_directory=Path(out))  # fmt: skip
        smac = MultiFidelityFacade(
            scenario,
            intensifier=MultiFidelityFacade.get_intensifier(scenario, eta=3),
            overwrite=True,
            logging_level=40,
        )
        while clock < budget:
            info = smac.ask()
            epochs, seconds, accuracy = evaluate(curves, info.config, info.budget)
            clock += seconds
            if epochs == EPOCHS:
                reached.append((clock, accuracy))
            smac.tell(info, TrialValue(cost=-accuracy, time=seconds), save=False)
    return reached


RUNNERS = {"tunelab": run_tunelab, "optuna": run_optuna, "dehb": run_dehb, "smac": run_smac}


def workers_of(contender: str) -> int:
    return CONTENDERS[contender][1].get("workers", 1)


def run_one(job: tuple[str, str, int, float]) -> dict[str, Any]:
    """One (instance, contender, seed) run, on one core."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)
    instance, contender, seed, budget = job
    runner, options = CONTENDERS[contender]
    importlib.import_module(runner)  # before the clock: the first run in a process pays no import
    start = time.perf_counter()
    reached = RUNNERS[runner](Curves(instance), budget, seed, **options)
    return {
        "instance": instance,
        "contender": contender,
        "seed": seed,
        "budget": budget,
        "workers": workers_of(contender),
        "share": options.get("share", 1.0),
        "reached": reached,
        "seconds": time.perf_counter() - start,
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


# Raw runs ---------------------------------------------------------------------------------------
def raw_path(contender: str) -> Path:
    return RAW / f"multifidelity_{re.sub(r'[^a-z0-9]+', '_', contender.lower()).strip('_')}.json"


def save(contender: str, runs: list[dict]) -> None:
    """Merge a contender's fresh runs into its raw file, replacing those of the same instance and
    seed; written after every run, so a run cut short keeps what finished."""
    path = raw_path(contender)
    kept = json.loads(path.read_text())["runs"] if path.exists() else []
    fresh = {(r["instance"], r["seed"]) for r in runs}
    merged = [r for r in kept if (r["instance"], r["seed"]) not in fresh] + runs
    path.write_text(json.dumps({"contender": contender, "runs": merged}) + "\n")


def select(names: list[str]) -> list[str]:
    """Contenders by exact name, else every one whose name contains the given text."""
    chosen = []
    for name in names:
        found = (
            [name] if name in CONTENDERS else [c for c in CONTENDERS if name.lower() in c.lower()]
        )
        if not found:
            raise SystemExit(f"no contender matches {name!r}; known: {', '.join(CONTENDERS)}")
        chosen += [c for c in found if c not in chosen]
    return chosen


# Report -----------------------------------------------------------------------------------------
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


def summarise(runs: list[dict]) -> dict[str, dict[str, Any]]:
    """Per contender: medians over instances of the medians over seeds. An instance without the
    reference's runs has no target: it counts for the best scores only."""
    instances = list(dict.fromkeys(r["instance"] for r in runs))
    targets = {}
    for instance in instances:
        reference = [r for r in runs if r["instance"] == instance and r["contender"] == REFERENCE]
        if reference:
            budget = reference[0]["budget"]
            targets[instance] = statistics.median(
                best_by(r["reached"], budget) or 0.0 for r in reference
            )
    summary = {}
    for name in CONTENDERS:
        mine = [r for r in runs if r["contender"] == name]
        if not mine:
            continue
        fractions, reached, judged, at25, at100, seeds = [], 0, 0, [], [], set()
        for instance in instances:
            rows = [r for r in mine if r["instance"] == instance]
            if not rows:
                continue
            budget = rows[0]["budget"]
            seeds |= {r["seed"] for r in rows}
            at25.append(statistics.median(best_by(r["reached"], budget / 4) or 0.0 for r in rows))
            if all(r.get("share", 1.0) == 1.0 for r in rows):
                at100.append(statistics.median(best_by(r["reached"], budget) or 0.0 for r in rows))
            if instance in targets:
                times = [time_to(r["reached"], targets[instance], budget) for r in rows]
                reached += sum(t is not None for t in times)
                judged += len(times)
                fractions.append(statistics.median(math.inf if t is None else t for t in times))
        summary[name] = {
            "workers": workers_of(name),
            "time_to_target": statistics.median(fractions) if fractions else None,
            "reached": f"{reached}/{judged}",
            "best_at_25%": statistics.median(at25),
            "best_at_100%": statistics.median(at100) if at100 else None,
            "instances": len(at25),
            "seeds": len(seeds),
            "seconds_per_run": statistics.median(r["seconds"] for r in mine),
        }
    return summary


def speedups(summary: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """Time to target at one worker over that at more, for the same strategy and scheduler."""
    ratios = {}
    for name, (runner, options) in CONTENDERS.items():
        if name not in summary or workers_of(name) == 1:
            continue
        alone = {k: v for k, v in options.items() if k not in ("workers", "share")}
        base = next((n for n, spec in CONTENDERS.items() if spec == (runner, alone)), None)
        if base in summary:
            one, many = summary[base]["time_to_target"], summary[name]["time_to_target"]
            finite = one is not None and many is not None and math.isfinite(one * many)
            ratios[name] = one / many if finite and many > 0 else None
    return ratios


def report() -> None:
    runs = [r for path in sorted(RAW.glob("multifidelity_*.json"))
            for r in json.loads(path.read_text())["runs"]]  # fmt: skip
    summary = summarise(runs)
    ratios = speedups(summary)
    instances = list(dict.fromkeys(r["instance"] for r in runs))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "multifidelity.json").write_text(
        json.dumps({"instances": instances, "summary": summary, "speedup": ratios, "runs": runs})
        + "\n"
    )
    lines = [
        f"# Multi-fidelity on LCBench (instances {', '.join(instances)})",
        "",
        "Time to target: fraction of the budget (median over instances of the median over seeds; "
        "inf = the median seed missed; with several workers, a fraction of the same wall clock). "
        "Best: full-fidelity validation accuracy, median. Seconds: real seconds per run, median "
        "(one core each; a guide to cost, not a speed comparison).",
        "",
        "| contender | workers | time to target | reached | best at 25% | best at 100% "
        "| instances x seeds | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        ttt = "n/a" if s["time_to_target"] is None else f"{s['time_to_target']:.2f}"
        at100 = "-" if s["best_at_100%"] is None else f"{s['best_at_100%']:.2f}"
        lines.append(
            f"| {name} | {s['workers']} | {ttt} | {s['reached']} | {s['best_at_25%']:.2f} | "
            f"{at100} | {s['instances']} x {s['seeds']} | "
            f"{s['seconds_per_run']:.1f} |"
        )
    if ratios:
        lines += [
            "",
            "Speed-up (time to target at 1 worker / at more, same strategy and scheduler): "
            + "; ".join(
                f"{name} {'n/a (a median missed)' if r is None else f'{r:.2f}x'}"
                for name, r in ratios.items()
            ),
        ]
    missing = [name for name in CONTENDERS if name not in summary]
    if REFERENCE not in summary:
        lines += ["", f"No target: {REFERENCE} has not run (it sets the target)."]
    if missing:
        lines += ["", "Not run yet: " + ", ".join(missing)]
    lines += ["", f"Core-hours of all runs: {sum(r['seconds'] for r in runs) / 3600:.2f}."]
    (RESULTS / "multifidelity.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", nargs="+", default=LCBENCH_INSTANCES)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first..first+seeds-1")
    parser.add_argument(
        "--contenders",
        nargs="+",
        default=list(CONTENDERS),
        help="exact names, or text that a name contains (case-insensitive)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one process each")
    parser.add_argument("--report", action="store_true", help="only rebuild the report")
    args = parser.parse_args()
    if args.report:
        report()
        return
    contenders = select(args.contenders)
    for package in {CONTENDERS[name][0] for name in contenders}:
        try:  # here rather than hours later in a worker
            importlib.import_module(package)
        except ImportError as exc:
            raise SystemExit(
                f"{package} does not import ({exc}); see this file's docstring"
            ) from None
    budgets = {instance: budget_of(Curves(instance)) for instance in args.instances}
    jobs = [
        (instance, name, seed, budgets[instance])
        for instance in args.instances
        for name in contenders
        for seed in range(args.first_seed, args.first_seed + args.seeds)
    ]
    jobs.sort(key=lambda job: "bayes" not in job[1])  # the slowest first: the pool ends sooner
    RAW.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict]] = {name: [] for name in contenders}
    # SMAC's choices follow Python's string hashing (the order of sets): fresh workers with a fixed
    # hash seed make each run depend on its seed alone, not on the process it ran in.
    os.environ.setdefault("PYTHONHASHSEED", "0")
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=spawn) as pool:
        futures = [pool.submit(run_one, job) for job in jobs]
        for i, future in enumerate(as_completed(futures), 1):
            run = future.result()
            runs[run["contender"]].append(run)
            save(run["contender"], runs[run["contender"]])
            print(
                f"[{i}/{len(jobs)}] {run['instance']} {run['contender']} seed {run['seed']}: "
                f"{best_by(run['reached'], run['budget']) or 0:.2f} in {run['seconds']:.1f} s",
                file=sys.stderr,
                flush=True,
            )
    report()


if __name__ == "__main__":
    main()
