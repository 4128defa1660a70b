"""The ``tunelab`` command: run a spec, resume a study, and read what storage holds."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from tunelab.errors import SpecError, TunelabError
from tunelab.readers import (
    best_summary,
    best_trial,
    state_counts,
    steps_reached,
    trial_rows,
    validated_on,
)
from tunelab.storage import DEFAULT_STORAGE, get_storage

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Tune the hyperparameters of neural networks.",
)
out = Console()
err = Console(stderr=True)

StorageOption = Annotated[
    str | None,
    typer.Option("--storage", help=f"Database URL (default: the spec's, else {DEFAULT_STORAGE})."),
]


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


@app.command()
def run(
    spec: Annotated[str, typer.Argument(help="Path to the experiment's YAML spec.")],
    storage: StorageOption = None,
    workers: Annotated[int | None, typer.Option(help="Override the spec's workers.")] = None,
    executor: Annotated[
        str | None,
        typer.Option(help="Override the spec's executor: inline, processes, fused or ray."),
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="The Ray cluster (with --executor ray): auto or HOST:PORT.")
    ] = None,
    fuse: Annotated[
        bool | None,
        typer.Option(
            "--fuse/--no-fuse",
            help="Override the spec's fuse: train same-shaped networks as fused groups.",
        ),
    ] = None,
) -> None:
    """Run (or continue) the experiment a spec describes, then test the best config."""
    from tunelab.executors import make_executor
    from tunelab.experiment import Experiment
    from tunelab.spec import NamedOptions, load_spec

    loaded = load_spec(spec)
    if workers is not None:
        if workers < 1:
            raise SpecError("--workers", f"must be >= 1, got {workers}; give 1 or more")
        loaded = loaded.model_copy(update={"workers": workers})
    if fuse is not None:
        loaded = loaded.model_copy(update={"fuse": fuse})
    if address is not None and (executor or getattr(loaded.executor, "name", None)) != "ray":
        raise SpecError("--address", "names a Ray cluster; add --executor ray")
    if executor is not None or address is not None:
        name = executor or loaded.executor.name
        same = loaded.executor is not None and loaded.executor.name == name
        options = dict(loaded.executor.options) if same else {}  # another executor's do not fit
        options.update({"address": address} if address is not None else {})
        section = NamedOptions(name=name, **options)
        make_executor(section.name, **section.options)  # a bad name or option fails here
        loaded = loaded.model_copy(update={"executor": section})
    _run(Experiment.from_spec(loaded, storage))


@app.command()
def resume(name: str, storage: StorageOption = None) -> None:
    """Continue a study after a crash or a stop: finished trials are kept, trials a dead process
    left RUNNING are run again from the start, and the budget is topped up."""
    from tunelab.experiment import open_experiment

    _run(open_experiment(name, storage or DEFAULT_STORAGE))


@app.command()
def status(name: str, storage: StorageOption = None) -> None:
    """Counts by state (paused trials included), the best trial so far, and the final result."""
    store = get_storage(storage or DEFAULT_STORAGE, create=False)
    record = store.get_study(name)
    trials = store.get_trials(record.id)
    counts = state_counts(trials)
    out.print(f"[bold]{record.name}[/]  {record.direction} {record.metric}  ({len(trials)} trials)")
    out.print("  " + "  ".join(f"{s.value.lower()}: {n}" for s, n in counts.items() if n))
    rungs = steps_reached(trials)
    if rungs:
        out.print("  trials per rung: " + "  ".join(f"step {s}: {n}" for s, n in rungs.items()))
    best = best_trial(trials, record.direction)
    if best is not None:
        chose = validated_on(record.spec)
        out.print(
            f"  best: trial {best.number}, {record.metric} = {best.value:.4g}"
            + (f" ({chose})" if chose else "")
            + f"  {best.params}"
        )
    _print_lr_range(record.attrs)
    result = record.attrs.get("result")
    if result:
        scores = ", ".join(f"{k} = {v:.4g}" for k, v in result["test_metrics"].items())
        out.print(f"  test (trial {result['trial']}, retrained on train+validation): {scores}")


@app.command()
def trials(
    name: str,
    storage: StorageOption = None,
    format: Annotated[Format, typer.Option("--format", help="table, csv or json.")] = Format.table,
) -> None:
    """Every trial: number, state, value, params, steps, where and why its scheduler paused or
    stopped it (the full reason in csv and json), duration, error."""
    store = get_storage(storage or DEFAULT_STORAGE, create=False)
    record = store.get_study(name)
    rows = trial_rows(store.get_trials(record.id))
    if format is Format.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    elif format is Format.csv:
        sys.stdout.write(_csv(rows))
    else:
        out.print(_table(rows, record.metric))


@app.command()
def best(
    name: str,
    storage: StorageOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The best config, its validation value, and its test scores after retraining."""
    store = get_storage(storage or DEFAULT_STORAGE, create=False)
    record = store.get_study(name)
    result = record.attrs.get("result")
    if result is None:
        top = best_trial(store.get_trials(record.id), record.direction)
        if top is None:
            raise TunelabError(f"no trial of {name!r} has completed yet")
        result = best_summary(name, record.metric, top)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        _print_result(result)


