"""The Python API on a toy objective: python examples/quickstart.py"""

import tunelab
from tunelab import Categorical, Float, Int


def objective(trial):  # any code; report to enable early stopping
    p = trial.params
    score = 1 - (p["lr"] - 0.01) ** 2 - 0.01 * p["layers"] - (p["act"] == "tanh") * 0.05
    trial.report(1, score=score)
    return score


study = tunelab.Study(
    "demo", storage="sqlite:///demo.db", direction="maximize", metric="score", seed=0
)
best = study.optimize(
    objective,
    {"lr": Float(1e-4, 1e-1, log=True), "layers": Int(1, 4), "act": Categorical(["relu", "tanh"])},
    trials=30,
)
print(best.number, best.params, best.value)
