"""Figure data: what each figure shows of hand-made studies, and what it leaves out and says so."""

import math
import subprocess
import sys

import pytest

from tests.viz import make_trial
from tunelab.trial import TrialState
from tunelab.viz import (
    KINDS,
    MAX_CURVES,
    MAX_LINES,
    MAX_POINTS,
    ContourData,
    CurvesData,
    HistoryData,
    ImportanceData,
    contour_data,
    curves_data,
    figure_data,
    history_data,
    importance_data,
    intermediate_data,
    parallel_data,
    slice_data,
    thin,
)

C, P, F, R = TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED, TrialState.RUNNING


def epochs(**series):
    """intermediate from per-metric lists: epochs(val_loss=[1, .5]) -> {1: {...}, 2: {...}}."""
    length = len(next(iter(series.values())))
    return {s + 1: {k: v[s] for k, v in series.items()} for s in range(length)}


# -- history -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "best"),
    [("minimize", [3.0, 1.0, 1.0, 0.5]), ("maximize", [3.0, 3.0, 3.0, 3.0])],
)
def test_history_best_so_far_follows_the_direction(direction, best):
    trials = [make_trial(i, v) for i, v in enumerate([3.0, 1.0, 2.0, 0.5])]
    data = history_data(trials, metric="loss", direction=direction)
    assert data.numbers == [0, 1, 2, 3] and data.values == [3.0, 1.0, 2.0, 0.5]
    assert data.best_numbers == [0, 1, 2, 3] and data.best_values == best
    assert data.note == "" and "loss" in data.title


def test_history_keeps_pruned_apart_and_leaves_out_unfinished_failed_and_non_finite():
    trials = [
        make_trial(0, 0.5),
        make_trial(1, 0.1, state=P),  # better, but pruned: not a best
        make_trial(2, None, state=F),
        make_trial(3, 0.2, state=R),
        make_trial(4, 0.05, state=TrialState.PAUSED),
        make_trial(5, math.nan),
        make_trial(6, math.inf, state=P),
        make_trial(7, 0.4),
    ]
    data = history_data(trials, metric="loss", direction="minimize")
    assert (data.numbers, data.values) == ([0, 7], [0.5, 0.4])
    assert (data.pruned_numbers, data.pruned_values) == ([1], [0.1])
    assert (data.best_numbers, data.best_values) == ([0, 1, 7], [0.5, 0.5, 0.4])


def test_history_with_only_pruned_trials_has_points_but_no_best_line():
    data = history_data([make_trial(0, 0.3, state=P)], metric="loss", direction="minimize")
    assert data.pruned_numbers == [0] and data.best_numbers == []


@pytest.mark.parametrize("trials", [[], [make_trial(0, None, state=F), make_trial(1, None, R)]])
def test_history_of_a_study_with_no_finished_value_is_empty_with_the_reason(trials):
    data = history_data(trials, metric="loss", direction="minimize")
    assert data.numbers == data.pruned_numbers == data.best_numbers == []
    assert data.title == "Optimization history: loss: no finished trial with a value yet"


def test_history_over_the_cap_keeps_every_new_best_and_says_so():
    count = 12_000
    values = [1.0] * count
    for number, value in [(0, 0.9), (1_001, 0.8), (7_777, 0.5), (11_998, 0.1)]:
        values[number] = value  # numbers off the stride
    data = history_data(
        [make_trial(i, v) for i, v in enumerate(values)], metric="loss", direction="minimize"
    )
    assert len(data.numbers) <= MAX_POINTS
    assert {0, 1_001, 7_777, 11_998, count - 1} <= set(data.numbers)
    assert data.note == (
        f"showing {len(data.numbers):,} of 12,000 finished trials: one in 3 by number, "
        "plus each new best"
    )
    steps = [(n, v) for n, v in zip(data.best_numbers, data.best_values, strict=True)]
    assert dict(steps)[999] == 0.9 and dict(steps)[1_001] == 0.8 and steps[-1] == (11_999, 0.1)


def test_history_of_a_study_improving_on_every_trial_keeps_only_the_stride():
    trials = [make_trial(i, -float(i)) for i in range(12_000)]
    data = history_data(trials, metric="loss", direction="minimize")
    assert len(data.numbers) <= MAX_POINTS and data.best_values[-1] == -11_999.0
    assert data.note.endswith("one in 3 by number")


# -- thin ----------------------------------------------------------------------------------------


