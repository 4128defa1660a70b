from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import tunelab
from tunelab.errors import SpecError, TrialDiverged, TunelabError
from tunelab.experiment import Experiment
from tunelab.nn import (
    Callback,
    HoldoutSplitter,
    NetworkObjective,
    Splits,
    hyperparameters,
    load_model,
    provider,
)
from tunelab.nn.data import Preprocessing, load_dataset, split_dataset
from tunelab.nn.models import build_mlp
from tunelab.nn.train import TRAINING_DEFAULTS, evaluate, fit, seed_everything
from tunelab.spec import load_spec
from tunelab.trial import Trial, TrialState

DIGITS_FAST = {"epochs": 5, "batch_size": 64, "units": 32, "lr": 1e-2}
CLASSIFICATION_METRICS = [
    "train_loss",
    "train_accuracy",
    "lr",
    "val_loss",
    "val_accuracy",
    "val_balanced_accuracy",
    "val_f1_macro",
    "val_log_loss",
]


def make_trial(tmp_path, reporter, params=None, seed=0, number=0):
    return Trial(number, params or {}, seed, tmp_path / f"trial-{number}", reporter)


class Spy(Callback):
    """What a trial's training was built with: the trainer, its model and optimizer."""

    def on_train_begin(self, trainer):
        self.trainer = trainer
        self.group = trainer.optimizer.param_groups[0]
        self.weights = [p.detach().clone() for p in trainer.model.parameters()]


@pytest.fixture
def digits_objective():
    return NetworkObjective({"source": "digits"}, fixed=DIGITS_FAST, device="cpu")


def test_defaults_cover_the_model_and_training_knobs():
    defaults = hyperparameters("mlp")
    assert defaults["lr"] == 1e-3 and defaults["epochs"] == 20
    assert defaults["activation"] == "relu" and defaults["optimizer"] == "adam"
    assert defaults["init"] == "default" and defaults["patience"] is None
    assert set(TRAINING_DEFAULTS) < set(defaults)
    assert {"conv_layers", "channels", "kernel_size", "pool"} < set(hyperparameters("cnn1d"))
    assert hyperparameters("cnn2d") == hyperparameters("cnn1d")


def test_constructor_only_stores_arguments():
    objective = NetworkObjective({"source": "no-such-file.csv"}, model="mlp", split_seed=3)
    assert objective.data == {"source": "no-such-file.csv"} and objective.split_seed == 3


def test_digits_reaches_high_accuracy_and_reports_every_epoch(
    tmp_path, digits_objective, make_reporter
):
    reporter = make_reporter()
    trial = make_trial(tmp_path, reporter, params={"n_layers": 1}, number=4)
    result = digits_objective(trial)
    assert result["val_accuracy"] >= 0.9
    assert reporter.steps == [1, 2, 3, 4, 5]
    assert all(number == 4 for number, _, _ in reporter.calls)
    assert reporter.calls[-1][2] == result
    assert list(result) == CLASSIFICATION_METRICS


def test_trial_params_override_fixed_which_override_defaults(
    tmp_path, digits_objective, make_reporter
):
    reporter = make_reporter()
    digits_objective(make_trial(tmp_path, reporter, params={"epochs": 2}))
    assert reporter.steps == [1, 2]


def test_scheduler_stop_ends_training(tmp_path, digits_objective, make_reporter):
    reporter = make_reporter(stop_at=2)
    trial = make_trial(tmp_path, reporter)
    digits_objective(trial)
    assert reporter.steps == [1, 2]
    assert trial.should_stop()


def test_same_trial_seed_gives_the_same_result(tmp_path, digits_objective, make_reporter):
    params = {"dropout": 0.2, "epochs": 2}
    first = digits_objective(make_trial(tmp_path, make_reporter(), params, seed=1))
    again = digits_objective(make_trial(tmp_path, make_reporter(), params, seed=1))
    other = digits_objective(make_trial(tmp_path, make_reporter(), params, seed=2))
    assert first == again != other


