"""`serve.engine: vllm`: tunesmith starts `vllm serve` with the base and every served adapter, and its own
router (keys, limits, request log, canary) sends each request's token ids to vLLM's completions API.

vLLM needs a CUDA GPU, so here the `vllm` command is a stand-in on PATH that speaks the part of vLLM's
OpenAI-compatible protocol tunesmith uses (streamed `/v1/completions` with token-id prompts and usage,
`/v1/models`, `/v1/load_lora_adapter`) and records how it was launched; `tests/serve/test_vllm_gpu.py`
(marker `gpu`) starts the real one."""

from __future__ import annotations

import json
import sys
import textwrap

import openai
import pytest
import yaml

from tests.serve.test_server import _adapter
from tunesmith.config import load_config
from tunesmith.errors import TunesmithError
from tunesmith.serve.app import hash_key
from tunesmith.serve.stage import build_app, start_in_thread

KEY = "ts-vllm-key"

FAKE_VLLM = '''#!{python}
"""Stand-in for `vllm serve MODEL --host H --port P [...]`: answers "<model> saw <n> tokens" in pieces."""
import json, sys
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

args = sys.argv[1:]
record = {record!r}
json.dump({{"argv": args, "loaded": []}}, open(record, "w"))
app = FastAPI()
names = ["base"] + [m.split("=", 1)[0] for m in args[args.index("--lora-modules") + 1:] if "=" in m] \\
    if "--lora-modules" in args else ["base"]

@app.get("/v1/models")
async def models():
    return {{"object": "list", "data": [{{"id": n, "object": "model"}} for n in names]}}

@app.post("/v1/load_lora_adapter")
async def load(request: Request):
    body = await request.json()
    state = json.load(open(record)); state["loaded"].append(body); json.dump(state, open(record, "w"))
    names.append(body["lora_name"])
    return "ok"

@app.post("/v1/completions")
async def completions(request: Request):
    body = await request.json()
    if body["model"] not in names or not all(isinstance(t, int) for t in body["prompt"]):
        return {{"error": "bad request"}}
    words = [body["model"], " saw", f" {{len(body['prompt'])}} tokens"][: body["max_tokens"]]
    def events():
        for w in words:
            yield "data: " + json.dumps({{"choices": [{{"index": 0, "text": w, "finish_reason": None}}]}}) + "\\n\\n"
        yield "data: " + json.dumps({{"choices": [{{"index": 0, "text": "", "finish_reason": "stop"}}]}}) + "\\n\\n"
        yield "data: " + json.dumps({{"choices": [], "usage": {{"completion_tokens": len(words)}}}}) + "\\n\\n"
        yield "data: [DONE]\\n\\n"
    return StreamingResponse(events(), media_type="text/event-stream")

uvicorn.run(app, host=args[args.index("--host") + 1], port=int(args[args.index("--port") + 1]), log_level="warning")
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    work = tmp_path_factory.mktemp("vllm-serve")
    bin_dir, record = work / "bin", work / "vllm.json"
    bin_dir.mkdir()
    (bin_dir / "vllm").write_text(textwrap.dedent(FAKE_VLLM.format(python=sys.executable, record=str(record))))
    (bin_dir / "vllm").chmod(0o755)
    adapter = _adapter(tiny_model_dir, work / "a0", seed=1)
    (work / "tunesmith.yaml").write_text(
        yaml.safe_dump(
            {
                "base_model": str(tiny_model_dir),
                "output_dir": "out",
                "data": {"datasets": [{"path": "d.jsonl"}]},
                "serve": {
                    "engine": "vllm",
                    "adapters": {"a0": str(adapter)},
                    "api_key_sha256": [hash_key(KEY)],
                    "max_tokens_limit": 64,
                    "log_texts": True,
                    "vllm_args": ["--gpu-memory-utilization", "0.5"],
                },
            }
        )
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
        mp.setattr("torch.cuda.is_available", lambda: True)  # the stand-in needs no GPU
        running = start_in_thread(build_app(load_config(work / "tunesmith.yaml")))
    yield running, work, record, adapter
    running.stop()


def test_vllm_is_started_with_the_base_and_every_served_adapter(server, tiny_model_dir):
    running, work, record, adapter = server
    argv = json.loads(record.read_text())["argv"]
    assert argv[:2] == ["serve", str(tiny_model_dir)]
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and argv[argv.index("--served-model-name") + 1] == "base"
    assert argv[argv.index("--lora-modules") + 1 : argv.index("--lora-modules") + 2] == [f"a0={adapter}"]
    assert argv[argv.index("--max-lora-rank") + 1] == "8" and argv[argv.index("--max-loras") + 1] == "1"
    assert argv[-2:] == ["--gpu-memory-utilization", "0.5"]  # serve.vllm_args, passed through


def test_requests_reach_vllm_as_token_ids_behind_tunesmiths_router(server):
    running, _, record, adapter = server
    engine = running.app.state.server.engine
    client = openai.OpenAI(base_url=f"{running.url}/v1", api_key=KEY, max_retries=0)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = engine.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    n = len(engine.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    answer = client.chat.completions.create(model="a0", messages=messages, max_tokens=12, temperature=0)
    assert answer.choices[0].message.content == f"a0 saw {n} tokens"  # the adapter by name, the template's ids
    assert answer.usage.completion_tokens == 3 and answer.usage.prompt_tokens == n
    assert answer.choices[0].finish_reason == "stop"
    pieces = [
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model="a0", messages=messages, max_tokens=12, stream=True)
        if c.choices
    ]
    assert [p for p in pieces if p] == ["a0", " saw", f" {n} tokens"]  # streamed as vLLM streamed it
    base = client.chat.completions.create(model="base", messages=messages, max_tokens=2)
    assert base.choices[0].message.content == "base saw"  # max_tokens reaches vLLM
    with pytest.raises(openai.BadRequestError, match="max_tokens"):  # tunesmith's limit, before vLLM
        client.chat.completions.create(model="a0", messages=messages, max_tokens=65)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{running.url}/v1", api_key="wrong", max_retries=0).chat.completions.create(
            model="a0", messages=messages, max_tokens=4
        )
    rows = running.app.state.server.log.rows(10)
    assert {(r["target"], r["status"]) for r in rows} >= {("a0", 200), ("__base__", 200)}
    assert engine.timings and all(first >= 0 for _, first in engine.timings)
    engine.add_adapter("v2", str(adapter))  # a version promoted while serving
    assert json.loads(record.read_text())["loaded"] == [{"lora_name": "v2", "lora_path": str(adapter)}]
    assert "v2" in engine.adapters


def test_vllm_needs_a_cuda_gpu_and_says_so(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    (tmp_path / "tunesmith.yaml").write_text(
        yaml.safe_dump(
            {
                "base_model": str(tiny_model_dir),
                "output_dir": "out",
                "data": {"datasets": [{"path": "d.jsonl"}]},
                "serve": {"engine": "vllm"},
            }
        )
    )
    with pytest.raises(TunesmithError, match="needs a CUDA GPU.*serve.engine: transformers"):
        build_app(load_config(tmp_path / "tunesmith.yaml"))
