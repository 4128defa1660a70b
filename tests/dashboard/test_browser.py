"""The dashboard in a real headless Chromium: pages open clean, figures draw, the table answers,
a running study shows up live, and markup in names stays text.

Uses the system Chromium (no browser download). Without it these tests are skipped, except where
the environment variable CI is set: there they fail, because CI must run them. Screenshots of each
page go to ``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import uvicorn

from tests.dashboard.conftest import FAILS, XSS, XSS_ERROR, XSS_VALUE, add_xss_study, demo_study
from tunelab import TrialState
from tunelab.dashboard import create_app
from tunelab.viz import KINDS

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
]
SHOTS = Path(__file__).parents[2] / "test-artifacts" / "dashboard"
WAIT_MS = 20_000


def url_name(name: str) -> str:
    """``name`` as the pages encode it (JavaScript's encodeURIComponent)."""
    return quote(name, safe="!'()*~")


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser tests", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        _missing(f"no Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def serve_in_thread(url: str) -> Iterator[str]:
    """The dashboard over ``url`` on a free port of 127.0.0.1, until the generator is closed."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(url), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A demo study of 60 trials (more than a table page) with a final result, the XSS study, and
    one whose direction no figure can draw."""
    url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'b.db'}"
    study = demo_study(url, trials=60)
    study.set_attr("result", {"trial": 8, "test_metrics": {"score": 0.9}, "retrained_on": "all"})
    add_xss_study(study.storage)
    odd = study.storage.create_study("odd", "sideways", "score")  # as another tool might
    trial = study.storage.create_trial(odd.id, 0, "t", {"x": 1}, seed=0, proposal={})
    study.storage.finish_trial(trial.id, TrialState.COMPLETE, value=1.0, owner="t")
    yield from serve_in_thread(url)


@dataclass
class Tab:
    """A page and everything it did wrong: console errors, uncaught errors, dialogs, requests
    that left 127.0.0.1."""

    page: object
    base: str
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)

    def open(self, path: str) -> None:
        self.page.goto(self.base + path)

    def check_clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.dialogs == [], self.dialogs
        assert self.outside == [], self.outside

    def shoot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def open_tab(browser, base: str) -> Tab:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    tab = Tab(page, base)
    page.on("console", lambda msg: msg.type == "error" and tab.errors.append(msg.text))
    page.on("pageerror", lambda exc: tab.errors.append(str(exc)))

    def dialog(d):
        tab.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", dialog)

    def only_here(route):
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            tab.outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_here)
    page.set_default_timeout(WAIT_MS)
    return tab


@pytest.fixture
def tab(browser, site):
    tab = open_tab(browser, site)
    yield tab
    tab.page.close()


def draw_figures(tab: Tab) -> None:
    """Wait, without scrolling, until every figure box holds a drawn plot (an svg or canvas
    inside .js-plotly-plot) or says why it has none."""
    tab.page.wait_for_function(
        """() => [...document.querySelectorAll('.figure-box')].every(box => box.querySelector(
               '.js-plotly-plot svg, .js-plotly-plot canvas, .figure-error'))"""
    )


def assert_all_drawn(tab: Tab) -> None:
    assert tab.page.locator(".figure-error").all_inner_texts() == []
    # plotly says so in the page, not the console, when WebGL (parallel coordinates) is refused
    assert "WebGL is not supported" not in tab.page.locator("#figures").inner_text()
    drawn = tab.page.locator(".figure-box:has(.js-plotly-plot svg, .js-plotly-plot canvas)")
    assert drawn.count() == tab.page.locator(".figure-box").count()


def column(tab: Tab, index: int) -> list[str]:
    return tab.page.locator(f"#trials tbody tr td:nth-child({index})").all_inner_texts()


def wait_for_range(tab: Tab, text: str) -> None:
    tab.page.wait_for_function(
        "text => document.getElementById('range').textContent === text", arg=text
    )


# Pages -------------------------------------------------------------------------------------------
def test_the_studies_page_lists_the_studies(tab):
    tab.open("/")
    tab.page.wait_for_selector("#studies tbody tr")
    rows = tab.page.locator("#studies tbody tr").all_inner_texts()
    assert rows[0].startswith("demo\tmaximize\tscore\t60\t")
    assert rows[1].startswith(XSS)
    tab.shoot("studies")
    tab.check_clean()


def test_the_study_page_shows_summary_table_and_every_figure(tab):
    tab.open("/studies/demo")
    tab.page.wait_for_selector("#trials tbody tr")
    summary = tab.page.locator("#summary").inner_text()
    assert "60 trials" in summary and "Best: trial #" in summary
    assert "Final test result (trial #8, retrained on all): score = 0.9" in summary
    assert tab.page.locator("#range").inner_text() == "1–25 of 60"
    draw_figures(tab)
    assert_all_drawn(tab)
    assert tab.page.locator(".figure-box").count() == len(KINDS)
    tab.shoot("study")
    tab.check_clean()


def test_the_trial_page_shows_the_trial_its_curve_and_files(tab):
    tab.open("/studies/demo/trials/0")
    tab.page.wait_for_selector("#files tbody tr")
    assert tab.page.locator("#files tbody").inner_text().split("\n") == [
        "model.pt\t1000 B",
        "logs/train.log\t8 B",
    ]
    assert tab.page.locator("#intermediate tbody tr").count() == 4
    assert "COMPLETE" in tab.page.locator("#facts").inner_text().upper()
    draw_figures(tab)
    assert_all_drawn(tab)
    tab.shoot("trial")
    tab.check_clean()


