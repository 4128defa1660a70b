"""How long one Bayesian proposal takes as trials accumulate, beside Optuna's GPSampler, in one run.

The history is LCBench-shaped (7 parameters: log ints, log floats, floats) plus a categorical with a
conditional child, scored by a smooth function with noise; both tuners get the same completed trials
and propose the next config. Writes bench/results/bayes_speed.json and .md.
Target (issue 4): at most 1 s per proposal at 200 completed trials on a 2-core machine.

Usage: python bench/bayes_speed.py [--sizes 50 100 200] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def space():
    from tunelab import Categorical, Float, Int

    return {
        "batch_size": Int(16, 512, log=True),
        "learning_rate": Float(1e-4, 0.1, log=True),
        "momentum": Float(0.1, 0.99),
        "weight_decay": Float(1e-5, 0.1),
        "num_layers": Int(1, 5),
        "max_units": Int(64, 1024, log=True),
        "max_dropout": Float(0.0, 1.0),
        "optimizer": Categorical(["sgd", "adam"]),
        "nesterov": Categorical([False, True], when={"optimizer": "sgd"}),
    }


def score(config: dict, rng: np.random.Generator) -> float:
    lr = math.log10(config["learning_rate"])
    return (
        -((lr + 2.5) ** 2)
        - (config["max_dropout"] - 0.2) ** 2
        - 0.1 * config["num_layers"]
        + 0.3 * (config["optimizer"] == "adam")
        + rng.normal(0, 0.05)
    )


def history(n: int):
    from tunelab.space import Space
    from tunelab.trial import FrozenTrial, TrialState

    tl_space = Space(space())
    rng = np.random.default_rng(0)
    trials = []
    for i in range(n):
        config = tl_space.decode(rng.random(len(tl_space)))
        trials.append(
            FrozenTrial(
                id=i + 1,
                number=i,
                state=TrialState.COMPLETE,
                params=config,
                value=score(config, rng),
            )
        )
    return tl_space, trials


def time_tunelab(n: int, repeats: int) -> list[float]:
    """Seconds of each ask at n, n+1, ... completed trials, as one study's strategy sees them (its
    cached hyperparameter fit is reused between refits, as in a real study)."""
    from tunelab.strategies import BayesSearch

    tl_space, trials = history(n + repeats)
    strategy = BayesSearch(seed=0)
    strategy.ask(tl_space, trials[: n - 1], [n - 1])
    times = []
    for k in range(n, n + repeats):
        start = time.perf_counter()
        strategy.ask(tl_space, trials[:k], [k])
        times.append(time.perf_counter() - start)
    return times


def time_optuna(n: int) -> float:
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from tunelab import Categorical, Float

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tl_space, trials = history(n)
    distributions = {}
    for name, p in tl_space.items():
        if isinstance(p, Categorical):
            distributions[name] = CategoricalDistribution(list(p.choices))
        elif isinstance(p, Float):
            distributions[name] = FloatDistribution(p.low, p.high, log=p.log)
        else:
            distributions[name] = IntDistribution(int(p.low), int(p.high), log=p.log)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.GPSampler(seed=0))
    for t in trials:
        study.add_trial(
            optuna.trial.create_trial(
                params=t.params,
                distributions={k: distributions[k] for k in t.params},
                value=t.value,
            )
        )
    start = time.perf_counter()
    trial = study.ask()
    for name in tl_space:  # what GPSampler proposes is drawn when the params are suggested
        if name != "nesterov" or trial.params.get("optimizer") == "sgd":
            trial._suggest(name, distributions[name])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--repeats", type=int, default=20, help="consecutive asks per size")
    args = parser.parse_args()
    time_tunelab(20, 1)  # imports and first-call costs are not what is measured
    time_optuna(20)
    rows = {}
    for n in args.sizes:
        ours = time_tunelab(n, args.repeats)
        theirs = statistics.median(time_optuna(n) for _ in range(3))
        rows[n] = {
            "tunelab_bayes_median_s": statistics.median(ours),
            "tunelab_bayes_max_s": max(ours),
            "optuna_gp_s": theirs,
            "ratio": statistics.median(ours) / theirs,
        }
        print(
            f"{n} trials: tunelab bayes median {statistics.median(ours):.2f} s, max {max(ours):.2f} s;"
            f" optuna GPSampler {theirs:.2f} s",
            flush=True,
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bayes_speed.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        f"# Seconds per proposal, 9 parameters incl. a conditional ({args.repeats} consecutive "
        "asks from each size for tunelab; median of 3 for Optuna)",
        "",
        "| completed trials | tunelab bayes median | tunelab bayes max | Optuna GPSampler | ratio |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {n} | {r['tunelab_bayes_median_s']:.2f} | {r['tunelab_bayes_max_s']:.2f} | "
        f"{r['optuna_gp_s']:.2f} | {r['ratio']:.2f} |"
        for n, r in rows.items()
    ]
    lines += ["", "Target: tunelab bayes at most 1 s per proposal at 200 completed trials."]
    (RESULTS / "bayes_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
