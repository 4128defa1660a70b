import collections
import math

import numpy as np
import pytest

from tunelab.errors import SpaceError
from tunelab.space import Categorical, Float, Int, Ranged, Space


def test_float_log_scale_midpoint_is_geometric():
    assert Float(1e-4, 1e-2, log=True).from_unit(0.5) == pytest.approx(1e-3)


def test_float_log_scale_never_leaves_the_bounds():
    # exp(log(0.1)) is 0.10000000000000006: a proposal must not leave the declared range.
    param = Float(1e-4, 0.1, log=True)
    assert all(param.contains(param.from_unit(u)) for u in np.linspace(0, 1, 101))


def test_float_step_snaps_to_grid():
    param = Float(0.0, 1.0, step=0.25)
    assert {param.from_unit(u) for u in np.linspace(0, 1, 101)} == {0.0, 0.25, 0.5, 0.75, 1.0}


@pytest.mark.parametrize("param", [Int(1, 3), Int(1, 100, log=True), Int(0, 10, step=5)])
def test_int_values_are_ints_in_range_and_all_reachable(param):
    values = [param.from_unit(u) for u in np.linspace(0, 1, 2001)]
    assert all(isinstance(v, int) and param.low <= v <= param.high for v in values)
    assert min(values) == param.low and max(values) == param.high


def test_int_gives_each_value_an_equal_share():
    counts = collections.Counter(
        Int(1, 3).from_unit(u) for u in np.linspace(0, 1, 3000, endpoint=False)
    )
    assert counts == {1: 1000, 2: 1000, 3: 1000}


def test_encode_decode_round_trip():
    space = Space(
        {
            "lr": Float(1e-4, 0.3, log=True),
            "layers": Int(1, 5),
            "batch": Int(16, 512, log=True),
            "opt": Categorical(["sgd", "adam"]),
        }
    )
    config = {"lr": 0.01, "layers": 4, "batch": 64, "opt": "adam"}
    assert space.decode(space.encode(config)) == pytest.approx(config)


def test_inactive_parameter_is_absent_not_filled():
    space = Space(
        {
            "opt": Categorical(["sgd", "adam"]),
            "momentum": Float(0.0, 0.99, when={"opt": "sgd"}),
        }
    )
    adam = space.decode([0.9, 0.3])
    assert adam == {"opt": "adam"}
    assert math.isnan(space.encode(adam)[1])
    assert "momentum" in space.decode([0.1, 0.3])


def test_comparison_conditions():
    space = Space(
        {
            "n_layers": Int(1, 3),
            "units_2": Int(8, 64, when={"n_layers": {"ge": 2}}),
        }
    )
    assert "units_2" not in space.decode([0.0, 0.5])
    assert "units_2" in space.decode([0.99, 0.5])


def test_parent_moves_before_child_but_order_is_otherwise_kept():
    space = Space(
        {
            "a": Float(0, 1),
            "momentum": Float(0, 1, when={"opt": "sgd"}),
            "opt": Categorical(["sgd", "adam"]),
            "z": Float(0, 1),
        }
    )
    assert list(space) == ["a", "opt", "momentum", "z"]


def test_grid_enumerates_combinations_without_inactive_duplicates():
    space = Space(
        {
            "opt": Categorical(["sgd", "adam"]),
            "momentum": Float(0.0, 0.9, values=(0.0, 0.9), when={"opt": "sgd"}),
            "layers": Int(1, 2),
        }
    )
    assert len(space.grid()) == (2 + 1) * 2


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Float(1.0, 0.1, name="lr"), r"space\.lr\.low: low must be <= high"),
        (
            lambda: Float(0.0, 1.0, log=True, name="lr"),
            r"space\.lr\.low: must be > 0 when log is true",
        ),
        (lambda: Categorical([], name="act"), r"space\.act\.choices: is empty"),
        (lambda: Int(1.5, 3, name="n"), r"space\.n\.low: must be an integer"),
        (
            lambda: Float(0.1, 1, step=0.1, log=True, name="x"),
            r"space\.x\.step: cannot be combined",
        ),
        (lambda: Space({"x": Float(0, 1)}).grid(), r"space\.x: grid search needs listed values"),
        (
            lambda: Space({"m": Float(0, 1, when={"opt": "sgd"})}),
            r"space\.m\.when: refers to 'opt'",
        ),
        (
            lambda: Space({"a": Float(0, 1, when={"b": 1}), "b": Float(0, 1, when={"a": 1})}),
            r"conditions form a cycle",
        ),
        (lambda: Space({}), r"space: is empty"),
    ],
)
def test_bad_definitions_name_the_field(make, match):
    with pytest.raises(SpaceError, match=match):
        make()


