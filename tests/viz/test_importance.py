"""Hyperparameter importance on synthetic objectives whose important parameters are known."""

import math

import numpy as np
import pytest

from tests.viz import make_trial
from tunelab.trial import TrialState
from tunelab.viz import param_importances
from tunelab.viz.importance import main_effects


def synthetic(objective, count=200, seed=0):
    """``count`` COMPLETE trials at random points: x1, x3 in [0, 1), x2 in [0, 2 pi), and a
    categorical ``cat`` of three choices; the value is ``objective(params)``."""
    rng = np.random.default_rng(seed)
    trials = []
    for i in range(count):
        params = {
            "x1": float(rng.uniform()),
            "x2": float(rng.uniform(0, 2 * math.pi)),
            "x3": float(rng.uniform()),
            "cat": str(rng.choice(["a", "b", "c"])),
        }
        trials.append(make_trial(i, objective(params), params=params))
    return trials


def test_a_dominant_param_takes_most_of_the_mass_and_zero_effect_ones_almost_none():
    shares = param_importances(synthetic(lambda p: 10 * p["x1"] + math.sin(p["x2"])))
    assert list(shares)[:2] == ["x1", "x2"]
    assert shares["x1"] > 0.8 and shares["x2"] > shares["x3"]
    assert shares["x3"] < 0.03 and shares["cat"] < 0.03
    assert sum(shares.values()) == pytest.approx(1.0)


def test_a_categorical_that_matters_ranks_above_noise():
    effect = {"a": 0.0, "b": 1.0, "c": 2.0}
    shares = param_importances(synthetic(lambda p: p["x1"] + effect[p["cat"]]))
    assert list(shares)[:2] == ["cat", "x1"]
    assert shares["cat"] > 10 * max(shares["x2"], shares["x3"])


def test_importances_are_deterministic_for_a_seed():
    trials = synthetic(lambda p: p["x1"] + p["x3"] ** 2)
    assert param_importances(trials) == param_importances(trials)
    assert param_importances(trials, seed=1) != param_importances(trials, seed=0)


def test_an_inactive_conditional_param_is_a_value_of_its_own():
    """momentum exists only for sgd, and only momentum matters among sgd trials."""
    rng = np.random.default_rng(1)
    trials = []
    for i in range(120):
        params = {"optimizer": "sgd" if i % 2 else "adam", "noise": float(rng.uniform())}
        value = 0.5
        if params["optimizer"] == "sgd":
            params["momentum"] = float(rng.uniform())
            value = params["momentum"]
        trials.append(make_trial(i, value, params=params))
    shares = param_importances(trials)
    assert list(shares)[0] == "momentum" and shares["noise"] < 0.05


def test_only_completed_trials_with_values_count():
    trials = synthetic(lambda p: p["x1"], count=3)
    trials.append(make_trial(3, None, state=TrialState.FAILED, params={"x1": 9.0}))
    assert len(param_importances(trials)) == 4
    assert param_importances(trials[:2]) == {}


def test_main_effects_of_a_constant_metric_are_zero():
    X = np.random.default_rng(0).uniform(size=(20, 3))
    assert main_effects(X, np.ones(20), seed=0).tolist() == [0.0, 0.0, 0.0]
