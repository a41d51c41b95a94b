"""The packaged SmolLM2 with a LoRA delta merged in, exported to GGUF and answered in llama.cpp:
the same tokens for the same text, greedy answers as transformers gives them, and every answer
ends at the end-of-turn token."""

from __future__ import annotations

import pytest

from tests.export.test_gguf import TEXT, _llama_cpp
from tunesmith.export.agreement import llama_cpp_answers, transformers_answers
from tunesmith.export.gguf_file import write_gguf
from tunesmith.export.llama import open_gguf

PROMPTS = [
    [{"role": "user", "content": q}]
    for q in (
        "What is the capital of France? Answer in one word.",
        "What is 2 + 2? Reply with the number only.",
        'Reply with the JSON object {"ok": true} and nothing else.',
        "Say hello.",
    )
]


@pytest.fixture(scope="module")
def merged_smollm2(tmp_path_factory):
    """A LoRA on every projection with non-zero random weights (a fine-tune in shape), merged."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tunesmith.models import load_model, load_tokenizer

    torch.manual_seed(0)
    model = load_model("smollm2-135m-instruct", dtype=torch.float32)
    lora = LoraConfig(
        r=4, lora_alpha=4, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], init_lora_weights=False
    )
    peft_model = get_peft_model(model, lora)
    for name, p in peft_model.named_parameters():
        if "lora_" in name:
            p.data.mul_(0.05)  # a small delta, as training leaves, so the model still answers sensibly
    folder = tmp_path_factory.mktemp("smollm2") / "merged"
    peft_model.merge_and_unload().save_pretrained(str(folder))
    load_tokenizer("smollm2-135m-instruct").save_pretrained(str(folder))
    return folder


def test_smollm2_gguf_answers_like_transformers_and_stops(merged_smollm2):
    _llama_cpp()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(merged_smollm2))
    ours = transformers_answers(merged_smollm2, PROMPTS, 48)
    for quant in ("f16", "q8_0"):
        path = write_gguf(merged_smollm2, merged_smollm2.parent / f"smollm2-{quant}.gguf", quant=quant)
        llm = open_gguf(path, n_ctx=512)
        assert (
            llm.tokenize(TEXT.encode(), add_bos=False, special=True)
            == tokenizer(TEXT, add_special_tokens=False)["input_ids"]
        )
        del llm
        theirs = llama_cpp_answers(path, PROMPTS, 48)
        assert all(t["stopped"] for t in theirs), theirs
        same = sum(t["output"] == o for t, o in zip(theirs, ours))
        # greedy decoding amplifies the rounding of 16-bit (and 8-bit) weights at near-ties; the demo's test
        # split measures the agreement (docs/deploy.md)
        assert same >= len(ours) - (1 if quant == "f16" else 2), (quant, theirs, ours)