@app.command()
def studies(storage: StorageOption = None) -> None:
    """The studies in a storage."""
    for record in get_storage(storage or DEFAULT_STORAGE, create=False).list_studies():
        out.print(f"{record.name}  ({record.direction} {record.metric})")


@app.command("lr-find")
def lr_find(
    spec: Annotated[str, typer.Argument(help="Path to the experiment's YAML spec.")],
    output: Annotated[
        str,
        typer.Option("-o", "--output", help="The curve: .png/.svg/.pdf or .html; a .json beside."),
    ] = "lr-find.png",
    start: Annotated[float, typer.Option(help="The first learning rate.")] = 1e-7,
    end: Annotated[float, typer.Option(help="The last learning rate.")] = 10.0,
    steps: Annotated[
        int | None,
        typer.Option(help="Mini-batches, one learning rate each (default: 100, then 200, 400)."),
    ] = None,
    mode: Annotated[str, typer.Option(help="exp or linear ramp.")] = "exp",
) -> None:
    """The LR range test: one short run with the spec's model, data and optimizer while the
    learning rate rises; suggests a learning rate, and draws the curve with the suggestions."""
    from tunelab.lr_range import lr_find as run_range_test
    from tunelab.nn.lr_finder import NoUsableRange

    path = _output_path(output, (".png", ".svg", ".pdf", ".html"))
    try:
        ramp = {"start": start, "end": end, "mode": mode}
        test = run_range_test(spec, **ramp, **({} if steps is None else {"steps": steps})).to_dict()
    except NoUsableRange as exc:  # the curve still tells why: draw it, then say so
        curve = {"lrs": exc.lrs, "losses": exc.losses, "smoothed": exc.smoothed}
        _write_range_test({**curve, "suggestions": {}, "suggestion": None, "mode": mode}, path)
        raise TunelabError(f"{exc}; the curve is in {path}") from None
    _write_range_test(test, path)
    others = ", ".join(f"{k} {v:.3g}" for k, v in test["suggestions"].items() if k != "valley")
    out.print(
        f"lr range test ({test['optimizer']}, batch {test['batch_size']}, {len(test['lrs'])} "
        f"steps, {test['stopped']}): suggested lr {test['suggestion']:.3g} (valley); {others}; "
        f"curve in {path}, data in {path.with_suffix('.json')}",
        highlight=False,
        soft_wrap=True,
    )


def _write_range_test(test: dict[str, Any], path: Path) -> None:
    from tunelab.viz import range_test_data

    path.with_suffix(".json").write_text(json.dumps(test, indent=2) + "\n")
    _save_figure(range_test_data(test), path)


@app.command()
def plot(
    name: str,
    output: Annotated[
        str, typer.Option("-o", "--output", help="File to write: .png/.svg/.pdf, or .html.")
    ],
    kind: Annotated[
        str,
        typer.Option(help="history, curves, parallel, slice, contour, importance or intermediate."),
    ] = "history",
    trials: Annotated[
        str | None, typer.Option("--trials", help="Trial numbers for curves, e.g. 3,7.")
    ] = None,
    params: Annotated[
        str | None, typer.Option("--params", help="Parameters to show, e.g. lr,dropout.")
    ] = None,
    storage: StorageOption = None,
) -> None:
    """One figure of a study: a PNG (matplotlib) or an interactive HTML file (plotly, inlined)."""
    from tunelab.viz import KINDS, figure_data

    if kind not in KINDS:
        raise SpecError("--kind", f"expected one of {', '.join(KINDS)}, got {kind!r}")
    path = _output_path(output, (".png", ".svg", ".pdf", ".html"))
    store = get_storage(storage or DEFAULT_STORAGE, create=False)
    record = store.get_study(name)
    try:
        data = figure_data(
            kind,
            store.get_trials(record.id),
            metric=record.metric,
            direction=record.direction,
            numbers=_numbers(trials),
            params=params.split(",") if params else None,
        )
    except ValueError as exc:
        raise SpecError(
            "--trials" if trials and kind == "curves" else "--params", str(exc)
        ) from None
    _save_figure(data, path)
    out.print(f"wrote {path}")


def _save_figure(data: Any, path: Path) -> None:
    """HTML through plotly (plotly.js inlined), anything else through matplotlib."""
    if path.suffix == ".html":
        from tunelab.viz import to_plotly

        to_plotly(data).write_html(path, include_plotlyjs=True, full_html=True)
    else:
        from tunelab.viz import to_matplotlib

        to_matplotlib(data).savefig(path, dpi=120)


