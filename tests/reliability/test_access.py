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
    return httpx.post(
        f"{url}/ui/registry/promote",
        data={"version": version, "alias": "production"},
        headers=headers,
        follow_redirects=False,
        timeout=30,
    )


KEYS = [f"serve.api_key_sha256=['{hash_key(KEY)}']", f"serve.admin_key_sha256=['{hash_key(ADMIN)}']"]


@pytest.mark.parametrize("server", [KEYS], indirect=True)
def test_an_inference_key_cannot_change_production_from_the_pages(server, project):
    for action, data in (("promote", {"version": "2", "alias": "production"}), ("rollback", {"alias": "production"})):
        for auth in ({"Authorization": f"Bearer {KEY}"}, {"Cookie": f"tunesmith_key={KEY}"}):
            answer = httpx.post(f"{server.url}/ui/registry/{action}", data=data, headers=auth, timeout=30)
            assert answer.status_code == 403 and "admin key" in answer.text, (action, auth, answer.text)
    assert str(store.client(project).get_model_version_by_alias("tickets", "production").version) == "1"
    answer = httpx.post(
        f"{server.url}/admin/rollout",
        json={"model": "x", "action": "clear"},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    )
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
    upload = httpx.post(
        f"{server.url}/v1/files",
        files={"file": ("t.jsonl", b'{"prompt": "a", "completion": "b"}\n')},
        data={"purpose": "fine-tune"},
        headers=evil,
        timeout=30,
    )
    assert upload.status_code == 403  # a multipart form: a CORS simple request, sent without asking
    assert str(store.client(project).get_model_version_by_alias("tickets", "production").version) == "1"
    # this server's own page, on this machine: allowed
    own = _promote(server.url, "2", Origin=server.url, Referer=f"{server.url}/ui/registry")
    assert own.status_code == 303, own.text
    store.promote(project, "1", "production")
    page = httpx.get(f"{server.url}/ui/registry/confirm?action=promote&version=2", timeout=30)
    assert (
        page.headers["x-frame-options"] == "DENY"
        and "frame-ancestors 'none'" in page.headers["content-security-policy"]
    )
    assert httpx.get(f"{server.url}/health", timeout=30).headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("server", [KEYS], indirect=True)
def test_a_rater_name_belongs_to_one_key_and_unknown_items_are_a_400(server, monkeypatch):
    from tunesmith.web import data

    key, admin = {"Authorization": f"Bearer {KEY}"}, {"Authorization": f"Bearer {ADMIN}"}
    assert httpx.post(f"{server.url}/ui/human/export", headers=key, timeout=60).status_code in (200, 303)

    def rate(rater: str, item: str, auth: dict) -> httpx.Response:
        return httpx.post(
            f"{server.url}/ui/human/rate",
            headers=auth,
            timeout=30,
            data={"rater": rater, "item": item, "preferred": "1"},
        )

    assert rate("alice", "1", key).status_code == 303
    assert rate("alice", "2", admin).status_code == 403  # another key cannot rate as alice
    assert rate("alice", "99999", key).status_code == 400 and rate("alice", "x", key).status_code == 400
    monkeypatch.setattr(data, "MAX_RATERS", 2)
    assert rate("bob", "1", admin).status_code == 303
    answer = rate("carol", "1", admin)
    assert answer.status_code == 400 and "raters" in answer.text


def test_rollback_with_nothing_registered_is_said_not_a_500(tmp_path, tiny_model_dir):
    cfg = _project(tmp_path, tiny_model_dir, max_steps=1)
    cfg.config_path.write_text(cfg.config_path.read_text() + "registry:\n  name: empty\n")
    running, stop = _serve(cfg)
    try:
        answer = httpx.post(f"{running.url}/ui/registry/rollback", data={"alias": "production"}, timeout=60)
        assert answer.status_code == 303 and "message=" in answer.headers["location"], answer.text
    finally:
        running.stop()
        stop()


