"""The trial handle's checkpoints: what a resumed run finds after a crash at the wrong moment."""

import pytest
import torch

from tunelab import Decision
from tunelab.errors import SpaceError
from tunelab.trial import Trial


def continuing(number, step, metrics):
    return Decision.CONTINUE


def test_a_crash_before_storage_records_a_new_checkpoint_resumes_from_the_old_one(tmp_path):
    """Resumed from step 1, the run saves step 3 and dies before storage records the pause: the
    next run is told to resume from step 1 again, and finds that checkpoint, not a restart."""
    first = Trial(0, {}, 0, tmp_path, continuing)
    first.report(1, acc=0.1)
    first.save_checkpoint({"w": torch.ones(1)})

    second = Trial(0, {}, 0, tmp_path, continuing, resumed_from=1)
    assert second.load_checkpoint()["w"].item() == 1.0
    second.report(3, acc=0.3)
    second.save_checkpoint({"w": torch.full((1,), 3.0)})  # ... then the process is killed

    third = Trial(0, {}, 0, tmp_path, continuing, resumed_from=1)
    assert third.load_checkpoint()["w"].item() == 1.0 and third.warnings == []
    third.report(3, acc=0.3)
    third.save_checkpoint({"w": torch.full((1,), 3.0)})
    fourth = Trial(0, {}, 0, tmp_path, continuing, resumed_from=3)
    assert fourth.load_checkpoint()["w"].item() == 3.0
    fourth.report(5, acc=0.5)
    fourth.save_checkpoint({"w": torch.full((1,), 5.0)})
    kept = sorted(p.name for p in tmp_path.glob("checkpoint*"))
    assert kept == ["checkpoint-step3.pt", "checkpoint-step5.pt"], "older ones are removed"


def suggesting(seed=3, params=None):
    from tunelab.trial import Decision, Trial

    reports = []

    def reporter(number, step, metrics):
        reports.append((step, metrics))
        return Decision.CONTINUE

    return Trial(0, params or {}, seed, "/tmp/t", reporter, metric="val_accuracy"), reports


def test_suggestions_are_drawn_in_range_kept_and_the_same_on_a_rerun():
    trial, _ = suggesting()
    x = trial.suggest_float("x", 1e-4, 1.0, log=True)
    n = trial.suggest_int("n", 1, 5)
    k = trial.suggest_categorical("k", ["a", "b"])
    assert 1e-4 <= x <= 1.0 and n in range(1, 6) and k in ("a", "b") and isinstance(n, int)
    assert trial.suggest_float("x", 1e-4, 1.0, log=True) == x  # asked again: the same answer
    rerun, _ = suggesting()
    assert (rerun.suggest_float("x", 1e-4, 1.0, log=True), rerun.suggest_int("n", 1, 5)) == (x, n)
    other, _ = suggesting(seed=4)
    assert other.suggest_float("x", 1e-4, 1.0, log=True) != x


def test_a_proposed_value_is_taken_unless_outside_the_suggested_range():
    trial, _ = suggesting(params={"x": 0.5, "y": 7.0})
    assert trial.suggest_float("x", 0.0, 1.0) == 0.5
    assert 0.0 <= trial.suggest_float("y", 0.0, 1.0) <= 1.0  # 7 is not in this range: drawn
    with pytest.raises(ValueError, match="suggested 'x' twice with different ranges"):
        trial.suggest_float("x", 0.0, 2.0)
    with pytest.raises(SpaceError, match="space.z.low: low must be <= high"):
        trial.suggest_int("z", 5, 1)


def test_optunas_report_and_should_prune():
    trial, reports = suggesting()
    trial.report(0.7, 3)  # Optuna's order: value, step; the study's metric
    trial.report(4, val_loss=0.2)
    assert reports == [(3, {"val_accuracy": 0.7}), (4, {"val_loss": 0.2})]
    assert trial.should_prune() is False