def test_thin_keeps_all_under_the_cap_and_a_stride_with_the_kept_ones_over_it():
    assert thin(5, 10) == ([0, 1, 2, 3, 4], 1)
    positions, k = thin(1_000, 100, keep=[7, 513])
    assert len(positions) <= 100 and {0, 7, 513, 999} <= set(positions)
    assert k == 11 and positions == sorted(set(positions))
    with pytest.raises(
        ValueError, match="at most cap // 2 positions to keep, but got cap=10 and 6"
    ):
        thin(100, 10, keep=range(6))


# -- curves --------------------------------------------------------------------------------------


def network_trial(number, value, state=C):
    """A trial as the network trainer reports it (lr and the other val_ metrics included)."""
    reports = epochs(
        train_loss=[2.0, 1.0, 0.5],
        lr=[0.1, 0.1, 0.1],
        val_loss=[2.2, 1.3, 0.9],
        val_accuracy=[0.3, 0.6, value],
        val_log_loss=[2.2, 1.3, 0.9],
        train_accuracy=[0.35, 0.7, 0.9],
    )
    return make_trial(number, value, state=state, intermediate=reports)


def test_curves_default_to_the_best_three_completed_trials_in_two_panels():
    trials = [network_trial(i, v) for i, v in enumerate([0.5, 0.9, 0.7, 0.8])]
    trials.append(network_trial(4, 0.95, state=P))
    data = curves_data(trials, metric="val_accuracy", direction="maximize")
    assert data.numbers == [1, 3, 2] and data.title == "Learning curves: #1, #3, #2"
    loss, metric = data.panels
    assert loss.label == "loss" and metric.label == "val_accuracy"
    assert {c.name for c in loss.curves} == {"train_loss", "val_loss"}
    assert {c.name for c in metric.curves} == {"val_accuracy", "train_accuracy"}
    first = metric.curves[0]
    assert (first.number, first.name, first.steps, first.values) == (
        1,
        "val_accuracy",
        [1, 2, 3],
        [0.3, 0.6, 0.9],
    )
    low = curves_data(trials, metric="val_accuracy", direction="minimize")
    assert low.numbers == [0, 2, 3]


def test_curves_of_a_generic_objective_show_its_metric_and_every_loss_it_reports():
    reports = epochs(score=[1.0, 2.0], recon_loss=[5.0, 4.0], kl_loss=[0.1, 0.2], other=[3, 3])
    data = curves_data(
        [make_trial(0, 2.0, intermediate=reports)], metric="score", direction="maximize"
    )
    assert [(p.label, [c.name for c in p.curves]) for p in data.panels] == [
        ("loss", ["recon_loss", "kl_loss"]),
        ("score", ["score"]),
    ]


def test_curves_of_a_loss_metric_show_it_once_in_its_own_panel():
    data = curves_data([network_trial(0, 0.5)], metric="val_loss", direction="minimize")
    assert [(p.label, [c.name for c in p.curves]) for p in data.panels] == [
        ("val_loss", ["val_loss", "train_loss"])
    ]


def test_curves_of_chosen_trials_include_running_ones_and_unknown_numbers_are_named():
    trials = [network_trial(0, 0.5), network_trial(1, None, state=R)]
    data = curves_data(trials, metric="val_accuracy", direction="maximize", numbers=[1, 1])
    assert data.numbers == [1] and data.panels
    with pytest.raises(ValueError, match=r"no trial numbered 7, 9 in this study .*numbers 0 to 1"):
        curves_data(trials, metric="val_accuracy", direction="maximize", numbers=[0, 7, 9])


def test_curves_with_nothing_to_show_are_empty_with_the_reason():
    none = curves_data([make_trial(0, None, state=R)], metric="acc", direction="maximize")
    assert none.panels == [] and "no completed trial yet" in none.title
    silent = curves_data([make_trial(0, 0.5)], metric="acc", direction="maximize")
    assert silent.panels == [] and silent.title.endswith("no acc or loss reported per step")


# -- parallel, slice: axes -----------------------------------------------------------------------


def mixed_study():
    """Five COMPLETE trials over a log-scale lr, a 0-1 dropout, an optimizer and a momentum that
    exists only for sgd; and a FAILED and a PRUNED one that the param figures leave out."""
    rows = [
        (1e-4, 0.0001, "sgd", 0.9, 0.5),
        (1e-3, 0.5, "adam", None, 0.7),
        (1e-2, 0.9, "sgd", 0.5, 0.9),
        (3e-2, 0.7, "adam", None, 0.8),
        (1e-1, 0.3, "sgd", 0.1, 0.6),
    ]
    trials = []
    for i, (lr, dropout, optimizer, momentum, value) in enumerate(rows):
        params = {"lr": lr, "dropout": dropout, "optimizer": optimizer}
        if momentum is not None:
            params["momentum"] = momentum
        trials.append(make_trial(i, value, params=params))
    trials.append(make_trial(5, None, state=F, params={"lr": 1.0, "optimizer": "rmsprop"}))
    trials.append(make_trial(6, 0.99, state=P, params={"lr": 1e-3, "optimizer": "adam"}))
    return trials


