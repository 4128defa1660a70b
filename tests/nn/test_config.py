"""Configuration: defaults < fixed < params, and every value checked before the search."""

from __future__ import annotations

import pytest
from torch import nn

from tunelab.errors import SpecError
from tunelab.experiment import Experiment
from tunelab.nn import ConfigResolver, NetworkObjective, hyperparameters
from tunelab.space import Categorical, Float, Int, Space
from tunelab.spec import parse_spec

LR = {"lr": Float(1e-4, 0.1, log=True)}


def check(fixed=None, space=None, model="mlp"):
    ConfigResolver(model, fixed).check(Space({**LR, **(space or {})}))


def test_fixed_overrides_defaults_and_params_override_fixed():
    config, given = ConfigResolver("mlp", {"epochs": 5, "lr": 0.1}).resolve({"lr": 0.01})
    assert config == {**hyperparameters("mlp"), "epochs": 5, "lr": 0.01}
    assert given == {"epochs": 5, "lr": 0.01}


@pytest.mark.parametrize(
    "fixed, message",
    [
        ({"epochs": 0}, "fixed.epochs: must be an integer >= 1, got 0; raise it to 1"),
        ({"epochs": 2.5}, "fixed.epochs: must be an integer >= 1, got 2.5; give an integer >= 1"),
        ({"epochs": 10.0}, "fixed.epochs: must be an integer >= 1, got 10.0; write 10"),
        ({"batch_size": -8}, "fixed.batch_size: must be an integer >= 1, got -8; raise it to 1"),
        ({"lr": 0}, "fixed.lr: must be a number > 0, got 0; raise it above 0"),
        (
            {"lr": "1e-3"},
            "fixed.lr: must be a number > 0, got '1e-3'; YAML reads 1e-3 as text; write 0.001",
        ),
        (
            {"dropout": 1.0},
            r"fixed.dropout: must be a number in \[0, 1\), got 1.0; lower it below 1",
        ),
        (
            {"momentum": 1.5},
            r"fixed.momentum: must be a number in \[0, 1\], got 1.5; lower it to 1",
        ),
        ({"beta2": 1.0}, r"fixed.beta2: must be a number in \[0, 1\) or null, got 1.0"),
        ({"weight_decay": -0.1}, "fixed.weight_decay: must be a number >= 0 or null, got -0.1"),
        ({"label_smoothing": 1}, r"fixed.label_smoothing: must be a number in \[0, 1\), got 1"),
        ({"pct_start": 0.0}, r"fixed.pct_start: must be a number in \(0, 1\), got 0.0"),
        ({"warmup_epochs": -1}, "fixed.warmup_epochs: must be an integer >= 0, got -1"),
        ({"patience": -1}, "fixed.patience: must be an integer >= 0 or null, got -1"),
        ({"T_0": 0}, "fixed.T_0: must be an integer >= 1, got 0"),
        ({"huber_delta": 0.0}, "fixed.huber_delta: must be a number > 0, got 0.0"),
        ({"nesterov": "yes"}, "fixed.nesterov: must be true or false, got 'yes'; give true or"),
        ({"batch_norm": 1}, "fixed.batch_norm: must be true or false, got 1"),
        ({"epochs": None}, "fixed.epochs: must be an integer >= 1, got None"),
        ({"units": 0}, "fixed.units: must be an integer >= 1, got 0"),
        ({"units_2": 0}, "fixed.units_2: must be an integer >= 1, got 0"),
        ({"lr": float("inf")}, "fixed.lr: must be a number > 0, got inf"),
    ],
)
def test_a_fixed_value_the_training_refuses_is_named_with_its_limit(fixed, message):
    with pytest.raises(SpecError, match=f"^{message}"):
        check(fixed)


def test_values_at_their_limits_and_nulls_that_switch_a_knob_off_pass():
    check(
        {
            "epochs": 1,
            "n_layers": 0,  # a linear model
            "dropout": 0.0,
            "momentum": 1.0,
            "patience": None,
            "weight_decay": None,
            "warmup_epochs": 0,
            "batch_norm": True,
            "optimizer": "sgd",
        }
    )


