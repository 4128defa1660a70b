"""Figure data: what each plot of a study shows, as NamedTuples of plain lists and numbers.

Pure functions over :class:`~tunelab.trial.FrozenTrial` lists (as storage hands them out), so
they are unit-tested without drawing anything, and the plotly and matplotlib renderers only draw.
Each function is O(n) over trials and caps what it returns (the module constants below), so a
100,000-trial study stays fast in the dashboard; ``note`` states the rule whenever one was applied.

Rules shared by all figures:

* Only finite values are plotted. Parallel, slice, contour and importance use COMPLETE trials: a
  PRUNED trial's value was taken before its training ended and would bias them.
* A parameter is numeric when every value it took is a number (bools are categories). A numeric
  axis is log when all its values are positive, max/min >= ``LOG_RATIO``, and their median lies
  nearer the middle of a log axis than of a linear one: they spread over decades, as a
  log-sampled parameter's do (a uniform 0-1 dropout whose smallest draw is tiny stays linear).
  The same rule sets log y axes. Categories are drawn at positions 0, 1, ... in sorted order.
* An inactive conditional parameter (absent from ``params``) is ``None`` in an :class:`Axis`.

Example:
    >>> from tunelab.trial import FrozenTrial, TrialState
    >>> trials = [
    ...     FrozenTrial(id=i + 1, number=i, state=TrialState.COMPLETE, params={"x": i}, value=v)
    ...     for i, v in enumerate([3.0, 1.0, 2.0])
    ... ]
    >>> history_data(trials, metric="loss", direction="minimize").best_values
    [3.0, 1.0, 1.0]
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from tunelab.trial import FrozenTrial, TrialState
from tunelab.viz.importance import main_effects

__all__ = [
    "KINDS",
    "LOG_RATIO",
    "MAX_CURVES",
    "MAX_FIT",
    "MAX_LINES",
    "MAX_POINTS",
    "Axis",
    "ContourData",
    "Curve",
    "CurvesData",
    "Dimension",
    "FigureData",
    "HistoryData",
    "ImportanceData",
    "IntermediateData",
    "Line",
    "Panel",
    "ParallelData",
    "RangeTestData",
    "SliceData",
    "contour_data",
    "curves_data",
    "figure_data",
    "history_data",
    "importance_data",
    "intermediate_data",
    "param_importances",
    "parallel_data",
    "range_test_data",
    "slice_data",
    "thin",
]

KINDS = ("history", "curves", "parallel", "slice", "contour", "importance", "intermediate")

#: Points at most in the history and slice figures.
MAX_POINTS = 5_000
#: Lines at most in the parallel-coordinates figure; the best tenth of them are the best trials.
MAX_LINES = 1_000
#: Completed trials at most that the contour is interpolated from and the importance fitted on.
MAX_FIT = 2_000
#: Trials' curves at most in the intermediate-values figure; the best third are the best trials.
MAX_CURVES = 300
#: A positive axis needs max/min >= this ratio to be drawn on a log scale (see the log rule).
LOG_RATIO = 100
#: Trials the learning curves show by default (the best ones).
DEFAULT_CURVES = 3
#: Completed trials an importance needs at least.
MIN_IMPORTANCE_TRIALS = 3
#: Grid points per axis of the contour.
CONTOUR_GRID = 64

_FINISHED_WITH_VALUE = (TrialState.COMPLETE, TrialState.PRUNED)
_INACTIVE = "(inactive)"


class Axis(NamedTuple):
    """One parameter's values over the trials a figure shows.

    ``scale`` is "linear", "log" or "categorical"; ``values`` holds the number itself (linear,
    log) or the position in ``categories`` (categorical), ``None`` where the parameter was inactive.
    """

    name: str
    scale: str
    values: list[float | None]
    categories: list[str]


class Dimension(NamedTuple):
    """One axis of parallel coordinates, ready to draw: log axes in log10, categories and the
    inactive value at positions, with the ticks that label them."""

    name: str
    values: list[float]
    tickvals: list[float]
    ticktext: list[str]


class Curve(NamedTuple):
    """One reported metric of one trial, by step."""

    number: int
    name: str
    steps: list[int]
    values: list[float]


class Panel(NamedTuple):
    """One panel of the learning curves: its y label and curves."""

    label: str
    log_y: bool
    curves: list[Curve]


class Line(NamedTuple):
    """One trial's intermediate values of the study metric, with the trial's state."""

    number: int
    state: str
    steps: list[int]
    values: list[float]


class HistoryData(NamedTuple):
    """COMPLETE and PRUNED values by trial number, and the best COMPLETE value so far (a step
    line through ``best_numbers``). A pruned trial's value is where it stopped: drawn apart."""

    title: str
    note: str
    metric: str
    direction: str
    log_y: bool
    numbers: list[int]
    values: list[float]
    pruned_numbers: list[int]
    pruned_values: list[float]
    best_numbers: list[int]
    best_values: list[float]


