"""lr_find: the LR range test on a spec's model, data and optimizer."""

import json

import pytest

from tunelab import lr_find
from tunelab.errors import SpecError
from tunelab.lr_range import ATTR, AUTO_STEPS
from tunelab.nn import NetworkObjective, NoUsableRange
from tunelab.spec import parse_spec
from tunelab.viz import range_test_data, to_matplotlib, to_plotly

SPEC = {
    "name": "iris",
    "data": {"source": "iris"},
    "metric": {"name": "val_accuracy", "direction": "maximize"},
    "space": {"lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}},
    "fixed": {"batch_size": 16},
    "budget": {"trials": 2},
    "seed": 0,
}


def test_the_test_runs_with_the_spec_fixed_values_and_suggests_inside_the_range():
    test = lr_find(SPEC, start=1e-5, end=10, steps=60)
    assert (test.optimizer, test.batch_size, test.start, test.end) == ("adam", 16, 1e-5, 10)
    assert set(test.suggestions) == {"steepest", "valley", "minimum/10"}
    assert test.suggestion == test.suggestions["valley"]
    assert all(1e-5 <= lr <= 10 for lr in test.suggestions.values())
    assert lr_find(SPEC, start=1e-5, end=10, steps=60) == test  # seeded: the same curve


def test_params_change_the_configuration_and_the_scaling_rule_tests_at_its_reference_batch():
    sgd = lr_find(SPEC, {"optimizer": "sgd", "momentum": 0.9}, start=1e-5, end=10, steps=60)
    assert sgd.optimizer == "sgd"
    scaled = lr_find(
        {**SPEC, "fixed": {"batch_size": 64, "reference_batch": 16}}, start=1e-5, end=10, steps=60
    )
    assert scaled.batch_size == 16  # the rule reads lr at the reference batch size


def test_a_loss_that_never_falls_is_refused_and_bad_options_name_their_field():
    with pytest.raises(NoUsableRange, match="no usable range found"):
        lr_find(SPEC, start=1e-10, end=1e-9, steps=40)
    with pytest.raises(SpecError, match="steps: must be >= 20"):
        lr_find(SPEC, steps=5)


def test_the_curve_draws_with_its_suggestions_from_its_json_form():
    test = json.loads(json.dumps(lr_find(SPEC, start=1e-5, end=10, steps=60).to_dict()))
    data = range_test_data(test)
    assert data.log_x and data.chosen == "valley" and len(data.lrs) == len(data.smoothed)
    names = [trace.name for trace in to_plotly(data).data]
    assert names[:2] == ["loss", "smoothed loss"] and any("(used)" in n for n in names)
    assert to_matplotlib(data).axes[0].get_xscale() == "log"


# auto: the range test sets the search's range (or the fixed rate) --------------------------------
AUTO = {
    **SPEC,
    "name": "iris-auto",
    "space": {
        "lr": {"type": "float", "auto": True},
        "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
    },
    "fixed": {"batch_size": 16, "epochs": 2},
    "budget": {"trials": 6},
}


def _experiment(tmp_path, spec=AUTO):
    from tunelab.experiment import Experiment

    return Experiment.from_spec(parse_spec(spec), f"sqlite:///{tmp_path / 'tunelab.db'}")


def test_auto_tests_each_optimizer_searched_and_draws_each_trials_lr_from_its_own_range(tmp_path):
    experiment = _experiment(tmp_path)
    record = experiment.study.attrs[ATTR]
    assert record["by"] == "optimizer" and set(record["tests"]) == {"sgd", "adam"}
    for key, test in record["tests"].items():  # the documented rule, read off the stored curve
        assert record["searched"][key] == [
            test["suggestion"] / 10,
            test["suggestions"]["minimum/10"] * 10,
        ]
    experiment.search()
    trials = experiment.study.trials
    assert {t.params["optimizer"] for t in trials} == {"sgd", "adam"}
    for trial in trials:
        low, high = record["searched"][trial.params["optimizer"]]
        assert low <= trial.params["lr"] <= high


def test_auto_is_stored_and_reused_on_resume_without_testing_again(tmp_path, monkeypatch):
    first = _experiment(tmp_path)
    first.search()

    def never(*args, **kwargs):
        raise AssertionError("a resumed study must not run the range test again")

    monkeypatch.setattr(NetworkObjective, "lr_range_test", never)
    from tunelab.experiment import open_experiment

    again = open_experiment("iris-auto", f"sqlite:///{tmp_path / 'tunelab.db'}")
    assert again.study.attrs[ATTR]["tests"] == first.study.attrs[ATTR]["tests"]
    assert again.space["lr"] == first.space["lr"]


def test_fixed_auto_uses_the_suggestion_and_per_optimizer_when_the_optimizer_is_searched(tmp_path):
    one = {
        **AUTO,
        "name": "fixed-one",
        "space": {"dropout": {"type": "float", "low": 0, "high": 0.5}},
    }
    one["fixed"] = {**AUTO["fixed"], "lr": "auto"}
    experiment = _experiment(tmp_path, one)
    suggestion = experiment.study.attrs[ATTR]["suggestions"]["adam"]
    assert experiment.objective.fixed["lr"] == suggestion
    assert "lr" not in experiment.space

    both = {**one, "name": "fixed-both", "space": {"optimizer": AUTO["space"]["optimizer"]}}
    experiment = _experiment(tmp_path, both)
    experiment.search()
    suggestions = experiment.study.attrs[ATTR]["suggestions"]
    for trial in experiment.study.trials:
        assert trial.params["lr"] == pytest.approx(suggestions[trial.params["optimizer"]])


def test_narrow_searches_where_both_ranges_meet_and_refuses_when_they_do_not(tmp_path):
    narrow = {**AUTO, "name": "narrow"}
    narrow["space"] = {
        "lr": {"type": "float", "auto": "narrow", "low": 1e-5, "high": 0.05, "log": True}
    }
    experiment = _experiment(tmp_path, narrow)
    record = experiment.study.attrs[ATTR]
    (test,) = record["tests"].values()
    low, high = test["suggestion"] / 10, test["suggestions"]["minimum/10"] * 10
    assert (experiment.space["lr"].low, experiment.space["lr"].high) == (
        max(low, 1e-5),
        min(high, 0.05),
    )
    apart = {**narrow, "name": "apart"}
    apart["space"] = {"lr": {"type": "float", "auto": "narrow", "low": 1e-9, "high": 1e-8}}
    with pytest.raises(
        SpecError, match=r"space.lr: the range test's range for adam, .* does not meet"
    ):
        _experiment(tmp_path, apart)


def test_a_refusal_names_the_optimizer_and_the_way_out_after_longer_ramps(tmp_path, monkeypatch):
    steps_tried = []

    def flat(self, params=None, seed=0, **options):
        steps_tried.append(options["steps"])
        raise NoUsableRange("the smoothed loss fell by 1% at most", [1e-3], [2.3], [2.3])

    monkeypatch.setattr(NetworkObjective, "lr_range_test", flat)
    with pytest.raises(NoUsableRange) as refused:
        _experiment(tmp_path)
    assert steps_tried == list(AUTO_STEPS)
    message = str(refused.value)
    assert message.startswith("no usable range found: the smoothed loss fell by 1%")
    assert "(tried 100, 200, 400 steps); in space.lr.auto (optimizer sgd)" in message
    assert "give lr a low and high instead" in message


@pytest.mark.parametrize(
    "space, fixed, strategy, message",
    [
        (
            {"lr": {"type": "float", "auto": True, "low": 1e-3}},
            {},
            "random",
            "space.lr.low: is set by the range test under auto: true",
        ),
        (
            {"lr": {"type": "float", "auto": "narrow"}},
            {},
            "random",
            "space.lr.low: is required with auto: narrow",
        ),
        (
            {"lr": {"type": "float", "auto": "wide"}},
            {},
            "random",
            "space.lr.auto: must be true, false or narrow, got 'wide'",
        ),
        (
            {"dropout": {"type": "float", "auto": True}},
            {},
            "random",
            "space.dropout.auto: only the learning rate",
        ),
        (
            {"units": {"type": "int", "low": 8, "high": 16}},
            {"momentum": "auto"},
            "random",
            "fixed.momentum: only the learning rate",
        ),
        (
            {"lr": {"type": "float", "auto": True}},
            {},
            "grid",
            "space.lr.auto: a grid search needs listed values",
        ),
    ],
)
def test_auto_mistakes_name_the_field(space, fixed, strategy, message):
    with pytest.raises(SpecError, match=message):
        parse_spec({**SPEC, "space": space, "fixed": fixed, "strategy": strategy})


def test_status_and_the_report_show_the_range_and_its_curves(tmp_path):
    from typer.testing import CliRunner

    from tunelab.cli import app
    from tunelab.report import build_report

    experiment = _experiment(tmp_path)
    experiment.search()
    storage = f"sqlite:///{tmp_path / 'tunelab.db'}"
    shown = CliRunner().invoke(app, ["status", "iris-auto", "--storage", storage]).output
    assert "lr range (valley/10 to the rate at the minimum): sgd " in shown
    report = build_report(storage, "iris-auto")
    assert "lr-range-test-sgd" in report and "lr-range-test-adam" in report
    assert "searched: " in report  # the band drawn over each curve


def test_a_model_of_ones_own_is_tested_and_searched_with_auto(tmp_path):
    (tmp_path / "models.py").write_text(
        "from torch import nn\n\n"
        "def build_model(params, input_shape, n_outputs):\n"
        "    return nn.Sequential(nn.Linear(input_shape[0], params['width']), nn.Tanh(),\n"
        "                         nn.Linear(params['width'], n_outputs))\n"
    )
    spec = {
        **AUTO,
        "name": "own-auto",
        "model": str(tmp_path / "models.py") + ":build_model",
        "fixed": {**AUTO["fixed"], "width": 16},
    }
    test = lr_find(spec, {"optimizer": "sgd"}, start=1e-5, end=10, steps=60)
    assert test.optimizer == "sgd" and 1e-5 <= test.suggestion <= 10
    experiment = _experiment(tmp_path, spec)
    experiment.search()
    record = experiment.study.attrs[ATTR]
    for trial in experiment.study.trials:
        low, high = record["searched"][trial.params["optimizer"]]
        assert low <= trial.params["lr"] <= high
