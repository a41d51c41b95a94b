"""The base model and a LoRA adapter are timed in one pass, alternating prompt by prompt, each as the
built-in server runs it (the unmerged adapter through `multilora.rows`)."""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model

from tunesmith.evaluate import latency
from tunesmith.models import generate, load_model
from tunesmith.models.generate import time_request
from tunesmith.models.multilora import BASE


def _adapter(tiny_model_dir, **lora):
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False, **lora)
    return get_peft_model(load_model(str(tiny_model_dir)), config).eval()


PROMPTS = [[{"role": "user", "content": f"question {i}"}] for i in range(4)]


def test_base_and_adapter_alternate_as_the_server_runs_them(tiny_model_dir, tiny_tok, monkeypatch):
    model = _adapter(tiny_model_dir)
    seen = []

    def fake(model, tokenizer, prompt, *, max_new_tokens):
        seen.append((model._ts_rows[0], prompt[0]["content"], max_new_tokens))
        return (2.0, 0.5) if model._ts_rows[0] == "default" else (1.0, 0.25)

    monkeypatch.setattr(generate, "time_request", fake)
    base, tuned, how = latency.paired_latency(model, tiny_tok, PROMPTS, max_new_tokens=5)
    assert seen[:2] == [(BASE, "question 0", 2), ("default", "question 0", 2)]  # warm-up, short
    order = [name for name, _, _ in seen[2:]]
    assert order == [BASE, "default", "default", BASE, BASE, "default", "default", BASE]
    assert [p for _, p, _ in seen[2:]] == ["question 0"] * 2 + ["question 1"] * 2 + ["question 2"] * 2 + [
        "question 3"
    ] * 2
    assert base["latencies_s"] == [1.0] * 4 and tuned["latencies_s"] == [2.0] * 4
    assert tuned["time_to_first_token_p50_s"] == 0.5 and "built-in server" in how
    assert model._ts_rows[0] is None  # peft's own forward again outside the timing


def test_rows_generate_what_peft_generates(tiny_model_dir, tiny_tok):
    """What is timed is the fine-tune's real answer: the rows' path gives peft's tokens."""
    model = _adapter(tiny_model_dir)
    inputs = tiny_tok.apply_chat_template(PROMPTS[0], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        reference = model.generate(**inputs, max_new_tokens=8, do_sample=False)
        with model.disable_adapter():
            base_reference = model.generate(**inputs, max_new_tokens=8, do_sample=False)
        timed = []
        base_ctx, tuned_ctx, _ = latency.contexts(model)
        with tuned_ctx():
            timed.append(model.generate(**inputs, max_new_tokens=8, do_sample=False))
        with base_ctx():
            timed.append(model.generate(**inputs, max_new_tokens=8, do_sample=False))
    assert torch.equal(timed[0], reference) and torch.equal(timed[1], base_reference)
    assert time_request(model, tiny_tok, PROMPTS[0], max_new_tokens=3)[1] > 0


def test_an_adapter_the_rows_do_not_cover_runs_through_peft(tiny_model_dir, tiny_tok, monkeypatch):
    model = _adapter(tiny_model_dir, use_dora=True)
    seen = []

    def fake(model, tokenizer, prompt, *, max_new_tokens):
        seen.append(model.base_model.model.model.layers[0].self_attn.q_proj.disable_adapters)
        return 1.0, 0.5

    monkeypatch.setattr(generate, "time_request", fake)
    *_, how = latency.paired_latency(model, tiny_tok, PROMPTS[:2], max_new_tokens=4)
    assert seen == [True, False, True, False, False, True] and "through peft" in how
    assert not hasattr(model, "_ts_rows")  # nothing installed


def test_the_latency_pass_is_its_own_step_of_the_evaluation(tmp_path, tiny_model_dir, monkeypatch):
    """metrics.json's `seconds` counts the alternating pass once, beside loading the adapter, not inside it;
    and both models' figures come from that pass."""
    import time

    from tests.evaluate.test_eval_stage import _project
    from tunesmith.evaluate.stage import run_eval
    from tunesmith.train.stage import run_train

    def slow(model, tokenizer, prompt, *, max_new_tokens):
        time.sleep(0.05)
        return 0.05, 0.01

    cfg = _project(tmp_path, tiny_model_dir, max_steps=2)
    run_train(cfg)
    monkeypatch.setattr(generate, "time_request", slow)
    result = run_eval(cfg)
    seconds = result.data["seconds"]
    timed = seconds["request latency: base and fine_tuned alternating"]
    assert timed >= 0.05 * (2 + 2 * result.fine_tuned.latency_requests)  # the warm-ups and every request
    assert seconds["load the fine-tune"] < timed  # loading it does not contain the pass
    expected = [0.05] * result.fine_tuned.latency_requests
    assert result.base.values["latencies_s"] == result.fine_tuned.values["latencies_s"] == expected


def test_a_full_fine_tune_alternates_with_the_base_beside_it(tiny_model_dir, tiny_tok, monkeypatch):
    base, full = load_model(str(tiny_model_dir)), load_model(str(tiny_model_dir))
    seen = []

    def fake(model, tokenizer, prompt, *, max_new_tokens):
        seen.append("full" if model is full else "base")
        return (2.0, 0.5) if model is full else (1.0, 0.25)

    monkeypatch.setattr(generate, "time_request", fake)
    base_summary, tuned, how = latency.paired_latency(base, tiny_tok, PROMPTS, max_new_tokens=5, full=full)
    assert seen == ["base", "full"] + ["base", "full", "full", "base"] * 2
    assert base_summary["latencies_s"] == [1.0] * 4 and tuned["latencies_s"] == [2.0] * 4
    assert how == "alternating, both models in memory"
    assert latency.room_for_a_second_copy(base, "cpu")  # a tiny model: always room