class CurvesData(NamedTuple):
    """Learning curves of a few trials: a loss panel and a panel of the study metric."""

    title: str
    note: str
    metric: str
    numbers: list[int]
    panels: list[Panel]


class ParallelData(NamedTuple):
    """Parallel coordinates: the metric first, then one dimension per parameter; ``values``
    (the metric) colours the lines."""

    title: str
    note: str
    metric: str
    direction: str
    numbers: list[int]
    values: list[float]
    dimensions: list[Dimension]


class SliceData(NamedTuple):
    """The metric against each parameter, one panel per :class:`Axis`; colour by trial number."""

    title: str
    note: str
    metric: str
    log_y: bool
    numbers: list[int]
    values: list[float]
    axes: list[Axis]


class ContourData(NamedTuple):
    """The metric interpolated over two parameters (``z[i][j]`` at ``grid_y[i]``, ``grid_x[j]``;
    None outside the observed points' hull) and the observed points themselves."""

    title: str
    note: str
    metric: str
    direction: str
    x: Axis | None
    y: Axis | None
    numbers: list[int]
    values: list[float]
    grid_x: list[float]
    grid_y: list[float]
    z: list[list[float | None]]


class ImportanceData(NamedTuple):
    """Parameters by importance (shares summing to 1), most important first."""

    title: str
    note: str
    metric: str
    params: list[str]
    importances: list[float]


class RangeTestData(NamedTuple):
    """An LR range test: the loss against the learning rate (raw and smoothed) and the rates
    its rules suggest; ``chosen`` names the one tunelab uses; ``searched`` is the range an
    ``auto`` search drew its rates from (``(low, high)``; None when the test set no range)."""

    title: str
    note: str
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    log_x: bool
    suggestions: dict[str, float]
    chosen: str
    searched: tuple[float, float] | None = None


def range_test_data(
    test: Mapping[str, Any], searched: Sequence[float] | None = None
) -> RangeTestData:
    """The figure of an LR range test, from its JSON form (``RangeTest.to_dict()``, as a study
    stores it), so drawing it needs no torch; ``searched`` is the range a search read off it."""
    chosen = next(
        (name for name, lr in test["suggestions"].items() if lr == test.get("suggestion")), ""
    )
    stopped = test.get("stopped", "")
    return RangeTestData(
        title=f"LR range test ({test.get('optimizer', '?')}, batch {test.get('batch_size', '?')})",
        note="" if stopped == "end of range" else f"stopped early: {stopped}",
        lrs=list(test["lrs"]),
        losses=list(test["losses"]),
        smoothed=list(test["smoothed"]),
        log_x=test.get("mode", "exp") == "exp",
        suggestions=dict(test["suggestions"]),
        chosen=chosen,
        searched=None if searched is None else (float(searched[0]), float(searched[1])),
    )


class IntermediateData(NamedTuple):
    """Every shown trial's intermediate values of the metric, with its state."""

    title: str
    note: str
    metric: str
    log_y: bool
    lines: list[Line]


FigureData = (
    HistoryData
    | CurvesData
    | ParallelData
    | SliceData
    | ContourData
    | ImportanceData
    | IntermediateData
    | RangeTestData
)


