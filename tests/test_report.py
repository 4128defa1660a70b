"""The one-file HTML report: built from storage, opened from disk in real headless Chromium with
the network blocked, every figure drawn, every user string shown as text."""

import re
from pathlib import Path

import pytest

from tests.browser import chromium, screenshot_dir
from tunelab import Categorical, Float, Study, TrialState
from tunelab.report import build_report, write_report
from tunelab.schedulers import MedianScheduler
from tunelab.viz import KINDS

XSS = "<script>alert(1)</script>"


def objective(trial):
    x = trial.params["x"]
    for step in (1, 2, 3, 4):
        trial.report(step, val_loss=1 - x * step / 4, val_score=x * step / 4)
        if trial.should_stop():
            return None
    if trial.number == 4:
        raise RuntimeError("out of memory </script><b>")
    return x * (1.5 if trial.params[XSS] == "b" else 1.0)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('report')}/t.db"
    study = Study(
        "report-demo",
        storage=url,
        metric="val_score",
        scheduler=MedianScheduler(warmup_steps=1, min_trials=3),
        seed=0,
    )
    study.optimize(
        objective, {"x": Float(0.01, 1, log=True), XSS: Categorical(["a", "b"])}, trials=16
    )
    result = {"trial": study.best_trial.number, "test_metrics": {"test_score": 0.875}}
    study.set_attr("result", {**result, "retrained_on": "train+validation"})
    return study


def test_the_report_holds_the_summary_every_figure_and_every_trial(study):
    page = build_report(study.storage, study.name)
    assert not re.search(r"<script[^>]*\bsrc=", page)  # nothing fetched: plotly.js is inline
    assert XSS not in page and "</script><b>" not in page  # user strings only as escaped data
    assert page.count('"kind": ') == len(KINDS)
    assert '"error": ' not in page.split("const REPORT = ", 1)[1].split('"table"')[0]
    best = study.best_trial
    assert f'"best": {{"number": {best.number}' in page


def test_a_missing_study_or_database_is_a_clear_error(tmp_path, study):
    from tunelab.errors import StorageError

    with pytest.raises(StorageError, match="no database at"):
        write_report(f"sqlite:///{tmp_path}/none.db", "x", tmp_path / "r.html")
    with pytest.raises(StorageError, match="no study named 'nope'"):
        write_report(study.storage, "nope", tmp_path / "r.html")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_report_opens_offline_in_chromium_with_every_figure_and_user_strings_as_text(
    study, tmp_path
):
    path = write_report(study.storage, study.name, tmp_path / "report.html")
    with chromium() as browser:
        context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
        page = context.new_page()
        problems, dialogs, requests = [], [], []
        page.on("console", lambda m: m.type == "error" and problems.append(m.text))
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(Path(path).as_uri())
        page.wait_for_function(
            f"document.querySelectorAll('.figure .main-svg').length >= {len(KINDS)}",
            timeout=30_000,
        )
        drawn = page.eval_on_selector_all(
            ".figure",
            "divs => divs.map(d => [d.dataset.kind, d.querySelectorAll('svg, canvas').length])",
        )
        assert [kind for kind, _ in drawn] == list(KINDS)
        assert all(count > 0 for _, count in drawn), drawn
        assert page.locator(".figure .error").count() == 0
        text = page.inner_text("body")
        assert XSS in text and "out of memory </script><b>" in text
        assert "test_score\n0.8750" in text and "scored once on the held-out test split" in text
        page.fill("#filter", "FAILED")
        assert page.locator("#trials tbody tr").count() == 1
        page.screenshot(path=str(screenshot_dir("report") / "report.png"), full_page=True)
        assert problems == [] and dialogs == []
        assert all(url.startswith("file:") for url in requests), requests
    states = {t.state for t in study.trials}
    assert {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED} <= states
