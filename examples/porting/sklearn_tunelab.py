"""An Optuna script as Optuna's scikit-learn example has it (optuna-examples,
sklearn/sklearn_simple.py, MIT): which classifier, and that classifier's own hyperparameters,
chosen inside the objective (a conditional space), scored by 3-fold cross-validation on iris."""

import os

import tunelab
import sklearn.datasets
import sklearn.ensemble
import sklearn.model_selection
import sklearn.svm

N_TRIALS = int(os.environ.get("N_TRIALS", 100))


def objective(trial):
    x, y = sklearn.datasets.load_iris(return_X_y=True)

    classifier_name = trial.suggest_categorical("classifier", ["SVC", "RandomForest"])
    if classifier_name == "SVC":
        svc_c = trial.suggest_float("svc_c", 1e-10, 1e10, log=True)
        classifier_obj = sklearn.svm.SVC(C=svc_c, gamma="auto")
    else:
        rf_max_depth = trial.suggest_int("rf_max_depth", 2, 32, log=True)
        classifier_obj = sklearn.ensemble.RandomForestClassifier(
            max_depth=rf_max_depth, n_estimators=10
        )

    score = sklearn.model_selection.cross_val_score(classifier_obj, x, y, cv=3)
    return score.mean()


if __name__ == "__main__":
    study = tunelab.create_study(direction="maximize")
    study.optimize(objective, n_trials=N_TRIALS)
    print(study.best_trial)