def test_same_cnn_trial_twice_gives_the_same_metrics(tmp_path, make_reporter):
    objective = NetworkObjective(
        {"source": "digits", "shape": [1, 8, 8]},
        model="cnn2d",
        fixed={"epochs": 2, "channels": 8, "batch_norm": True, "dropout": 0.3},
        device="cpu",
    )
    first = objective(make_trial(tmp_path, make_reporter(), seed=5))
    again = objective(make_trial(tmp_path, make_reporter(), seed=5))
    assert first == again


def test_trial_seed_sets_the_initial_weights(tmp_path, digits_objective, make_reporter):
    # lr=0 keeps the weights where they started, so the loss depends on the initialisation only
    params = {"lr": 0.0, "epochs": 1}
    first = digits_objective(make_trial(tmp_path, make_reporter(), params, seed=1))
    other = digits_objective(make_trial(tmp_path, make_reporter(), params, seed=2))
    assert first["val_loss"] != other["val_loss"]


def test_trial_is_trained_on_train_scaled_with_train_statistics(
    tmp_path, digits_objective, make_reporter
):
    params = {"epochs": 2}
    result = digits_objective(make_trial(tmp_path, make_reporter(), params, seed=3))

    ds = load_dataset("digits")
    train, val, _ = split_dataset(ds, test_size=0.2, holdout=0.2, seed=0)
    prep = Preprocessing("standard", ds.shape).fit(train)
    config = {**hyperparameters(), **DIGITS_FAST, **params}
    seed_everything(3)
    model = build_mlp(64, 10, config["n_layers"], config["units"])
    history = fit(
        model,
        prep.transform_split(train),
        prep.transform_split(val),
        task="classification",
        epochs=2,
        batch_size=config["batch_size"],
        lr=config["lr"],
        seed=3,
        device="cpu",
    )
    assert result == history[-1]


def test_pickle_carries_the_data_and_keeps_behaviour(
    tmp_path, digits_objective, make_reporter, monkeypatch
):
    params = {"epochs": 2}
    payload = pickle.dumps(digits_objective)  # loads first: a worker gets the data with it
    before = digits_objective(make_trial(tmp_path, make_reporter(), params))

    def no_second_load(*args, **kwargs):
        raise AssertionError("the data was loaded again")

    monkeypatch.setattr(provider, "load_dataset", no_second_load)
    clone = pickle.loads(payload)
    assert clone(make_trial(tmp_path, make_reporter(), params)) == before


# --- every hyperparameter reaches the training -----------------------------------------------


def spied(tmp_path, make_reporter, fixed, data=None, model="mlp"):
    spy = Spy()
    objective = NetworkObjective(
        data or {"source": "iris"},
        model=model,
        fixed={"epochs": 1, **fixed},
        device="cpu",
        callbacks=[spy],
    )
    result = objective(make_trial(tmp_path, make_reporter()))
    return spy, result


@pytest.mark.parametrize(
    "fixed, expected",
    [
        (
            {"optimizer": "sgd", "momentum": 0.8, "nesterov": True, "weight_decay": 1e-3},
            {"momentum": 0.8, "nesterov": True, "weight_decay": 1e-3},
        ),
        ({"optimizer": "adamw", "beta1": 0.7, "eps": 1e-5}, {"betas": (0.7, 0.999), "eps": 1e-5}),
        ({"optimizer": "rmsprop", "rho": 0.8}, {"alpha": 0.8}),
        ({"optimizer": "adadelta", "rho": 0.5, "lr": 1.0}, {"rho": 0.5, "lr": 1.0}),
        ({"optimizer": "adagrad", "lr": 0.02}, {"lr": 0.02}),
        ({"lr": 0.01, "batch_size": 64, "reference_batch": 16}, {"lr": 0.04}),
    ],
)
def test_optimizer_knobs_reach_the_torch_optimizer(tmp_path, make_reporter, fixed, expected):
    spy, result = spied(tmp_path, make_reporter, fixed)
    assert {name: spy.group[name] for name in expected} == expected
    assert result["lr"] == expected.get("lr", result["lr"])


