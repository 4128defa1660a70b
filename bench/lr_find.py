"""The LR range test and ``auto`` learning rates, on the tasks of bench/bayes.py (real training).

(a) The suggested learning rate (fastai's valley; minimum/10 beside it), every other
    hyperparameter at tunelab's defaults, trained as a trial of the task (same epochs), against
    two references: the best tuned accuracy (the highest median best after 60 trials of any
    contender in bench/results/bayes_real.json, where every hyperparameter is searched; goal of
    issue 19: within 1 point) and the best of a sweep of the learning rate alone at the same
    defaults (16 rates from 1e-5 to 1), which says how much of the gap the rate is to blame for.
(b) Random and bayes search over the task's space with the learning rate wide (1e-5 to 1) and
    with ``lr: {auto: true}`` (the range tests run per optimizer, each optimizer searched in its
    own range): how many trials ``auto`` needs to reach the wide range's best after 40 trials,
    on the median curve over seeds and per seed (goal: at most 20). Both go through
    ``Experiment.from_spec`` as a spec does, so the tests' time is counted.
(c) The range test's wall time against one trial's training at the defaults (goal: under 2).

Median over seeds; figures go to bench/results/lr_find.json and .md.

Usage: python bench/lr_find.py [--seeds 5] [--trials 40] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bayes import NET_TASKS  # noqa: E402 - the tasks bench/bayes.py tunes, with its epochs

RESULTS = Path(__file__).resolve().parent / "results"
WIDE = {"type": "float", "low": 1e-5, "high": 1.0, "log": True}
AUTO = {"type": "float", "auto": True}
SWEEP = np.logspace(-5, 0, 16)


def best_tuned() -> dict[str, float]:
    """Per task, the highest median best-after-60-trials of any contender in bayes_real.json."""
    summary = json.loads((RESULTS / "bayes_real.json").read_text())["summary"]["median_best"]
    return {task: max(c["60"] for c in contenders.values()) for task, contenders in summary.items()}


def _quiet() -> None:
    torch.set_num_threads(1)
    logging.getLogger("tunelab").setLevel(logging.WARNING)


# (a) and (c) -------------------------------------------------------------------------------------
def _train(objective, params: dict, seed: int) -> float:
    from tunelab.errors import TrialDiverged
    from tunelab.trial import Decision, Trial

    trial = Trial(0, params, seed, Path("/tmp/tunelab-bench"), lambda *a: Decision.CONTINUE)
    try:
        return float(objective(trial)["val_accuracy"])
    except TrialDiverged:
        return math.nan


def defaults_job(name: str, seed: int) -> dict:
    """The suggestions at the defaults, trained; the lr-alone sweep; the test's cost."""
    from tunelab.lr_range import objective_range_test
    from tunelab.nn import NetworkObjective

    _quiet()
    source, model, epochs, _ = NET_TASKS[name]
    objective = NetworkObjective({"source": source}, model, fixed={"epochs": epochs}, device="cpu")
    _train(objective, {"epochs": 1}, seed)  # loads the data and warms torch up: time neither
    start = time.perf_counter()
    test = objective_range_test(objective, None, seed)  # as lr_find does: 100 steps, then 200, 400
    row = {"task": name, "seed": seed, "range_test_s": time.perf_counter() - start}
    row.update(steps=test.steps, suggestions=test.suggestions)
    for rule in ("valley", "minimum/10"):
        start = time.perf_counter()
        row[rule] = _train(objective, {"lr": test.suggestions[rule]}, seed)
        row[f"{rule} train_s"] = time.perf_counter() - start
    row["sweep"] = {f"{lr:.3g}": _train(objective, {"lr": float(lr)}, seed) for lr in SWEEP}
    return row


def summarise_defaults(rows: list[dict], tuned: float) -> dict:
    med = {rule: statistics.median(r[rule] for r in rows) for rule in ("valley", "minimum/10")}
    sweep = {  # a rate that diverged trained nothing: 0
        lr: statistics.median(np.nan_to_num(r["sweep"][lr]) for r in rows)
        for lr in rows[0]["sweep"]
    }
    best_lr = max(sweep, key=sweep.get)
    test_s = statistics.median(r["range_test_s"] for r in rows)
    train_s = statistics.median(r["valley train_s"] for r in rows)
    return {
        "task": rows[0]["task"],
        "best_tuned": tuned,
        "lr_alone_best": sweep[best_lr],
        "lr_alone_best_at": float(best_lr),
        "valley": med["valley"],
        "minimum/10": med["minimum/10"],
        "steps": statistics.median(r["steps"] for r in rows),
        "range_test_s": test_s,
        "trial_s": train_s,
        "cost_in_trials": test_s / train_s,
    }


