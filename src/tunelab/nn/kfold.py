"""A trial under k-fold cross-validation: its folds trained in turn, scored by their mean, and
stopped after any fold once it is hopeless.

The per-fold pruning rule: after fold ``k`` (counted from 1) the trial reports, at step ``k``,
the mean of each metric over its first ``k`` folds. A scheduler compares it with what other
trials reported at step ``k``: the median rule stops a trial whose mean after ``k`` folds is
worse than the median of the others' after ``k`` folds; ASHA's rungs are counted in folds. A
trial stopped after ``k`` folds is PRUNED with that mean as its value (its unrun folds are never
trained), so one bad fold of a good configuration costs less than one fold of a bad one costs
when every fold must run. Inside a fold nothing is reported to the scheduler: its epochs are
one training, judged once it ends (the folds' epoch curves are kept with the trial, see below).

What a trial keeps: its value is the mean over the folds it trained; the metrics also hold
``<metric>_std`` (the spread over folds) and ``folds`` (how many ran). The trial's user
attribute ``folds`` holds, per fold, its metrics and its per-epoch curves: a fold axis beside
the step axis. A scheduler that pauses (ASHA, Hyperband) pauses between folds; the folds done so
far are the checkpoint, and the resumed trial trains the next fold.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tunelab.trial import Decision, Trial

if TYPE_CHECKING:
    from tunelab.nn.runner import TrialRunner
    from tunelab.nn.splits import Fold

__all__ = ["cross_validate", "fold_scheduler_options"]


def cross_validate(
    runner: TrialRunner,
    trial: Trial,
    config: Mapping[str, Any],
    params: Mapping[str, Any],
    folds: Sequence[Fold],
) -> dict[str, float]:
    """Train ``trial``'s configuration on each fold in turn, reporting the running mean after
    each, until the folds run out or the scheduler stops or pauses the trial.

    Every fold trains with the trial's seed (the same initial weights and batch order, as
    scikit-learn's ``cross_val_score`` with a fixed ``random_state``), so the folds differ in
    their data alone.

    Returns:
        The mean of each metric over the folds trained, its ``_std`` and ``folds``.
    """
    done: list[dict[str, Any]] = list((trial.load_checkpoint() or {}).get("folds", []))
    trial.final_step = len(folds)
    for index in range(len(done), len(folds)):
        done.append(_train_fold(runner, trial, config, params, folds[index], index + 1))
        trial.report(index + 1, **_means(done))
        if trial.should_pause():
            trial.save_checkpoint({"folds": done})
            break
        if trial.should_stop():
            break
    trial.set_user_attr("folds", done)
    return _summary(done)


def fold_scheduler_options(name: str, folds: int) -> dict[str, Any]:
    """The options that make scheduler ``name`` judge a cross-validated trial by its folds: the
    median rule from fold 1 (a fold's score ends a whole training, not a noisy early epoch),
    ASHA's and Hyperband's rungs counted in folds (``folds`` in all)."""
    return {
        "median": {"warmup_steps": 1},
        "asha": {"max_resource": folds},
        "hyperband": {"max_resource": folds},
    }.get(name, {})


def _train_fold(
    runner: TrialRunner,
    trial: Trial,
    config: Mapping[str, Any],
    params: Mapping[str, Any],
    fold: Fold,
    number: int,
) -> dict[str, Any]:
    """One fold's training, its epochs kept apart from the trial's steps (the fold's own
    handle goes on at every epoch), its warnings passed on to the trial."""
    curve: dict[int, dict[str, float]] = {}

    def keep(_number: int, step: int, metrics: dict[str, float]) -> Decision:
        curve[step] = metrics
        return Decision.CONTINUE

    handle = trial.part(trial.dir / f"fold-{number}", keep)
    metrics = runner.run(handle, config, params, fold)
    trial.warnings.extend(f"fold {number}: {warning}" for warning in handle.warnings)
    return {"fold": number, "metrics": metrics, "curve": {str(s): m for s, m in curve.items()}}


def _means(done: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    names = done[0]["metrics"].keys()
    return {name: statistics.fmean(fold["metrics"][name] for fold in done) for name in names}


def _summary(done: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    means = _means(done)
    spread = {
        f"{name}_std": statistics.pstdev(fold["metrics"][name] for fold in done) for name in means
    }
    return {**means, **spread, "folds": float(len(done))}
