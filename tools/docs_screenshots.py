"""Screenshots of the built docs site (`make docs` first): its home page and the configuration reference,
taken in headless Chromium (Debian's `chromium`, driven by playwright, as tests/web does), served over
HTTP from build/site, into docs/screenshots/docs-home.png and docs-config-reference.png.

Run:  make docs && .venv/bin/python tools/docs_screenshots.py
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = {"docs-home.png": "/", "docs-config-reference.png": "/reference/config/"}


def main() -> None:
    from playwright.sync_api import sync_playwright

    site = ROOT / "build" / "site"
    if not (site / "index.html").exists():
        raise SystemExit("no built site in build/site: run `make docs` first")
    chromium = os.environ.get("TUNESMITH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no chromium: apt-get install chromium, or set TUNESMITH_CHROMIUM")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = ROOT / "docs" / "screenshots"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for name, path in PAGES.items():
                page.goto(f"http://127.0.0.1:{server.server_port}{path}")
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(out / name))
                print(out / name)
            browser.close()
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
