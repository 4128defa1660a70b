"""lr_find: the LR range test on a spec's model, data and optimizer."""

import json

import pytest

from tunelab import lr_find
from tunelab.errors import SpecError
from tunelab.nn import NoUsableRange
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