def test_validate_checks_manual_configs():
    space = Space({"opt": Categorical(["sgd", "adam"]), "m": Float(0, 1, when={"opt": "sgd"})})
    assert space.validate({"opt": "sgd", "m": 0.5}) == {"opt": "sgd", "m": 0.5}
    with pytest.raises(SpaceError, match=r"configs\.m: is missing"):
        space.validate({"opt": "sgd"})
    with pytest.raises(SpaceError, match=r"configs\.m: is given but its `when` condition is false"):
        space.validate({"opt": "adam", "m": 0.5})
    with pytest.raises(SpaceError, match=r"configs\.m: value 2 is outside the range \[0, 1\]"):
        space.validate({"opt": "sgd", "m": 2})
    with pytest.raises(SpaceError, match=r"configs\.lr: is not a parameter"):
        space.validate({"opt": "adam", "lr": 0.1})


@pytest.mark.parametrize(
    ("when", "message"),
    [
        (
            {"optimizer": "rmsprop"},
            r"optimizer can never be 'rmsprop' \(optimizer takes the choices",
        ),
        (
            {"optimizer": ["rmsprop", "nadam"]},
            r"optimizer can never be any of \['rmsprop', 'nadam'\]",
        ),
        ({"layers": {"ge": 5}}, r"layers can never be ge 5 \(layers takes the integers \[1, 3\]\)"),
        ({"layers": 7}, r"layers can never be 7"),
    ],
)
def test_a_condition_no_value_can_meet_is_refused(when, message):
    with pytest.raises(SpaceError, match=rf"space\.momentum\.when\.\w+: {message}"):
        Space(
            {
                "optimizer": Categorical(["sgd", "adam"]),
                "layers": Int(1, 3),
                "momentum": Float(0.0, 0.9, when=when),
            }
        )


# Ranged: a range that follows an earlier parameter ----------------------------------------------
def _ranged_space() -> Space:
    return Space(
        {
            "lr": Ranged(
                "optimizer",
                {"sgd": Float(0.01, 1.0, log=True), "adam": Float(1e-4, 0.01, log=True)},
            ),
            "optimizer": Categorical(["sgd", "adam", "rmsprop"]),
        }
    )


def test_a_ranged_parameter_draws_from_its_parents_range_and_moves_after_it():
    space = _ranged_space()
    assert list(space) == ["optimizer", "lr"]  # its parent decides first
    sgd = space.decode([0.1, 0.5])
    adam = space.decode([0.5, 0.5])
    assert sgd["optimizer"] == "sgd" and sgd["lr"] == pytest.approx(0.1)
    assert adam["optimizer"] == "adam" and adam["lr"] == pytest.approx(1e-3)
    # a value with no range of its own gets the envelope of all of them
    other = space.decode([0.9, 0.5])
    assert other["optimizer"] == "rmsprop" and other["lr"] == pytest.approx(0.01)


def test_a_ranged_parameter_encodes_to_its_position_within_its_parents_range():
    space = _ranged_space()
    for u in ([0.1, 0.25], [0.5, 0.75], [0.9, 0.4]):
        config = space.decode(u)
        assert space.encode(config)[1] == pytest.approx(u[1])


def test_validate_checks_a_ranged_value_against_its_parents_range():
    space = _ranged_space()
    assert space.validate({"optimizer": "sgd", "lr": 0.5}) == {"optimizer": "sgd", "lr": 0.5}
    with pytest.raises(SpaceError, match=r"configs.lr: value 0.5 is outside the range \[0.0001"):
        space.validate({"optimizer": "adam", "lr": 0.5})


@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda: Space({"lr": Ranged("opt", {"a": Float(0.1, 1)})}),
            "space.lr.by: refers to 'opt'",
        ),
        (lambda: Ranged("opt", {}), "ranges: is empty"),
        (lambda: Ranged("opt", {"a": Float(0.1, 1, step=0.1)}), "a step or grid values"),
        (lambda: _ranged_space().grid(), "space.lr: grid search needs listed values"),
    ],
)
def test_bad_ranged_definitions_name_the_field(make, match):
    with pytest.raises(SpaceError, match=match):
        make()