def figure_data(
    kind: str,
    trials: Sequence[FrozenTrial],
    *,
    metric: str,
    direction: str,
    numbers: Sequence[int] | None = None,
    params: Sequence[str] | None = None,
) -> FigureData:
    """The data of one figure, by kind (one of :data:`KINDS`).

    ``numbers`` is used by "curves", ``params`` by "parallel", "slice", "contour" and
    "importance"; the other kinds ignore them, so a caller can pass the same arguments to all.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown figure kind {kind!r}; expected one of {', '.join(KINDS)}")
    _check_direction(direction)
    if kind == "curves":
        return curves_data(trials, metric=metric, direction=direction, numbers=numbers)
    if kind in _WITH_PARAMS:
        return _WITH_PARAMS[kind](trials, metric=metric, direction=direction, params=params)
    return _PLAIN[kind](trials, metric=metric, direction=direction)


def thin(count: int, cap: int, keep: Iterable[int] = ()) -> tuple[list[int], int]:
    """Which of ``count`` items ordered by trial number to show: one in every ``k`` (an even
    stride, the last item included so the figure spans the study), plus each position in
    ``keep`` (at most ``cap // 2`` of them), ``cap`` at most in all.

    Returns:
        The sorted positions, and k (1 when all ``count`` fit).
    """
    if count <= cap:
        return list(range(count)), 1
    kept = set(keep)
    if cap < 4 or len(kept) > cap // 2:
        raise ValueError(
            f"thin() needs cap >= 4 and at most cap // 2 positions to keep, but got cap={cap} "
            f"and {len(kept)} to keep"
        )
    k = -(-count // (cap - len(kept) - 1))
    kept.update(range(0, count, k))
    kept.add(count - 1)
    return sorted(kept), k


def history_data(trials: Sequence[FrozenTrial], *, metric: str, direction: str) -> HistoryData:
    """Each finished trial's value by number, and the best-so-far line.

    COMPLETE trials are the points and set the best so far; PRUNED trials that have a value are
    returned apart (drawn grey), since they stopped before their training ended. FAILED, RUNNING,
    PAUSED and WAITING trials are left out.
    """
    _check_direction(direction)
    pool = sorted(
        (t for t in trials if t.state in _FINISHED_WITH_VALUE and _finite(t.value)),
        key=lambda t: t.number,
    )
    title = f"Optimization history: {metric}"
    if not pool:
        why = f"{title}: no finished trial with a value yet"
        return HistoryData(why, "", metric, direction, False, [], [], [], [], [], [])
    running = _running_best(pool, direction)
    shown, note = _thin_keeping_bests(running, "finished trials")
    points = [pool[i] for i in shown]
    complete = [t for t in points if t.state is TrialState.COMPLETE]
    pruned = [t for t in points if t.state is TrialState.PRUNED]
    best = [(pool[i].number, running[i]) for i in shown if running[i] is not None]
    return HistoryData(
        title=title,
        note=note,
        metric=metric,
        direction=direction,
        log_y=_is_log([t.value for t in points]),
        numbers=[t.number for t in complete],
        values=[t.value for t in complete],
        pruned_numbers=[t.number for t in pruned],
        pruned_values=[t.value for t in pruned],
        best_numbers=[n for n, _ in best],
        best_values=[v for _, v in best],
    )


def curves_data(
    trials: Sequence[FrozenTrial],
    *,
    metric: str,
    direction: str,
    numbers: Sequence[int] | None = None,
) -> CurvesData:
    """Learning curves of the trials ``numbers`` (default: the best 3 COMPLETE trials).

    Two panels, each left out when empty. The loss panel shows ``train_loss``, ``val_loss`` and
    ``loss`` where reported; when none is, every key ending in "loss" (a generic objective's own
    names). The metric panel shows the study ``metric`` and its ``train_`` twin (``val_accuracy``
    -> ``train_accuracy``). A key shown in the metric panel is not repeated in the loss panel.

    Raises:
        ValueError: a number in ``numbers`` is not a trial of the study.
    """
    _check_direction(direction)
    by_number = {t.number: t for t in trials}
    if numbers is None:
        chosen = [t.number for t in _best(_completed(trials), direction, DEFAULT_CURVES)]
    else:
        chosen = list(dict.fromkeys(numbers))
        missing = [n for n in chosen if n not in by_number]
        if missing:
            known = f"numbers {min(by_number)} to {max(by_number)}" if by_number else "no trials"
            raise ValueError(
                f"curves: no trial numbered {', '.join(map(str, missing))} in this study "
                f"(it has {len(by_number)} trials, {known}); pick numbers from `tunelab trials`"
            )
    if not chosen:
        return CurvesData(
            "Learning curves: no completed trial yet; choose trials by number", "", metric, [], []
        )
    shown = [by_number[n] for n in chosen]
    reported = list(dict.fromkeys(k for t in shown for m in t.intermediate.values() for k in m))
    twin = "train_" + metric.removeprefix("val_")
    metric_keys = [k for k in (metric, twin) if k in reported]
    losses = [k for k in ("train_loss", "val_loss", "loss") if k in reported] or [
        k for k in reported if k.endswith("loss")
    ]
    losses = [k for k in losses if k not in metric_keys]
    panels = [
        _panel(label, shown, keys)
        for label, keys in (("loss", losses), (metric, metric_keys))
        if keys
    ]
    title = "Learning curves: " + ", ".join(f"#{n}" for n in chosen)
    if not any(c.steps for p in panels for c in p.curves):
        return CurvesData(f"{title}: no {metric} or loss reported per step", "", metric, chosen, [])
    return CurvesData(title, "", metric, chosen, panels)


def parallel_data(
    trials: Sequence[FrozenTrial],
    *,
    metric: str,
    direction: str,
    params: Sequence[str] | None = None,
) -> ParallelData:
    """Parallel coordinates of ``params`` (default: all seen) and the metric, COMPLETE trials.

    Over ``MAX_LINES`` trials, the best tenth of the lines are the best trials and the rest an
    even stride of the others by number. Log axes hold log10 values with ticks at powers of ten
    (plotly's parcoords has no log axis); an inactive parameter sits below its axis's range at a
    tick labelled "(inactive)".
    """
    names = _check_params(trials, params, "parallel")
    done = _completed(trials)
    title = f"Parallel coordinates: {metric}"
    if not done:
        return ParallelData(f"{title}: no completed trial yet", "", metric, direction, [], [], [])
    names = names or _seen(done)
    n_best = MAX_LINES // 10
    best = {id(t) for t in _best(done, direction, n_best)} if len(done) > MAX_LINES else set()
    rest = [t for t in done if id(t) not in best]
    positions, k = thin(len(rest), MAX_LINES - len(best))
    picked = best | {id(rest[i]) for i in positions}
    shown = [t for t in done if id(t) in picked]
    note = ""
    if best:
        rule = f"the best {n_best:,} by {metric}, plus one in {k:,} of the rest by number"
        note = _note(len(shown), len(done), "completed trials", rule)
    values = [t.value for t in shown]
    metric_axis = Axis(metric, "log" if _is_log(values) else "linear", values, [])
    dimensions = [_dimension(metric_axis)]
    dimensions += [_dimension(_axis(name, [_param(t, name) for t in shown])) for name in names]
    return ParallelData(
        title=f"{title} over {len(names)} parameters",
        note=note,
        metric=metric,
        direction=direction,
        numbers=[t.number for t in shown],
        values=values,
        dimensions=dimensions,
    )


def slice_data(
    trials: Sequence[FrozenTrial],
    *,
    metric: str,
    direction: str,
    params: Sequence[str] | None = None,
) -> SliceData:
    """The metric of COMPLETE trials against each parameter (default: all seen).

    Over ``MAX_POINTS`` trials: an even stride by number plus every trial that set a new best.
    """
    names = _check_params(trials, params, "slice")
    done = _completed(trials)
    title = f"Slice: {metric} by parameter"
    if not done:
        return SliceData(f"{title}: no completed trial yet", "", metric, False, [], [], [])
    names = names or _seen(done)
    if not names:
        return SliceData(f"{title}: the trials have no parameters", "", metric, False, [], [], [])
    positions, note = _thin_keeping_bests(_running_best(done, direction), "completed trials")
    shown = [done[i] for i in positions]
    values = [t.value for t in shown]
    return SliceData(
        title=title,
        note=note,
        metric=metric,
        log_y=_is_log(values),
        numbers=[t.number for t in shown],
        values=values,
        axes=[_axis(name, [_param(t, name) for t in shown]) for name in names],
    )


def contour_data(
    trials: Sequence[FrozenTrial],
    *,
    metric: str,
    direction: str,
    params: Sequence[str] | None = None,
) -> ContourData:
    """The metric over two parameters, linearly interpolated between COMPLETE trials.

    ``params`` names exactly two; by default the two most important (see
    :func:`param_importances`), or the first two seen when importance cannot be estimated.
    Interpolation is in the drawn coordinates: log10 on a log axis, positions for categories;
    points at the same coordinates are averaged. Trials where either parameter is inactive are
    left out; over ``MAX_FIT`` trials, an even stride by number.

    Raises:
        ValueError: ``params`` does not name two parameters that some trial has.
    """
    names = _check_params(trials, params, "contour")
    if names and len(names) != 2:
        raise ValueError(
            f"contour: params names exactly two parameters, got {len(names)}: {', '.join(names)}"
        )
    done = _completed(trials)
    title = f"Contour: {metric}"
    if not done:
        return _empty_contour(f"{title}: no completed trial yet", metric, direction)
    if not names:
        ranked = list(param_importances(done))
        names = ranked[:2] if len(ranked) >= 2 else _seen(done)[:2]
    if len(names) < 2:
        return _empty_contour(f"{title}: needs two parameters that vary", metric, direction)
    title = f"Contour: {metric} over {names[0]} and {names[1]}"
    usable = [t for t in done if None not in (_param(t, names[0]), _param(t, names[1]))]
    if not usable:
        why = f"{title}: no completed trial has both"
        return _empty_contour(why, metric, direction)
    positions, k = thin(len(usable), MAX_FIT)
    fit = [usable[i] for i in positions]
    x, y = (_axis(name, [_param(t, name) for t in fit]) for name in names)
    for axis in (x, y):
        if len({v for v in axis.values if v is not None}) < 2:
            return _empty_contour(f"{title}: {axis.name} never varied", metric, direction)
    values = [t.value for t in fit]
    grid_x, grid_y, z = _interpolate(x, y, values)
    if not z:
        title += " (too few distinct points to interpolate)"
    rule = f"one in {k:,} by number"
    return ContourData(
        title=title,
        note=_note(len(fit), len(usable), "completed trials", rule) if k > 1 else "",
        metric=metric,
        direction=direction,
        x=x,
        y=y,
        numbers=[t.number for t in fit],
        values=values,
        grid_x=grid_x,
        grid_y=grid_y,
        z=z,
    )


def param_importances(
    trials: Sequence[FrozenTrial], *, params: Sequence[str] | None = None, seed: int = 0
) -> dict[str, float]:
    """Each parameter's importance for the study value, most important first (shares summing to
    1); empty with fewer than 3 COMPLETE trials or when the value did not vary.

    A random forest is fitted on at most ``MAX_FIT`` COMPLETE trials (an even stride by number)
    and each parameter's main-effect variance estimated (:func:`tunelab.viz.importance.main_effects`).
    Encoding: numbers as they are, or log10 by the log rule, scaled to [0, 1]; categories as
    their positions; an inactive parameter as -1, a value of its own.
    """
    done = _completed(trials)
    if len(done) < MIN_IMPORTANCE_TRIALS:
        return {}
    names = list(params) if params else _seen(done)
    positions, _ = thin(len(done), MAX_FIT)
    fit = [done[i] for i in positions]
    columns = [_encoded(_axis(name, [_param(t, name) for t in fit])) for name in names]
    if not columns:
        return {}
    shares = main_effects(np.column_stack(columns), np.array([t.value for t in fit]), seed=seed)
    if not shares.any():
        return {}
    order = sorted(range(len(names)), key=lambda j: -shares[j])
    return {names[j]: float(shares[j]) for j in order}


def importance_data(
    trials: Sequence[FrozenTrial],
    *,
    metric: str,
    direction: str,
    params: Sequence[str] | None = None,
) -> ImportanceData:
    """Parameter importances for the metric (see :func:`param_importances`), as a bar chart."""
    _check_direction(direction)
    names = _check_params(trials, params, "importance")
    done = _completed(trials)
    title = f"Parameter importance for {metric}"
    if len(done) < MIN_IMPORTANCE_TRIALS:
        why = f"needs {MIN_IMPORTANCE_TRIALS} completed trials, the study has {len(done)}"
        return ImportanceData(f"{title}: {why}", "", metric, [], [])
    shares = param_importances(done, params=names)
    if not shares:
        why = f"{title}: neither the parameters nor {metric} varied"
        return ImportanceData(why, "", metric, [], [])
    positions, k = thin(len(done), MAX_FIT)
    rule = f"one in {k:,} by number"
    return ImportanceData(
        title=f"{title} ({len(positions):,} completed trials, random-forest main effects)",
        note=_note(len(positions), len(done), "completed trials", rule) if k > 1 else "",
        metric=metric,
        params=list(shares),
        importances=list(shares.values()),
    )


def intermediate_data(
    trials: Sequence[FrozenTrial], *, metric: str, direction: str
) -> IntermediateData:
    """The metric's intermediate values per step, one line per trial that reported it, with the
    trial's state (renderers draw PRUNED and PAUSED trials apart, marked at their last step).

    Over ``MAX_CURVES`` trials: the best third by their best reported value, plus an even stride
    of the rest by number.
    """
    _check_direction(direction)
    title = f"Intermediate values: {metric} per step"
    best_of = max if direction == "maximize" else min
    reporting: list[tuple[FrozenTrial, float]] = []
    for trial in sorted(trials, key=lambda t: t.number):
        reported = [
            v
            for m in trial.intermediate.values()
            if (v := m.get(metric)) is not None and math.isfinite(v)
        ]
        if reported:
            reporting.append((trial, best_of(reported)))
    if not reporting:
        return IntermediateData(f"{title}: no trial reported {metric} yet", "", metric, False, [])
    note, shown = "", [t for t, _ in reporting]
    if len(reporting) > MAX_CURVES:
        n_best = MAX_CURVES // 3
        sign = -1 if direction == "maximize" else 1
        best = {id(t) for t, v in heapq.nsmallest(n_best, reporting, key=lambda p: sign * p[1])}
        rest = [t for t, _ in reporting if id(t) not in best]
        positions, k = thin(len(rest), MAX_CURVES - n_best)
        picked = best | {id(rest[i]) for i in positions}
        shown = [t for t in shown if id(t) in picked]
        rule = f"the best {n_best:,} by {metric}, plus one in {k:,} of the rest by number"
        note = _note(len(shown), len(reporting), "trials' curves", rule)
    lines = []
    for trial in shown:
        points = sorted(
            (s, m[metric]) for s, m in trial.intermediate.items() if _finite(m.get(metric))
        )
        steps, values = [s for s, _ in points], [v for _, v in points]
        lines.append(Line(trial.number, trial.state.value, steps, values))
    return IntermediateData(
        title=title,
        note=note,
        metric=metric,
        log_y=_is_log([v for line in lines for v in line.values]),
        lines=lines,
    )


_WITH_PARAMS = {
    "parallel": parallel_data,
    "slice": slice_data,
    "contour": contour_data,
    "importance": importance_data,
}
_PLAIN = {"history": history_data, "intermediate": intermediate_data}


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_direction(direction: str) -> None:
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction must be 'minimize' or 'maximize', but got {direction!r}")


def _completed(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """COMPLETE trials with a finite value, by number."""
    done = [t for t in trials if t.state is TrialState.COMPLETE and _finite(t.value)]
    return sorted(done, key=lambda t: t.number)


def _best(done: list[FrozenTrial], direction: str, n: int) -> list[FrozenTrial]:
    """The n best of ``done`` (ordered by number), best first, the earliest among equals."""
    sign = -1 if direction == "maximize" else 1
    return heapq.nsmallest(n, done, key=lambda t: sign * t.value)


def _param(trial: FrozenTrial, name: str) -> Any:
    """A parameter's value, None where it is inactive."""
    return (trial.params or {}).get(name)


def _seen(trials: Iterable[FrozenTrial]) -> list[str]:
    """Parameter names in the order trials first show them (the space's order, mostly)."""
    return list(dict.fromkeys(name for t in trials for name in (t.params or {})))


def _check_params(
    trials: Sequence[FrozenTrial], params: Sequence[str] | None, kind: str
) -> list[str]:
    """``params`` as a list (empty for "all"); a name no trial has is a typo, not an empty plot."""
    if not params:
        return []
    known = _seen(trials)
    unknown = [p for p in params if p not in known]
    if unknown:
        raise ValueError(
            f"{kind}: no trial has the parameter(s) {', '.join(map(repr, unknown))}; "
            f"the known ones are {', '.join(known) or '(none yet)'}"
        )
    return list(dict.fromkeys(params))


def _running_best(pool: list[FrozenTrial], direction: str) -> list[float | None]:
    """The best COMPLETE value up to each position of ``pool`` (None before the first)."""
    better = (lambda a, b: a > b) if direction == "maximize" else (lambda a, b: a < b)
    best: float | None = None
    out = []
    for trial in pool:
        if trial.state is TrialState.COMPLETE and (best is None or better(trial.value, best)):
            best = trial.value
        out.append(best)
    return out


def _thin_keeping_bests(running: list[float | None], what: str) -> tuple[list[int], str]:
    """Positions to show (``MAX_POINTS`` at most) of trials whose best-so-far values are
    ``running``, and the note: a stride by number plus every trial that set a new best, so the
    best-so-far line stays exact. A study that improved on more than half the cap's trials (a
    pathological one) keeps only the stride."""
    count = len(running)
    if count <= MAX_POINTS:
        return list(range(count)), ""
    bests = [i for i, b in enumerate(running) if b is not None and (i == 0 or b != running[i - 1])]
    if len(bests) > MAX_POINTS // 2:
        positions, k = thin(count, MAX_POINTS)
        return positions, _note(len(positions), count, what, f"one in {k:,} by number")
    positions, k = thin(count, MAX_POINTS, bests)
    return positions, _note(
        len(positions), count, what, f"one in {k:,} by number, plus each new best"
    )


def _note(shown: int, total: int, what: str, rule: str) -> str:
    return f"showing {shown:,} of {total:,} {what}: {rule}"


def _is_log(values: Iterable[float]) -> bool:
    """The log rule: all positive, max/min >= LOG_RATIO, and the median nearer the middle of a
    log axis than of a linear one (values spread over decades, as a log-sampled parameter's
    are; a uniform 0-1 dropout whose smallest draw happens to be tiny is not)."""
    v = np.fromiter(values, dtype=float)
    if v.size == 0 or v.min() <= 0 or v.max() < LOG_RATIO * v.min():
        return False
    lo, hi, mid = v.min(), v.max(), float(np.median(v))
    in_log = math.log(mid / lo) / math.log(hi / lo)
    return abs(in_log - 0.5) < abs((mid - lo) / (hi - lo) - 0.5)


def _axis(name: str, raw: list[Any]) -> Axis:
    """Encode one parameter's values (None: inactive) as an :class:`Axis` by the module's rules."""
    present = [v for v in raw if v is not None]
    if present and all(_finite(v) for v in present):
        scale = "log" if _is_log(present) else "linear"
        return Axis(name, scale, [None if v is None else float(v) for v in raw], [])
    categories = sorted({str(v) for v in present})
    position = {c: float(i) for i, c in enumerate(categories)}
    values = [None if v is None else position[str(v)] for v in raw]
    return Axis(name, "categorical", values, categories)


def _coordinates(axis: Axis) -> list[float | None]:
    """Where values are drawn on a linear scale: log10 on a log axis."""
    if axis.scale != "log":
        return list(axis.values)
    return [None if v is None else math.log10(v) for v in axis.values]


def _encoded(axis: Axis) -> np.ndarray:
    """A forest's column: coordinates scaled to [0, 1] (categories: positions), inactive -1."""
    coords = np.array([np.nan if v is None else v for v in _coordinates(axis)], dtype=float)
    present = coords[~np.isnan(coords)]
    if axis.scale != "categorical" and present.size and present.max() > present.min():
        coords = (coords - present.min()) / (present.max() - present.min())
    return np.where(np.isnan(coords), -1.0, coords)


def _dimension(axis: Axis) -> Dimension:
    """An :class:`Axis` as a parallel-coordinates dimension, with ticks and the inactive value."""
    coords = _coordinates(axis)
    present = [v for v in coords if v is not None]
    if axis.scale == "categorical":
        tickvals, ticktext = [float(i) for i in range(len(axis.categories))], list(axis.categories)
        below = -1.0
    else:
        lo, hi = min(present), max(present)
        tickvals = _log_ticks(lo, hi) if axis.scale == "log" else _nice_ticks(lo, hi, present)
        ticktext = [f"{10**t:g}" if axis.scale == "log" else f"{t:.4g}" for t in tickvals]
        below = lo - 0.1 * ((hi - lo) or 1.0)
    if len(present) < len(coords):
        tickvals, ticktext = [*tickvals, below], [*ticktext, _INACTIVE]
    return Dimension(axis.name, [below if v is None else v for v in coords], tickvals, ticktext)


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Integer powers of ten within [lo, hi] (log10 coordinates; the log rule ensures two)."""
    return [float(p) for p in range(math.ceil(lo - 1e-9), math.floor(hi + 1e-9) + 1)]


def _nice_ticks(lo: float, hi: float, values: list[float]) -> list[float]:
    """About five round ticks within [lo, hi]; whole steps when every value is a whole number."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / 5
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if step * m >= raw)
    if all(float(v).is_integer() for v in values):
        step = max(step, 1.0)
    first = math.ceil(lo / step - 1e-9)
    return [round(i * step, 12) for i in range(first, math.floor(hi / step + 1e-9) + 1)]


