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


def test_dropping_finished_rows_gives_transformers_generate_outputs(smollm2, monkeypatch):
    """greedy_decode cuts the batch down as rows finish; every answer equals transformers' generate on the
    same batch (fp32), and the batch was cut down at least once."""
    import torch
    from transformers import DynamicCache

    from tunesmith.models.generate import greedy_decode

    model, tok = smollm2
    tok.padding_side = "left"
    encoded = [
        tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, return_dict=True)[
            "input_ids"
        ]
        for p in PROMPTS
    ]
    inputs = tok.pad([{"input_ids": ids} for ids in encoded], padding=True, return_tensors="pt")
    cuts = []
    real = DynamicCache.batch_select_indices

    def counting(self, indices):
        cuts.append(len(indices))
        return real(self, indices)

    monkeypatch.setattr(DynamicCache, "batch_select_indices", counting)
    with torch.no_grad():
        ours = greedy_decode(model, inputs["input_ids"], inputs["attention_mask"], 40, tok.eos_token_id)
        theirs = model.generate(**inputs, max_new_tokens=40, do_sample=False, pad_token_id=tok.pad_token_id)
    assert cuts and cuts == sorted(cuts, reverse=True) and cuts[-1] < len(PROMPTS)
    for answer, row in zip(ours, theirs[:, inputs["input_ids"].shape[1] :].tolist()):
        ended = tok.eos_token_id in row
        expected = row[: row.index(tok.eos_token_id) + 1] if ended else row
        assert answer == expected
    assert any(a[-1] == tok.eos_token_id for a in ours) and any(len(a) == 40 for a in ours)  # both ways to end


def test_answers_end_once_their_verdict_is_settled_and_every_verdict_stays(smollm2):
    """The default suites' probes, answered with and without settled tests (fp32, the same batches): every
    verdict is the same, the settled answers are the start of the full ones and pass, the rest are equal."""
    from tunesmith.evaluate.suites import load_probes, score_probe, settled_test, suite_path
    from tunesmith.models.generate import generate

    model, tok = smollm2
    regression = load_probes(suite_path("default", "regression"))
    safety = load_probes(suite_path("default", "safety"))
    probes = regression[::9] + safety[::3]  # knowledge, arithmetic, language, ... and refusals, leaks
    prompts = [p.messages for p in probes]
    tests = [settled_test(p) for p in probes]
    assert any(t is None for t in tests) and sum(t is not None for t in tests) > len(probes) // 2
    whole = generate(model, tok, prompts, max_new_tokens=48, batch_size=len(probes))
    early = generate(model, tok, prompts, max_new_tokens=48, batch_size=len(probes), settled=tests)
    cut = 0
    for probe, w, e in zip(probes, whole, early):
        assert score_probe(probe, e["output"]).passed == score_probe(probe, w["output"]).passed, probe.id
        if e.get("settled"):
            cut += 1
            assert w["output"].startswith(e["output"]) and e["new_tokens"] < w["new_tokens"]
            assert score_probe(probe, e["output"]).passed
        else:
            assert e["output"] == w["output"]
    assert cut >= 3  # answers did end early: the base model answers a good share of these probes
