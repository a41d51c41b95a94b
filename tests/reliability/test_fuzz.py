"""Property-based tests: the HTTP API fuzzed from its own OpenAPI schema (schemathesis) answers no
request with a 5xx; the data readers fed arbitrary bytes and JSON never raise anything but a
clear DataError, and never lose a line (every line is either a record or a reported problem)."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.reliability
SEEN: list = []
schemathesis = pytest.importorskip("schemathesis")


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_model_dir):
    from tunesmith.cli.serve import with_jobs
    from tunesmith.config import load_config
    from tunesmith.serve.stage import build_app, close_app

    root = tmp_path_factory.mktemp("fuzz")
    config = root / "tunesmith.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "base_model": str(tiny_model_dir),
                "output_dir": "out",
                "data": {"datasets": [{"path": "d.jsonl"}]},
                "serve": {
                    "max_tokens_limit": 4,
                    "max_prompt_tokens": 64,
                    "batch_wait_ms": 0,
                    "jobs": {"worker": False},
                },
            }
        )
    )
    cfg = load_config(config)
    app = build_app(cfg)
    stop = with_jobs(app, cfg)
    yield app
    stop()
    close_app(app)


def test_no_request_the_schema_allows_gets_a_5xx(app):
    from schemathesis.checks import not_a_server_error

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)

    @given(
        case=schema["/v1/chat/completions"]["POST"].as_strategy()
        | schema["/v1/completions"]["POST"].as_strategy()
        | schema["/v1/feedback"]["POST"].as_strategy()
        | schema["/v1/files"]["POST"].as_strategy()
        | schema["/v1/fine_tuning/jobs/{job_id}"]["GET"].as_strategy()
        | schema["/v1/fine_tuning/jobs/{job_id}/events"]["GET"].as_strategy()
    )
    @settings(
        max_examples=int(os.environ.get("TUNESMITH_FUZZ_EXAMPLES", "150")),
        deadline=None,
        derandomize="TUNESMITH_FUZZ_EXAMPLES" not in os.environ,  # CI: the same cases every run
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case):
        if isinstance(case.body, dict) and case.path.endswith("completions"):
            case.body["model"] = "base"  # a served name, so the request reaches generation
        response = case.call()
        SEEN.append((case.path, response.status_code))
        assert response.status_code < 500, (case.path, case.body, response.status_code, response.text[:300])
        if response.status_code >= 400:
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}

    fuzz()
    assert not_a_server_error  # the same property schemathesis' own check names
    statuses = {status for path, status in SEEN if path.endswith("completions")}
    assert {200, 400} <= statuses  # the fuzz reached generation and the request checks alike


_jobs_bodies = st.dictionaries(
    st.sampled_from(
        ["model", "training_file", "validation_file", "suffix", "seed", "metadata", "method", "hyperparameters", "x"]
    ),
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=True)
        | st.text(max_size=30)
        | st.sampled_from(["base", "auto", "supervised", "dpo", "file-missing"]),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "type",
                        "supervised",
                        "dpo",
                        "hyperparameters",
                        "n_epochs",
                        "batch_size",
                        "beta",
                        "learning_rate_multiplier",
                    ]
                ),
                inner,
                max_size=4,
            )
        ),
        max_leaves=12,
    ),
    max_size=6,
)
_form = st.dictionaries(
    st.sampled_from(
        [
            "version",
            "alias",
            "reason",
            "rater",
            "item",
            "preferred",
            "prompt",
            "a",
            "b",
            "max_tokens",
            "key",
            "next",
            "comment",
        ]
    ),
    st.text(max_size=40) | st.sampled_from(["1", "999999", "-1", "production", "base", "x" * 300]),
    max_size=6,
)


@given(
    body=_jobs_bodies,
    form=_form,
    page=st.sampled_from(
        [
            "/ui/registry/promote",
            "/ui/registry/rollback",
            "/ui/registry/delete",
            "/ui/human/rate",
            "/ui/playground",
            "/ui/login",
            "/ui/human/export",
        ]
    ),
)
@settings(
    max_examples=int(os.environ.get("TUNESMITH_FUZZ_EXAMPLES", "120")),
    deadline=None,
    derandomize="TUNESMITH_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=list(HealthCheck),
)
def test_no_job_request_or_page_form_gets_a_5xx(pages_client, body, form, page):
    answer = pages_client.post(
        "/v1/fine_tuning/jobs",
        content=json.dumps(body),  # NaN and Infinity too
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code < 500, (body, answer.status_code, answer.text[:300])
    if answer.status_code >= 400:
        assert set(answer.json()["error"]) == {"message", "type", "param", "code"}
    answer = pages_client.post(page, data=form, follow_redirects=False)
    assert answer.status_code < 500, (page, form, answer.status_code, answer.text[:300])


@pytest.fixture(scope="module")
def pages_client(app, tmp_path_factory):
    from starlette.testclient import TestClient

    from tunesmith.config import load_config
    from tunesmith.web.pages import mount_pages

    mount_pages(app, load_config(tmp_path_factory.getbasetemp() / "fuzz0" / "tunesmith.yaml"))
    return TestClient(app, client=("127.0.0.1", 50000))


@given(st.binary(max_size=2000))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_arbitrary_bytes_never_crash_the_data_check(tmp_path, data):
    _check_never_crashes(tmp_path, data)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "messages",
                    "role",
                    "content",
                    "prompt",
                    "chosen",
                    "rejected",
                    "conversations",
                    "from",
                    "value",
                    "input",
                    "preferred_output",
                    "instruction",
                    "output",
                    "x",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@given(st.lists(_json_values, min_size=1, max_size=8))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_arbitrary_json_records_are_kept_or_rejected_with_a_reason(tmp_path, rows):
    lines = [json.dumps(r) for r in rows]
    result = _check_never_crashes(tmp_path, ("\n".join(lines) + "\n").encode())
    if result is not None:
        assert result.valid + result.rejected == len(lines)  # nothing lost: each line kept or rejected
        assert len(result.errors) + result.errors_omitted >= result.rejected


def _check_never_crashes(tmp_path, data: bytes):
    from tunesmith.data.check import Source, check_sources
    from tunesmith.errors import DataError

    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(data)
    try:
        return check_sources([Source(path)], rejects_path=tmp_path / "rejects.jsonl")
    except DataError as exc:
        assert str(exc)  # a clear message, never a traceback
        return None
