"""An Optuna script in the manner of Optuna's first examples (a function to minimise, no data):
the kind of curve is chosen first, and each kind suggests its own parameters (a conditional,
define-by-run space), with a parameter shared by both."""

import math
import os

import tunelab

N_TRIALS = int(os.environ.get("N_TRIALS", 100))


def objective(trial):
    offset = trial.suggest_float("offset", -1.0, 1.0)
    kind = trial.suggest_categorical("kind", ["bowl", "wave"])
    if kind == "bowl":
        x = trial.suggest_float("x", -10.0, 10.0)
        y = trial.suggest_int("y", -5, 5)
        return (x - 2.0) ** 2 + (y + 1) ** 2 + offset**2
    frequency = trial.suggest_float("frequency", 0.1, 10.0, log=True)
    return 2.0 + math.sin(frequency) + abs(offset)


if __name__ == "__main__":
    study = tunelab.create_study()
    study.optimize(objective, n_trials=N_TRIALS)
    print(f"Best value: {study.best_value} (params: {study.best_params})")
