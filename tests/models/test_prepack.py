"""Decoding on prepacked bf16 weights: the same tokens as the plain model, and the plain path wherever the
packed copy would be wrong (long calls, autograd, a shape oneDNN computes differently, too little memory)."""

from __future__ import annotations

import pytest
import torch

from tunesmith.models import load_model, prepack
from tunesmith.models.generate import greedy_decode

pytestmark = pytest.mark.skipif(
    prepack._ops() is None, reason="PyTorch without oneDNN, or a CPU it cannot run bf16 on (AVX2 only)"
)


def _packed_layers(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear) and "_ts_packed" in m.__dict__]


def _decode(model, tok):
    tok.padding_side = "left"
    prompts = [[{"role": "user", "content": t}] for t in ("hello there", "a longer question about the weather")]
    enc = tok.apply_chat_template(
        prompts, add_generation_prompt=True, return_tensors="pt", return_dict=True, padding=True
    )
    with torch.no_grad():
        return greedy_decode(model, enc["input_ids"], enc["attention_mask"], 12, tok.eos_token_id)


def test_packed_decoding_gives_the_plain_tokens_and_runs_the_packed_op(tiny_model_dir, tiny_tok, monkeypatch):
    model = load_model(str(tiny_model_dir), dtype=torch.bfloat16)
    plain = _decode(model, tiny_tok)
    calls = []
    op = torch.ops.mkldnn._linear_pointwise
    with prepack.packed(model):
        layers = _packed_layers(model)
        assert len(layers) == sum(isinstance(m, torch.nn.Linear) for m in model.modules())
        monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", lambda *a: calls.append(a[0].shape) or op(*a))
        assert _decode(model, tiny_tok) == plain
    assert calls and all(shape.numel() <= prepack.ROWS * shape[-1] for shape in calls)  # decoding steps only
    assert not _packed_layers(model)  # the block's packing undone


def test_long_calls_and_autograd_take_the_plain_weight(tiny_model_dir):
    model = load_model(str(tiny_model_dir), dtype=torch.bfloat16)
    assert prepack.install(model) > 0
    layer = model.lm_head
    x = torch.randn(1, prepack.ROWS + 1, layer.in_features, dtype=torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(layer(x), torch.nn.functional.linear(x, layer.weight))
    y = torch.randn(2, layer.in_features, dtype=torch.bfloat16, requires_grad=True)
    layer(y).float().sum().backward()  # the packed op has no backward; the plain one does
    assert y.grad is not None
    with prepack.packed(model):  # packed before the block: stays packed after it
        pass
    assert _packed_layers(model)
    prepack.remove(model)
    assert not _packed_layers(model)


def test_nothing_packed_where_it_would_differ_or_not_fit(tiny_model_dir, monkeypatch):
    assert prepack.install(load_model(str(tiny_model_dir), dtype=torch.float32)) == 0  # fp32 runs on MKL
    model = load_model(str(tiny_model_dir), dtype=torch.bfloat16)
    head = tuple(model.lm_head.weight.shape)
    monkeypatch.setitem(prepack._identical, head, False)  # a shape this CPU's packed call computes differently
    assert prepack.install(model) == sum(isinstance(m, torch.nn.Linear) for m in model.modules()) - 1
    assert "_ts_packed" not in model.lm_head.__dict__
    prepack.remove(model)
    monkeypatch.setattr("tunesmith.hardware.available_memory", lambda device="cpu": (1000, "1 kB"))
    assert prepack.install(model) == 0
