"""Re-make the README's pictures with the commands the README documents.

Runs ``tunelab run examples/digits.yaml`` in a fresh folder, then
``tunelab plot digits-mlp --kind curves -o docs/images/curves.png`` and ``--kind importance``,
then starts ``tunelab dashboard`` there and saves a headless-Chromium screenshot of the study page
as docs/images/dashboard.png, and stops the dashboard.

Usage: python bench/readme_images.py   (needs /usr/bin/chromium)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
]


def tunelab(*args: str, cwd: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "tunelab.cli", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL
    )


def screenshot_dashboard(cwd: Path, path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "tunelab.cli", "dashboard", "--port", str(port)],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/", timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1700})
            page.goto(f"{base}/studies/digits-mlp")
            page.wait_for_function(
                "(() => { const f = document.querySelectorAll('#figures .js-plotly-plot');"
                " return f.length > 0 && [...f].every(d => d.querySelector('.main-svg')); })()",
                timeout=60_000,
            )
            page.wait_for_timeout(500)  # let the last figure finish its transition
            page.screenshot(path=str(path))
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        tunelab("run", str(ROOT / "examples" / "digits.yaml"), cwd=cwd)
        for kind in ("curves", "importance"):
            tunelab(
                "plot", "digits-mlp", "--kind", kind, "-o", str(IMAGES / f"{kind}.png"), cwd=cwd
            )
        screenshot_dashboard(cwd, IMAGES / "dashboard.png")
    print("wrote", *sorted(p.name for p in IMAGES.iterdir()))


if __name__ == "__main__":
    main()
