"""Renderers: every kind of figure draws with plotly and matplotlib, empty ones included."""

import json
import math

import matplotlib.text
import plotly.graph_objects as go
import pytest
from matplotlib.figure import Figure

from tests.viz import make_trial
from tunelab.trial import TrialState
from tunelab.viz import KINDS, HistoryData, figure_data, to_matplotlib, to_plotly

STATES = [TrialState.COMPLETE] * 6 + [
    TrialState.PRUNED,
    TrialState.PRUNED,
    TrialState.PAUSED,
    TrialState.RUNNING,
    TrialState.FAILED,
]


def study():
    """Eleven trials of every state, over a log lr, a categorical optimizer, a conditional
    momentum; each reports train/val loss and accuracy per epoch."""
    trials = []
    for i, state in enumerate(STATES):
        optimizer = "sgd" if i % 2 else "adam"
        params = {"lr": 10 ** (-4 + 3 * (i * 7 % 11) / 10), "optimizer": optimizer, "units": 32 * i}
        if optimizer == "sgd":
            params["momentum"] = (i % 5) / 5
        accuracy = 0.5 + 0.4 * math.exp(-abs(math.log10(params["lr"]) + 2.5))
        epochs = 3 if state is TrialState.COMPLETE else 2
        reports = {
            s: {
                "train_loss": 2.0 / s,
                "val_loss": 2.2 / s,
                "val_accuracy": accuracy * s / epochs,
                "train_accuracy": min(1.0, 1.1 * accuracy * s / epochs),
            }
            for s in range(1, epochs + 1)
        }
        value = accuracy if state in (TrialState.COMPLETE, TrialState.PRUNED) else None
        trials.append(make_trial(i, value, state=state, params=params, intermediate=reports))
    return trials


def every_kind(trials):
    return [
        figure_data(kind, trials, metric="val_accuracy", direction="maximize") for kind in KINDS
    ]


@pytest.mark.parametrize("data", every_kind(study()), ids=KINDS)
def test_plotly_draws_every_kind(data):
    fig = to_plotly(data)
    assert isinstance(fig, go.Figure) and fig.data
    assert json.loads(fig.to_json())["layout"]["title"]["text"].startswith(data.title)


@pytest.mark.parametrize("data", every_kind(study()), ids=KINDS)
def test_matplotlib_draws_every_kind_to_a_png(data, tmp_path):
    fig = to_matplotlib(data)
    assert isinstance(fig, Figure) and fig.get_suptitle() == data.title
    fig.savefig(tmp_path / "figure.png", dpi=60)
    assert (tmp_path / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("data", every_kind([]), ids=KINDS)
def test_an_empty_figure_draws_with_its_reason_as_title(data, tmp_path):
    assert "no " in data.title or "needs " in data.title
    assert to_plotly(data).layout.title.text == data.title
    fig = to_matplotlib(data)
    assert fig.get_suptitle() == data.title
    fig.savefig(tmp_path / "empty.png", dpi=60)
    assert (tmp_path / "empty.png").stat().st_size > 0


def test_a_note_is_shown_on_both_figures_and_large_traces_use_webgl():
    trials = [make_trial(i, float(i % 97)) for i in range(6_000)]
    data = figure_data("history", trials, metric="loss", direction="minimize")
    assert data.note
    fig = to_plotly(data)
    assert data.note in fig.layout.title.text
    assert {type(trace) for trace in fig.data} == {go.Scattergl}
    texts = [t.get_text() for t in to_matplotlib(data).findobj(matplotlib.text.Text)]
    assert data.note in texts


def test_log_axes_follow_the_data():
    trials = [make_trial(i, 10.0**-i) for i in range(6)]
    data = figure_data("history", trials, metric="loss", direction="minimize")
    assert to_plotly(data).layout.yaxis.type == "log"
    assert to_matplotlib(data).axes[0].get_yscale() == "log"
    slices = to_plotly(figure_data("slice", study(), metric="m", direction="maximize"))
    assert slices.layout.xaxis.type == "log" and slices.layout.xaxis.title.text == "lr"


def test_renderers_refuse_what_is_not_figure_data():
    with pytest.raises(TypeError, match="draws figure data from tunelab.viz, got dict"):
        to_plotly({})
    with pytest.raises(TypeError, match="draws figure data from tunelab.viz, got tuple"):
        to_matplotlib(tuple(HistoryData._fields))
