"""Real headless Chromium for the browser tests (the report, the dashboard), never downloaded.

Where /usr/bin/chromium is missing the tests skip, except in CI (``CI`` set), where they fail:
.ci/run installs it, so a skip there would hide a broken page.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def chromium() -> Iterator:
    """A launched Chromium browser (Playwright), closed afterwards."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs it with apt-get install chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot_dir(name: str) -> Path:
    """Where a test run leaves its screenshots: test-artifacts/NAME under the repository."""
    folder = ROOT / "test-artifacts" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
