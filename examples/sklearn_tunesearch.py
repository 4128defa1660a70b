"""The search of examples/sklearn_gridsearch.py with tunelab's TuneSearchCV: the same candidates,
proposed by Bayesian optimisation (a Gaussian process over the results so far), half the
grid's budget, and hopeless candidates stopped between folds by the median rule.

``TuneSearchCV`` answers like scikit-learn's searches (``best_params_``, ``best_score_``,
``cv_results_``, a refit ``best_estimator_``) and records every trial in a tunelab study
(``search.study_``), pruned ones with the fold they stopped after.

Run: python examples/sklearn_tunesearch.py
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from tunelab import Int, TrialState
from tunelab.sklearn import NeuralNetClassifier, TuneSearchCV

#: The grid example's 18 candidates. Epochs are 10 or 20 as there, written as an ordered number
#: (a step of 10) so that the Gaussian process sees 20 as more than 10; lists are categories.
SPACE = {
    "batch_size": [16, 32, 64],
    "epochs": Int(10, 20, step=10),
    "init": ["default", "xavier_uniform", "kaiming_normal"],
}


def main(space: Mapping[str, Any] = SPACE, n_trials: int = 9, cv: int = 3) -> dict[str, Any]:
    """Search ``space`` with ``n_trials`` candidates and ``cv`` folds, print and return the figures."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=0
    )
    start = time.perf_counter()
    search = TuneSearchCV(
        NeuralNetClassifier(random_state=0),
        space,
        n_trials=n_trials,
        cv=cv,
        strategy="bayes",
        scheduler="median",
        random_state=0,
    )
    search.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    pruned = [t for t in search.study_.trials if t.state is TrialState.PRUNED]
    figures = {
        "best_params": search.best_params_,
        "best_score": float(search.best_score_),
        "test_score": float(search.score(X_test, y_test)),
        "candidates": len(search.cv_results_["params"]),
        "pruned": len(pruned),
        "seconds": seconds,
    }
    print(
        f"TuneSearchCV (bayes, median pruning): {figures['candidates']} candidates x {cv} folds "
        f"({figures['pruned']} pruned) in {seconds:.1f} s"
    )
    print(f"best params: {figures['best_params']}")
    print(f"best {cv}-fold CV accuracy: {figures['best_score']:.4f}")
    print(
        f"test accuracy (held-out 20%, best params refit on the rest): {figures['test_score']:.4f}"
    )
    return figures


if __name__ == "__main__":
    torch.set_num_threads(1)  # tiny networks: a second thread only adds synchronisation
    main()
