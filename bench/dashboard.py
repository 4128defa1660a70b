"""How fast a big study is to look at: tunelab's dashboard and report beside optuna-dashboard.

For each size (10,000 and 100,000 trials by default) a study is made by a fast objective run
through ``tunelab.Study`` (random search over a log-float, a categorical and a float, three reports
per trial; a trial whose first report is poor prunes itself, about a third of them), on a SQLite
file. (Not the median rule: it compares each report with every trial's, so making a
100,000-trial study with it would take hours.) The very same trials
(params, values, intermediate values, states) are copied into an Optuna journal file, the
fastest persistent storage optuna-dashboard reads, so both dashboards show identical data.

Measured in real headless Chromium, from starting the dashboard server (its start and its first
read of the study count: one dashboard reads before it answers, the other answers at once and
reads in the background; a user meets both the same way), and again for a reload:
* tunelab, study page usable: the summary and the first page of the trial table are shown (the
  table is paged on the server; the figures load after it, subsampled, each stating its rule);
  then every figure drawn.
* optuna-dashboard (the peer users know; its users report it unusable past ~10,000 trials):
  its study page with the history figure holding the trials; not usable after CAP_S seconds is
  reported as such.
* tunelab report: build time and file size.

Figures go to bench/results/dashboard.json and .md. Studies are cached in --workdir.
Needs optuna-dashboard (``pip install optuna-dashboard``) and /usr/bin/chromium.

Usage: python bench/dashboard.py [--sizes 10000 100000] [--workdir /tmp/tunelab-bench-dashboard]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
]
UNITS = [32, 64, 128, 256]


def objective(trial):
    """Fast and shaped like a network's curve: a good learning rate near 1e-2, more units help."""
    from tunelab import TrialPruned

    lr, units, dropout = trial.params["lr"], trial.params["units"], trial.params["dropout"]
    rng = random.Random(trial.seed)
    quality = 1 - abs(math.log10(lr) + 2) / 5 - dropout / 4 + UNITS.index(units) / 40
    score = 0.0
    for step in (1, 2, 3):
        score = quality * (1 - 0.5**step) + rng.gauss(0, 0.02)
        trial.report(step, val_score=score)
        if step == 1 and score < 0.25:
            raise TrialPruned()
    return score


def make_tunelab_study(db: Path, trials: int) -> float:
    from tunelab import Categorical, Float, Study
    from tunelab.events import set_verbosity

    set_verbosity(40)  # no line per trial
    start = time.perf_counter()
    study = Study(
        "big",
        storage=f"sqlite:///{db}",
        metric="val_score",
        seed=0,
    )
    space = {
        "lr": Float(1e-5, 1, log=True),
        "units": Categorical(UNITS),
        "dropout": Float(0, 0.5),
    }
    study.optimize(objective, space, trials=trials)
    return time.perf_counter() - start