def test_a_failed_and_a_pruned_trial_show_their_error_and_stop_reason(tab):
    tab.open(f"/studies/demo/trials/{FAILS}")
    tab.page.wait_for_selector("#error-section:not([hidden])")
    assert "RuntimeError: boom in user code" in tab.page.locator("#error").inner_text()
    tab.open("/studies/demo/trials/5")
    tab.page.wait_for_selector("#stopped-section:not([hidden])")
    assert tab.page.locator("#stopped").inner_text().startswith("STOP at step 1 by median: ")
    tab.check_clean()


# The table ---------------------------------------------------------------------------------------
def test_the_table_sorts_filters_and_pages(tab):
    tab.open("/studies/demo")
    tab.page.wait_for_selector("#trials tbody tr")
    tab.page.select_option("#limit", "50")
    wait_for_range(tab, "1–50 of 60")
    tab.page.click("#next")
    wait_for_range(tab, "51–60 of 60")
    assert column(tab, 1)[0] == "50"
    tab.page.click("button.sort[data-sort='param:x']")
    wait_for_range(tab, "1–50 of 60")
    xs = [float(x) for x in column(tab, 6)]
    assert xs == sorted(xs)
    tab.page.click("button.sort[data-sort='param:x']")
    tab.page.wait_for_selector("th.sorted >> text=x ▼")
    xs = [float(x) for x in column(tab, 6)]
    assert xs == sorted(xs, reverse=True)
    tab.page.check("#states input[value='FAILED']")
    wait_for_range(tab, "1–1 of 1")
    assert column(tab, 1) == [str(FAILS)]
    tab.page.uncheck("#states input[value='FAILED']")
    wait_for_range(tab, "1–50 of 60")
    tab.page.fill("#q", "opt=b")
    tab.page.wait_for_function(
        "() => !document.getElementById('range').textContent.endsWith('of 60')"
    )
    assert set(column(tab, 7)) == {"b"}
    tab.shoot("study-filtered")
    tab.check_clean()


# Live refresh ------------------------------------------------------------------------------------
def test_a_running_study_updates_the_open_page_without_a_reload(browser, tmp_path):
    url = f"sqlite:///{tmp_path}/live.db"
    demo_study(url, trials=5)
    server = serve_in_thread(url)
    tab = open_tab(browser, next(server))
    try:
        tab.open("/studies/demo")
        wait_for_range(tab, "1–5 of 5")
        tab.page.evaluate("window.sameDocument = true")
        tab.page.locator("[data-kind='history']").scroll_into_view_if_needed()
        tab.page.wait_for_selector("[data-kind='history'] .js-plotly-plot svg")
        more = threading.Thread(target=demo_study, args=(url,), kwargs={"trials": 30})
        more.start()
        more.join()
        wait_for_range(tab, "1–25 of 30")
        assert "30 trials" in tab.page.locator("#summary").inner_text()
        assert tab.page.evaluate("window.sameDocument") is True
        tab.page.wait_for_function(  # the figures were redrawn with the new trials
            """() => document.querySelector("[data-kind='history'] .js-plotly-plot")
                       .data.some(trace => (trace.x || []).includes(29))"""
        )
        tab.shoot("study-live")
        tab.check_clean()
    finally:
        tab.page.close()
        server.close()


# Markup in names ---------------------------------------------------------------------------------
def test_markup_in_names_values_and_errors_shows_as_text(tab):
    tab.open("/")
    tab.page.wait_for_selector("#studies tbody tr")
    assert XSS in tab.page.locator("#studies").inner_text()
    tab.page.click(f"#studies a >> text={XSS}")
    tab.page.wait_for_selector("#trials tbody tr")
    assert tab.page.url.endswith("/studies/" + url_name(XSS))
    assert tab.page.locator("h1").inner_text() == XSS
    table = tab.page.locator("#trials").inner_text()
    assert XSS in table and XSS_VALUE in table and XSS_ERROR.split("\n")[-1] in table
    draw_figures(tab)  # a figure two trials cannot fill says so in its title
    assert_all_drawn(tab)
    tab.shoot("xss-study")
    tab.open("/studies/" + url_name(XSS) + "/trials/1")
    tab.page.wait_for_selector("#error-section:not([hidden])")
    assert tab.page.locator("#error").inner_text() == XSS_ERROR
    assert tab.page.locator("#params").inner_text() == f"{XSS}\tplain"
    tab.shoot("xss-trial")
    assert tab.page.evaluate("document.scripts.length") == 2  # ours: none was added
    assert tab.page.evaluate("document.querySelectorAll('img, b').length") == 0
    tab.check_clean()


def test_a_figure_that_fails_says_why_in_its_box_and_the_page_goes_on(tab):
    tab.open("/studies/odd")
    tab.page.wait_for_selector("#trials tbody tr")
    draw_figures(tab)
    errors = tab.page.locator(".figure-error").all_inner_texts()
    assert len(errors) == len(KINDS) and all("sideways" in error for error in errors)
    assert tab.page.locator("#range").inner_text() == "1–1 of 1"
    tab.shoot("study-figure-errors")
    assert [e for e in tab.errors if "422" not in e] == []  # each failed fetch is logged
    tab.errors.clear()
    tab.check_clean()


def test_pages_of_an_unknown_study_say_so(tab):
    tab.open("/studies/nope")
    tab.page.wait_for_selector("#status.failed")
    assert "no study named 'nope'" in tab.page.locator("#status").inner_text()
    assert [e for e in tab.errors if "404" not in e] == []  # the failed fetch is logged
    tab.errors.clear()
    tab.check_clean()
