"""Static figures (PNG, reports): figure data drawn with matplotlib.

Figures are built with :class:`matplotlib.figure.Figure` directly, never pyplot, so nothing
global changes and any thread may draw; ``fig.savefig(path, dpi=...)`` renders with Agg.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from tunelab.viz.data import (
    Axis,
    ContourData,
    CurvesData,
    FigureData,
    HistoryData,
    ImportanceData,
    IntermediateData,
    ParallelData,
    RangeTestData,
    SliceData,
)

__all__ = ["SIZE", "to_matplotlib"]

#: Figure size in inches (width, height); figures with many panels grow taller.
SIZE = (8.0, 5.0)

_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
#: How each state's intermediate curves look (colour, dash, last step marked), in drawing
#: order: the stopped trials under the complete and running ones.
_STATES = {
    "FAILED": ("#d62728", "-.", True),
    "PRUNED": ("#7f7f7f", "--", True),
    "PAUSED": ("#ff7f0e", ":", True),
    "RUNNING": ("#2ca02c", "-", False),
    "COMPLETE": ("#1f77b4", "-", False),
}


def to_matplotlib(data: FigureData) -> Figure:
    """A matplotlib figure of ``data`` (any of the figure-data NamedTuples), titled, with the
    note (when there is one) in small print at the bottom."""
    draw = _DRAW.get(type(data))
    if draw is None:
        raise TypeError(
            f"to_matplotlib draws figure data from tunelab.viz, got {type(data).__name__}"
        )
    fig = Figure(figsize=SIZE, layout="constrained")
    draw(fig, data)
    fig.suptitle(data.title, fontsize=12)
    if data.note:
        fig.text(0.5, 0.01, data.note, ha="center", va="bottom", fontsize=8, color="dimgray")
        fig.get_layout_engine().set(rect=(0, 0.04, 1, 0.96))
    return fig


def _empty(fig: Figure) -> None:
    fig.add_subplot().set_axis_off()


def _history(fig: Figure, data: HistoryData) -> None:
    if not data.numbers and not data.pruned_numbers:
        return _empty(fig)
    ax = fig.add_subplot()
    small = len(data.numbers) + len(data.pruned_numbers) > 1_000
    ax.scatter(
        data.pruned_numbers,
        data.pruned_values,
        s=8 if small else 18,
        facecolors="none",
        edgecolors="#a0a0a0",
        label="PRUNED (value when stopped)",
    )
    ax.scatter(data.numbers, data.values, s=8 if small else 22, color=_COLORS[0], label="COMPLETE")
    ax.step(
        data.best_numbers,
        data.best_values,
        where="post",
        color=_COLORS[3],
        linewidth=1.8,
        label=f"best so far ({data.direction})",
    )
    ax.set_xlabel("trial number")
    ax.set_ylabel(data.metric)
    if data.log_y:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def _curves(fig: Figure, data: CurvesData) -> None:
    if not data.panels:
        return _empty(fig)
    color = {n: _COLORS[i % len(_COLORS)] for i, n in enumerate(data.numbers)}
    for ax, panel in zip(
        fig.subplots(1, len(data.panels), squeeze=False)[0], data.panels, strict=True
    ):
        for curve in panel.curves:
            ax.plot(
                curve.steps,
                curve.values,
                color=color[curve.number],
                linestyle="--" if curve.name.startswith("train_") else "-",
                label=f"#{curve.number} {curve.name}",
            )
        ax.set_title(panel.label, fontsize=10)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(panel.label)
        if panel.log_y:
            ax.set_yscale("log")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)


def _parallel(fig: Figure, data: ParallelData) -> None:
    if not data.values:
        return _empty(fig)
    ax = fig.add_subplot()
    columns = []
    for i, d in enumerate(data.dimensions):
        lo, hi = min(d.values + d.tickvals), max(d.values + d.tickvals)
        span = (hi - lo) or 1.0
        columns.append((np.asarray(d.values) - lo) / span)
        ax.axvline(i, color="black", linewidth=0.8)
        for value, text in zip(d.tickvals, d.ticktext, strict=True):
            ax.text(
                i + 0.02,
                (value - lo) / span,
                text,
                fontsize=7,
                va="center",
                bbox={"facecolor": "white", "alpha": 0.6, "linewidth": 0, "pad": 0.5},
            )
    ys = np.column_stack(columns)
    order = np.argsort(data.values)  # the best drawn last, on top
    if data.direction == "minimize":
        order = order[::-1]
    xs = np.arange(len(data.dimensions))
    norm = Normalize(min(data.values), max(data.values))
    cmap = "viridis_r" if data.direction == "minimize" else "viridis"
    lines = LineCollection(
        [np.column_stack([xs, ys[j]]) for j in order],
        cmap=cmap,
        norm=norm,
        linewidths=1.0,
        alpha=0.7,
    )
    lines.set_array(np.asarray(data.values)[order])
    ax.add_collection(lines)
    ax.set_xlim(-0.1, len(xs) - 0.6)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xticks(xs, [d.name for d in data.dimensions], rotation=20, ha="right")
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    fig.colorbar(lines, ax=ax, label=data.metric)


def _slice(fig: Figure, data: SliceData) -> None:
    if not data.axes:
        return _empty(fig)
    cols = min(len(data.axes), 3)
    rows = math.ceil(len(data.axes) / cols)
    fig.set_size_inches(SIZE[0], max(SIZE[1], 2.6 * rows + 0.8))
    grid = fig.subplots(rows, cols, sharey=True, squeeze=False)
    norm = Normalize(min(data.numbers), max(data.numbers))
    size = 6 if len(data.values) > 1_000 else 16
    for i, ax in enumerate(grid.flat):
        if i >= len(data.axes):
            ax.set_axis_off()
            continue
        axis = data.axes[i]
        kept = [j for j, v in enumerate(axis.values) if v is not None]
        points = ax.scatter(
            [axis.values[j] for j in kept],
            [data.values[j] for j in kept],
            s=size,
            c=[data.numbers[j] for j in kept],
            cmap="viridis",
            norm=norm,
        )
        ax.set_xlabel(axis.name)
        _style_axis(ax, axis, "x")
        if i % cols == 0:
            ax.set_ylabel(data.metric)
        ax.grid(alpha=0.3)
    if data.log_y:
        grid[0, 0].set_yscale("log")
    fig.colorbar(points, ax=grid, label="trial number", shrink=0.8)


def _style_axis(ax, axis: Axis, which: str) -> None:
    if axis.scale == "log":
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    elif axis.categories:
        positions = list(range(len(axis.categories)))
        (ax.set_xticks if which == "x" else ax.set_yticks)(positions, axis.categories)
        (ax.set_xlim if which == "x" else ax.set_ylim)(-0.5, len(positions) - 0.5)


def _contour(fig: Figure, data: ContourData) -> None:
    if data.x is None or data.y is None:
        return _empty(fig)
    ax = fig.add_subplot()
    if data.z:
        z = np.ma.masked_invalid(np.array(data.z, dtype=float))
        cmap = "viridis_r" if data.direction == "minimize" else "viridis"
        filled = ax.contourf(data.grid_x, data.grid_y, z, levels=15, cmap=cmap)
        fig.colorbar(filled, ax=ax, label=data.metric)
    ax.scatter(
        data.x.values,
        data.y.values,
        s=18,
        color="black",
        edgecolors="white",
        linewidths=0.5,
        clip_on=False,
        zorder=3,
    )
    ax.set_xlabel(data.x.name)
    ax.set_ylabel(data.y.name)
    _style_axis(ax, data.x, "x")
    _style_axis(ax, data.y, "y")


def _importance(fig: Figure, data: ImportanceData) -> None:
    if not data.params:
        return _empty(fig)
    ax = fig.add_subplot()
    bars = ax.barh(data.params[::-1], data.importances[::-1], color=_COLORS[0])
    ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("share of the main-effect variance")
    ax.xaxis.set_major_locator(MaxNLocator(6))
    ax.grid(axis="x", alpha=0.3)


def _intermediate(fig: Figure, data: IntermediateData) -> None:
    if not data.lines:
        return _empty(fig)
    ax = fig.add_subplot()
    handles = []
    for state in _drawing_order(data):
        color, style, marked = _STATES.get(state, ("#7f7f7f", "-", False))
        lines = [line for line in data.lines if line.state == state]
        segments = [np.column_stack([line.steps, line.values]) for line in lines]
        ax.add_collection(
            LineCollection(segments, colors=color, linestyles=style, linewidths=1.0, alpha=0.8)
        )
        if marked:
            ax.scatter(
                [line.steps[-1] for line in lines],
                [line.values[-1] for line in lines],
                marker="x",
                s=18,
                color=color,
            )
        handles.append(
            Line2D(
                [],
                [],
                color=color,
                linestyle=style,
                marker="x" if marked else None,
                label=f"{state} ({len(lines)})",
            )
        )
    ax.autoscale()
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(data.metric)
    if data.log_y:
        ax.set_yscale("log")
    ax.legend(handles=handles, fontsize=8)
    ax.grid(alpha=0.3)


def _drawing_order(data: IntermediateData) -> list[str]:
    present = {line.state for line in data.lines}
    return sorted(present - _STATES.keys()) + [s for s in _STATES if s in present]


def _range_test(fig: Figure, data: RangeTestData) -> None:
    ax = fig.add_subplot()
    ax.plot(data.lrs, data.losses, color="#c7c7c7", linewidth=1, label="loss")
    ax.plot(data.lrs, data.smoothed, color=_COLORS[0], label="smoothed loss")
    if data.searched is not None:
        low, high = data.searched
        label = f"searched: {low:.3g} to {high:.3g}"
        ax.axvspan(low, high, color=_COLORS[0], alpha=0.1, label=label)
    for i, (name, lr) in enumerate(data.suggestions.items()):
        label = f"{name}: {lr:.3g}" + (" (used)" if name == data.chosen else "")
        ax.axvline(lr, color=_COLORS[i + 1], linestyle="--", label=label)
    if data.log_x:
        ax.set_xscale("log")
    top = max(data.smoothed[0] * 2, min(data.smoothed) * 4)  # the blow-up would flatten the rest
    ax.set_ylim(min(data.smoothed) * 0.9 if min(data.smoothed) > 0 else None, top)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


_DRAW: dict[type, Callable[[Figure, FigureData], None]] = {
    HistoryData: _history,
    CurvesData: _curves,
    ParallelData: _parallel,
    SliceData: _slice,
    ContourData: _contour,
    ImportanceData: _importance,
    IntermediateData: _intermediate,
    RangeTestData: _range_test,
}
