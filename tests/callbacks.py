"""Training callbacks the tests hand to worker processes (importable, so spawn can unpickle them;
apart from tests.objectives, whose workers need not import torch)."""

from __future__ import annotations

import inspect
import os
import signal
from pathlib import Path

from tunelab.nn import Callback


class FusedEpochsByProcess(Callback):
    """Counts, in ``folder``, the epochs each process trained within a fused group."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def on_epoch_end(self, trainer, epoch, logs):
        if any(frame.function == "run_epochs_fused" for frame in inspect.stack()):
            with open(self.folder / f"fused-{os.getpid()}", "a") as out:
                out.write(".")


class KillProcessAtRate(Callback):
    """SIGKILLs its own process at the first epoch's end of a trial trained at ``lr`` (a worker
    dying mid-group, as from running out of memory)."""

    def __init__(self, lr: float) -> None:
        self.lr = lr

    def on_epoch_end(self, trainer, epoch, logs):
        if abs(trainer.lr - self.lr) < 1e-12:
            os.kill(os.getpid(), signal.SIGKILL)