@app.command()
def report(
    name: str,
    output: Annotated[str, typer.Option("-o", "--output", help="The .html file to write.")],
    storage: StorageOption = None,
) -> None:
    """One self-contained HTML file: summary, best trial, test score, every figure, the trial
    table. It opens from disk with no network (plotly.js is inlined)."""
    from tunelab.report import write_report

    path = _output_path(output, (".html", ".htm"))
    write_report(get_storage(storage or DEFAULT_STORAGE, create=False), name, path)
    out.print(f"wrote {path}")


@app.command()
def dashboard(
    storage: StorageOption = None,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    host: Annotated[
        str,
        typer.Option(help="Address to bind; another than 127.0.0.1 requires the printed token."),
    ] = "127.0.0.1",
) -> None:
    """A local, read-only web app over storage: studies, figures, trials; refreshes live."""
    import secrets

    from tunelab.dashboard import serve

    store = get_storage(storage or DEFAULT_STORAGE, create=False)  # missing: one line, no file
    token = None if host in _LOOPBACK else secrets.token_urlsafe(16)
    address = f"[{host}]" if ":" in host else host
    url = f"http://{address}:{port}/" + (f"?token={token}" if token else "")
    out.print(f"tunelab dashboard on {url}  (Ctrl-C stops it)", highlight=False, soft_wrap=True)
    if token:
        out.print("anyone who can reach this address needs the token; share the URL with care")
    serve(store, host=host, port=port, token=token)


SpecFileOption = Annotated[
    str | None,
    typer.Option(
        "--spec", help="The spec file the study was run with (needed when it trains your code)."
    ),
]


