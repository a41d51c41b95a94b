"""Model resolution: clear errors for wrong paths; tiny models load like real ones."""

from __future__ import annotations

import pytest
import torch

from tunesmith.errors import ModelLoadError
from tunesmith.models import load_model, load_tokenizer, resolve_model


def test_tiny_model_loads_through_the_real_path(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    model = load_model(str(tiny_model_dir))
    assert tok.eos_token == "<|im_end|>" and model.config.eos_token_id == tok.eos_token_id
    assert model.num_parameters() < 100_000


def test_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(ModelLoadError, match="not a model folder"):
        resolve_model(str(tmp_path))


def test_missing_local_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        resolve_model(str(tmp_path / "missing"))


def test_hub_ids_pass_through():
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_unreachable_hub_model_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="could not load"):
        load_tokenizer("no-such-org/no-such-model-xyz")


def _bmm_shapes(model, **inputs) -> tuple:
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        logits = model(**inputs).logits
    return logits, [e.input_shapes for e in prof.events() if e.name == "aten::bmm"]


@pytest.mark.parametrize("rows", [4, 1])
def test_frozen_lm_head_on_the_last_position_is_one_matrix_product(tiny_model_dir, rows):
    """logits_to_keep=1 hands the head a non-contiguous slice; with frozen weights (every peft model) torch.matmul
    then ran a bmm over the weight copied once per row. load_model's hook makes it one mm, same logits; also for
    one row, whose slice torch calls contiguous (a request at one client: 73 ms a prefill for SmolLM2)."""
    from transformers import AutoModelForCausalLM

    ids = torch.randint(0, 100, (rows, 8))
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir).requires_grad_(False).eval()
    hooked = load_model(str(tiny_model_dir)).requires_grad_(False).eval()
    vocab = plain.config.vocab_size
    before, shapes = _bmm_shapes(plain, input_ids=ids, logits_to_keep=1)
    assert any(vocab in shape for s in shapes for shape in s), "torch folds this case now: the hook may go"
    after, shapes = _bmm_shapes(hooked, input_ids=ids, logits_to_keep=1)
    assert not any(vocab in shape for s in shapes for shape in s)
    assert torch.allclose(before, after, atol=1e-6)


def test_an_adapter_loads_without_transformers_renamed_name_warnings(tiny_model_dir, tmp_path):
    import warnings

    from peft import LoraConfig, PeftModel, get_peft_model

    get_peft_model(load_model(str(tiny_model_dir)), LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(
        tmp_path / "adapter"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        PeftModel.from_pretrained(load_model(str(tiny_model_dir)), str(tmp_path / "adapter"))
    # peft reads `is_gradient_checkpointing`, which transformers 5 renamed: the user saw a FutureWarning per load
    assert not [w for w in caught if "will be removed in v6" in str(w.message)]