def test_parallel_dimensions_encode_log_categories_and_inactive_values():
    data = parallel_data(mixed_study(), metric="acc", direction="maximize")
    assert data.numbers == [0, 1, 2, 3, 4] and data.values == [0.5, 0.7, 0.9, 0.8, 0.6]
    acc, lr, dropout, optimizer, momentum = data.dimensions
    assert acc.name == "acc" and acc.values == data.values
    assert [round(v, 6) for v in lr.values] == [-4, -3, -2, round(math.log10(3e-2), 6), -1]
    assert lr.tickvals == [-4.0, -3.0, -2.0, -1.0]
    assert lr.ticktext == ["0.0001", "0.001", "0.01", "0.1"]
    assert dropout.values == [0.0001, 0.5, 0.9, 0.7, 0.3], "a 0-1 range with a tiny draw: linear"
    assert optimizer.values == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert (optimizer.tickvals, optimizer.ticktext) == ([0.0, 1.0], ["adam", "sgd"])
    inactive = momentum.tickvals[momentum.ticktext.index("(inactive)")]
    assert inactive < 0.1 and momentum.values == [0.9, inactive, 0.5, inactive, 0.1]
    assert data.title == "Parallel coordinates: acc over 4 parameters" and data.note == ""


def test_parallel_of_chosen_params_and_an_unknown_one():
    data = parallel_data(mixed_study(), metric="acc", direction="maximize", params=["optimizer"])
    assert [d.name for d in data.dimensions] == ["acc", "optimizer"]
    with pytest.raises(ValueError, match="no trial has the parameter.*'lrate'.*lr, dropout"):
        parallel_data(mixed_study(), metric="acc", direction="maximize", params=["lrate"])