@pytest.mark.parametrize("server", [["serve.max_tokens_limit=16"]], indirect=True)
def test_the_playground_meets_the_serving_limits_and_is_logged(server):
    def play(max_tokens: int) -> str:
        answer = httpx.post(
            f"{server.url}/ui/playground",
            timeout=60,
            data={"prompt": "Say hello.", "a": "base", "max_tokens": str(max_tokens)},
        )
        assert answer.status_code == 200, answer.text
        return answer.text

    assert "over this server&#39;s limit of 16" in play(500) or "over this server's limit of 16" in play(500)
    before = httpx.get(f"{server.url}/metrics", timeout=30).text.count('status="200"')
    play(4)
    metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
    assert 'tunesmith_requests_total{model="base",status="200"}' in metrics and metrics.count('status="200"') >= before


OTHER = "ts-access-other-org"


@pytest.mark.parametrize(
    "server",
    [KEYS + [f"serve.api_key_sha256=['{hash_key(KEY)}', '{hash_key(OTHER)}']", "serve.jobs.enabled=true"]],
    indirect=True,
)
def test_the_pages_show_each_organisation_its_own_runs(server, tmp_path):
    import json

    from tunesmith.serve.keys import owned_by

    rows = "".join(
        json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]})
        + "\n"
        for i in range(8)
    )
    mine = {"Authorization": f"Bearer {KEY}"}
    upload = httpx.post(
        f"{server.url}/v1/files",
        headers=mine,
        files={"file": ("t.jsonl", rows.encode())},
        data={"purpose": "fine-tune"},
        timeout=60,
    ).json()
    job = httpx.post(
        f"{server.url}/v1/fine_tuning/jobs",
        headers=mine,
        timeout=60,
        json={"model": "base", "training_file": upload["id"]},
    ).json()
    theirs = {"Authorization": f"Bearer {OTHER}"}
    assert job["id"] in httpx.get(f"{server.url}/ui/runs", headers=mine, timeout=30).text
    listed = httpx.get(f"{server.url}/ui/runs", headers=theirs, timeout=30).text
    assert job["id"] not in listed and ">project<" not in listed
    assert f"No run {job['id']}" in httpx.get(f"{server.url}/ui/runs/{job['id']}", headers=theirs, timeout=30).text
    assert "No run project" in httpx.get(f"{server.url}/ui/runs/project", headers=theirs, timeout=30).text
    assert httpx.get(f"{server.url}/ui/rollout", headers=theirs, timeout=30).status_code == 403
    admin = {"Authorization": f"Bearer {ADMIN}"}
    assert job["id"] in httpx.get(f"{server.url}/ui/runs", headers=admin, timeout=30).text
    assert owned_by("ft:base:acme:x:1", "acme") and not owned_by("ft:base:acme:x:1", "other") and owned_by("base", "x")
    # /metrics: another organisation's fine-tuned model and its traffic are not named to this caller
    from tunesmith.serve.keys import organisation

    counter = server.app.state.server.metrics.registry._names_to_collectors["tunesmith_requests"]
    from tunesmith.config import ServeConfig

    org_of = organisation(ServeConfig(), hash_key(KEY))  # no serve.organizations: the key is its own
    counter.labels(f"ft:base:{org_of}:mine:1", "200").inc()
    counter.labels("ft:base:org-someone-else:theirs:1", "200").inc()
    seen = httpx.get(f"{server.url}/metrics", headers=mine, timeout=30).text
    assert f"ft:base:{org_of}:mine:1" in seen and "theirs" not in seen
    assert "theirs" in httpx.get(f"{server.url}/metrics", headers=admin, timeout=30).text


def test_reports_render_as_html_and_what_records_wrote_stays_text():
    from tunesmith.web.common import as_html as _markdown

    rendered = _markdown("# Card\n\n| field | value |\n|---|---|\n| note | <script>alert(1)</script> |\n")
    assert "<h1>Card</h1>" in rendered and "<table>" in rendered and "<td>note</td>" in rendered
    assert "<script>" not in rendered and "&lt;script&gt;" in rendered
