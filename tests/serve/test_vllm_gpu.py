"""`serve.engine: vllm` with the real vLLM on a CUDA GPU (marker `gpu`; skipped without a GPU and vLLM):
the exported adapters load, and answers come back through tunesmith's router."""

from __future__ import annotations

import importlib.util
import shutil

import pytest
import yaml

from tests.serve.test_server import _adapter
from tunesmith.config import load_config
from tunesmith.serve.stage import build_app, start_in_thread

pytestmark = pytest.mark.gpu


def _vllm_here() -> bool:
    import torch

    return (
        torch.cuda.is_available() and shutil.which("vllm") is not None and importlib.util.find_spec("vllm") is not None
    )


@pytest.mark.skipif(not _vllm_here(), reason="needs a CUDA GPU and vLLM (pip install vllm)")
def test_real_vllm_answers_each_adapter_behind_tunesmith(tmp_path, tiny_model_dir):
    import openai

    a0, a1 = _adapter(tiny_model_dir, tmp_path / "a0", seed=1), _adapter(tiny_model_dir, tmp_path / "a1", seed=2)
    (tmp_path / "tunesmith.yaml").write_text(
        yaml.safe_dump(
            {
                "base_model": str(tiny_model_dir),
                "output_dir": "out",
                "data": {"datasets": [{"path": "d.jsonl"}]},
                "serve": {
                    "engine": "vllm",
                    "adapters": {"a0": str(a0), "a1": str(a1)},
                    "log_texts": True,
                    "vllm_args": ["--gpu-memory-utilization", "0.3", "--enforce-eager", "--max-model-len", "2048"],
                },
            }
        )
    )
    running = start_in_thread(build_app(load_config(tmp_path / "tunesmith.yaml")))
    try:
        client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="none", max_retries=0)
        messages = [{"role": "user", "content": "Name three colours."}]
        answers = {
            m: client.chat.completions.create(model=m, messages=messages, max_tokens=16, temperature=0)
            for m in ("base", "a0", "a1")
        }
        for reply in answers.values():
            assert reply.usage.completion_tokens >= 1 and reply.choices[0].finish_reason in ("stop", "length")
        texts = {m: r.choices[0].message.content for m, r in answers.items()}
        assert len(set(texts.values())) == 3, texts  # each adapter applied (random LoRA weights move the answer)
        again = client.chat.completions.create(model="a0", messages=messages, max_tokens=16, temperature=0)
        assert again.choices[0].message.content == texts["a0"]  # greedy
        rows = running.app.state.server.log.rows(10)
        assert {r["target"] for r in rows if r["status"] == 200} >= {"a0", "a1"}
    finally:
        running.stop()
