"""Who may change production (serve/access.py), on a real server on localhost: an inference key gets 403 on the
pages' promote and rollback as on /admin; with no keys only this machine may; a form or upload posted from
another site's page is refused whatever the keys; every response forbids framing."""

from __future__ import annotations

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

pytestmark = pytest.mark.reliability
KEY, ADMIN = "ts-access-key", "ts-access-admin"


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model_dir):
    cfg = _project(tmp_path_factory.mktemp("access"), tiny_model_dir, max_steps=2)
    cfg.config_path.write_text(cfg.config_path.read_text() + "registry:\n  name: tickets\n")
    cfg = load_config(cfg.config_path, LENIENT)
    run_train(cfg)
    run_eval(cfg, limit=4)
    store.add_version(cfg)
    store.add_version(cfg)
    store.promote(cfg, "1", "production")
    return cfg


def _serve(cfg, *overrides):
    from tunesmith.cli.serve import with_extras

    cfg = load_config(cfg.config_path, [*LENIENT, "serve.jobs.worker=false", "serve.alias_poll_s=0", *overrides])
    app = build_app(cfg)
    stop = with_extras(app, cfg)
    return start_in_thread(app), stop


@pytest.fixture
def server(project, request):
    running, stop = _serve(project, *request.param)
    yield running
    running.stop()
    stop()


def _promote(url: str, version: str, **headers: str) -> httpx.Response:
    return httpx.post(f"{url}/ui/registry/promote", data={"version": version, "alias": "production"},
                      headers=headers, follow_redirects=False, timeout=30)


KEYS = [f"serve.api_key_sha256=['{hash_key(KEY)}']", f"serve.admin_key_sha256=['{hash_key(ADMIN)}']"]


@pytest.mark.parametrize("server", [KEYS], indirect=True)
def test_an_inference_key_cannot_change_production_from_the_pages(server, project):
    for action, data in (("promote", {"version": "2", "alias": "production"}), ("rollback", {"alias": "production"})):
        for auth in ({"Authorization": f"Bearer {KEY}"}, {"Cookie": f"tunesmith_key={KEY}"}):
            answer = httpx.post(f"{server.url}/ui/registry/{action}", data=data, headers=auth, timeout=30)
            assert answer.status_code == 403 and "admin key" in answer.text, (action, auth, answer.text)
    assert str(store.client(project).get_model_version_by_alias("tickets", "production").version) == "1"
    answer = httpx.post(f"{server.url}/admin/rollout", json={"model": "x", "action": "clear"},
                        headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "admin_key_required"
    moved = _promote(server.url, "2", Authorization=f"Bearer {ADMIN}")
    assert moved.status_code == 303 and "production is now v2" in moved.headers["location"].replace("%20", " ")
    store.promote(project, "1", "production")


@pytest.mark.parametrize("server", [[f"serve.api_key_sha256=['{hash_key(KEY)}']"]], indirect=True)
def test_with_inference_keys_and_no_admin_key_nobody_changes_production(server):
    assert _promote(server.url, "2", Authorization=f"Bearer {KEY}").status_code == 403


@pytest.mark.parametrize("server", [[]], indirect=True)
def test_without_keys_a_cross_site_form_is_refused_and_this_machine_may(server, project):
    evil = {"Origin": "https://evil.example"}
    answer = _promote(server.url, "2", **evil)
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "cross_site_request"
    assert _promote(server.url, "2", **{"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert _promote(server.url, "2", Referer="http://evil.example/page").status_code == 403
    upload = httpx.post(f"{server.url}/v1/files", files={"file": ("t.jsonl", b'{"prompt": "a", "completion": "b"}\n')},
                        data={"purpose": "fine-tune"}, headers=evil, timeout=30)
    assert upload.status_code == 403  # a multipart form: a CORS simple request, sent without asking
    assert str(store.client(project).get_model_version_by_alias("tickets", "production").version) == "1"
    # this server's own page, on this machine: allowed
    own = _promote(server.url, "2", Origin=server.url, Referer=f"{server.url}/ui/registry")
    assert own.status_code == 303, own.text
    store.promote(project, "1", "production")
    page = httpx.get(f"{server.url}/ui/registry/confirm?action=promote&version=2", timeout=30)
    assert page.headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in page.headers[
        "content-security-policy"]
    assert httpx.get(f"{server.url}/health", timeout=30).headers["x-content-type-options"] == "nosniff"
