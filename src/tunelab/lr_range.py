"""The LR range test on a spec: ``tunelab lr-find``, :func:`lr_find`, and ``auto`` learning rates.

The hybrid way of working the range test makes easy: read a learning rate off one short run, then
search the other hyperparameters with it fixed (Smith 2017, §3.3; fastai's ``lr_find``):
``fixed: {lr: auto}``. Or let the test set the search's range: ``lr: {type: float, auto: true}``
(or ``auto: narrow`` with ``low`` and ``high``, to search where both ranges meet). The tests run
once per study, before its first trial, and are stored with it (the study attribute
``lr_range``), so a resumed study searches the same range without testing again.

The range rule (:data:`AUTO_RULE`): from a decade below the test's suggestion (fastai's valley,
about half-way down the loss's descent) up to the rate at the smoothed loss's minimum. Above the
minimum the loss already rises within the test's few hundred steps; below the valley a training
longer than the test, momentum or a smaller batch can still prefer a lower rate, and a decade
leaves room for them. When the search picks the optimizer, each optimizer gets a test and a
range of its own (a :class:`~tunelab.space.Ranged` parameter): SGD's good rates lie about a
hundred times above Adam's, and one range over both would waste most trials of each.

Example:
    >>> test = lr_find("examples/digits.yaml")  # doctest: +SKIP
    >>> test.suggestion  # doctest: +SKIP
    0.0013...
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.errors import SpecError
from tunelab.space import Float, Param, Ranged, Space
from tunelab.spec import ExperimentSpec, FloatParam, load_spec, parse_spec

if TYPE_CHECKING:
    from tunelab.nn import NetworkObjective
    from tunelab.nn.lr_finder import RangeTest

__all__ = [
    "ATTR",
    "AUTO_RULE",
    "AUTO_STEPS",
    "apply_auto",
    "describe_auto",
    "lr_find",
    "measure_auto",
    "objective_range_test",
    "uses_auto",
]

#: The study attribute the tests and the ranges are stored under.
ATTR = "lr_range"

#: How ``auto`` reads a search range off a test (see the module's docstring for why).
AUTO_RULE = "valley/10 to the rate at the minimum"

#: The ramp lengths tried in turn when none is given: a curve too flat to read from a short test
#: is most often a test too short to move the loss (a hard data set, small batches, plain SGD),
#: so the test is run again with twice the steps before it refuses.
AUTO_STEPS = (100, 200, 400)


def lr_find(
    spec: str | Path | Mapping[str, Any] | ExperimentSpec,
    params: Mapping[str, Any] | None = None,
    seed: int | None = None,
    **options: Any,
) -> RangeTest:
    """Run the LR range test with a spec's model, data and optimizer.

    The configuration is the spec's ``fixed`` values over the defaults, or ``params`` over those;
    nothing is stored and no study is touched. ``options`` go to
    :func:`~tunelab.nn.range_test`: ``start``, ``end``, ``steps``, ``mode``, ``smoothing``,
    ``diverge``. Without ``steps``, the ramp takes each length of :data:`AUTO_STEPS` in turn
    until the curve can be read.

    Args:
        spec: a spec file, a spec as a dict, or a parsed spec.
        params: hyperparameters to test at (e.g. another optimizer or batch size).
        seed: seeds the network and the batch order (default: the spec's seed).

    Raises:
        NoUsableRange: the loss never fell enough to read a learning rate off the curve.
        SpecError: a bad spec or option, naming the field.
    """
    from tunelab.experiment import _objective

    if isinstance(spec, str | Path):
        spec = load_spec(spec)
    elif not isinstance(spec, ExperimentSpec):
        spec = parse_spec(spec)
    return objective_range_test(
        _objective(spec), params, spec.seed if seed is None else seed, **options
    )


def objective_range_test(
    objective: NetworkObjective, params: Mapping[str, Any] | None, seed: int, **options: Any
) -> RangeTest:
    """:meth:`NetworkObjective.lr_range_test <tunelab.nn.NetworkObjective.lr_range_test>`,
    taking each length of :data:`AUTO_STEPS` in turn when ``steps`` is not given.

    Raises:
        NoUsableRange: the last length's refusal, saying which lengths were tried.
    """
    from tunelab.nn.lr_finder import NoUsableRange

    if "steps" in options:
        return objective.lr_range_test(params, seed=seed, **options)
    for steps in AUTO_STEPS:
        try:
            return objective.lr_range_test(params, seed=seed, steps=steps, **options)
        except NoUsableRange as refusal:
            last = refusal
    tried = ", ".join(map(str, AUTO_STEPS))
    raise NoUsableRange(
        f"{str(last).removeprefix('no usable range found: ')} (tried {tried} steps)",
        last.lrs,
        last.losses,
        last.smoothed,
    )


def uses_auto(spec: ExperimentSpec) -> bool:
    """Whether the spec leaves its learning rate, or its range, to the range test."""
    param = spec.space.get("lr")
    return spec.fixed.get("lr") == "auto" or bool(getattr(param, "auto", False))


def measure_auto(spec: ExperimentSpec, objective: NetworkObjective) -> dict[str, Any]:
    """Run the range tests an ``auto`` spec needs (one per optimizer the search may pick) and
    read the ranges off them; the record is what the study stores under :data:`ATTR`.

    Raises:
        NoUsableRange: a test refused, named with the optimizer and the way out.
    """
    from tunelab.nn.lr_finder import NoUsableRange

    optimizer = spec.space.get("optimizer")
    by = "optimizer" if optimizer is not None and hasattr(optimizer, "choices") else None
    tests, start = {}, time.perf_counter()
    for choice in optimizer.choices if by else [None]:
        params = None if choice is None else {"optimizer": choice}
        try:
            test = objective_range_test(objective, params, spec.seed)
        except NoUsableRange as refusal:
            raise NoUsableRange(
                f"{str(refusal).removeprefix('no usable range found: ')}; in {_field(spec)}"
                f"{'' if choice is None else f' (optimizer {choice})'}: give lr a low and high "
                "instead, and see the curve with: tunelab lr-find SPEC",
                refusal.lrs,
                refusal.losses,
                refusal.smoothed,
            ) from None
        tests[test.optimizer] = test.to_dict()
    ranges = {key: _read_range(test) for key, test in tests.items()}
    return {
        "param": "lr",
        "how": _how(spec),
        "by": by,
        "rule": AUTO_RULE,
        "suggestions": {key: test["suggestion"] for key, test in tests.items()},
        "ranges": ranges,
        "tests": tests,
        "seconds": time.perf_counter() - start,
    }


def apply_auto(
    spec: ExperimentSpec, record: Mapping[str, Any]
) -> tuple[Space, dict[str, Any], dict[str, list[float]]]:
    """The search space and fixed values an ``auto`` spec stands for, given the tests' record.

    Returns:
        ``(space, fixed, searched)``: ``searched`` is the range each optimizer's rates are drawn
        from (a single value under ``fixed: {lr: auto}``), keyed as the record's tests are.

    Raises:
        SpecError: on ``space.lr`` under ``auto: narrow`` when the test's range and
            ``[low, high]`` do not meet.
    """
    how, by = _how(spec), record["by"]
    if how == "fixed":
        searched = {key: [value, value] for key, value in record["suggestions"].items()}
    else:
        searched = {key: list(rng) for key, rng in record["ranges"].items()}
    if how == "narrow":
        searched = {key: _meet(spec, key, rng) for key, rng in searched.items()}
    fixed = {name: value for name, value in spec.fixed.items() if value != "auto"}
    params: dict[str, Param] = dict(spec.build_space())
    if how == "fixed" and by is None:
        fixed["lr"] = next(iter(searched.values()))[0]
        return Space(params), fixed, searched
    user = spec.space.get("lr")
    log = True if how != "narrow" else user.log
    when = (user.when or ()) if user is not None else ()
    ranges = {key: Float(low, high, log=log) for key, (low, high) in searched.items()}
    if by:
        params["lr"] = Ranged(by, ranges, when=when)
    else:
        (only,) = ranges.values()
        params["lr"] = Float(only.low, only.high, log=only.log, when=when)
    return Space(params), fixed, searched


def describe_auto(record: Mapping[str, Any]) -> str:
    """One line: what the search uses, per optimizer, as ``tunelab status`` says it."""
    parts = [
        f"{key} {low:.3g}" if low == high else f"{key} {low:.3g} to {high:.3g}"
        for key, (low, high) in record["searched"].items()
    ]
    what = "lr from the range test" if record["how"] == "fixed" else f"lr range ({AUTO_RULE})"
    return f"{what}: {'; '.join(parts)}"


def _how(spec: ExperimentSpec) -> str:
    param = spec.space.get("lr")
    if isinstance(param, FloatParam) and param.auto:
        return "narrow" if param.auto == "narrow" else "search"
    return "fixed"


def _field(spec: ExperimentSpec) -> str:
    return "fixed.lr" if _how(spec) == "fixed" else "space.lr.auto"


def _read_range(test: Mapping[str, Any]) -> list[float]:
    """:data:`AUTO_RULE` applied to a stored test."""
    return [test["suggestion"] / 10, test["suggestions"]["minimum/10"] * 10]


def _meet(spec: ExperimentSpec, key: str, rng: list[float]) -> list[float]:
    user = spec.space["lr"]
    low, high = max(rng[0], user.low), min(rng[1], user.high)
    if low > high:
        raise SpecError(
            "space.lr",
            f"the range test's range for {key}, [{rng[0]:.3g}, {rng[1]:.3g}], does not meet "
            f"[{user.low:g}, {user.high:g}]; widen low and high, or use auto: true",
        )
    return [low, high]