# (b) ---------------------------------------------------------------------------------------------
def _space(params: dict, lr: dict) -> dict:
    kinds = {"cat": "categorical", "int": "int", "float": "float"}
    space = {}
    for name, p in params.items():
        entry = dict(lr) if name == "lr" else {"type": kinds[p.kind]}
        if name != "lr":
            if p.kind == "cat":
                entry["choices"] = list(p.choices)
            else:
                entry.update(low=p.low, high=p.high, log=p.log)
            if p.when:
                entry["when"] = {p.when[0]: p.when[1]}
        space[name] = entry
    return space


def search_job(name: str, strategy: str, variant: str, seed: int, trials: int) -> dict:
    """One study as a spec runs it: the range tests (auto) and the search; the best-so-far curve."""
    from tunelab.experiment import Experiment
    from tunelab.spec import parse_spec

    _quiet()
    source, model, epochs, params = NET_TASKS[name]
    spec = parse_spec(
        {
            "name": f"{name}-{strategy}-{variant}-{seed}",
            "data": {"source": source},
            "model": model,
            "metric": {"name": "val_accuracy", "direction": "maximize"},
            "space": _space(params, AUTO if variant == "auto" else WIDE),
            "fixed": {"epochs": epochs},
            "strategy": strategy,
            "budget": {"trials": trials},
            "seed": seed,
            "device": "cpu",
        }
    )
    start = time.perf_counter()
    experiment = Experiment.from_spec(spec, "sqlite://")
    setup_s = time.perf_counter() - start
    start = time.perf_counter()
    experiment.search()
    search_s = time.perf_counter() - start
    values = [t.value if t.value is not None else math.nan for t in experiment.study.trials]
    curve = np.fmax.accumulate(np.nan_to_num(values, nan=0.0)).tolist()
    lr_range = experiment.study.attrs.get("lr_range", {})
    return {
        "task": name,
        "strategy": strategy,
        "variant": variant,
        "seed": seed,
        "curve": curve,
        "setup_s": setup_s,
        "search_s": search_s,
        "searched": lr_range.get("searched"),
        "tests_s": lr_range.get("seconds", 0.0),
    }


def _reach(curve: list[float], target: float) -> int | None:
    """The number of trials after which ``curve`` first reaches ``target``; None if never."""
    return next((n for n, value in enumerate(curve, 1) if value >= target - 1e-12), None)


