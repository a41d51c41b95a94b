"""The base model's evaluation outputs are generated once per base model: a second evaluation
after retraining generates only with the fine-tuned model, and its base numbers are unchanged."""

from __future__ import annotations

import json

from tests.evaluate.test_eval_stage import _project
from tunesmith.evaluate.stage import run_eval
from tunesmith.train.stage import run_train


def test_a_second_evaluation_reuses_the_base_outputs(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("TUNESMITH_EVAL_CACHE", "1")
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    cfg = _project(tmp_path / "p", tiny_model_dir, max_steps=2)
    run_train(cfg)
    first = run_eval(cfg)
    assert first.data["reused_base_outputs"] == []
    base_rows = (cfg.output_path / "eval" / "predictions_base.jsonl").read_text()

    from tunesmith.evaluate import generate as gen_module

    calls = []
    real = gen_module.generate

    def counting(model, tokenizer, prompts, **kw):
        calls.append(type(model).__name__)
        return real(model, tokenizer, prompts, **kw)

    monkeypatch.setattr(gen_module, "generate", counting)
    run_train(cfg)
    second = run_eval(cfg)
    reused = set(second.data["reused_base_outputs"])
    assert reused >= {"base", "few_shot", "base on regression", "base on safety"}
    assert "base request latency" not in reused  # timed again, alternating with the adapter (evaluate/latency.py)
    tuned_passes = 1 + len(second.suites)  # the test split and each suite, by the fine-tuned model only
    assert len(calls) == tuned_passes
    assert (cfg.output_path / "eval" / "predictions_base.jsonl").read_text() == base_rows
    assert second.base.task_metric == first.base.task_metric
    assert second.suites["regression"].runs["base"] == first.suites["regression"].runs["base"]
    assert second.base.latency_requests == second.fine_tuned.latency_requests >= 1  # both timed in this run
    assert second.data["latency_timed"].startswith("alternating")
    cfg2 = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"max_new_tokens": 12})})
    calls.clear()
    run_eval(cfg2)  # other decoding settings: the test-set passes generate again, the suites do not
    assert len(calls) == tuned_passes + 2  # base and few-shot on the test split again
    assert json.loads((cfg.output_path / "eval" / "metrics.json").read_text())["reused_base_outputs"]
