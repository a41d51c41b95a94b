"""The web pages in a real browser: headless Chromium (Debian's `chromium`, driven by playwright with
that executable; no browser download). Opens every page, promotes then rolls back from the registry
page and sees the alias move, submits a blind rating and sees it counted, chats in the playground;
fails on any console error. Screenshots of each page go to $TUNESMITH_SCREENSHOTS (a temporary folder by default;
the docs' pictures come from the real demo, tools/screenshots.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.evaluate.test_eval_stage import _project
from tests.serve.test_rollout import LENIENT
from tunesmith.config import load_config
from tunesmith.evaluate.stage import run_eval
from tunesmith.registry import store
from tunesmith.serve.keys import hash_key
from tunesmith.serve.stage import build_app, start_in_thread
from tunesmith.train.stage import run_train

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = os.environ.get("TUNESMITH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = os.environ.get("TUNESMITH_REQUIRE_BROWSER") == "1"  # make test: a missing browser fails, never skips
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not REQUIRED, reason="no chromium (apt-get install chromium; make test and .ci/run install it)"
)
SHOTS = Path(os.environ.get("TUNESMITH_SCREENSHOTS") or tempfile.gettempdir()) / "tunesmith-web-test-shots"
KEY, ADMIN = "ts-web-key", "ts-web-admin"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    from tunesmith.cli.serve import with_extras

    cfg = _project(tmp_path_factory.mktemp("web"), tiny_model_dir, max_steps=4)
    cfg.config_path.write_text(cfg.config_path.read_text() + "registry:\n  name: tickets\n")
    overrides = LENIENT + [
        f"serve.api_key_sha256=['{hash_key(KEY)}']",
        f"serve.admin_key_sha256=['{hash_key(ADMIN)}']",
        "serve.alias_poll_s=0.5",
        "serve.jobs.worker=false",
    ]
    cfg = load_config(cfg.config_path, overrides)
    run_train(cfg)
    run_eval(cfg, limit=6)
    store.add_version(cfg)
    store.add_version(cfg)
    store.promote(cfg, "1", "production")
    app = build_app(cfg)
    stop = with_extras(app, cfg)
    running = start_in_thread(app)
    yield running
    running.stop()
    stop()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("no chromium for the browser tests: apt-get install chromium, or set TUNESMITH_CHROMIUM")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


def test_every_page_in_a_real_browser(server, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))

    page.goto(f"{server.url}/ui/runs")
    assert "/ui/login" in page.url  # behind the API key
    page.fill("#key", ADMIN)
    page.click("#login")
    page.wait_for_url("**/ui/runs")
    assert page.locator("#runs td a", has_text="project").count() == 1
    page.screenshot(path=str(SHOTS / "runs.png"), full_page=True)

    page.click("text=project")
    assert page.locator("svg[aria-label='loss curves'] polyline").count() == 2  # train and validation
    assert "max_length" in page.locator("pre").first.inner_text()  # the resolved config
    page.screenshot(path=str(SHOTS / "run.png"), full_page=True)

    page.goto(f"{server.url}/ui/eval")
    assert page.locator("#metrics tr").count() == 4  # header + base, few-shot, fine-tuned
    assert page.locator("#gates tr").count() > 3
    assert "(warning only)" in page.inner_text("#gates")  # the latency gate warns, as in the terminal
    cells = page.locator("#examples tr").nth(1).locator("td")
    assert cells.nth(0).inner_text().startswith("line ")  # records without an id: named by their line
    assert len(cells.nth(4).inner_text()) <= 5  # the score, to three significant digits
    page.screenshot(path=str(SHOTS / "evaluation.png"), full_page=True)
    page.select_option("select[name=filter]", "wrong")
    page.click("input[value=Filter]")
    assert "wrong answer" in page.inner_text("#shown")

    page.goto(f"{server.url}/ui/eval/diff?a=v1&b=v2")
    assert "answered differently" in page.inner_text("#summary")
    predictions = Path(server.app.state.server.log.path).parents[1] / "eval" / "predictions_fine_tuned.jsonl"
    examples = len(predictions.read_text().splitlines())
    assert (
        examples > 2 and page.locator("#diff tr").count() == examples + 1
    )  # both versions' outputs, from the registry
    page.screenshot(path=str(SHOTS / "diff.png"), full_page=True)

    page.goto(f"{server.url}/ui/registry")
    assert "production" in page.inner_text("#v1 .aliases")
    page.screenshot(path=str(SHOTS / "registry.png"), full_page=True)
    page.click("#promote-2-production")
    assert "Point production at v2" in page.inner_text("#question")
    page.click("#confirm")
    page.wait_for_url("**/ui/registry?message=*")
    assert "production is now v2" in page.inner_text("#message")
    assert "production" in page.inner_text("#v2 .aliases") and "production" not in page.inner_text("#v1 .aliases")
    assert server.app.state.server.targets["tickets"].version == "2"  # this server follows at once
    page.click("#rollback")
    page.click("#confirm")
    page.wait_for_url("**/ui/registry?message=*")
    assert "production is now v1" in page.inner_text("#message")
    assert "production" in page.inner_text("#v1 .aliases")
    assert page.locator("#history tr").count() >= 4  # promote v1, promote v2, rollback (+ header)
    page.click("#v2 a:has-text('card')")
    assert "v2" in page.inner_text("h1") and page.inner_text("#card")

    for i in range(3):  # some traffic, so the rollout page draws its chart
        answer = httpx.post(
            f"{server.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {KEY}"},
            json={"model": "tickets", "max_tokens": 4, "messages": [{"role": "user", "content": f"q{i}"}]},
        )
        assert answer.status_code == 200, answer.text
    page.goto(f"{server.url}/ui/rollout")
    assert "production" in page.inner_text("main")
    page.wait_for_function("document.querySelector('img.chart') && document.querySelector('img.chart').complete")
    assert page.evaluate("document.querySelector('img.chart').naturalWidth") > 500
    page.screenshot(path=str(SHOTS / "rollout.png"), full_page=True)

    page.goto(f"{server.url}/ui/human")
    page.click("#export")
    page.fill("#rater", "ana")
    page.click("#start")
    assert page.inner_text("#prompt")
    page.screenshot(path=str(SHOTS / "human.png"), full_page=True)
    page.keyboard.press("1")  # the keyboard shortcuts: 1 = left answer, Enter = submit
    with page.expect_navigation():  # the form posts and comes back to the same address
        page.keyboard.press("Enter")
    assert "pair 2 of" in page.inner_text("main")
    page.goto(f"{server.url}/ui/human")
    assert "1 judgments from 1 raters" in page.inner_text("#counted")
    assert (Path(server.app.state.server.log.path).parents[1] / "eval" / "human" / "ratings" / "ana.csv").exists()

    page.goto(f"{server.url}/ui/playground")
    page.select_option("#model-a", "tickets")
    page.select_option("#model-b", "base")
    page.fill("#prompt", "Hello there")
    page.click("#send")
    assert page.locator("pre.answer").count() == 2
    page.screenshot(path=str(SHOTS / "playground.png"), full_page=True)
    assert errors == []