@app.command("reproduce")
def reproduce_trial(
    name: str,
    trial: Annotated[int, typer.Argument(help="The trial's number.")],
    storage: StorageOption = None,
    spec: SpecFileOption = None,
) -> None:
    """Train a stored trial again from its config and seed, here, and compare every number with
    the stored ones (the study is not written to). Exit 0 when identical, 1 when not."""
    from tunelab.reuse import reproduce

    check = reproduce(name, trial, storage, spec)
    table = Table("step", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("metric", overflow="fold")
    for header in ("stored", "re-run", "diff"):  # numbers in full: identical means to the bit
        table.add_column(header, no_wrap=True)
    for row in check.rows():
        cells = ["" if v is None else repr(v) for v in (row.stored, row.rerun)]
        step = "final" if row.step is None else str(row.step)
        table.add_row(step, row.metric, *cells, f"{row.gap:.3g}" if row.gap else "")
    out.print(table)
    out.print(check.verdict(), highlight=False, soft_wrap=True)
    if not check.identical:
        raise typer.Exit(1)


@app.command("export")
def export_model(
    name: str,
    output: Annotated[str, typer.Option("-o", "--output", help="A new or empty folder.")],
    trial: Annotated[
        int | None, typer.Option("--trial", help="The trial's number (default: the best).")
    ] = None,
    storage: StorageOption = None,
    spec: SpecFileOption = None,
) -> None:
    """Write a trial's model, retrained on train+validation, into a folder that predicts
    without the study: weights, architecture, preprocessing (and your builder's file)."""
    from tunelab.nn import ProgressBar
    from tunelab.reuse import export

    result = export(name, output, trial, storage, spec, [ProgressBar("retraining", out)])
    how = "copied the study's final model" if result["reused"] else "retrained on train+validation"
    scores = ", ".join(f"{k} = {v:.4g}" for k, v in result["test_metrics"].items())
    out.print(
        f"exported trial {result['trial']} of {name} to {output} ({how}): "
        f"{', '.join(result['artifacts'])}; {scores}",
        highlight=False,
        soft_wrap=True,
    )


@app.command("predict")
def predict_rows(
    model_dir: Annotated[str, typer.Argument(help="A folder tunelab export wrote.")],
    data: Annotated[str, typer.Argument(help="Rows to predict: a .csv (columns by name) or .npz.")],
    output: Annotated[str, typer.Option("-o", "--output", help="The .csv file to write.")],
    proba: Annotated[bool, typer.Option("--proba", help="Add each class's probability.")] = False,
    trust_code: Annotated[
        bool,
        typer.Option("--trust-code", help="Import the folder's model code (it runs that code)."),
    ] = False,
) -> None:
    """Predict with an exported model, on the CPU: a prediction column (class labels, or values
    in the target's units) and, with --proba, a proba_<label> column per class."""
    from tunelab.reuse import predict

    path = _output_path(output, (".csv",))
    columns = predict(model_dir, data, proba=proba, trust_code=trust_code)
    with path.open("w", newline="") as handle:  # numbers at full precision
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(zip(*(column.tolist() for column in columns.values()), strict=True))
    out.print(f"wrote {path} ({len(columns['prediction'])} rows)")


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


# Helpers -------------------------------------------------------------------------------------------
def _run(experiment: Any) -> None:
    """Search with live progress, then retrain and test; Ctrl-C says how to continue."""
    try:
        _search_and_finalize(experiment)
    except KeyboardInterrupt:  # typer would turn it into a silent exit 130
        err.print(
            "interrupted; finished trials are saved. Continue with: "
            f"tunelab resume {experiment.study.name}"
        )
        raise typer.Exit(130) from None


def _search_and_finalize(experiment: Any) -> None:
    """Search with a live view on a terminal (one line per finished trial elsewhere), then
    retrain the best config with a progress bar and print the result."""
    from tunelab.events import logger
    from tunelab.live import LiveView, PlainLog
    from tunelab.nn import ProgressBar

    study, budget = experiment.study, experiment.spec.budget
    _print_lr_range(study.attrs)
    level = logger.level
    logger.setLevel(logging.ERROR)  # the view says it all; log lines would tear it
    try:
        if out.is_terminal:
            resolve = experiment.objective.resolver.resolve
            with LiveView(out, study, budget.trials, lambda p: resolve(p)[0]["epochs"]) as view:
                experiment.search(callbacks=[view])
        else:
            experiment.search(callbacks=[PlainLog(out, study)])
    finally:
        logger.setLevel(level)
    out.print("Retraining the best config on train+validation and scoring it on the test split...")
    _print_result(experiment.finalize(callbacks=[ProgressBar("retraining", out)]))


def _print_lr_range(attrs: dict[str, Any]) -> None:
    """The learning rate (or its range) an ``auto`` spec's range tests chose."""
    from tunelab.lr_range import ATTR, describe_auto

    if ATTR in attrs:
        out.print("  " + describe_auto(attrs[ATTR]), highlight=False, soft_wrap=True)


def _output_path(output: str, suffixes: tuple[str, ...]) -> Path:
    """Where a figure or report goes: a known suffix, in a folder that exists."""
    path = Path(output)
    if path.suffix.lower() not in suffixes:
        raise SpecError(
            "--output", f"expected a file ending in {', '.join(suffixes)}, got {output!r}"
        )
    if not path.parent.is_dir():
        raise SpecError("--output", f"folder {str(path.parent)!r} does not exist; create it first")
    return path


def _numbers(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SpecError("--trials", f"expected trial numbers like 3,7, got {text!r}") from None


def _print_result(result: dict[str, Any]) -> None:
    table = Table(title=f"Best of {result['study']}: trial {result['trial']}", show_header=False)
    for key, value in result["params"].items():
        table.add_row(key, str(value))
    chose = result.get("validated_on", "validation split")  # older results do not say
    table.add_row(f"{result['metric']} ({chose})", f"{result['value']:.4f}")
    for key, value in (result.get("test_metrics") or {}).items():
        table.add_row(f"{key} (retrained on train+validation)", f"{value:.4f}")
    out.print(table)


def _csv(rows: list[dict[str, Any]]) -> str:
    params = sorted({k for r in rows for k in (r["params"] or {})})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    after = ["steps", "stopped", "why", "seed", "duration_s", "error"]
    writer.writerow(["number", "state", "value", *params, *after])
    for r in rows:
        writer.writerow(
            [
                r["number"],
                r["state"],
                r["value"],
                *[(r["params"] or {}).get(p, "") for p in params],
                r["steps"],
                _stopped(r),
                (r["stopped"] or {}).get("why", ""),
                r["seed"],
                r["duration_s"],
                (r["error"] or "").strip(),
            ]
        )
    return buffer.getvalue()


def _table(rows: list[dict[str, Any]], metric: str) -> Table:
    table = Table("#", "state", metric, "params", "steps", "stopped", "seconds", "error")
    for r in rows:
        value = "" if r["value"] is None or not math.isfinite(r["value"]) else f"{r['value']:.4g}"
        error = (r["error"] or "").strip().splitlines() or r["warnings"][-1:]
        table.add_row(
            str(r["number"]),
            r["state"],
            value,
            ", ".join(f"{k}={_short(v)}" for k, v in (r["params"] or {}).items()),
            str(r["steps"]),
            _stopped(r),
            "" if r["duration_s"] is None else f"{r['duration_s']:.1f}",
            error[-1] if error else "",
        )
    return table


def _stopped(row: dict[str, Any]) -> str:
    """Which scheduler paused or stopped a trial, and at which step (its rung under asha)."""
    stopped = row["stopped"]
    return "" if stopped is None else f"{stopped['by']} at step {stopped['step']}"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def main() -> None:
    """Entry point: user errors print one line and exit 2, never a traceback."""
    try:
        app()
    except TunelabError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
