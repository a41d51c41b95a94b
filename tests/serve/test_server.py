"""The real server on localhost, driven by the official `openai` client."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
import yaml
from fastapi import FastAPI, Request  # module level: FastAPI resolves the string annotations here
from fastapi.responses import StreamingResponse

from tunesmith.config import load_config
from tunesmith.serve.app import hash_key
from tunesmith.serve.stage import build_app, start_in_thread

KEY = "ts-test-key"


def _adapter(tiny_model_dir, folder, seed):
    import torch
    from peft import LoraConfig, get_peft_model

    from tunesmith.models import load_model, load_tokenizer

    torch.manual_seed(seed)
    model = get_peft_model(
        load_model(str(tiny_model_dir)),
        LoraConfig(
            r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "up_proj", "down_proj"], init_lora_weights=False
        ),
    )
    model.save_pretrained(str(folder))
    load_tokenizer(str(tiny_model_dir)).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def upstream():
    """A stand-in for a vLLM OpenAI server: answers with the model name it was asked for."""
    app, seen = FastAPI(), []

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        seen.append(body)
        if body.get("stream"):

            def events():
                for piece in ("up", "stream"):
                    chunk = {
                        "id": "u",
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": body["model"],
                        "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                    }
                    yield f"data: {json.dumps(chunk)}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        return {
            "id": "u",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": f"from {body['model']}"},
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        }

    running = start_in_thread(app)
    running.seen = seen
    yield running
    running.server.should_exit = True
    running.thread.join(5)


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir, upstream):
    root = tmp_path_factory.mktemp("serve")
    alpha = _adapter(tiny_model_dir, root / "alpha", 1)
    beta = _adapter(tiny_model_dir, root / "beta", 2)
    config = root / "tunesmith.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "base_model": str(tiny_model_dir),
                "output_dir": "out",
                "data": {"datasets": [{"path": "d.jsonl"}]},
                "train": {"bf16": False},
                "serve": {
                    "adapters": {"alpha": str(alpha), "beta": str(beta)},
                    "api_key_sha256": [hash_key(KEY)],
                    "max_batch_size": 8,
                    "batch_wait_ms": 300,
                    "max_queue": 4,
                    "max_tokens_limit": 256,
                    "upstreams": {"big": {"base_url": f"{upstream.url}/v1", "model": "vllm-model"}},
                },
            }
        )
    )
    cfg = load_config(config)
    running = start_in_thread(build_app(cfg))
    running.cfg = cfg
    yield running
    running.stop()


def _client(server, key=KEY):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=120)


def _ask(client, model, text="Hello there", **kw):
    kw = {"max_tokens": 12, "temperature": 0, **kw}
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], **kw)


def test_models_chat_stream_and_completions(server):
    client = _client(server)
    assert {m.id for m in client.models.list()} == {"alpha", "beta", "base", "big"}
    answer = _ask(client, "alpha")
    assert answer.object == "chat.completion" and answer.usage.completion_tokens > 0
    assert answer.choices[0].finish_reason in ("stop", "length")
    pieces = [c.choices[0].delta.content or "" for c in _ask(client, "alpha", stream=True)]
    assert len(pieces) > 2 and "".join(pieces) == answer.choices[0].message.content  # same text, streamed
    *_, last = _ask(client, "alpha", stream=True, stream_options={"include_usage": True})
    assert last.choices == [] and last.usage.completion_tokens == answer.usage.completion_tokens
    text = client.completions.create(model="beta", prompt="one two three", max_tokens=5, temperature=0)
    assert text.object == "text_completion" and text.usage.completion_tokens > 0
    sampled = [_ask(client, "alpha", temperature=1.0, seed=7).choices[0].message.content for _ in range(2)]
    assert sampled[0] == sampled[1]  # a seed makes sampling repeatable


def test_two_adapters_in_one_batch_answer_as_they_do_alone(server):
    client = _client(server)
    alone = {m: _ask(client, m, "Tell me a story").choices[0].message.content for m in ("alpha", "beta", "base")}
    assert len(set(alone.values())) == 3  # the adapters change the answers
    before = server.app.state.server.engine.stats["mixed_batches"]
    with ThreadPoolExecutor(3) as pool:
        together = dict(
            zip(
                ("alpha", "beta", "base"),
                pool.map(
                    lambda m: _ask(client, m, "Tell me a story").choices[0].message.content, ("alpha", "beta", "base")
                ),
            )
        )
    assert server.app.state.server.engine.stats["mixed_batches"] > before
    assert together == alone


def test_keys_errors_and_a_full_queue(server):
    with pytest.raises(openai.AuthenticationError):
        _ask(_client(server, key="wrong"), "alpha")
    assert httpx.post(f"{server.url}/v1/chat/completions", json={}).status_code == 401
    assert httpx.get(f"{server.url}/health").status_code == 200  # health needs no key
    client = _client(server)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        _ask(client, "alpha", temperature=5)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        _ask(client, "alpha", max_tokens=10_000)
    with pytest.raises(openai.NotFoundError, match="not found"):
        _ask(client, "gamma")
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64, "temperature": 0}
    with ThreadPoolExecutor(30) as pool:
        answers = list(
            pool.map(
                lambda _: httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=120),
                range(30),
            )
        )
    codes = [a.status_code for a in answers]
    assert 429 in codes and 200 in codes, codes
    limited = next(a for a in answers if a.status_code == 429)
    assert limited.headers["retry-after"] == "1" and limited.json()["error"]["type"] == "rate_limit_error"
    assert _ask(client, "alpha").choices[0].message.content is not None  # still answering afterwards
    rows = server.app.state.server.log.rows()
    assert {r["status"] for r in rows} >= {200, 429}
    assert all(r["prompt"] is None and r["completion"] is None for r in rows)  # texts are not logged by default
    served = [r for r in rows if r["status"] == 200]
    assert all(r["completion_tokens"] > 0 and r["latency_ms"] > 0 for r in served)
    metrics = httpx.get(f"{server.url}/metrics", headers=headers).text
    assert 'tunesmith_requests_total{model="alpha",status="429"}' in metrics
    served_count = float(metrics.split('tunesmith_time_to_first_token_seconds_count{model="alpha"} ')[1].split()[0])
    assert served_count == sum(
        r["model"] == "alpha" for r in served
    )  # every answered request's engine-side time to first token
    assert 'tunesmith_queue_wait_seconds_count{model="alpha"}' in metrics


def test_upstream_routing(server, upstream):
    client = _client(server)
    assert _ask(client, "big").choices[0].message.content == "from vllm-model"
    assert upstream.seen[-1]["model"] == "vllm-model"
    assert "".join(c.choices[0].delta.content or "" for c in _ask(client, "big", stream=True)) == "upstream"


def test_oversized_requests_are_refused(server):
    big = {"model": "alpha", "messages": [{"role": "user", "content": "x" * 1_100_000}]}
    answer = httpx.post(f"{server.url}/v1/chat/completions", json=big, headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 413


@pytest.mark.parametrize(
    ("train", "serve", "served"),
    [
        ("fp32", "auto", "float32"),
        ("bf16", "auto", "bfloat16"),
        ("bf16", "fp32", "float32"),
        ("fp32", "bf16", "bfloat16"),
    ],
)
def test_serve_precision_sets_the_weights_and_auto_follows_training(tmp_path, tiny_model_dir, train, serve, served):
    from tunesmith.serve.models import load_served

    config = tmp_path / "tunesmith.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "base_model": str(tiny_model_dir),
                "data": {"datasets": [{"path": "d.jsonl"}]},
                "train": {"precision": train},
                "serve": {"precision": serve},
            }
        )
    )
    model = load_served(load_config(config))[0]
    assert {str(p.dtype).removeprefix("torch.") for p in model.parameters()} == {served}


def test_fp16_serving_on_a_cpu_is_refused_by_its_own_setting_name(tmp_path, tiny_model_dir):
    from tunesmith.errors import TunesmithError
    from tunesmith.serve.models import load_served

    config = tmp_path / "tunesmith.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "base_model": str(tiny_model_dir),
                "data": {"datasets": [{"path": "d.jsonl"}]},
                "serve": {"precision": "fp16"},
            }
        )
    )
    with pytest.raises(TunesmithError, match=r"serve\.precision=fp16 needs a CUDA GPU.*serve\.precision=auto"):
        load_served(load_config(config))
