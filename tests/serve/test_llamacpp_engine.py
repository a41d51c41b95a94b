"""`serve.engine: llama-cpp`: the same server (keys, limits, request log) in front of llama.cpp answering
each version from its merged GGUF."""

from __future__ import annotations

import openai
import pytest
import yaml

from tests.export.test_gguf import _llama_cpp
from tests.serve.test_server import _adapter
from tunesmith.config import load_config
from tunesmith.serve.app import hash_key
from tunesmith.serve.stage import build_app, start_in_thread

KEY = "ts-llama-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    _llama_cpp()
    work = tmp_path_factory.mktemp("llama-serve")
    adapter = _adapter(tiny_model_dir, work / "a0", seed=1)
    (work / "tunesmith.yaml").write_text(
        yaml.safe_dump(
            {
                "base_model": str(tiny_model_dir),
                "output_dir": "out",
                "data": {"datasets": [{"path": "d.jsonl"}]},
                "serve": {
                    "engine": "llama-cpp",
                    "gguf_quant": "f16",
                    "adapters": {"a0": str(adapter)},
                    "api_key_sha256": [hash_key(KEY)],
                    "max_tokens_limit": 64,
                    "log_texts": True,
                },
            }
        )
    )
    running = start_in_thread(build_app(load_config(work / "tunesmith.yaml")))
    yield running, work
    running.stop()


def test_llama_cpp_engine_answers_behind_the_same_server(server):
    running, work = server
    client = openai.OpenAI(base_url=f"{running.url}/v1", api_key=KEY, max_retries=0)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    answer = client.chat.completions.create(model="a0", messages=messages, max_tokens=12, temperature=0)
    assert answer.usage.completion_tokens <= 12 and answer.choices[0].finish_reason in ("stop", "length")
    # greedy: the same prompt streamed gives the same text, piece by piece
    pieces = [
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="a0", messages=messages, max_tokens=12, temperature=0, stream=True
        )
        if c.choices
    ]
    assert "".join(pieces) == answer.choices[0].message.content
    base = client.chat.completions.create(model="base", messages=messages, max_tokens=12, temperature=0)
    assert base.choices[0].message.content != answer.choices[0].message.content  # the adapter is merged in
    # the server's limits and keys still hold in front of it
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model="a0", messages=messages, max_tokens=65)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{running.url}/v1", api_key="wrong", max_retries=0).chat.completions.create(
            model="a0", messages=messages, max_tokens=4
        )
    rows = running.app.state.server.log.rows(10)
    assert {r["target"] for r in rows if r["status"] == 200} >= {"a0"}
    # each version was written once as GGUF in the serve cache: the base and the merged adapter
    names = sorted(p.name for p in (work / "out" / "serve" / "gguf").glob("*.gguf"))
    assert names[0] == "a0-" + names[0].split("-")[1] + "-f16.gguf" and names[1] == "base-f16.gguf"