@pytest.mark.parametrize(
    "space, field, message",
    [
        (
            {"epochs": Int(0, 5)},
            "space.epochs.low",
            "must be an integer >= 1, got 0; raise the bound to 1",
        ),
        (
            {"dropout": Float(0.0, 1.0)},
            "space.dropout.high",
            r"must be a number in \[0, 1\), got 1.0; lower the bound below 1",
        ),
        (
            {"lr": Float(0.0, 0.1)},
            "space.lr.low",
            "must be a number > 0, got 0.0; raise the bound above 0",
        ),
        (
            {"epochs": Float(1, 10)},
            "space.epochs",
            "must be an integer >= 1, but a float range gives fractions; use type: int",
        ),
        (
            {"batch_size": Categorical([0, 32])},
            "space.batch_size.choices",
            "must be an integer >= 1, got 0",
        ),
        ({"batch_norm": Int(0, 1)}, "space.batch_norm", "must be true or false, not a number"),
        (
            {"optimizer": Categorical(["sgd", "nadam"])},
            "space.optimizer.choices",
            "unknown optimizer 'nadam'; did you mean 'adam'",
        ),
        (
            {"optimizer": Int(0, 1)},
            "space.optimizer",
            "takes one of sgd, adam, .*; use type: categorical with choices",
        ),
    ],
)
def test_a_bound_or_choice_of_the_space_the_training_refuses_is_named(space, field, message):
    with pytest.raises(SpecError, match=message) as e:
        check(space=space)
    assert e.value.field == field


def test_a_builders_own_names_are_its_own_but_training_knobs_are_checked():
    def build(params, input_shape, n_outputs):
        return nn.Linear(input_shape[0], n_outputs)

    check({"dropout": 3, "units": "wide"}, {"n_layers": Float(0.5, 2.5)}, model=build)
    with pytest.raises(SpecError, match="^fixed.epochs: must be an integer >= 1"):
        check({"epochs": 0}, model=build)


def test_candidates_are_the_fixed_value_and_the_choices():
    resolver = ConfigResolver("mlp", {"loss": "cross_entropy"})
    space = Space({**LR, "monitor": Categorical(["val_loss", "val_accuracy"])})
    assert resolver.candidates(space, "loss") == [("fixed.loss", "cross_entropy")]
    assert resolver.candidates(space, "monitor") == [
        ("space.monitor.choices", "val_loss"),
        ("space.monitor.choices", "val_accuracy"),
    ]
    assert resolver.candidates(space, "lr") == []


# --- the objective checks the data too, and the experiment checks before storing anything --


@pytest.mark.parametrize(
    "fixed, space, field, message",
    [
        ({"loss": "mse"}, {}, "fixed.loss", "'mse' is not a classification loss; known: cross_en"),
        (
            {},
            {"monitor": Categorical(["val_loss", "val_r2"])},
            "space.monitor.choices",
            "'val_r2' is not reported; early stopping can watch train_loss, train_accuracy, lr, val_loss",
        ),
    ],
)
def test_the_objective_checks_what_depends_on_the_data(fixed, space, field, message):
    objective = NetworkObjective({"source": "iris"}, fixed=fixed)
    with pytest.raises(SpecError, match=message) as e:
        objective.check(Space({**LR, **space}))
    assert e.value.field == field


@pytest.mark.parametrize(
    "fixed, space, field",
    [
        ({"epochs": 0}, {}, "fixed.epochs"),
        ({}, {"dropout": {"type": "float", "low": 0.0, "high": 1.0}}, "space.dropout.high"),
        ({"target_scaling_typo": 1}, {}, "fixed.target_scaling_typo"),
    ],
)
def test_a_spec_the_training_refuses_fails_before_the_storage_is_created(
    tmp_path, fixed, space, field
):
    spec = parse_spec(
        {
            "name": "bad",
            "data": {"source": "iris"},
            "metric": {"name": "val_accuracy", "direction": "maximize"},
            "space": {"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}, **space},
            "fixed": fixed,
            "budget": {"trials": 1},
        }
    )
    with pytest.raises(SpecError) as e:
        Experiment.from_spec(spec, storage=f"sqlite:///{tmp_path}/tunelab.db")
    assert e.value.field == field
    assert not (tmp_path / "tunelab.db").exists()
