"""A LoRA adapter as a GGUF LoRA file: llama.cpp applies it over the base GGUF and computes what the
adapter merged into the base computes in transformers."""

from __future__ import annotations

import json

import pytest

from tests.export.test_gguf import _llama_cpp, _logits
from tests.serve.test_server import _adapter
from tunesmith.export.gguf_file import ExportError, write_gguf
from tunesmith.export.gguf_lora import write_lora_gguf
from tunesmith.export.llama import open_gguf


def test_llama_cpp_applies_the_lora_file_as_the_merged_adapter(tiny_model_dir, tmp_path, tiny_tok):
    _llama_cpp()
    from peft import PeftModel

    from tunesmith.models import load_model

    adapter = _adapter(tiny_model_dir, tmp_path / "adapter", seed=3)  # q, v, up and down projections, alpha/r 8
    merged = PeftModel.from_pretrained(load_model(str(tiny_model_dir)), str(adapter)).merge_and_unload()
    merged.save_pretrained(str(tmp_path / "merged"))
    base = write_gguf(tiny_model_dir, tmp_path / "base-f16.gguf", quant="f16")
    lora = write_lora_gguf(adapter, json.loads((tiny_model_dir / "config.json").read_text()), tmp_path / "lora.gguf")
    ids = tiny_tok("The quick brown fox", add_special_tokens=False)["input_ids"]
    want, plain = _logits(tmp_path / "merged", ids), _logits(tiny_model_dir, ids)
    assert abs(want - plain).max() > 0.1  # the adapter moves the logits, so agreeing below means it was applied
    llm = open_gguf(base, n_ctx=256, logits_all=True, lora_path=str(lora))
    llm.eval(ids)
    got = llm.scores[len(ids) - 1]
    assert abs(got - want).max() < 0.02 * max(1.0, abs(want).max())
    assert int(got.argmax()) == int(want.argmax())


def test_adapters_llama_cpp_cannot_apply_are_refused(tiny_model_dir, tmp_path):
    adapter = _adapter(tiny_model_dir, tmp_path / "adapter", seed=3)
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(ExportError, match="merge this one"):
        write_lora_gguf(adapter, json.loads((tiny_model_dir / "config.json").read_text()), tmp_path / "x.gguf")
