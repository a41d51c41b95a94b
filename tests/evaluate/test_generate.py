"""Batched greedy generation (left padding, KV cache) gives exactly the one-at-a-time outputs, on the
real packaged model in fp32 (a random tiny model only emits special tokens, which would prove nothing)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about rain.",
    "2 + 2 =",
    "Translate 'good morning' into Spanish.",
    "Name three primary colours.",
    "Explain in one sentence what a CPU does.",
    "Is 17 a prime number? Answer yes or no.",
    "Give a synonym for 'happy'.",
    "List the days of the week.",
    "Who wrote Romeo and Juliet?",
]


@pytest.fixture(scope="module")
def smollm2():
    import torch

    from tunesmith.models import load_model, load_tokenizer

    return load_model("smollm2-135m-instruct", dtype=torch.float32), load_tokenizer("smollm2-135m-instruct")


def test_batched_greedy_outputs_equal_one_at_a_time(smollm2):
    from tunesmith.models.generate import generate

    model, tok = smollm2
    prompts = [[{"role": "user", "content": p}] for p in PROMPTS]
    alone = generate(model, tok, prompts, max_new_tokens=16, batch_size=1)
    assert len({o["output"] for o in alone}) == len(PROMPTS)  # real, different answers
    for batch_size in (4, 10):
        together = generate(model, tok, prompts, max_new_tokens=16, batch_size=batch_size)
        assert [o["output"] for o in together] == [o["output"] for o in alone], batch_size
        assert [o["new_tokens"] for o in together] == [o["new_tokens"] for o in alone]
        assert max(o["batch"] for o in together) == (len(PROMPTS) - 1) // batch_size
