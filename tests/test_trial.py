"""The trial handle's checkpoints: what a resumed run finds after a crash at the wrong moment."""

import torch

from tunelab import Decision
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