def test_architecture_knobs_reach_the_model(tmp_path, make_reporter):
    fixed = {"n_layers": 3, "units": 16, "units_2": 24, "batch_norm": True, "dropout": 0.25}
    spy, _ = spied(tmp_path, make_reporter, {**fixed, "activation": "gelu"})
    model = spy.trainer.model
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [lin.out_features for lin in linears] == [16, 24, 16, 3]
    kinds = {type(m) for m in model}
    from tunelab.nn.models import Dropout

    assert {nn.BatchNorm1d, Dropout, nn.GELU} <= kinds


@pytest.mark.usefixtures("mnist1d_cache")
def test_cnn_knobs_reach_the_model(tmp_path, make_reporter):
    fixed = {"conv_layers": 3, "channels": 4, "channels_3": 6, "kernel_size": 5, "pool": "avg"}
    spy, result = spied(tmp_path, make_reporter, fixed, {"source": "mnist1d"}, "cnn1d")
    convs = [m for m in spy.trainer.model if isinstance(m, nn.Conv1d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(4, (5,)), (4, (5,)), (6, (5,))]
    assert sum(isinstance(m, nn.AvgPool1d) for m in spy.trainer.model) == 3
    assert list(result) == CLASSIFICATION_METRICS


def test_cnn2d_reshapes_flat_rows_into_images(tmp_path, make_reporter):
    fixed, data = {"channels": 4, "lr": 0.01}, {"source": "digits", "shape": [1, 8, 8]}
    spy, result = spied(tmp_path, make_reporter, fixed, data, "cnn2d")
    assert any(isinstance(m, nn.Conv2d) for m in spy.trainer.model)
    assert result["val_accuracy"] > 0.5


def test_init_reaches_every_layer(tmp_path, make_reporter):
    with pytest.warns(UserWarning, match="symmetry"):
        spy, _ = spied(tmp_path, make_reporter, {"init": "zeros", "lr": 0.0})
    assert all(not w.any() for w in spy.weights)
    spy, _ = spied(tmp_path, make_reporter, {"init": "normal", "init_scale": 2.0, "units": 256})
    assert spy.weights[2].std().item() == pytest.approx(2.0, rel=0.05)  # the 256 x 256 layer


def test_loss_knobs_reach_the_loss(tmp_path, make_reporter):
    spy, _ = spied(tmp_path, make_reporter, {"label_smoothing": 0.2})
    assert spy.trainer.loss_fn.label_smoothing == 0.2
    spy, _ = spied(
        tmp_path, make_reporter, {"loss": "huber", "huber_delta": 3.0}, {"source": "diabetes"}
    )
    assert isinstance(spy.trainer.loss_fn, nn.HuberLoss) and spy.trainer.loss_fn.delta == 3.0


def test_schedule_knobs_reach_the_reported_learning_rates(tmp_path, make_reporter):
    reporter = make_reporter()
    objective = NetworkObjective({"source": "iris"}, fixed={"epochs": 4, "lr": 0.1}, device="cpu")
    params = {"schedule": "step", "step_size": 1, "gamma": 0.5, "warmup_epochs": 1}
    objective(make_trial(tmp_path, reporter, params))
    assert [metrics["lr"] for _, _, metrics in reporter.calls] == pytest.approx(
        [0.05, 0.1, 0.05, 0.025]
    )


def test_per_layer_units_beyond_n_layers_fail_with_the_condition_to_add(tmp_path, make_reporter):
    objective = NetworkObjective({"source": "iris"}, fixed={"epochs": 1}, device="cpu")
    with pytest.raises(
        SpecError, match=r"is given but n_layers is 2; .*when: \{n_layers: \{ge: 3\}\}"
    ) as e:
        objective(make_trial(tmp_path, make_reporter(), {"units_3": 8}))
    assert e.value.field == "space.units_3"


# --- early stopping from the configuration ---------------------------------------------------


def test_patience_stops_early_and_returns_the_best_epochs_metrics(tmp_path, make_reporter):
    reporter = make_reporter()
    fixed = {"epochs": 60, "lr": 0.05, "patience": 3, "monitor": "val_loss", "units": 64}
    objective = NetworkObjective({"source": "iris"}, fixed=fixed, device="cpu")
    result = objective(make_trial(tmp_path, reporter))
    reported = [metrics for _, _, metrics in reporter.calls]
    assert len(reported) < 60
    best = min(range(len(reported)), key=lambda i: reported[i]["val_loss"])
    assert len(reported) == best + 1 + 3  # three epochs without improvement after the best
    assert result == reported[best]


def test_a_monitor_that_is_not_reported_is_named(tmp_path, make_reporter):
    objective = NetworkObjective(
        {"source": "iris"}, fixed={"patience": 2, "monitor": "val_r2"}, device="cpu"
    )
    with pytest.raises(SpecError, match="'val_r2' is not reported; early stopping can watch") as e:
        objective(make_trial(tmp_path, make_reporter()))
    assert e.value.field == "fixed.monitor"


def test_final_fit_with_early_stopping_retrains_for_the_trials_best_epoch(tmp_path, make_reporter):
    fixed = {"epochs": 60, "lr": 0.05, "patience": 3}
    objective = NetworkObjective({"source": "iris"}, fixed=fixed, device="cpu")
    reporter = make_reporter()
    result = objective(make_trial(tmp_path, reporter, seed=4))
    best_epoch = next(step for _, step, metrics in reporter.calls if metrics == result)
    objective.final_fit({}, seed=4, out_dir=tmp_path / "best")
    meta = json.loads((tmp_path / "best" / "model.json").read_text())
    assert meta["config"]["epochs"] == best_epoch < 60


# --- regression ------------------------------------------------------------------------------


def test_regression_objective_reports_metrics_in_the_targets_units(tmp_path, make_reporter):
    sgd = {"epochs": 20, "lr": 0.01, "optimizer": "sgd", "momentum": 0.9, "units": 32}
    objective = NetworkObjective({"source": "diabetes"}, fixed=sgd, device="cpu")
    result = objective(make_trial(tmp_path, make_reporter()))
    assert list(result) == ["train_loss", "lr", "val_loss", "val_mse", "val_mae", "val_r2"]
    assert result["val_loss"] < 1.0 < 1000 < result["val_mse"]  # scaled loss, MSE in units
    assert result["val_r2"] > 0.3
    # why targets are standardised by default: the same SGD on raw targets (MSE ~ 3e4) explodes
    raw = NetworkObjective({"source": "diabetes", "target_scaling": "none"}, fixed=sgd)
    with pytest.raises(TrialDiverged, match="^diverged"):
        raw(make_trial(tmp_path, make_reporter()))
    adam = NetworkObjective(
        {"source": "diabetes", "target_scaling": "none"}, fixed={"epochs": 2}, device="cpu"
    )(make_trial(tmp_path, make_reporter()))
    assert adam["val_loss"] == pytest.approx(adam["val_mse"], rel=1e-5)  # the loss is in units


def test_target_scaling_of_a_classification_is_refused(tmp_path, make_reporter):
    objective = NetworkObjective({"source": "iris", "target_scaling": "standard"}, device="cpu")
    with pytest.raises(SpecError, match="scales regression targets") as e:
        objective(make_trial(tmp_path, make_reporter()))
    assert e.value.field == "data.target_scaling"


@pytest.mark.parametrize("scaling", ["minmax", "none"])
def test_feature_scaling_is_chosen_by_the_data_section(tmp_path, scaling):
    objective = NetworkObjective({"source": "wine", "scaling": scaling}, fixed={"epochs": 1})
    objective.final_fit({}, seed=0, out_dir=tmp_path)
    state = json.loads((tmp_path / "preprocessing.json").read_text())
    assert state["features"]["kind"] == scaling


@pytest.mark.parametrize(
    "source, expected",
    [
        ("iris", CLASSIFICATION_METRICS),
        ("diabetes", ["train_loss", "lr", "val_loss", "val_mse", "val_mae", "val_r2"]),
    ],
)
def test_metric_names_are_what_a_trial_returns(tmp_path, make_reporter, source, expected):
    objective = NetworkObjective({"source": source}, fixed={"epochs": 1}, device="cpu")
    assert objective.metric_names() == expected
    assert list(objective(make_trial(tmp_path, make_reporter()))) == expected


def test_csv_source_resolves_against_base_dir(tmp_path, make_reporter):
    rng = np.random.default_rng(0)
    rows = ["a,b,label"] + [
        f"{x:.3f},{-x:.3f},{'big' if x > 0 else 'small'}" for x in rng.normal(size=60)
    ]
    (tmp_path / "pts.csv").write_text("\n".join(rows))
    data = {"source": "pts.csv", "target": "label", "base_dir": str(tmp_path), "holdout": 0.25}
    objective = NetworkObjective(data, fixed={"epochs": 20, "lr": 1e-2}, device="cpu")
    assert objective(make_trial(tmp_path, make_reporter()))["val_accuracy"] >= 0.9


# --- names and values are checked before training --------------------------------------------


def test_metric_names_load_the_data_so_a_missing_file_fails_early(tmp_path):
    objective = NetworkObjective({"source": "missing.csv", "base_dir": tmp_path})
    with pytest.raises(SpecError, match="neither a builtin data set nor an existing file"):
        objective.metric_names()


def test_check_names_catches_typos_before_training():
    objective = NetworkObjective({"source": "no-such-file.csv"})
    objective.check_names(["lr", "units", "units_2", "dropout"])  # no data is loaded to check
    with pytest.raises(
        SpecError,
        match="unknown hyperparameter for model 'mlp'; did you mean 'units'\\?.*known: n_layers",
    ) as e:
        objective.check_names(["lr", "unit"])
    assert e.value.field == "space.unit"
    cnn = NetworkObjective({"source": "no-such-file.csv"}, model="cnn1d")
    cnn.check_names(["channels_2", "kernel_size"])
    with pytest.raises(SpecError, match="units_<i> and channels_<i> set the width"):
        cnn.check_names(["channel"])
    with pytest.raises(SpecError) as e:
        objective.check_names(["channels_2"])  # an MLP has no channels
    assert e.value.field == "space.channels_2"


def test_check_names_checks_fixed_values_and_names_their_section():
    objective = NetworkObjective({"source": "iris"}, fixed={"schedule": "cosin"})
    with pytest.raises(SpecError, match="unknown schedule 'cosin'; did you mean 'cosine'") as e:
        objective.check_names(["lr"])
    assert e.value.field == "fixed.schedule"
    objective = NetworkObjective({"source": "iris"}, fixed={"epoch": 3})
    with pytest.raises(SpecError, match="did you mean 'epochs'") as e:
        objective.check_names(["lr"])
    assert e.value.field == "fixed.epoch"


@pytest.mark.parametrize(
    "model, data",
    [("cnn2d", {"source": "digits"}), ("cnn1d", {"source": "digits", "shape": [1, 8, 8]})],
)
def test_a_cnn_that_cannot_take_the_datas_shape_fails_before_the_search(model, data):
    objective = NetworkObjective(data, model=model)
    with pytest.raises(SpecError, match="set data.shape, e.g.") as e:
        objective.metric_names()  # what a spec runs before creating the study
    assert e.value.field == "data.shape"


def test_unknown_choice_in_a_trial_names_the_space(tmp_path, make_reporter):
    objective = NetworkObjective({"source": "iris"})
    with pytest.raises(SpecError, match="unknown optimizer 'nadam'") as e:
        objective(make_trial(tmp_path, make_reporter(), {"optimizer": "nadam"}))
    assert e.value.field == "space.optimizer"


def test_unknown_model_is_rejected():
    with pytest.raises(
        SpecError, match="unknown model 'cnn'; did you mean 'cnn[12]d'.*builtins: mlp, cnn1d"
    ) as e:
        NetworkObjective({"source": "digits"}, model="cnn").check_names(["lr"])
    assert e.value.field == "model"


# --- final fit and saving --------------------------------------------------------------------


def test_final_fit_saves_a_model_that_load_model_restores(tmp_path, digits_objective):
    out = tmp_path / "best"
    result = digits_objective.final_fit({"n_layers": 1}, seed=0, out_dir=out, epochs=3)
    assert set(result["artifacts"]) == {"model.pt", "model.json", "preprocessing.json"}
    assert all((out / name).is_file() for name in result["artifacts"])
    assert result["test_metrics"]["test_accuracy"] >= 0.9
    assert list(result["test_metrics"]) == [
        name.replace("val_", "test_") for name in CLASSIFICATION_METRICS[3:]
    ]

    meta = json.loads((out / "model.json").read_text())
    assert meta["model"] == "mlp" and meta["task"] == "classification"
    assert (meta["input_shape"], meta["n_outputs"]) == ([64], 10)
    assert meta["classes"] == list(range(10))
    assert meta["config"] == {**hyperparameters(), **DIGITS_FAST, "n_layers": 1, "epochs": 3}

    model, prep, loaded_meta = load_model(out)
    assert loaded_meta == meta and not model.training
    _, _, test = split_dataset(load_dataset("digits"), test_size=0.2, holdout=0.2, seed=0)
    rescored = evaluate(model, prep.transform_split(test), "classification", prefix="test")
    assert rescored == result["test_metrics"]


def test_final_fit_scales_with_train_and_validation_only(tmp_path, digits_objective):
    digits_objective.final_fit({}, seed=0, out_dir=tmp_path, epochs=1)
    train, val, test = split_dataset(load_dataset("digits"), test_size=0.2, holdout=0.2, seed=0)
    state = json.loads((tmp_path / "preprocessing.json").read_text())
    mean = state["features"]["offset"]
    np.testing.assert_allclose(mean, np.concatenate([train.X, val.X]).mean(axis=0), atol=1e-5)
    assert not np.allclose(mean, train.X.mean(axis=0), atol=1e-3)
    everything = np.concatenate([train.X, val.X, test.X]).mean(axis=0)
    assert not np.allclose(mean, everything, atol=1e-3)


def test_a_saved_regression_predicts_in_the_targets_units(tmp_path):
    objective = NetworkObjective({"source": "diabetes"}, fixed={"epochs": 10, "lr": 3e-3})
    result = objective.final_fit({}, seed=0, out_dir=tmp_path)
    model, prep, _ = load_model(tmp_path)
    _, _, test = split_dataset(load_dataset("diabetes"), 0.2, 0.2, seed=0)
    with torch.no_grad():
        outputs = model(torch.from_numpy(prep.transform(test.X))).numpy()
        values = prep.inverse_transform_target(outputs)
    mse = float(np.mean((values - test.y) ** 2))
    assert mse == pytest.approx(result["test_metrics"]["test_mse"], rel=1e-4)


# --- your own model --------------------------------------------------------------------------

USER_MODELS = '''
from torch import nn


def build_model(params, input_shape, n_outputs):
    """A one-hidden-layer net whose width is a hyperparameter only this module knows."""
    width = params["width"]
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[-1], width), nn.Tanh(),
                         nn.Linear(width, n_outputs))
'''


def test_a_user_model_from_a_spec_searches_finalises_and_reloads(tmp_path):
    (tmp_path / "my_models.py").write_text(USER_MODELS)
    spec = {
        "name": "own-model",
        "data": {"source": "iris"},
        "model": "my_models.py:build_model",  # relative to the spec's folder
        "metric": {"name": "val_accuracy", "direction": "maximize"},
        "space": {"width": {"type": "categorical", "choices": [8, 16]}},
        "fixed": {"epochs": 15, "lr": 0.02, "init": "xavier_uniform", "patience": 5},
        "budget": {"trials": 2},
        "storage": f"sqlite:///{tmp_path}/t.db",
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    experiment = Experiment.from_spec(load_spec(tmp_path / "spec.yaml"))
    best = experiment.search()
    assert {t.state for t in experiment.study.trials} == {TrialState.COMPLETE}
    assert best.params["width"] in (8, 16) and best.value > 0.6
    result = experiment.finalize()
    out = tmp_path / "tunelab-artifacts" / "own-model" / "best"
    with pytest.raises(TunelabError, match="names code to import .*trust_code=True"):
        load_model(out)  # a folder never runs code by being loaded, unless asked
    model, prep, meta = load_model(out, trust_code=True)
    assert meta["model"] == f"{tmp_path / 'my_models.py'}:build_model"
    assert meta["params"]["width"] == best.params["width"] and model[1].out_features in (8, 16)
    _, _, test = split_dataset(load_dataset("iris"), 0.2, 0.2, seed=0)
    rescored = evaluate(model, prep.transform_split(test), "classification", prefix="test")
    assert rescored == result["test_metrics"]


def test_a_user_model_gets_every_parameter_and_any_names(tmp_path, make_reporter):
    seen = {}

    def build(params, input_shape, n_outputs):
        seen.update(params=params, shape=input_shape, outputs=n_outputs)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, n_outputs))

    objective = NetworkObjective(
        {"source": "digits", "shape": [1, 8, 8]}, model=build, fixed={"epochs": 1, "lr": 0.01}
    )
    objective.check_names(["anything_goes", "lr"])
    objective(make_trial(tmp_path, make_reporter(), {"anything_goes": 3}))
    assert seen == {
        "params": {"epochs": 1, "lr": 0.01, "anything_goes": 3},
        "shape": (1, 8, 8),
        "outputs": 10,
    }
    objective.final_fit({"anything_goes": 3}, seed=0, out_dir=tmp_path / "best")
    model, _, meta = load_model(tmp_path / "best", builder=build)
    assert meta["model"] == f"{build.__module__}:{build.__qualname__}"  # load_model got `build`
    assert isinstance(model, nn.Sequential)


