"""Both mixed-adapter paths (all adapters at once with a row mask; the gathered batched matmul)
equal peft's own mixed-batch forward."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import Linear

from tunesmith.models import load_model, multilora
from tunesmith.models.multilora import install


@pytest.mark.parametrize("dense", [True, False], ids=["dense", "gathered"])
def test_bgmv_matches_peft_mixed_batches(tiny_model_dir, monkeypatch, dense):
    if not dense:
        monkeypatch.setattr(multilora, "DENSE_MAX_RANK", 0)
    torch.manual_seed(0)
    model = get_peft_model(
        load_model(str(tiny_model_dir)),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
        adapter_name="small",
    )
    model.add_adapter(
        "big", LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "o_proj", "up_proj"], init_lora_weights=False)
    )
    model.eval()
    ids = torch.randint(5, 200, (1, 9)).repeat(4, 1)  # one input: rows differ only by their adapter
    names = ["small", "big", "__base__", "big"]
    with torch.no_grad():
        reference = model(input_ids=ids, adapter_names=names).logits
        assert install(model) > 0
        layers = [m for m in model.modules() if isinstance(m, Linear) and m.lora_A]
        assert all((m._ts_dense_a is not None) == dense for m in layers)
        ours = model(input_ids=ids, adapter_names=names).logits
        with multilora.rows(model, names):  # the engine's way: no peft hooks
            assert torch.equal(model(input_ids=ids).logits, ours)
        model.set_adapter("big")  # outside `rows`, peft's own forward with the active adapter
        assert torch.allclose(model(input_ids=ids[:1]).logits, ours[1:2], atol=1e-5)
        with model.disable_adapter():
            base = model(input_ids=ids[:1]).logits
    assert torch.allclose(ours, reference, atol=1e-5)
    assert torch.allclose(ours[2:3], base, atol=1e-5)  # "__base__" rows get no adapter
    assert not torch.allclose(ours[0], ours[1], atol=1e-3) and not torch.allclose(ours[0], ours[2], atol=1e-3)
    assert torch.allclose(ours[1], ours[3], atol=1e-5)


def _two_adapters(tiny_model_dir, big_alpha: int):
    """The tiny model with adapter "small" (r 4 on q and v) and "big" (r 8 on q), random weights."""
    torch.manual_seed(0)
    model = get_peft_model(
        load_model(str(tiny_model_dir)),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
        adapter_name="small",
    )
    model.add_adapter("big", LoraConfig(r=8, lora_alpha=big_alpha, target_modules=["q_proj"], init_lora_weights=False))
    return model


def test_each_pass_uses_its_own_rows(tiny_model_dir):
    model = _two_adapters(tiny_model_dir, big_alpha=32)
    model.eval()
    ids = torch.randint(5, 200, (1, 7)).repeat(3, 1)
    plans = [("small", "big", "__base__"), ("big", "__base__", "small"), ("__base__", "small", "big")]
    with torch.no_grad():
        expected = {plan: model(input_ids=ids, adapter_names=list(plan)).logits for plan in plans}  # peft's own
        install(model)
        for plan in plans * 3:
            with multilora.rows(model, list(plan)):  # a fresh list each pass, freed after it, as the engine's
                assert torch.allclose(model(input_ids=ids).logits, expected[plan], atol=1e-5), plan


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_one_adapter_for_all_rows_is_peft_bit_for_bit(tiny_model_dir, dtype):
    """The engine's single-adapter batches (`rows(model, name)`) skip peft's per-call overhead but keep its
    arithmetic: in bf16 peft keeps the adapter in fp32 and adds it to the base output before rounding, so a
    path that rounds the adapter's share first answers differently (1 of 8 answers the same on the demo)."""
    from peft import PeftModel

    model = _two_adapters(tiny_model_dir, big_alpha=24)  # scale 3: not a power of two
    for p in model.parameters():  # weights large enough that a rounding order shows in the logits
        if p.requires_grad:
            p.data.mul_(20)
    model = model.to(dtype) if dtype == torch.float32 else model
    if dtype == torch.bfloat16:  # as the server loads it: the base in bf16, peft's adapters kept in fp32
        model.base_model.model.to(torch.bfloat16)
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.data = p.data.float()
    assert isinstance(model, PeftModel)
    model.eval()
    install(model)
    ids = torch.randint(5, 200, (2, 9))
    with torch.no_grad():
        for name in ("small", "big"):
            model.set_adapter(name)
            reference = model(input_ids=ids).logits  # peft's own forward
            with multilora.rows(model, name):
                assert torch.equal(model(input_ids=ids).logits, reference)
        with multilora.rows(model, "big"):  # the other adapter's layers (v_proj) take no share
            big = model(input_ids=ids).logits
        with multilora.rows(model, "small"):
            assert not torch.equal(model(input_ids=ids).logits, big)


def test_what_the_rows_do_not_cover_is_refused(tiny_model_dir, tmp_path):
    """DoRA, lora_bias, fully trained modules and LoRA on embeddings would be served wrongly: refused, and the
    server says how to serve them instead."""
    import json

    from tunesmith.errors import TunesmithError
    from tunesmith.serve.models import check_adapter

    assert multilora.unsupported({"peft_type": "LORA", "r": 8}) is None
    for extra, words in (
        ({"use_dora": True}, "DoRA"),
        ({"lora_bias": True}, "lora_bias"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
        ({"trainable_token_indices": [3]}, "trainable_token_indices"),
    ):
        (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", **extra}))
        with pytest.raises(TunesmithError, match=f"{words}.*tunesmith merge"):
            check_adapter(tmp_path)
    assert "PREFIX_TUNING" in multilora.unsupported({"peft_type": "PREFIX_TUNING"})
    model = get_peft_model(load_model(str(tiny_model_dir)), LoraConfig(r=4, target_modules=["embed_tokens", "q_proj"]))
    assert multilora.other_layers(model) == ["base_model.model.model.embed_tokens"]
    with pytest.raises(TunesmithError, match="embed_tokens.*not a linear layer"):
        install(model)