def summarise_search(runs: list[dict], trials: int) -> list[dict]:
    rows = []
    for name in dict.fromkeys(r["task"] for r in runs):
        for strategy in dict.fromkeys(r["strategy"] for r in runs):
            by = {
                variant: sorted(
                    (
                        r
                        for r in runs
                        if (r["task"], r["strategy"], r["variant"]) == (name, strategy, variant)
                    ),
                    key=lambda r: r["seed"],
                )
                for variant in ("wide", "auto")
            }
            if not by["wide"] or not by["auto"]:
                continue
            median = {
                v: np.median([r["curve"] for r in rs], axis=0).tolist() for v, rs in by.items()
            }
            target = median["wide"][trials - 1]
            per_seed = [
                _reach(auto["curve"], wide["curve"][trials - 1])
                for wide, auto in zip(by["wide"], by["auto"], strict=True)
            ]
            trial_s = statistics.median(r["search_s"] / trials for r in by["wide"])
            tests_s = statistics.median(r["tests_s"] for r in by["auto"])
            rows.append(
                {
                    "task": name,
                    "strategy": strategy,
                    "wide_best": target,
                    "auto_best": median["auto"][trials - 1],
                    "auto_best_half": median["auto"][trials // 2 - 1],
                    "trials_to_reach": _reach(median["auto"], target),
                    "trials_to_reach_per_seed": per_seed,
                    "tests_in_trials": tests_s / trial_s,
                    "median_curves": median,
                }
            )
    return rows


# Output ------------------------------------------------------------------------------------------
def markdown(defaults: list[dict], search: list[dict], meta: dict) -> str:
    lines = [
        "# LR range test and auto learning rates",
        "",
        f"{meta['machine']}; {meta['date']}; {meta['seeds']} seeds; one torch thread per process.",
        "",
        "## (a) The suggested rate at the defaults, and (c) what the test costs",
        "",
        "Validation accuracy (median over seeds) of the suggested rate with every other "
        "hyperparameter at its default, trained as a trial of the task. *Best tuned*: the highest "
        "median best after 60 trials of any contender in bayes_real.json, every hyperparameter "
        "searched (goal: the suggestion within 1 point). *lr alone*: the best of 16 rates from "
        "1e-5 to 1 at the same defaults, so the gap splits into the rate's share and the other "
        "hyperparameters'. The test takes 100 steps, then 200 and 400 if the curve is too flat "
        "to read (its median steps shown); goal: it costs under 2 trials.",
        "",
        "| task | best tuned | lr alone (at) | valley | gap to tuned | gap to lr alone "
        "| minimum/10 | test steps | range test | one trial | cost in trials |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in defaults:
        lines.append(
            f"| {r['task']} | {r['best_tuned']:.4f} | {r['lr_alone_best']:.4f} "
            f"({r['lr_alone_best_at']:.2g}) | {r['valley']:.4f} "
            f"| {100 * (r['best_tuned'] - r['valley']):+.1f} pt "
            f"| {100 * (r['lr_alone_best'] - r['valley']):+.1f} pt | {r['minimum/10']:.4f} "
            f"| {r['steps']:.0f} | {r['range_test_s']:.2f} s | {r['trial_s']:.2f} s "
            f"| {r['cost_in_trials']:.2f} |"
        )
    lines += [
        "",
        "A positive gap is how far below the reference the suggestion stays.",
        "",
        f"## (b) Search with `auto` against the wide range (1e-5 to 1), {meta['trials']} trials",
        "",
        "Each task's own space (bench/bayes.py: optimizer sgd or adam, momentum, batch size, "
        "layers, units, dropout...) with lr either wide or `auto: true`. *Wide best*: the median "
        f"over seeds of the best after {meta['trials']} trials with the wide range. *Trials to "
        "reach*: the first trial count at which auto's median best-so-far reaches it (goal: at "
        f"most {meta['trials'] // 2}); per seed, the same against that seed's wide best "
        "('-' never). *Tests*: the range tests' time in trials of the wide search.",
        "",
        f"| task | strategy | wide best | auto best | auto best at {meta['trials'] // 2} "
        "| trials to reach | per seed | tests (trials) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in search:
        seeds = ", ".join("-" if n is None else str(n) for n in r["trials_to_reach_per_seed"])
        reach = "-" if r["trials_to_reach"] is None else str(r["trials_to_reach"])
        lines.append(
            f"| {r['task']} | {r['strategy']} | {r['wide_best']:.4f} | {r['auto_best']:.4f} "
            f"| {r['auto_best_half']:.4f} | {reach} | {seeds} | {r['tests_in_trials']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _call(job: tuple) -> dict:
    function, *args = job
    return function(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--tasks", nargs="+", default=list(NET_TASKS))
    args = parser.parse_args()
    jobs = [(defaults_job, name, seed) for name in args.tasks for seed in range(args.seeds)]
    jobs += [
        (search_job, name, strategy, variant, seed, args.trials)
        for name in args.tasks
        for strategy in ("random", "bayes")
        for variant in ("wide", "auto")
        for seed in range(args.seeds)
    ]
    jobs.sort(key=lambda job: job[1] != "mnist1d-cnn1d")  # the longest first
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        done = []
        for result in pool.imap_unordered(_call, jobs):
            done.append(result)
            print(
                len(done),
                "/",
                len(jobs),
                result["task"],
                result.get("variant", "defaults"),
                result["seed"],
                flush=True,
            )
    tuned = best_tuned()
    defaults = [
        summarise_defaults([r for r in done if r["task"] == name and "sweep" in r], tuned[name])
        for name in args.tasks
    ]
    runs = [r for r in done if "curve" in r]
    search = summarise_search(runs, args.trials)
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "seeds": args.seeds,
        "trials": args.trials,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lr_find.json").write_text(
        json.dumps(
            {**meta, "defaults": defaults, "search": search, "runs": done}, indent=1, default=float
        )
    )
    (RESULTS / "lr_find.md").write_text(markdown(defaults, search, meta))
    print(markdown(defaults, search, meta))


if __name__ == "__main__":
    main()