def test_parallel_over_the_cap_keeps_the_best_tenth_and_a_stride():
    trials = [make_trial(i, float((i * 7919) % 1_500)) for i in range(1_500)]
    data = parallel_data(trials, metric="acc", direction="minimize")
    assert len(data.numbers) <= MAX_LINES
    best = sorted(trials, key=lambda t: t.value)[: MAX_LINES // 10]
    assert {t.number for t in best} <= set(data.numbers)
    assert data.note == (
        f"showing {len(data.numbers):,} of 1,500 completed trials: "
        "the best 100 by acc, plus one in 2 of the rest by number"
    )


def test_slice_axes_by_param_over_completed_trials():
    data = slice_data(mixed_study(), metric="acc", direction="maximize")
    assert data.numbers == [0, 1, 2, 3, 4] and not data.log_y
    scales = {a.name: (a.scale, a.categories) for a in data.axes}
    assert scales == {
        "lr": ("log", []),
        "dropout": ("linear", []),
        "optimizer": ("categorical", ["adam", "sgd"]),
        "momentum": ("linear", []),
    }
    assert data.axes[3].values == [0.9, None, 0.5, None, 0.1]
    chosen = slice_data(mixed_study(), metric="acc", direction="maximize", params=["momentum"])
    assert [a.name for a in chosen.axes] == ["momentum"]


def test_a_bool_or_mixed_param_is_categorical_and_numbers_choices_stay_numbers():
    trials = [
        make_trial(0, 1.0, params={"flag": True, "units": 32, "act": "relu"}),
        make_trial(1, 2.0, params={"flag": False, "units": 256, "act": 0}),
    ]
    axes = {a.name: a for a in slice_data(trials, metric="m", direction="minimize").axes}
    assert axes["flag"].categories == ["False", "True"] and axes["flag"].values == [1.0, 0.0]
    assert axes["units"].scale == "linear" and axes["units"].values == [32.0, 256.0]
    assert axes["act"].categories == ["0", "relu"]


def test_slice_over_the_cap_keeps_each_new_best():
    trials = [make_trial(i, 1.0 if i != 4_321 else 0.0) for i in range(6_000)]
    data = slice_data(trials, metric="m", direction="minimize")
    assert len(data.numbers) <= MAX_POINTS and 4_321 in data.numbers
    assert data.note.endswith("one in 2 by number, plus each new best")


def test_log_y_when_values_spread_over_decades():
    spread = [make_trial(i, v) for i, v in enumerate([1e-3, 1e-2, 1e-1, 1.0, 10.0])]
    assert history_data(spread, metric="loss", direction="minimize").log_y
    bunched = [make_trial(i, v) for i, v in enumerate([1e-3, 5.0, 6.0, 8.0, 10.0])]
    assert not history_data(bunched, metric="loss", direction="minimize").log_y
    negative = [make_trial(i, v) for i, v in enumerate([-1.0, 1e-3, 1e3])]
    assert not history_data(negative, metric="loss", direction="minimize").log_y


@pytest.mark.parametrize("function", [parallel_data, slice_data])
def test_param_figures_of_a_study_without_completed_trials_are_empty(function):
    data = function([make_trial(0, None, state=R)], metric="acc", direction="maximize")
    assert data.values == [] and data.title.endswith("no completed trial yet")


# -- contour -------------------------------------------------------------------------------------


def plane_study(count=60):
    """acc = a + 2 b over a grid of (a, b); c varies but does not matter."""
    side = int(math.sqrt(count))
    return [
        make_trial(
            i,
            (i % side) / side + 2 * (i // side) / side,
            params={"a": (i % side) / side, "b": (i // side) / side, "c": (i * 37 % 11)},
        )
        for i in range(side * side)
    ]


def test_contour_interpolates_linearly_between_the_observed_points():
    data = contour_data(plane_study(), metric="acc", direction="maximize", params=["a", "b"])
    assert (data.x.name, data.y.name) == ("a", "b") and len(data.numbers) == 49
    assert len(data.grid_x) == len(data.grid_y) == 64 and len(data.z) == 64
    assert data.grid_x[0] == 0.0 and data.grid_x[-1] == pytest.approx(6 / 7)
    i, j = 20, 40
    assert data.z[i][j] == pytest.approx(data.grid_x[j] + 2 * data.grid_y[i])
    assert data.title == "Contour: acc over a and b" and data.note == ""


def test_contour_defaults_to_the_two_most_important_params():
    data = contour_data(plane_study(), metric="acc", direction="maximize")
    assert {data.x.name, data.y.name} == {"a", "b"}


def test_contour_on_a_log_axis_interpolates_in_log_space_and_returns_its_own_units():
    trials = [
        make_trial(i, math.log10(lr) + d, params={"lr": lr, "d": d})
        for i, (lr, d) in enumerate([(1e-4, 0), (1e-4, 1), (1e-1, 0), (1e-1, 1), (1e-3, 0.5)])
    ]
    data = contour_data(trials, metric="acc", direction="maximize", params=["lr", "d"])
    assert data.x.scale == "log"
    assert data.grid_x[0] == pytest.approx(1e-4) and data.grid_x[-1] == pytest.approx(1e-1)
    middle = data.grid_x[len(data.grid_x) // 2 - 1 : len(data.grid_x) // 2 + 1]
    assert 1e-3 < middle[0] < 1e-2, "grid spaced evenly in log10"
    assert data.z[0][0] == pytest.approx(-4.0) and data.z[-1][-1] == pytest.approx(0.0)


def test_contour_needs_two_known_params_and_says_why_when_one_never_varied():
    trials = plane_study()
    with pytest.raises(
        ValueError, match=r"no trial has the parameter\(s\) 'z'; the known ones are a, b, c"
    ):
        contour_data(trials, metric="acc", direction="maximize", params=["a", "z"])
    with pytest.raises(ValueError, match="exactly two parameters, got 3: a, b, c"):
        contour_data(trials, metric="acc", direction="maximize", params=["a", "b", "c"])
    fixed = [make_trial(i, float(i), params={"a": float(i), "b": 1}) for i in range(5)]
    data = contour_data(fixed, metric="acc", direction="maximize", params=["a", "b"])
    assert data.x is None and data.title == "Contour: acc over a and b: b never varied"


def test_contour_of_collinear_points_shows_them_without_a_surface():
    trials = [make_trial(i, float(i), params={"a": float(i), "b": 2.0 * i}) for i in range(5)]
    data = contour_data(trials, metric="acc", direction="maximize", params=["a", "b"])
    assert data.z == [] and len(data.numbers) == 5
    assert data.title.endswith("(too few distinct points to interpolate)")


def test_contour_leaves_out_trials_where_a_param_is_inactive():
    data = contour_data(
        mixed_study(), metric="acc", direction="maximize", params=["lr", "momentum"]
    )
    assert data.numbers == [0, 2, 4]


def test_contour_of_two_params_never_active_together_is_empty():
    trials = [make_trial(i, float(i), params={"a" if i % 2 else "b": float(i)}) for i in range(6)]
    data = contour_data(trials, metric="acc", direction="maximize", params=["a", "b"])
    assert data.x is None and data.title == "Contour: acc over a and b: no completed trial has both"


# -- importance, intermediate --------------------------------------------------------------------


def test_importance_data_needs_three_completed_trials():
    data = importance_data(plane_study()[:2], metric="acc", direction="maximize")
    assert data.params == [] and data.title.endswith("needs 3 completed trials, the study has 2")
    data = importance_data(plane_study(), metric="acc", direction="maximize", params=["c", "b"])
    assert set(data.params) == {"b", "c"} and data.params[0] == "b"
    assert sum(data.importances) == pytest.approx(1.0)


def test_importance_data_when_nothing_varied():
    trials = [make_trial(i, 1.0, params={"a": 1}) for i in range(5)]
    data = importance_data(trials, metric="acc", direction="maximize")
    assert data.params == [] and data.title.endswith("neither the parameters nor acc varied")


def test_intermediate_lines_keep_each_trials_state_and_skip_trials_without_the_metric():
    trials = [
        make_trial(0, 0.9, intermediate={2: {"acc": 0.8}, 1: {"acc": 0.5}, 3: {"acc": 0.9}}),
        make_trial(1, 0.4, state=P, intermediate=epochs(acc=[0.3, 0.4])),
        make_trial(2, None, state=TrialState.PAUSED, intermediate=epochs(acc=[0.5, math.nan])),
        make_trial(3, 0.7, intermediate=epochs(loss=[1.0])),
    ]
    data = intermediate_data(trials, metric="acc", direction="maximize")
    assert [(ln.number, ln.state, ln.steps, ln.values) for ln in data.lines] == [
        (0, "COMPLETE", [1, 2, 3], [0.5, 0.8, 0.9]),
        (1, "PRUNED", [1, 2], [0.3, 0.4]),
        (2, "PAUSED", [1], [0.5]),
    ]
    empty = intermediate_data(trials, metric="f1", direction="maximize")
    assert empty.lines == [] and empty.title.endswith("no trial reported f1 yet")


def test_intermediate_over_the_cap_keeps_the_best_hundred_and_a_stride():
    trials = [
        make_trial(i, None, state=R, intermediate=epochs(loss=[50.0, (i * 7919) % 400 / 10]))
        for i in range(400)
    ]
    data = intermediate_data(trials, metric="loss", direction="minimize")
    assert len(data.lines) <= MAX_CURVES
    best = sorted(trials, key=lambda t: min(t.values_at("loss").values()))[:100]
    assert {t.number for t in best} <= {ln.number for ln in data.lines}
    assert data.note == (
        f"showing {len(data.lines)} of 400 trials' curves: the best 100 by loss, "
        "plus one in 2 of the rest by number"
    )


# -- figure_data ---------------------------------------------------------------------------------


def test_figure_data_dispatches_by_kind_and_passes_numbers_and_params_where_used():
    trials = [network_trial(i, v) for i, v in enumerate([0.5, 0.9, 0.7, 0.8])]
    types = {
        kind: type(
            figure_data(kind, trials, metric="val_accuracy", direction="maximize", numbers=[2])
        )
        for kind in KINDS
    }
    assert types["history"] is HistoryData and types["contour"] is ContourData
    assert types["importance"] is ImportanceData and types["curves"] is CurvesData
    data = figure_data("curves", trials, metric="val_accuracy", direction="maximize", numbers=[2])
    assert data.numbers == [2]
    data = figure_data("slice", trials, metric="val_accuracy", direction="maximize", params=["x"])
    assert [a.name for a in data.axes] == ["x"]


def test_figure_data_rejects_an_unknown_kind_or_direction():
    with pytest.raises(ValueError, match="unknown figure kind 'pie'; expected one of history, "):
        figure_data("pie", [], metric="m", direction="minimize")
    with pytest.raises(
        ValueError, match="direction must be 'minimize' or 'maximize', but got 'max'"
    ):
        figure_data("history", [], metric="m", direction="max")


def test_importing_viz_loads_no_plotting_library_torch_or_sklearn():
    code = (
        "import sys, tunelab.viz\n"
        "print([m for m in ('torch', 'plotly', 'matplotlib', 'sklearn', 'scipy') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