def _interpolate(
    x: Axis, y: Axis, values: list[float]
) -> tuple[list[float], list[float], list[list[float | None]]]:
    """A CONTOUR_GRID x CONTOUR_GRID linear interpolation of ``values`` over the two axes'
    coordinates; the grid in the axes' own units. No surface (empty z) when the distinct points
    are fewer than 3 or on one line."""
    from scipy.interpolate import griddata
    from scipy.spatial import QhullError

    sums: dict[tuple[float, float], list[float]] = {}
    for px, py, v in zip(_coordinates(x), _coordinates(y), values, strict=True):
        total = sums.setdefault((px, py), [0.0, 0])
        total[0] += v
        total[1] += 1
    points = np.array(list(sums))
    means = np.array([s / n for s, n in sums.values()])
    gx = np.linspace(points[:, 0].min(), points[:, 0].max(), CONTOUR_GRID)
    gy = np.linspace(points[:, 1].min(), points[:, 1].max(), CONTOUR_GRID)
    units_x = (10**gx if x.scale == "log" else gx).tolist()
    units_y = (10**gy if y.scale == "log" else gy).tolist()
    if len(points) < 3:
        return units_x, units_y, []
    try:
        z = griddata(points, means, tuple(np.meshgrid(gx, gy)), method="linear")
    except QhullError:
        return units_x, units_y, []
    return units_x, units_y, [[None if np.isnan(v) else float(v) for v in row] for row in z]


def _empty_contour(title: str, metric: str, direction: str) -> ContourData:
    return ContourData(title, "", metric, direction, None, None, [], [], [], [], [])


def _panel(label: str, trials: list[FrozenTrial], keys: list[str]) -> Panel:
    curves = []
    for trial in trials:
        for key in keys:
            points = sorted(
                (s, m[key]) for s, m in trial.intermediate.items() if _finite(m.get(key))
            )
            if points:
                steps, values = [s for s, _ in points], [v for _, v in points]
                curves.append(Curve(trial.number, key, steps, values))
    return Panel(label, _is_log(v for c in curves for v in c.values), curves)