def copy_to_optuna(db: Path, journal: Path) -> None:
    """The tunelab study's trials, as they are, into an Optuna journal file."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from tunelab.storage import get_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = get_storage(f"sqlite:///{db}", create=False)
    record = store.get_study("big")
    distributions = {
        "lr": FloatDistribution(1e-5, 1, log=True),
        "units": CategoricalDistribution(UNITS),
        "dropout": FloatDistribution(0, 0.5),
    }
    states = {
        "COMPLETE": optuna.trial.TrialState.COMPLETE,
        "PRUNED": optuna.trial.TrialState.PRUNED,
    }
    storage = JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.create_study(storage=storage, study_name="big", direction="maximize")
    batch = [
        optuna.trial.create_trial(
            params=t.params,
            distributions=distributions,
            value=t.value,
            intermediate_values=t.values_at("val_score"),
            state=states[t.state.value],
        )
        for t in store.get_trials(record.id)
        if t.state.value in states and t.value is not None
    ]
    study.add_trials(batch)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )


def stop_server(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def wait_until_answering(url: str, deadline: float) -> None:
    """Return once the server answers ``url`` (it may still be starting)."""
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)


def time_page(url: str, usable: str, done: str | None, command: list[str]) -> dict:
    """Seconds from starting the server to a usable page (and to ``done``), then for a reload.

    Starting the server is counted: a dashboard that reads the study before it answers and one
    that answers at once and reads in the background are timed alike, as a user meets them.
    The browser runs in a child process killed after ``CAP_S`` per visit, since a page hung on a
    big study (the peer's, at 100,000 trials) may never return control to Playwright; a visit
    not usable in time is reported as not usable (None)."""
    since = time.time()
    server = start_server(command)
    probe = subprocess.Popen(
        [sys.executable, __file__, "--probe", url, usable, done or "", str(since)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        lines, _ = probe.communicate(timeout=2 * CAP_S + 60)
    except subprocess.TimeoutExpired:
        os.killpg(probe.pid, signal.SIGKILL)
        lines, _ = probe.communicate()
    finally:
        stop_server(server)
    out = dict.fromkeys(["server_up_s", "cold_usable_s", "warm_usable_s"])
    for line in lines.splitlines():  # one measure per line, so a killed probe keeps its firsts
        out.update(json.loads(line))
    return out


def probe(url: str, usable: str, done: str, since: float) -> None:
    """The child of :func:`time_page`: print each measure as a JSON line as soon as it is made."""
    from playwright.sync_api import sync_playwright

    def report(key: str, start: float) -> None:
        print(json.dumps({key: time.time() - start}), flush=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        wait_until_answering(url, since + CAP_S)
        report("server_up_s", since)
        page.goto(url, timeout=CAP_S * 1000)
        start = since
        for visit in ("cold", "warm"):
            if visit == "warm":
                start = time.time()
                page.reload(timeout=CAP_S * 1000)
            page.wait_for_function(usable, timeout=CAP_S * 1000)
            report(f"{visit}_usable_s", start)
            if done:
                page.wait_for_function(done, timeout=CAP_S * 1000)
                report(f"{visit}_figures_s", start)
        browser.close()


#: Seconds after which a page that is still not usable counts as not usable.
CAP_S = 120
TUNELAB_USABLE = (
    "document.querySelectorAll('#trials tbody tr').length > 0"
    " && document.querySelector('#summary').textContent.length > 0"
)
TUNELAB_FIGURES = (
    "(() => { const f = document.querySelectorAll('#figures .js-plotly-plot');"
    " return f.length >= 7 && [...f].every(d => d.querySelector('.main-svg')); })()"
)
#: optuna-dashboard draws its history figure empty first; usable once it holds the trials.
OPTUNA_USABLE = (
    "[...document.querySelectorAll('.js-plotly-plot')]"
    ".some(d => (d.data || []).some(t => (t.x || []).length > 0))"
)


def time_report(db: Path, workdir: Path, size: int) -> dict[str, float]:
    from tunelab.report import write_report

    path = workdir / f"report-{size}.html"
    start = time.perf_counter()
    write_report(f"sqlite:///{db}", "big", path)
    return {"build_s": time.perf_counter() - start, "size_mb": path.stat().st_size / 1e6}


def run_size(size: int, workdir: Path) -> dict:
    db, journal = workdir / f"tunelab-{size}.db", workdir / f"optuna-{size}.log"
    made = {}
    if not db.exists():
        made["tunelab_study_s"] = make_tunelab_study(db, size)
    if not journal.exists():
        copy_to_optuna(db, journal)
    result: dict = {"trials": size, **made}
    port = free_port()
    result["tunelab"] = time_page(
        f"http://127.0.0.1:{port}/studies/big",
        TUNELAB_USABLE,
        TUNELAB_FIGURES,
        [
            sys.executable,
            "-m",
            "tunelab.cli",
            "dashboard",
            "--storage",
            f"sqlite:///{db}",
            "--port",
            str(port),
        ],
    )
    port = free_port()
    result["optuna_dashboard"] = time_page(
        f"http://127.0.0.1:{port}/dashboard/studies/0",
        OPTUNA_USABLE,
        None,
        [
            sys.executable,
            "-c",
            "from optuna_dashboard._cli import main; main()",
            str(journal),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
    )
    result["report"] = time_report(db, workdir, size)
    return result


def _seconds(value: float | None) -> str:
    return f"not usable in {CAP_S} s" if value is None else f"{value:.2f} s"


def markdown(results: list[dict], meta: dict) -> str:
    lines = [
        "# Dashboard and report on big studies",
        "",
        f"{meta['machine']}; Chromium headless; {meta['date']}. Seconds from starting the "
        "dashboard server (its start and first read of the study included) to a usable study "
        "page; reload: the same page again. Goal (issue 18): usable under 1 s at 10,000 trials, "
        "under 3 s at 100,000.",
        "",
        "| trials | tunelab: answers | usable | all 7 figures | reload: usable | all 7 figures "
        "| optuna-dashboard: answers | usable | reload | ratio, usable | report build "
        "| report size |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        t, o, rep = r["tunelab"], r["optuna_dashboard"], r["report"]
        ours, theirs = t.get("cold_usable_s"), o.get("cold_usable_s")
        ratio = "-" if ours is None or theirs is None else f"{ours / theirs:.3f}x"
        if theirs is None and ours is not None:
            ratio = f"< {ours / CAP_S:.3f}x"
        lines.append(
            f"| {r['trials']:,} | {_seconds(t.get('server_up_s'))} | {_seconds(ours)} "
            f"| {_seconds(t.get('cold_figures_s'))} "
            f"| {_seconds(t.get('warm_usable_s'))} | {_seconds(t.get('warm_figures_s'))} "
            f"| {_seconds(o.get('server_up_s'))} | {_seconds(theirs)} "
            f"| {_seconds(o.get('warm_usable_s'))} | {ratio} "
            f"| {rep['build_s']:.1f} s | {rep['size_mb']:.1f} MB |"
        )
    lines += [
        "",
        "Answers: the server answers its first request (tunelab answers at once and reads "
        "studies in the background; optuna-dashboard reads its journal first). "
        "Usable: tunelab's summary and first table page shown (the table is paged on the server; "
        "figures load after it, subsampled, each stating its rule); optuna-dashboard's history "
        "figure holding the trials (it draws it empty first). Both read the same trials: the "
        "tunelab study's, copied into an Optuna journal file (optuna-dashboard's fastest "
        "storage). tunelab reads a study once and then only what changed.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    if sys.argv[1:2] == ["--probe"]:
        url, usable, done, since = sys.argv[2:6]
        probe(url, usable, done, float(since))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tunelab-bench-dashboard"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for size in args.sizes:
        results.append(run_size(size, args.workdir))
        print(json.dumps(results[-1]), flush=True)
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dashboard.json").write_text(json.dumps({**meta, "results": results}, indent=2))
    (RESULTS / "dashboard.md").write_text(markdown(results, meta))
    print(markdown(results, meta))


if __name__ == "__main__":
    main()
