"""Figures of a study, built from storage: data functions, then a plotly or matplotlib renderer.

:func:`figure_data` turns trials into one of the :data:`KINDS` of figure data (plain lists, no
plotting library); :func:`to_plotly` draws it for HTML, :func:`to_matplotlib` for PNG. The
renderers are imported when first used, so building data does not import plotly or matplotlib.

Example:
    >>> from tunelab.trial import FrozenTrial, TrialState
    >>> trials = [FrozenTrial(id=1, number=0, state=TrialState.COMPLETE, params={"x": 1}, value=0.5)]
    >>> data = figure_data("history", trials, metric="val_loss", direction="minimize")
    >>> data.title
    'Optimization history: val_loss'
    >>> to_matplotlib(data).savefig("history.png")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tunelab.viz.data import (
    KINDS,
    LOG_RATIO,
    MAX_CURVES,
    MAX_FIT,
    MAX_LINES,
    MAX_POINTS,
    Axis,
    ContourData,
    Curve,
    CurvesData,
    Dimension,
    FigureData,
    HistoryData,
    ImportanceData,
    IntermediateData,
    Line,
    Panel,
    ParallelData,
    RangeTestData,
    SliceData,
    contour_data,
    curves_data,
    figure_data,
    history_data,
    importance_data,
    intermediate_data,
    parallel_data,
    param_importances,
    range_test_data,
    slice_data,
    thin,
)

if TYPE_CHECKING:
    from tunelab.viz.render_matplotlib import to_matplotlib
    from tunelab.viz.render_plotly import to_plotly

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
    "parallel_data",
    "param_importances",
    "range_test_data",
    "slice_data",
    "thin",
    "to_matplotlib",
    "to_plotly",
]

_RENDERERS = {
    "to_plotly": "tunelab.viz.render_plotly",
    "to_matplotlib": "tunelab.viz.render_matplotlib",
}


def __getattr__(name: str) -> Any:
    if name not in _RENDERERS:
        raise AttributeError(f"module 'tunelab.viz' has no attribute {name!r}")
    value = getattr(importlib.import_module(_RENDERERS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
