"""scikit-learn's GridSearchCV over a tunelab network: batch size, epochs and weight initialiser of
an MLP on scikit-learn's digits, 3-fold cross-validated.

``NeuralNetClassifier`` is a scikit-learn estimator, so scikit-learn's own search tools take it as
they take any other; every hyperparameter of tunelab's MLP (``tunelab.nn.hyperparameters("mlp")``)
is a parameter they can set. The test split is cut off first and scored once, at the end.
``examples/sklearn_tunesearch.py`` runs the same search with tunelab's Bayesian optimisation and
half the budget.

Run: python examples/sklearn_gridsearch.py
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split

from tunelab.sklearn import NeuralNetClassifier

#: 3 x 2 x 3 = 18 candidates, 54 fits on 3 folds.
GRID = {
    "batch_size": [16, 32, 64],
    "epochs": [10, 20],
    "init": ["default", "xavier_uniform", "kaiming_normal"],
}


def main(grid: Mapping[str, Sequence[Any]] = GRID, cv: int = 3) -> dict[str, Any]:
    """Search ``grid`` with ``cv`` folds, print and return the figures."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=0
    )
    start = time.perf_counter()
    search = GridSearchCV(NeuralNetClassifier(random_state=0), grid, cv=cv)
    search.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    figures = {
        "best_params": search.best_params_,
        "best_score": float(search.best_score_),
        "test_score": float(search.score(X_test, y_test)),
        "candidates": len(search.cv_results_["params"]),
        "seconds": seconds,
    }
    print(f"GridSearchCV: {figures['candidates']} candidates x {cv} folds in {seconds:.1f} s")
    print(f"best params: {figures['best_params']}")
    print(f"best {cv}-fold CV accuracy: {figures['best_score']:.4f}")
    print(
        f"test accuracy (held-out 20%, best params refit on the rest): {figures['test_score']:.4f}"
    )
    return figures


if __name__ == "__main__":
    torch.set_num_threads(1)  # tiny networks: a second thread only adds synchronisation
    main()
