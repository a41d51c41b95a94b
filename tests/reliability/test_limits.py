"""Request limits and access, on a real server on localhost: each case is a finding of the reliability
review (issue 17) that failed before its fix — a chunked body past the limit, a prompt past the
context, a huge seed, malformed inner types, JSON nested without end, inference keys on /admin,
feedback counted twice, a raw `user` stored with redaction on, a disconnected stream left running."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import yaml

from tunesmith.config import load_config
from tunesmith.serve.keys import hash_key
from tunesmith.serve.stage import build_app, start_in_thread

KEY, ADMIN = "ts-inference-key", "ts-admin-key"
pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("limits")
    config = root / "tunesmith.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "base_model": str(tiny_model_dir),
                "output_dir": "out",
                "data": {"datasets": [{"path": "d.jsonl"}]},
                "serve": {
                    "api_key_sha256": [hash_key(KEY)],
                    "admin_key_sha256": [hash_key(ADMIN)],
                    "max_request_bytes": 4096,
                    "max_prompt_tokens": 200,
                    "max_tokens_limit": 4000,
                    "log_texts": True,
                    "batch_wait_ms": 200,
                    "jobs": {"enabled": False},
                },
            }
        )
    )
    running = start_in_thread(build_app(load_config(config)))
    yield running
    running.stop()


def _post(server, path: str, key: str = KEY, headers: dict | None = None, **kw) -> httpx.Response:
    return httpx.post(
        f"{server.url}{path}", headers={"Authorization": f"Bearer {key}", **(headers or {})}, timeout=60, **kw
    )


def _chat(**extra) -> dict:
    return {"model": "base", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4, **extra}


def _error(answer: httpx.Response) -> dict:
    body = answer.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, body  # OpenAI's shape
    return body["error"]


def test_a_chunked_body_past_the_limit_is_refused_while_it_streams(server):
    sent = []

    def chunks():  # no Content-Length: the body arrives in chunks, 1 MB in all
        for _ in range(256):
            sent.append(1)
            yield b" " * 4096

    answer = _post(server, "/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and "4096 bytes" in _error(answer)["message"]
    assert _post(server, "/v1/chat/completions", json=_chat()).status_code == 200  # the server is fine


def test_prompt_length_and_context_are_checked_before_batching(server):
    long = _post(server, "/v1/chat/completions", json=_chat(messages=[{"role": "user", "content": "word " * 400}]))
    assert long.status_code == 400 and _error(long)["code"] == "context_length_exceeded"
    over = _post(
        server,
        "/v1/chat/completions",
        json=_chat(max_tokens=4000, messages=[{"role": "user", "content": "word " * 40}]),
    )  # ~170 prompt tokens + 4000 > the 4096 context
    assert over.status_code == 400 and "context" in _error(over)["message"]


def test_bad_values_get_a_400_and_never_fail_a_neighbour_in_the_batch(server):
    from concurrent.futures import ThreadPoolExecutor

    bad = [
        _chat(seed=2**70),
        _chat(messages=[{"role": "user", "content": [{"type": "text", "text": 5}]}]),
        _chat(messages=[{"role": "user", "content": [5]}]),
        _chat(n=2),
        _chat(max_tokens="many"),
        {"model": "base", "messages": "hello"},
    ]
    with ThreadPoolExecutor(len(bad) + 4) as pool:
        good = [pool.submit(_post, server, "/v1/chat/completions", json=_chat(seed=7)) for _ in range(4)]
        answers = list(pool.map(lambda b: _post(server, "/v1/chat/completions", json=b), bad))
    assert [a.status_code for a in answers] == [400] * len(bad), [a.text for a in answers]
    for a in answers:
        _error(a)
    assert all(f.result().status_code == 200 for f in good)


def test_what_the_fuzzer_found_an_empty_prompt_and_a_vanishing_top_p(server):
    """schemathesis found both (tests/reliability/test_fuzz.py): an empty prompt reached the model as an
    empty float tensor, and a top_p that underflows float32 left nothing to sample; each was a 500."""
    empty = _post(server, "/v1/completions", json={"model": "base", "prompt": "", "max_tokens": 4})
    assert empty.status_code == 400 and _error(empty)["param"] == "prompt"
    tiny = _post(
        server,
        "/v1/completions",
        json={"model": "base", "prompt": "0", "max_tokens": 4, "temperature": 0.1, "top_p": 5.654164380964539e-161},
    )
    assert tiny.status_code == 200, tiny.text


def test_json_nested_without_end_is_a_400_not_a_500(server):
    deep = (
        '{"model": "base", "messages": [{"role": "user", "content": "hi"}], "extra": ' + "[" * 1900 + "]" * 1900 + "}"
    )  # under the 4096-byte limit
    answer = _post(server, "/v1/chat/completions", content=deep.encode(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and "nested deeper" in _error(answer)["message"]
    for kind in ("text/plain", None):  # the routes parse the body as JSON whatever its declared type
        answer = _post(
            server, "/v1/chat/completions", content=deep.encode(), headers={"Content-Type": kind} if kind else {}
        )
        assert answer.status_code == 400 and "nested deeper" in _error(answer)["message"], (kind, answer.text)
    nested_in_a_string = _chat(messages=[{"role": "user", "content": "[" * 100}])
    assert _post(server, "/v1/chat/completions", json=nested_in_a_string).status_code == 200  # text is not structure


def test_admin_needs_the_admin_key(server):
    assert httpx.get(f"{server.url}/admin/rollout", headers={"Authorization": f"Bearer {KEY}"}).status_code == 403
    assert httpx.get(f"{server.url}/admin/rollout").status_code == 403
    assert httpx.get(f"{server.url}/admin/rollout", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200
    refused = _post(server, "/admin/rollout", json={"model": "x", "action": "promote"})
    assert refused.status_code == 403 and _error(refused)["code"] == "admin_key_required"


def test_feedback_counts_once_per_request_and_key(server):
    answer = _post(server, "/v1/chat/completions", json=_chat(user="ana.lopez@example.com")).json()
    for score in (0.0, 0.0, 1.0):
        assert _post(server, "/v1/feedback", json={"id": answer["id"], "score": score}).status_code == 200
    log = server.app.state.server.log
    rows = [r for r in log.feedback() if r["request_id"] == answer["id"]]
    assert len(rows) == 1 and rows[0]["score"] == 1.0  # the last word, counted once
    stored = log.get(answer["id"])
    assert "ana.lopez@example.com" not in json.dumps(stored) and "[EMAIL]" in stored["user"]


def test_a_client_that_leaves_a_stream_stops_its_generation(server):
    log = server.app.state.server.log
    with httpx.Client(timeout=60) as client:
        with client.stream(
            "POST",
            f"{server.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {KEY}"},
            json=_chat(stream=True, max_tokens=3000, temperature=1.0, seed=1),
        ) as answer:
            for line in answer.iter_lines():
                if line.startswith("data:") and '"content"' in line:
                    rid = json.loads(line[5:])["id"]
                    break
    deadline = time.time() + 20
    while time.time() < deadline and (log.get(rid) or {}).get("status") != 499:
        time.sleep(0.1)
    row = log.get(rid)
    assert row and row["status"] == 499 and row["error"] == "client disconnected"
    deadline = time.time() + 20
    while time.time() < deadline and server.app.state.server.engine.busy:
        time.sleep(0.05)
    assert server.app.state.server.engine.busy == 0  # the row left the batch long before 3000 tokens
