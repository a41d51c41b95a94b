"""The packaged SmolLM2-135M-Instruct: converted once from GGUF, faithful, stops at its end-of-turn token."""

from __future__ import annotations

import pytest
import torch

from tunesmith.models import load_model, load_tokenizer
from tunesmith.models.packaged import find_packaged_gguf, packaged_model_dir

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def converted():
    return packaged_model_dir()


def test_conversion_writes_a_plain_safetensors_folder_once(converted):
    assert (converted / "model.safetensors").exists()
    assert not list(converted.glob("*.bin"))
    assert "quantization_config" not in (converted / "config.json").read_text()
    marker = (converted / "tunesmith-source.json").stat().st_mtime_ns
    assert packaged_model_dir() == converted
    assert (converted / "tunesmith-source.json").stat().st_mtime_ns == marker  # reused, not converted again


def test_converted_weights_match_the_gguf(converted):
    from transformers import AutoModelForCausalLM

    gguf = find_packaged_gguf()
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    model = load_model("smollm2-135m-instruct").eval()
    ids = torch.tensor([[1, 4093, 314, 253, 1789, 30, 216, 2]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reference(ids).logits, atol=1e-4, rtol=1e-4)


def test_generation_stops_at_the_end_of_turn_token(converted):
    tok = load_tokenizer("smollm2-135m-instruct")
    model = load_model("smollm2-135m-instruct").eval()
    assert tok.eos_token == "<|im_end|>" and model.generation_config.eos_token_id == tok.eos_token_id
    inputs = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**inputs, max_new_tokens=60, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1] :].tolist()
    assert new[-1] == tok.eos_token_id and len(new) < 60
    assert "Paris" in tok.decode(new)


def test_the_conversion_parses_the_gguf_file_once(monkeypatch):
    """transformers builds a GGUFReader for the tokenizer, the config and the weights: one is shared."""
    import gguf

    from tunesmith.models.packaged import _one_reader

    built = []

    class Counting:
        def __init__(self, path, mode="r"):
            built.append((path, mode))

    monkeypatch.setattr(gguf, "GGUFReader", Counting)
    with _one_reader():
        first, again, other = gguf.GGUFReader("m.gguf"), gguf.GGUFReader("m.gguf"), gguf.GGUFReader("n.gguf")
        assert first is again and other is not first
    assert built == [("m.gguf", "r"), ("n.gguf", "r")]
    assert gguf.GGUFReader is Counting  # restored after the conversion
