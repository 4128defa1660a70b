"""Tune a network you write yourself: a residual MLP on scikit-learn's digits.

tunelab calls ``build_model(params, input_shape, n_outputs)`` for every trial and does the rest:
training (optimizer, schedule, early stopping), reporting to the study, the final retrain on
train+validation, the test score and the saved model. ``params`` holds every hyperparameter of
the trial, so the builder may read names tunelab has never heard of (``width``, ``blocks``).

Run: python examples/custom_model.py
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

import tunelab
from tunelab import Categorical, Float, Int
from tunelab.nn import Callback, NetworkObjective, load_model


class Residual(nn.Module):
    """x + f(x): the block keeps the gradient path short however deep the stack gets."""

    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def build_model(params: dict, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    """The model of one trial. Must live at module level: worker processes import it by name,
    and ``load_model(folder, builder=build_model)`` rebuilds the saved model with it."""
    width = params["width"]
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(input_shape), width),
        *(Residual(width, params["dropout"]) for _ in range(params["blocks"])),
        nn.LayerNorm(width),
        nn.Linear(width, n_outputs),
    )


class PrintEpochs(Callback):
    """A callback of your own: it sees every epoch's logs (only in the trials' training)."""

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch % 5 == 0:
            print(
                f"  epoch {epoch:2d}: val_accuracy {logs['val_accuracy']:.3f}, lr {logs['lr']:.2g}"
            )


def main() -> None:
    objective = NetworkObjective(
        data={"source": "digits"},
        model=build_model,
        fixed={"epochs": 20, "batch_size": 64, "schedule": "cosine", "patience": 5},
        device="cpu",
        callbacks=[PrintEpochs()],
    )
    space = {
        "width": Categorical([64, 128, 256]),
        "blocks": Int(1, 3),
        "dropout": Float(0.0, 0.3),
        "lr": Float(3e-4, 3e-2, log=True),
        "optimizer": Categorical(["adam", "adamw"]),
    }
    study = tunelab.Study(
        "digits-resmlp",
        storage="sqlite:///tunelab.db",
        direction="maximize",
        metric="val_accuracy",
        scheduler="median",
        seed=0,
    )
    best = study.optimize(objective, space, trials=12, workers=2, reproducible=True)
    print(f"best trial {best.number}: val_accuracy {best.value:.4f} with {best.params}")

    out_dir = Path("tunelab-artifacts") / study.name / "best"
    result = objective.final_fit(best.params, seed=best.seed, out_dir=out_dir)
    print(f"test_accuracy {result['test_metrics']['test_accuracy']:.4f} (retrained, {out_dir})")

    model, preprocessing, meta = load_model(out_dir, builder=build_model)
    print(f"reloaded {meta['model']} with {sum(p.numel() for p in model.parameters())} weights")


if __name__ == "__main__":  # worker processes import this file; only the main one runs the study
    main()
