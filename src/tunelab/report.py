"""One self-contained HTML file about a study: its summary, best trial, test score, every figure
and the trial table. It opens from disk with no network: plotly.js is inlined from the installed
plotly package, never fetched from a CDN, so the file can be mailed, archived or opened on a
machine with no internet access.

Every user string (study, parameter and metric names, error texts) reaches the page as JSON data
that the page's script puts in place with ``textContent``, never as HTML.

Example:
    >>> from tunelab.report import write_report  # doctest: +SKIP
    >>> write_report("sqlite:///tunelab.db", "digits-mlp", "report.html")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from tunelab.lr_range import ATTR, describe_auto
from tunelab.readers import best_trial, state_counts, steps_reached, trial_rows, validated_on
from tunelab.storage import Storage, get_storage
from tunelab.viz import KINDS, figure_data, range_test_data, to_plotly

__all__ = ["build_report", "write_report"]

_TEMPLATE = Path(__file__).with_name("report.html")


def write_report(storage: str | Storage, name: str, path: str | Path) -> Path:
    """Write the report of study ``name`` to ``path`` (read-only over storage); returns the path."""
    path = Path(path)
    path.write_text(build_report(storage, name), encoding="utf-8")
    return path


def build_report(storage: str | Storage, name: str) -> str:
    """The report of study ``name`` as one HTML document."""
    from plotly.offline import get_plotlyjs

    store = get_storage(storage, create=False)
    record = store.get_study(name)
    trials = store.get_trials(record.id)
    content = {
        "summary": _summary(record, trials),
        "figures": [
            *(_figure(kind, trials, record.metric, record.direction) for kind in KINDS),
            *_range_test_figures(record.attrs.get(ATTR)),
        ],
        "table": _table(trial_rows(trials)),
    }
    return (
        _TEMPLATE.read_text(encoding="utf-8")
        .replace("/*PLOTLY_JS*/", get_plotlyjs())
        .replace("/*REPORT_DATA*/", _script_safe(json.dumps(content, default=str)))
    )


def _summary(record: Any, trials: list) -> dict[str, Any]:
    spec = record.spec or {}
    data = spec.get("data") or {}
    best = best_trial(trials, record.direction)
    result = record.attrs.get("result")
    started = [t.started_at for t in trials if t.started_at is not None]
    finished = [t.finished_at for t in trials if t.finished_at is not None]
    return {
        "study": record.name,
        "metric": record.metric,
        "direction": record.direction,
        "trials": len(trials),
        "counts": {s.value: n for s, n in state_counts(trials).items() if n},
        "rungs": steps_reached(trials),
        "span_s": max(finished) - min(started) if started and finished else None,
        "strategy": _named(spec.get("strategy"), "random"),
        "scheduler": _named(spec.get("scheduler"), "none"),
        "seed": record.attrs.get("seed"),
        "lr_range": describe_auto(record.attrs[ATTR]) if ATTR in record.attrs else None,
        "validated_on": validated_on(spec),
        "data": {
            "source": data.get("source"),
            "test_size": data.get("test_size", 0.2) if data else None,
            "holdout": (data.get("validation") or {}).get("holdout", 0.2) if data else None,
        },
        "best": None
        if best is None
        else {"number": best.number, "value": best.value, "params": best.params, "seed": best.seed},
        "result": None
        if result is None
        else {
            "trial": result["trial"],
            "test_metrics": result["test_metrics"],
            "retrained_on": result.get("retrained_on", "train+validation"),
        },
        "made": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _named(section: Any, default: str) -> str:
    """A spec's strategy or scheduler section as its name (a string or ``{name: ...}``)."""
    if section is None:
        return default
    return section if isinstance(section, str) else str(section.get("name", default))


def _figure(kind: str, trials: list, metric: str, direction: str) -> dict[str, Any]:
    """A figure as plotly JSON, or the reason it could not be drawn (the report still opens)."""
    try:
        data = figure_data(kind, trials, metric=metric, direction=direction)
        return {"kind": kind, "figure": json.loads(to_plotly(data).to_json())}
    except Exception as exc:  # one figure's failure must not cost the whole report
        return {"kind": kind, "error": f"{type(exc).__name__}: {exc}"}


def _range_test_figures(lr_range: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The curve of each range test an ``auto`` learning rate was read from, its range shaded."""
    if lr_range is None:
        return []
    figures = []
    for key, test in lr_range["tests"].items():
        low, high = lr_range["searched"][key]
        data = range_test_data(test, None if low == high else (low, high))
        figure = json.loads(to_plotly(data).to_json())
        figures.append({"kind": f"lr-range-test-{key}", "figure": figure})
    return figures


def _table(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The trial table as columns and row lists: a third of the size of a list of dicts, which
    matters at 100,000 trials."""
    params = sorted({key for row in rows for key in (row["params"] or {})})
    columns = ["number", "state", "value", *params, "steps", "stopped", "duration_s", "error"]
    body = [
        [
            row["number"],
            row["state"],
            row["value"],
            *[(row["params"] or {}).get(p) for p in params],
            row["steps"],
            _stopped(row["stopped"]),
            row["duration_s"],
            _last_line(row["error"]),
        ]
        for row in rows
    ]
    return {"columns": columns, "rows": body}


def _last_line(error: str | None) -> str | None:
    lines = (error or "").strip().splitlines()
    return lines[-1] if lines else None


def _stopped(stopped: dict[str, Any] | None) -> str | None:
    return None if stopped is None else f"{stopped['by']} at step {stopped['step']}"


def _script_safe(text: str) -> str:
    """JSON (a JavaScript literal: NaN and Infinity included) that cannot end the <script>
    element it sits in, whatever the study's strings hold."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
