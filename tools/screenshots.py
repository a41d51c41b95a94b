"""The docs' pictures of the web pages, taken from a real run: docs/screenshots/*.png.

Serves a project that `tunesmith run` has completed (the demo by default), points production at its newest
version if nothing is in production yet, sends it some traffic (chat requests and feedback), then opens
every page in headless Chromium (Debian's `chromium`, driven by playwright, as the browser tests do) and
saves a full-page screenshot of each.

Run from the repository root, after `make demo`:
    .venv/bin/python tools/screenshots.py [--config examples/support-tickets-json/tunesmith.yaml] [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [
    "My card was charged twice for the Pro plan this month, please refund one.",
    "The mobile app crashes every time I open the settings page on my phone.",
    "Where is my order 48213? It was due last Tuesday.",
    "Could you add a dark mode to the web dashboard?",
    "I cannot log in since I changed my email address.",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "examples" / "support-tickets-json" / "tunesmith.yaml"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = ap.parse_args()

    import httpx
    from playwright.sync_api import sync_playwright

    from tunesmith.cli.serve import with_extras
    from tunesmith.config import load_config
    from tunesmith.registry import store
    from tunesmith.serve.stage import build_app, start_in_thread
    from tunesmith.tracking import model_name

    cfg = load_config(args.config, ["serve.jobs.worker=false", "serve.log_texts=true"])
    versions = store.versions(cfg)
    if not versions:
        raise SystemExit(f"nothing registered for {args.config}: run `tunesmith run {args.config}` first")
    if not any("production" in v["aliases"] for v in versions):
        store.promote(cfg, str(versions[-1]["version"]), "production", reason="screenshots")
    name = model_name(cfg)
    app = build_app(cfg)
    stop = with_extras(app, cfg)
    running = start_in_thread(app)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no chromium: apt-get install chromium")
    try:
        system = task_prompt(cfg)
        for i, prompt in enumerate(PROMPTS * 2):
            head = [{"role": "system", "content": system}] if system else []
            answer = httpx.post(
                f"{running.url}/v1/chat/completions",
                timeout=120,
                json={
                    "model": name,
                    "user": f"user-{i}",
                    "max_tokens": 64,
                    "temperature": 0,
                    "messages": [*head, {"role": "user", "content": prompt}],
                },
            ).json()
            httpx.post(
                f"{running.url}/v1/feedback", timeout=30, json={"id": answer["id"], "thumbs": "up" if i % 4 else "down"}
            )
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            shots = [
                ("runs", "/ui/runs"),
                ("run", "/ui/runs/project"),
                ("evaluation", "/ui/eval"),
                ("diff", "/ui/eval/diff?a=base&b=fine_tuned"),
                ("registry", "/ui/registry"),
                ("card", f"/ui/registry/{versions[-1]['version']}"),
                ("rollout", "/ui/rollout"),
            ]
            for label, path in shots:
                page.goto(f"{running.url}{path}")
                page.screenshot(path=str(out / f"{label}.png"), full_page=True)
            page.goto(f"{running.url}/ui/human")
            page.click("#export")
            page.fill("#rater", "ana")
            page.click("#start")
            page.screenshot(path=str(out / "human.png"), full_page=True)
            page.goto(f"{running.url}/ui/playground")
            page.select_option("#model-a", name)
            page.select_option("#model-b", "base")
            page.fill("#prompt", PROMPTS[0])
            page.click("#send")
            page.wait_for_selector(".answer", timeout=120_000)
            page.screenshot(path=str(out / "playground.png"), full_page=True)
            browser.close()
        print(f"wrote {len(shots) + 2} screenshots to {out}")
    finally:
        running.stop()
        if stop:
            stop()


def task_prompt(cfg: object) -> str | None:
    """The task's system prompt, as its records carry it (the server adds data.system_prompt itself)."""
    from tunesmith.data.stage import load_split
    from tunesmith.data.template import task_system_prompt

    return task_system_prompt(None, [r for r in load_split(cfg, "train") if hasattr(r, "messages")])


if __name__ == "__main__":
    main()
