"""tunelab's scikit-learn API: the estimators pass scikit-learn's own estimator checks and work
in its searches and pipelines; TuneSearchCV searches with tunelab and answers like GridSearchCV."""

from __future__ import annotations

import doctest
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.datasets import load_diabetes, load_digits, load_iris
from sklearn.model_selection import GridSearchCV, KFold, RandomizedSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from torch import nn

import tunelab.sklearn
from tunelab import Categorical, Float, Int, SpecError, TrialState, TunelabError
from tunelab.nn import hyperparameters
from tunelab.schedulers import MedianScheduler, Scheduler
from tunelab.sklearn import NeuralNetClassifier, NeuralNetRegressor, TuneSearchCV
from tunelab.trial import Decision

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# small and quick, yet enough to pass scikit-learn's score thresholds (0.83 accuracy on blobs,
# R^2 0.5 on its regression problem)
SMALL = {"epochs": 5, "units": 16, "n_layers": 1, "lr": 0.03, "random_state": 0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


# --- the estimators ---------------------------------------------------------------------------


# Every check scikit-learn has runs, and none is expected to fail. scikit-learn skips one by
# itself unless the environment sets SCIPY_ARRAY_API=1: check_array_api_input (it passes then).
@parametrize_with_checks([NeuralNetClassifier(**SMALL), NeuralNetRegressor(**SMALL)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_every_hyperparameter_of_the_model_is_a_parameter_that_round_trips_and_trains(iris):
    names = hyperparameters("mlp")
    net = NeuralNetClassifier(lr=0.01, units_2=8)
    net.set_params(**names)
    params = net.get_params()
    assert {name: params[name] for name in names} == names
    assert params["units_2"] == 8 and params["model"] == "mlp"
    copy = clone(net)
    assert copy.get_params() == params and copy is not net
    # loss is set to its meaning: its default, None, is refused when given (ConfigResolver)
    copy.set_params(epochs=2, loss="cross_entropy").fit(*iris)
    widths = [layer.out_features for layer in copy.model_ if isinstance(layer, nn.Linear)]
    assert widths == [64, 8, 3]


def test_get_params_lists_the_hyperparameters_given_and_the_rest_keep_the_models_defaults(iris):
    X, y = iris
    net = NeuralNetClassifier(epochs=3, random_state=0)
    assert net.get_params() == {
        "model": "mlp",
        "shape": None,
        "scaling": "standard",
        "validation_fraction": 0.1,
        "device": "auto",
        "random_state": 0,
        "epochs": 3,
    }
    net.fit(X, y)
    assert net.config_ == {**hyperparameters("mlp"), "epochs": 3}
    assert len(net.history_) == 3 and "units" not in net.get_params()


@pytest.mark.parametrize(
    ("hyper", "message"),
    [
        ({"lrr": 0.1}, r"^fixed\.lrr: unknown hyperparameter for model 'mlp'; did you mean 'lr'\?"),
        ({"epochs": 0}, r"^fixed\.epochs: must be an integer >= 1, got 0; raise it to 1$"),
        ({"dropout": 1.0}, r"^fixed\.dropout: must be a number in \[0, 1\), got 1.0"),
        ({"init": "xavier"}, r"^fixed\.init: unknown init 'xavier'; did you mean 'xavier_\w+'\?"),
        ({"optimizer": "adm"}, r"^fixed\.optimizer: unknown optimizer 'adm'; did you mean 'adam'"),
        ({"loss": "mse"}, r"^fixed\.loss: 'mse' is not a classification loss; known: cross_entr"),
    ],
)
def test_a_bad_hyperparameter_is_one_line_naming_the_field(iris, hyper, message):
    X, y = iris
    net = NeuralNetClassifier(**hyper)  # scikit-learn checks nothing before fit, nor do we
    with pytest.raises(SpecError, match=message):
        net.fit(X, y)


def test_a_regressor_refuses_a_classification_loss():
    X, y = load_diabetes(return_X_y=True)
    with pytest.raises(SpecError, match=r"^fixed\.loss: 'cross_entropy' is not a regression"):
        NeuralNetRegressor(loss="cross_entropy").fit(X, y)


def test_the_same_seed_gives_the_same_network_and_another_seed_another(iris):
    X, y = iris
    first = NeuralNetClassifier(epochs=3, dropout=0.2, random_state=7).fit(X, y)
    again = NeuralNetClassifier(epochs=3, dropout=0.2, random_state=7).fit(X, y)
    other = NeuralNetClassifier(epochs=3, dropout=0.2, random_state=8).fit(X, y)
    assert np.array_equal(first.predict_proba(X), again.predict_proba(X))
    assert not np.array_equal(first.predict_proba(X), other.predict_proba(X))


def test_string_labels_come_back_as_they_went_in(iris):
    X, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    net = NeuralNetClassifier(epochs=20, lr=0.01, random_state=0).fit(X, names)
    assert net.classes_.tolist() == ["setosa", "versicolor", "virginica"]
    assert set(net.predict(X)) <= set(names) and net.score(X, names) > 0.9
    assert net.predict_proba(X).shape == (150, 3)


def test_regression_targets_are_scaled_so_their_units_do_not_change_the_training():
    X, y = load_diabetes(return_X_y=True)
    net = NeuralNetRegressor(epochs=20, lr=0.01, random_state=0).fit(X, y)
    in_grams = NeuralNetRegressor(epochs=20, lr=0.01, random_state=0).fit(X, 1000 * y)
    assert net.score(X, y) > 0.4
    np.testing.assert_allclose(in_grams.predict(X), 1000 * net.predict(X), rtol=1e-3)
    scaled = net.preprocessing_.target_.transform(y.reshape(-1, 1))
    assert abs(scaled.mean()) < 1e-5 and abs(scaled.std() - 1) < 1e-5


def test_early_stopping_watches_a_stratified_validation_share(iris):
    X, y = iris
    net = NeuralNetClassifier(
        epochs=200, lr=0.05, patience=3, validation_fraction=0.2, random_state=0
    ).fit(X, y)
    assert len(net.history_) < 200 and "val_loss" in net.history_[-1]
    with pytest.raises(SpecError, match=r"^validation_fraction: must be a fraction in \(0, 1\)"):
        NeuralNetClassifier(patience=3, validation_fraction=0).fit(X, y)


def test_a_cnn_takes_rows_as_images_with_shape():
    X, y = load_digits(return_X_y=True)
    X, y = X[:300], y[:300]
    common = {"model": "cnn2d", "epochs": 2, "conv_layers": 1, "channels": 4, "random_state": 0}
    net = NeuralNetClassifier(shape=(1, 8, 8), **common).fit(X, y)
    assert net.predict(X[:5]).shape == (5,)
    assert any(isinstance(layer, nn.Conv2d) for layer in net.model_.modules())
    with pytest.raises(SpecError, match=r"^data\.shape: model 'cnn2d' needs samples of 2 or 3"):
        NeuralNetClassifier(**common).fit(X, y)
    with pytest.raises(SpecError, match=r"^shape: \[1, 8, 9\] holds 72 values, but X has 64"):
        NeuralNetClassifier(shape=(1, 8, 9), **common).fit(X, y)


def build_narrow(params, input_shape, n_outputs):
    """A builder of one's own, with a hyperparameter tunelab does not know (``width``)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(input_shape), params["width"]),
        nn.Tanh(),
        nn.Linear(params["width"], n_outputs),
    )


def test_a_builder_of_ones_own_gets_its_own_names_tuned_by_grid_search(iris):
    X, y = iris
    net = NeuralNetClassifier(model=build_narrow, epochs=10, lr=0.02, random_state=0)
    search = GridSearchCV(net, {"width": [2, 8]}, cv=3).fit(X, y)
    widths = [params["width"] for params in search.cv_results_["params"]]
    assert widths == [2, 8]
    assert search.best_estimator_.model_[1].out_features == search.best_params_["width"]


def test_grid_search_over_batch_size_epochs_and_init(iris):
    X, y = iris
    grid = {"batch_size": [16, 64], "epochs": [2, 4], "init": ["default", "xavier_uniform"]}
    search = GridSearchCV(NeuralNetClassifier(units=16, random_state=0), grid, cv=3).fit(X, y)
    assert len(search.cv_results_["params"]) == 8
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_.config_["init"] == search.best_params_["init"]


def test_randomized_search_and_a_pipeline(iris):
    X, y = iris
    pipe = make_pipeline(StandardScaler(), NeuralNetClassifier(scaling="none", **SMALL))
    distributions = {"neuralnetclassifier__lr": [0.01, 0.03], "neuralnetclassifier__units": [8, 16]}
    search = RandomizedSearchCV(pipe, distributions, n_iter=2, cv=3, random_state=0).fit(X, y)
    assert search.best_score_ > 0.6
    assert cross_val_score(
        NeuralNetRegressor(**SMALL), *load_diabetes(return_X_y=True), cv=2
    ).shape == (2,)


# --- TuneSearchCV -----------------------------------------------------------------------------


def test_cv_results_have_grid_search_cvs_columns_dtypes_and_scores(iris):
    X, y = iris
    net = NeuralNetClassifier(epochs=3, units=8, random_state=0)
    grid = {"init": ["default", "xavier_uniform"], "batch_size": [16, 32]}
    theirs = GridSearchCV(net, grid, cv=3, return_train_score=True).fit(X, y)
    ours = TuneSearchCV(
        net, grid, strategy="grid", n_trials=None, cv=3, return_train_score=True, random_state=0
    ).fit(X, y)
    assert list(ours.cv_results_) == list(theirs.cv_results_)
    for key in ours.cv_results_:
        if key.startswith("param_"):
            assert type(ours.cv_results_[key]) is np.ma.MaskedArray
            assert ours.cv_results_[key].dtype == theirs.cv_results_[key].dtype
    # the same candidates, folds and seed: the same scores, whatever the order they ran in
    row = {repr(sorted(p.items())): i for i, p in enumerate(theirs.cv_results_["params"])}
    for i, params in enumerate(ours.cv_results_["params"]):
        j = row[repr(sorted(params.items()))]
        for key in ("split0_test_score", "mean_test_score", "mean_train_score", "rank_test_score"):
            assert ours.cv_results_[key][i] == theirs.cv_results_[key][j], key
    assert ours.best_params_ == theirs.best_params_
    assert ours.best_score_ == pytest.approx(theirs.best_score_)


def test_cv_results_load_into_a_data_frame_like_grid_search_cvs(iris):
    pd = pytest.importorskip("pandas")
    X, y = iris
    net = NeuralNetClassifier(epochs=2, units=8, random_state=0)
    grid = {"lr": [0.01, 0.03]}
    theirs = pd.DataFrame(GridSearchCV(net, grid, cv=3).fit(X, y).cv_results_)
    ours = pd.DataFrame(TuneSearchCV(net, grid, strategy="grid", cv=3).fit(X, y).cv_results_)
    assert list(ours.columns) == list(theirs.columns)
    assert ours["param_lr"].tolist() == [0.01, 0.03]


def test_the_best_estimator_is_refit_on_all_rows_with_the_best_trials_seed(iris):
    X, y = iris
    search = TuneSearchCV(
        NeuralNetClassifier(epochs=5, units=8),
        {"lr": Float(1e-3, 1e-1, log=True), "batch_size": [16, 32]},
        n_trials=3,
        cv=3,
        scheduler="median",
        random_state=0,
    ).fit(X, y)
    assert search.study_.scheduler.warmup_steps == 1  # a fold ends a whole training: judge it
    best = search.best_estimator_
    trial = search.study_.trials[search.best_index_]
    assert search.best_params_ == trial.params and search.best_score_ == trial.value
    assert best.get_params()["lr"] == search.best_params_["lr"]
    assert best.random_state == trial.seed  # the estimator had none: each trial had its own
    scaler = best.preprocessing_.features_.scaler_
    np.testing.assert_allclose(scaler.mean_, X.mean(axis=0), rtol=1e-6)  # fitted on every row
    assert np.array_equal(search.predict(X), best.predict(X))
    assert search.classes_.tolist() == [0, 1, 2] and search.n_features_in_ == 4
    assert search.score(X, y) == best.score(X, y) and search.refit_time_ > 0
    assert np.array_equal(search.predict_proba(X), best.predict_proba(X))
    assert is_classifier(search)
    assert search.cv_results_["rank_test_score"][search.best_index_] == 1


def test_the_same_random_state_repeats_the_search(iris):
    X, y = iris
    space = {"lr": Float(1e-3, 1e-1, log=True), "units": Int(4, 16)}
    runs = [
        TuneSearchCV(NeuralNetClassifier(epochs=3), space, n_trials=3, cv=3, random_state=5)
        .fit(X, y)
        .cv_results_
        for _ in range(2)
    ]
    assert runs[0]["params"] == runs[1]["params"]
    assert np.array_equal(runs[0]["split2_test_score"], runs[1]["split2_test_score"])


def test_a_hopeless_trial_is_pruned_after_its_first_fold_by_the_median_rule(iris):
    X, y = iris
    search = TuneSearchCV(
        NeuralNetClassifier(epochs=10, units=16, random_state=0),
        {"lr": [0.05, 0.02, 1e-7]},
        strategy="grid",
        scheduler=MedianScheduler(warmup_steps=1, min_trials=2),
        cv=3,
    ).fit(X, y)
    trials = search.study_.trials
    assert [t.state for t in trials] == [
        TrialState.COMPLETE,
        TrialState.COMPLETE,
        TrialState.PRUNED,
    ]
    hopeless = trials[2]
    assert sorted(hopeless.intermediate) == [1] and hopeless.attrs["stopped"]["step"] == 1
    results = search.cv_results_
    assert np.isnan(results["split1_test_score"][2]) and np.isnan(results["split2_test_score"][2])
    first = results["split0_test_score"][2]
    assert results["mean_test_score"][2] == first == hopeless.value
    assert hopeless.intermediate[1] == {"mean_test_score": first}
    assert results["std_test_score"][2] == 0.0 and results["rank_test_score"][2] == 3
    assert not math.isnan(results["mean_fit_time"][2])


class StopTrialZero(Scheduler):
    """A scheduler with a script: trial 0 stops at its first report, every other goes on."""

    def __init__(self) -> None:
        pass

    def on_report(self, trial, step, study):
        return Decision.STOP if trial.number == 0 else Decision.CONTINUE


def test_a_pruned_trial_ranks_below_every_completed_one_whatever_its_mean(iris):
    X, y = iris
    search = TuneSearchCV(
        NeuralNetClassifier(epochs=10, units=16, random_state=0),
        {"lr": [0.05, 1e-7, 1e-6]},
        strategy="grid",
        scheduler=StopTrialZero(),
        cv=3,
    ).fit(X, y)
    results = search.cv_results_
    assert results["mean_test_score"][0] > results["mean_test_score"].max(
        initial=0, where=[0, 1, 1]
    )
    assert results["rank_test_score"][0] == 3
    assert search.best_index_ != 0 and search.study_.trials[0].state is TrialState.PRUNED


def test_a_pausing_scheduler_pauses_between_folds_and_counts_rungs_in_folds(iris):
    X, y = iris
    search = TuneSearchCV(
        NeuralNetClassifier(epochs=5, units=8, random_state=0),
        {"lr": Float(1e-5, 1e-1, log=True)},
        n_trials=6,
        cv=3,
        scheduler="asha",
        random_state=0,
    ).fit(X, y)
    assert search.study_.scheduler.max_resource == 3
    states = [t.state for t in search.study_.trials]
    assert TrialState.PAUSED in states and TrialState.COMPLETE in states
    ranks = search.cv_results_["rank_test_score"]
    for trial, rank in zip(search.study_.trials, ranks, strict=True):
        ran = sorted(trial.intermediate)
        assert ran == ([1, 2, 3] if trial.state is TrialState.COMPLETE else [1])
        if trial.state is TrialState.PAUSED:
            assert np.isnan(search.cv_results_["split2_test_score"][trial.number])
            assert rank > states.count(TrialState.COMPLETE)


def test_a_regressors_search_uses_plain_folds_and_r2(iris):
    X, y = load_diabetes(return_X_y=True)
    search = TuneSearchCV(
        NeuralNetRegressor(epochs=5, random_state=0),
        {"lr": [0.003, 0.01]},
        strategy="grid",
        cv=KFold(3, shuffle=True, random_state=0),
        scoring="neg_mean_absolute_error",
    ).fit(X, y)
    assert (search.cv_results_["mean_test_score"] < 0).all()
    assert is_regressor(search) and not hasattr(search, "predict_proba")
    assert search.score(X, y) == pytest.approx(-np.abs(search.predict(X) - y).mean())


def test_the_space_and_the_networks_hyperparameters_are_checked_before_any_trial(iris):
    X, y = iris
    net = NeuralNetClassifier(epochs=2)
    with pytest.raises(SpecError, match=r"^space\.epochs\.low: must be an integer >= 1, got 0"):
        TuneSearchCV(net, {"epochs": Int(0, 3)}).fit(X, y)
    with pytest.raises(SpecError, match=r"^space\.unitz: unknown hyperparameter .* 'units'\?"):
        TuneSearchCV(net, {"unitz": [8, 16]}).fit(X, y)
    with pytest.raises(SpecError, match=r"^fixed\.lr: must be a number > 0, got 0"):
        TuneSearchCV(NeuralNetClassifier(lr=0), {"units": [8]}).fit(X, y)
    with pytest.raises(SpecError, match=r"^space\.lr: expected a tunelab Float, Int or Categ"):
        TuneSearchCV(net, {"lr": "0.01"}).fit(X, y)


def test_a_named_study_is_recorded_in_storage_and_a_refit_is_refused(iris, tmp_path):
    X, y = iris
    url = f"sqlite:///{tmp_path}/search.db"
    search = TuneSearchCV(
        NeuralNetClassifier(epochs=2, units=8),
        {"optimizer": Categorical(["adam", "sgd"])},
        strategy="grid",
        cv=2,
        storage=url,
        study_name="iris-search",
    ).fit(X, y)
    stored = tunelab.Study("iris-search", storage=url, metric="mean_test_score").trials
    assert [t.value for t in stored] == search.cv_results_["mean_test_score"].tolist()
    with pytest.raises(SpecError, match=r"^study_name: study 'iris-search' already has 2 trials"):
        clone(search).fit(X, y)


def test_a_failed_trial_scores_nan_and_ranks_last_and_none_completed_is_an_error(iris):
    X, y = iris
    net = NeuralNetClassifier(model=build_narrow, epochs=2, random_state=0)
    search = TuneSearchCV(net, {"width": [4, -1]}, strategy="grid", cv=2).fit(X, y)
    assert [t.state for t in search.study_.trials] == [TrialState.COMPLETE, TrialState.FAILED]
    assert np.isnan(search.cv_results_["mean_test_score"][1])
    assert search.cv_results_["rank_test_score"].tolist() == [1, 2]
    net = NeuralNetClassifier(model=build_narrow, epochs=2)  # no width: every fit fails
    with pytest.raises(TunelabError, match=r"no trial completed \(2 ran: 2 failed.*KeyError"):
        TuneSearchCV(net, {"lr": [0.01, 0.02]}, strategy="grid", cv=2).fit(X, y)


# --- the examples and the docstrings ----------------------------------------------------------


def _example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_grid_search_example_runs_on_a_small_grid(capsys):
    grid = {"batch_size": [64], "epochs": [2], "init": ["default", "xavier_uniform"]}
    figures = _example("sklearn_gridsearch").main(grid=grid, cv=2)
    assert figures["best_params"]["init"] in grid["init"]
    assert 0.5 < figures["test_score"] <= 1 and 0.5 < figures["best_score"] <= 1
    assert "test accuracy" in capsys.readouterr().out


def test_the_tune_search_example_runs_on_a_small_budget(capsys):
    space = {"batch_size": [64], "epochs": Int(1, 2), "init": ["default", "xavier_uniform"]}
    figures = _example("sklearn_tunesearch").main(space=space, n_trials=2, cv=2)
    assert figures["best_params"]["epochs"] in (1, 2)
    assert 0.5 < figures["test_score"] <= 1 and 0.5 < figures["best_score"] <= 1
    assert "test accuracy" in capsys.readouterr().out


def test_the_docstring_examples_run():
    result = doctest.testmod(tunelab.sklearn, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
