"""Multi-fidelity search with real training: wall time to a target, tunelab beside Optuna.

Protocol (issue 17, real training): MNIST-1D with an MLP and with a 1-D CNN (bench/bayes.py's
NET_TASKS: the same spaces and epochs), epochs as the resource, 2 workers, 5 seeds, one torch
thread per worker. Every contender gets the same wall-clock budget per run (``--minutes``) and
records, for each trial that trained all its epochs, (wall seconds since the run started,
validation accuracy at the last epoch). The data is loaded before the clock starts; starting the
workers counts.

Target per task: the median, over every contender's runs, of the best score within the budget,
less TOLERANCE (one point of accuracy, 8 of MNIST-1D's 800 validation samples): near the best
found, and missed by some runs. Reported per contender: wall time to the target (median over
seeds; inf = the median seed missed), how many runs reached it, the median best score, and the
ratio of tunelab's time to Optuna's.

Contenders:

* tunelab: ``Study`` with ``--strategy`` and ``--scheduler`` (default bayes + ASHA; rungs from 1
  epoch to the task's epochs, eta 3) and the built-in ``NetworkObjective`` on a ProcessExecutor of
  2 workers; a paused trial resumes from its checkpoint.
* Optuna TPE + HyperbandPruner (1 to the task's epochs, eta 3): two processes on one journal
  file, each with its own seeded TPESampler, training the same ``NetworkObjective`` from the first
  epoch and stopping when the pruner says so.

Needs optuna (the dev extra). Usage:
    python bench/multifidelity_real.py [--seeds 5] [--tasks mnist1d-mlp mnist1d-cnn1d]
        [--minutes 3] [--strategy bayes] [--scheduler asha]
Writes bench/results/multifidelity_real.json and .md after every run; runs of other tasks, seeds
or contenders made with the same budget are kept (another budget starts the file anew).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bayes import NET_TASKS, optuna_params, tunelab_space  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
METRIC = "val_accuracy"
WORKERS = 2
TOLERANCE = 0.01
OPTUNA = "Optuna TPE + HyperbandPruner"


def network(task: str) -> tuple[Any, dict, int]:
    """The task's objective with its data loaded, its parameters and its epochs."""
    from tunelab.nn import NetworkObjective

    source, model, epochs, params = NET_TASKS[task]
    objective = NetworkObjective({"source": source}, model, fixed={"epochs": epochs}, device="cpu")
    objective.provider.splits()
    return objective, params, epochs


def run_tunelab(task: str, seed: int, minutes: float, strategy: str, scheduler: str) -> list:
    from tunelab import Study
    from tunelab.executors import ProcessExecutor
    from tunelab.schedulers import make_scheduler

    objective, params, epochs = network(task)
    rungs = {"min_resource": 1, "max_resource": epochs, "reduction_factor": 3}
    with tempfile.TemporaryDirectory() as out:
        study = Study(
            "mf-real",
            "sqlite://",
            metric=METRIC,
            strategy=strategy,
            scheduler=make_scheduler(
                scheduler, **(rungs if scheduler in ("asha", "hyperband") else {})
            ),
            seed=seed,
            artifacts_dir=out,
        )
        start = time.time()
        study.optimize(objective, tunelab_space(params), minutes=minutes,
                       executor=ProcessExecutor(WORKERS, threads_per_worker=1))  # fmt: skip
    full = [t for t in study.trials if max(t.intermediate or {0: 0}) >= epochs]
    return sorted((t.finished_at - start, t.intermediate[epochs][METRIC]) for t in full)


def optuna_worker(
    objective: Any, params: dict, epochs: int, seed: int, journal: str, deadline: float
) -> None:
    """One of Optuna's workers: its own sampler on the shared study, until the deadline."""
    import optuna
    import torch
    from threadpoolctl import threadpool_limits

    from tunelab.errors import TrialDiverged
    from tunelab.trial import Decision, Trial

    torch.set_num_threads(1)
    threadpool_limits(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # not a traceback per diverged trial
    study = optuna.load_study(
        study_name="mf-real",
        storage=_journal(journal),
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.HyperbandPruner(1, epochs, 3),
    )

    def train(trial: optuna.Trial) -> float:
        def report(number: int, step: int, metrics: dict[str, float]) -> Decision:
            trial.report(metrics[METRIC], step)
            return Decision.STOP if step < epochs and trial.should_prune() else Decision.CONTINUE

        run = Trial(trial.number, optuna_params(trial, params), seed * 100_000 + trial.number,
                    Path(journal).parent / str(trial.number), report)  # fmt: skip
        objective(run)
        if run.decision is Decision.STOP:
            raise optuna.TrialPruned
        return run.last_metrics[METRIC]

    study.optimize(train, timeout=max(0.0, deadline - time.time()), catch=(TrialDiverged,))


def _journal(path: str) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(path))