def test_a_user_model_must_return_a_module(tmp_path, make_reporter):
    objective = NetworkObjective({"source": "iris"}, model=lambda p, s, n: "not a module")
    with pytest.raises(SpecError, match="returned str, not a torch nn.Module") as e:
        objective(make_trial(tmp_path, make_reporter()))
    assert e.value.field == "model"


# --- a divergent configuration in a real study -----------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_lr_10_ends_as_a_failed_trial_that_says_diverged(tmp_path, optimizer):
    study = tunelab.Study(
        f"diverge-{optimizer}",
        storage=f"sqlite:///{tmp_path}/d.db",
        metric="val_accuracy",
        strategy="manual",
        seed=0,
    )
    study.enqueue({"lr": 10.0, "optimizer": optimizer})
    study.enqueue({"lr": 0.01, "optimizer": optimizer})
    objective = NetworkObjective({"source": "digits"}, fixed={"epochs": 3}, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning leaks out of a diverging fit either
        best = study.optimize(
            objective,
            {
                "lr": tunelab.Float(1e-4, 10.0, log=True),
                "optimizer": tunelab.Categorical(["sgd", "adam"]),
            },
        )
    diverged, healthy = study.trials
    assert diverged.state is TrialState.FAILED and diverged.error.startswith("diverged")
    assert "Traceback" not in diverged.error
    assert healthy.state is TrialState.COMPLETE and best.number == healthy.number


# --- the parts ---------------------------------------------------------------------------------


def test_the_splitter_is_injectable(tmp_path, make_reporter):
    seen = []

    class Recording(HoldoutSplitter):
        def split(self, dataset):
            seen.append(dataset.name)
            return super().split(dataset)

    objective = NetworkObjective(
        {"source": "iris"}, fixed={"epochs": 1}, device="cpu", splitter=Recording(0.3, 0.3, 1)
    )
    objective(make_trial(tmp_path, make_reporter()))
    objective.final_fit({}, seed=0, out_dir=tmp_path / "best")
    assert seen == ["iris"]  # split once, for the trial and the final fit alike
    assert len(objective.provider.splits().test.y) == 45  # 30% of 150

    class TwoFolds(HoldoutSplitter):
        def split(self, dataset):
            splits = super().split(dataset)
            return Splits(splits.dataset, splits.test, splits.folds * 2)

    two = NetworkObjective(
        {"source": "iris"}, fixed={"epochs": 1}, device="cpu", splitter=TwoFolds()
    )
    trial = make_trial(tmp_path / "two", make_reporter())
    assert two(trial)["folds"] == 2  # several folds: the trial cross-validates
    assert len(trial.user_attrs["folds"]) == 2
