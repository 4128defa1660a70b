"""Interactive figures (HTML, the dashboard): figure data drawn with plotly.

Only draws: every choice of what to show was made by :mod:`tunelab.viz.data`. Traces of more
than ``GL_POINTS`` points use WebGL (``Scattergl``) so large studies stay responsive.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import plotly.graph_objects as go
from plotly.subplots import make_subplots

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

__all__ = ["GL_POINTS", "to_plotly"]

#: Above this many points a scatter trace is drawn with WebGL.
GL_POINTS = 1_000

_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
#: How each state's intermediate curves look (colour, dash, last step marked), in drawing
#: order: the stopped trials under the complete and running ones.
_STATES = {
    "FAILED": ("#d62728", "dashdot", True),
    "PRUNED": ("#7f7f7f", "dash", True),
    "PAUSED": ("#ff7f0e", "dot", True),
    "RUNNING": ("#2ca02c", "solid", False),
    "COMPLETE": ("#1f77b4", "solid", False),
}


def to_plotly(data: FigureData) -> go.Figure:
    """A plotly figure of ``data`` (any of the figure-data NamedTuples); the title carries the
    note, so a subsampled figure says so."""
    draw = _DRAW.get(type(data))
    if draw is None:
        raise TypeError(f"to_plotly draws figure data from tunelab.viz, got {type(data).__name__}")
    fig = draw(data)
    text = data.title + (f"<br><sup>{data.note}</sup>" if data.note else "")
    fig.update_layout(title={"text": text}, template="plotly_white")
    return fig


def _scatter(points: int) -> type[go.Scatter] | type[go.Scattergl]:
    return go.Scattergl if points > GL_POINTS else go.Scatter


def _empty() -> go.Figure:
    fig = go.Figure()
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def _history(data: HistoryData) -> go.Figure:
    if not data.numbers and not data.pruned_numbers:
        return _empty()
    fig = go.Figure()
    scatter = _scatter(len(data.numbers) + len(data.pruned_numbers))
    hover = "trial %{x}<br>" + data.metric + " %{y:.4g}<extra></extra>"
    fig.add_trace(
        scatter(
            x=data.pruned_numbers,
            y=data.pruned_values,
            mode="markers",
            name="PRUNED (value when stopped)",
            hovertemplate=hover,
            marker={"color": "#b0b0b0", "symbol": "circle-open", "size": 6},
        )
    )
    fig.add_trace(
        scatter(
            x=data.numbers,
            y=data.values,
            mode="markers",
            name="COMPLETE",
            hovertemplate=hover,
            marker={"color": _COLORS[0], "size": 7},
        )
    )
    fig.add_trace(
        scatter(
            x=data.best_numbers,
            y=data.best_values,
            mode="lines",
            line_shape="hv",
            name=f"best so far ({data.direction})",
            line={"color": _COLORS[3], "width": 2},
            hovertemplate=hover,
        )
    )
    fig.update_xaxes(title_text="trial number")
    fig.update_yaxes(title_text=data.metric, type="log" if data.log_y else None)
    return fig


def _curves(data: CurvesData) -> go.Figure:
    if not data.panels:
        return _empty()
    fig = make_subplots(
        rows=1, cols=len(data.panels), subplot_titles=[p.label for p in data.panels]
    )
    color = {n: _COLORS[i % len(_COLORS)] for i, n in enumerate(data.numbers)}
    for col, panel in enumerate(data.panels, start=1):
        for curve in panel.curves:
            fig.add_trace(
                go.Scatter(
                    x=curve.steps,
                    y=curve.values,
                    mode="lines",
                    name=f"#{curve.number} {curve.name}",
                    legendgroup=str(curve.number),
                    line={
                        "color": color[curve.number],
                        "dash": "dash" if curve.name.startswith("train_") else "solid",
                    },
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="step", row=1, col=col)
        fig.update_yaxes(
            title_text=panel.label, type="log" if panel.log_y else None, row=1, col=col
        )
    return fig


def _parallel(data: ParallelData) -> go.Figure:
    if not data.values:
        return _empty()
    dimensions = [
        {
            "label": d.name,
            "values": d.values,
            "tickvals": d.tickvals,
            "ticktext": d.ticktext,
            "range": _span(d.values + d.tickvals),
        }
        for d in data.dimensions
    ]
    line = {
        "color": data.values,
        "colorscale": "Viridis",
        "reversescale": data.direction == "minimize",
        "showscale": True,
        "colorbar": {"title": {"text": data.metric}},
    }
    return go.Figure(go.Parcoords(line=line, dimensions=dimensions))


def _span(values: list[float]) -> list[float]:
    """An axis range around ``values``, widened when they are all equal."""
    lo, hi = min(values), max(values)
    return [lo, hi] if hi > lo else [lo - 0.5, hi + 0.5]


def _slice(data: SliceData) -> go.Figure:
    if not data.axes:
        return _empty()
    cols = min(len(data.axes), 3)
    rows = math.ceil(len(data.axes) / cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        shared_yaxes=True,
        horizontal_spacing=0.04,
        vertical_spacing=0.15 / rows + 0.05,
    )
    for i, axis in enumerate(data.axes):
        row, col = divmod(i, cols)
        kept = [j for j, v in enumerate(axis.values) if v is not None]
        fig.add_trace(
            _scatter(len(kept))(
                x=[axis.values[j] for j in kept],
                y=[data.values[j] for j in kept],
                mode="markers",
                name=axis.name,
                showlegend=False,
                text=[f"trial {data.numbers[j]}" for j in kept],
                marker={
                    "color": [data.numbers[j] for j in kept],
                    "colorscale": "Viridis",
                    "cmin": min(data.numbers),
                    "cmax": max(data.numbers),
                    "showscale": i == 0,
                    "colorbar": {"title": {"text": "trial"}},
                    "size": 6,
                },
            ),
            row=row + 1,
            col=col + 1,
        )
        fig.update_xaxes(title_text=axis.name, row=row + 1, col=col + 1, **_axis_style(axis))
        if col == 0:
            fig.update_yaxes(title_text=data.metric, row=row + 1, col=1)
    fig.update_yaxes(type="log" if data.log_y else None)
    fig.update_layout(height=120 + 300 * rows)
    return fig


def _axis_style(axis: Axis) -> dict:
    if axis.scale == "log":
        return {"type": "log"}
    if axis.scale == "categorical":
        return {"tickvals": list(range(len(axis.categories))), "ticktext": axis.categories}
    return {}


def _contour(data: ContourData) -> go.Figure:
    if data.x is None or data.y is None:
        return _empty()
    fig = go.Figure()
    if data.z:
        fig.add_trace(
            go.Contour(
                x=data.grid_x,
                y=data.grid_y,
                z=data.z,
                colorscale="Viridis",
                reversescale=data.direction == "minimize",
                colorbar={"title": {"text": data.metric}},
                connectgaps=False,
                hoverinfo="skip",
            )
        )
    fig.add_trace(
        _scatter(len(data.values))(
            x=data.x.values,
            y=data.y.values,
            mode="markers",
            name="trials",
            showlegend=False,
            text=[
                f"trial {n}<br>{data.metric} {v:.4g}"
                for n, v in zip(data.numbers, data.values, strict=True)
            ],
            hoverinfo="text",
            marker={"color": "black", "size": 5, "line": {"color": "white", "width": 0.5}},
        )
    )
    fig.update_xaxes(title_text=data.x.name, **_axis_style(data.x))
    fig.update_yaxes(title_text=data.y.name, **_axis_style(data.y))
    return fig


def _importance(data: ImportanceData) -> go.Figure:
    if not data.params:
        return _empty()
    fig = go.Figure(
        go.Bar(
            x=data.importances[::-1],
            y=data.params[::-1],
            orientation="h",
            marker={"color": _COLORS[0]},
            text=[f"{v:.2f}" for v in data.importances[::-1]],
            textposition="outside",
        )
    )
    fig.update_xaxes(title_text="share of the main-effect variance", range=[0, 1.1])
    fig.update_layout(height=max(300, 120 + 30 * len(data.params)))
    return fig


def _intermediate(data: IntermediateData) -> go.Figure:
    if not data.lines:
        return _empty()
    fig = go.Figure()
    points = sum(len(line.steps) for line in data.lines)
    for state in _drawing_order(data):
        color, dash, marked = _STATES.get(state, ("#7f7f7f", "solid", False))
        lines = [line for line in data.lines if line.state == state]
        x, y, text = [], [], []
        for line in lines:  # one trace per state, lines broken by None: fast with 300 trials
            x += [*line.steps, None]
            y += [*line.values, None]
            text += [f"trial {line.number}"] * len(line.steps) + [None]
        fig.add_trace(
            _scatter(points)(
                x=x,
                y=y,
                mode="lines",
                name=f"{state} ({len(lines)})",
                legendgroup=state,
                text=text,
                line={"color": color, "dash": dash},
                opacity=0.8,
            )
        )
        if marked:
            fig.add_trace(
                go.Scatter(
                    x=[line.steps[-1] for line in lines],
                    y=[line.values[-1] for line in lines],
                    mode="markers",
                    legendgroup=state,
                    showlegend=False,
                    text=[f"trial {line.number} {state.lower()} here" for line in lines],
                    marker={"color": color, "symbol": "x", "size": 7},
                )
            )
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text=data.metric, type="log" if data.log_y else None)
    return fig


def _drawing_order(data: IntermediateData) -> list[str]:
    present = {line.state for line in data.lines}
    return sorted(present - _STATES.keys()) + [s for s in _STATES if s in present]


def _range_test(data: RangeTestData) -> go.Figure:
    fig = go.Figure()
    fig.add_scatter(
        x=data.lrs, y=data.losses, mode="lines", name="loss", line={"color": "#c7c7c7", "width": 1}
    )
    fig.add_scatter(
        x=data.lrs, y=data.smoothed, mode="lines", name="smoothed loss", line={"color": _COLORS[0]}
    )
    if data.searched is not None:
        low, high = data.searched
        fig.add_vrect(x0=low, x1=high, fillcolor=_COLORS[0], opacity=0.08, line_width=0)
        fig.add_scatter(  # the band in the legend too
            x=[low, high],
            y=[min(data.smoothed)] * 2,
            mode="lines",
            name=f"searched: {low:.3g} to {high:.3g}",
            line={"color": _COLORS[0], "width": 6},
            opacity=0.25,
        )
    for i, (name, lr) in enumerate(data.suggestions.items()):
        label = f"{name}: {lr:.3g}" + (" (used)" if name == data.chosen else "")
        fig.add_vline(x=lr, line={"color": _COLORS[i + 1], "dash": "dash"})
        fig.add_scatter(
            x=[lr],
            y=[_smoothed_at(data, lr)],
            mode="markers",
            name=label,
            marker={"color": _COLORS[i + 1], "size": 10},
        )
    fig.update_xaxes(title="learning rate", type="log" if data.log_x else "linear")
    fig.update_yaxes(title="training loss", range=_loss_range(data))
    return fig


def _loss_range(data: RangeTestData) -> list[float]:
    """The loss axis of a range test without the blow-up, which would flatten the rest (as the
    matplotlib figure draws it; the blow-up stays a zoom-out away)."""
    low, first = min(data.smoothed), data.smoothed[0]
    return [low * 0.9 if low > 0 else low, max(first * 2, low * 4)]


def _smoothed_at(data: RangeTestData, lr: float) -> float:
    """The smoothed loss at the step whose rate is nearest ``lr``."""
    nearest = min(range(len(data.lrs)), key=lambda i: abs(data.lrs[i] - lr))
    return data.smoothed[nearest]


_DRAW: dict[type, Callable[..., go.Figure]] = {
    HistoryData: _history,
    CurvesData: _curves,
    ParallelData: _parallel,
    SliceData: _slice,
    ContourData: _contour,
    ImportanceData: _importance,
    IntermediateData: _intermediate,
    RangeTestData: _range_test,
}