def run_optuna(task: str, seed: int, minutes: float) -> list:
    import multiprocessing

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objective, params, epochs = network(task)
    context = multiprocessing.get_context("spawn")  # as tunelab's workers start
    with tempfile.TemporaryDirectory() as out:
        journal = f"{out}/journal.log"
        optuna.create_study(study_name="mf-real", storage=_journal(journal), direction="maximize")
        start = time.time()
        workers = [
            context.Process(
                target=optuna_worker,
                args=(objective, params, epochs, seed * WORKERS + i, journal, start + 60 * minutes),
            )
            for i in range(WORKERS)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if any(worker.exitcode for worker in workers):  # one worker left would halve Optuna
            raise RuntimeError(
                f"an Optuna worker failed: exit codes {[w.exitcode for w in workers]}"
            )
        trials = optuna.load_study(study_name="mf-real", storage=_journal(journal)).get_trials(
            states=[optuna.trial.TrialState.COMPLETE]
        )
    return sorted((t.datetime_complete.timestamp() - start, t.intermediate_values[epochs])
                  for t in trials)  # fmt: skip


# Report -----------------------------------------------------------------------------------------
def best_by(reached: list, seconds: float) -> float | None:
    scores = [v for t, v in reached if t <= seconds]
    return max(scores) if scores else None


def time_to(reached: list, target: float, seconds: float) -> float | None:
    """Wall seconds until the best full-epoch score met the target (None: not within budget)."""
    hits = [t for t, v in reached if v >= target and t <= seconds]
    return min(hits) if hits else None


def summarise(runs: list[dict], budget: float) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for task in dict.fromkeys(r["task"] for r in runs):
        mine = [r for r in runs if r["task"] == task]
        bests = [best_by(r["reached"], budget) or 0.0 for r in mine]
        target = statistics.median(bests) - TOLERANCE
        by_contender = {}
        for contender in dict.fromkeys(r["contender"] for r in mine):
            rows = [r for r in mine if r["contender"] == contender]
            times = [time_to(r["reached"], target, budget) for r in rows]
            by_contender[contender] = {
                "time_to_target": statistics.median(math.inf if t is None else t for t in times),
                "reached": f"{sum(t is not None for t in times)}/{len(times)}",
                "best": statistics.median(best_by(r["reached"], budget) or 0.0 for r in rows),
                "full_trials": statistics.median(len(r["reached"]) for r in rows),
            }
        ratios = {}
        if OPTUNA in by_contender:
            theirs = by_contender[OPTUNA]["time_to_target"]
            for contender in by_contender.keys() - {OPTUNA}:
                ours = by_contender[contender]["time_to_target"]
                finite = math.isfinite(ours) and math.isfinite(theirs)
                ratios[contender] = ours / theirs if finite else None
        summary[task] = {"target": target, "contenders": by_contender, "over_optuna": ratios}
    return summary


def report(runs: list[dict], budget: float) -> None:
    summary = summarise(runs, budget)
    (RESULTS / "multifidelity_real.json").write_text(
        json.dumps(
            {
                "budget": budget,
                "tolerance": TOLERANCE,
                "workers": WORKERS,
                "summary": summary,
                "runs": runs,
            }
        )
        + "\n"
    )
    lines = [
        f"# Multi-fidelity with real training ({WORKERS} workers, {budget:.0f} s of wall clock "
        "per run)",
        "",
        f"Target per task: the median over all runs of the best full-epoch validation accuracy, "
        f"less {TOLERANCE}. Time to target: wall seconds, median over seeds (inf = the median "
        "seed missed). Full trials: trials that trained all their epochs, median per run.",
        "",
        "| task | target | contender | seeds | time to target s | reached | best | full trials |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, s in summary.items():
        for contender, c in s["contenders"].items():
            seeds = sum(r["task"] == task and r["contender"] == contender for r in runs)
            lines.append(
                f"| {task} | {s['target']:.4f} | {contender} | {seeds} | "
                f"{c['time_to_target']:.1f} | {c['reached']} | {c['best']:.4f} | "
                f"{c['full_trials']:.0f} |"
            )
    lines += ["", f"Time to target over {OPTUNA}'s (below 1: tunelab first):", ""]
    for task, s in summary.items():
        for contender, ratio in s["over_optuna"].items():
            shown = "n/a (a median missed)" if ratio is None else f"{ratio:.2f}"
            lines.append(f"- {task}, {contender}: {shown}")
    (RESULTS / "multifidelity_real.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first..first+seeds-1")
    parser.add_argument("--tasks", nargs="+", default=["mnist1d-mlp", "mnist1d-cnn1d"],
                        choices=list(NET_TASKS))  # fmt: skip
    parser.add_argument("--minutes", type=float, default=3.0, help="wall-clock budget per run")
    parser.add_argument("--strategy", default="bayes", help="tunelab's strategy")
    parser.add_argument("--scheduler", default="asha", help="tunelab's scheduler")
    args = parser.parse_args()
    tunelab = f"tunelab {args.strategy} + {args.scheduler}"
    budget = 60 * args.minutes
    path = RESULTS / "multifidelity_real.json"
    kept = json.loads(path.read_text()) if path.exists() else {}
    runs = kept["runs"] if kept.get("budget") == budget else []  # one budget per results file
    for task in args.tasks:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for contender in (tunelab, OPTUNA):
                if contender == OPTUNA:
                    reached = run_optuna(task, seed, args.minutes)
                else:
                    reached = run_tunelab(task, seed, args.minutes, args.strategy, args.scheduler)
                runs = [
                    r
                    for r in runs
                    if (r["task"], r["contender"], r["seed"]) != (task, contender, seed)
                ]
                runs.append(
                    {"task": task, "contender": contender, "seed": seed, "reached": reached}
                )
                report(runs, budget)  # after every run, so a run cut short keeps what finished
                print(f"{task} {contender} seed {seed}: best {best_by(reached, budget)}, "
                      f"{len(reached)} full trials", file=sys.stderr, flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
