"""Evaluation and gates on a tiny model: predictions traced per example; a broken candidate is blocked."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from tests.train.helpers import make_project
from tunesmith.config import load_config
from tunesmith.data.records import Conversation
from tunesmith.evaluate.gate import check_gates, gates_passed
from tunesmith.evaluate.result import EvalResult, read_eval
from tunesmith.evaluate.scoring import few_shot_prompt, pick_shots
from tunesmith.evaluate.stage import run_eval
from tunesmith.schemas import schema_fields
from tunesmith.train.stage import run_train

SCHEMA = {
    "type": "object",
    "required": ["kind", "note"],
    "properties": {"kind": {"enum": ["even", "odd"]}, "note": {"type": "string"}},
}


def _rows(n: int = 48) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"Is {i} even or odd?"},
                {"role": "assistant", "content": json.dumps({"kind": "even" if i % 2 == 0 else "odd", "note": str(i)})},
            ],
            "parity": "even" if i % 2 == 0 else "odd",
        }
        for i in range(n)
    ]


def _project(tmp_path, tiny_model_dir, **train):
    config = make_project(tmp_path, tiny_model_dir, _rows(), **train)
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    raw = yaml.safe_load(config.read_text())
    raw["eval"] = {
        "json_schema": "schema.json",
        "max_new_tokens": 16,
        "batch_size": 16,
        "few_shot": 2,
        "suite_max_new_tokens": 8,
    }
    raw["data"]["label_field"] = "parity"
    config.write_text(yaml.safe_dump(raw))
    return load_config(config)


def test_eval_writes_traceable_predictions_and_intervals(tmp_path, tiny_model_dir):
    cfg = _project(tmp_path, tiny_model_dir, max_steps=2)
    run_train(cfg)
    results = run_eval(cfg)
    assert set(results.models) == {"base", "few_shot", "fine_tuned"}
    assert results.fields == ["kind"]
    tuned = results.fine_tuned
    assert tuned.task_metric.low <= tuned.task_metric.mean <= tuned.task_metric.high
    rows = [json.loads(x) for x in (cfg.output_path / "eval" / "predictions_fine_tuned.jsonl").read_text().splitlines()]
    assert len(rows) == results.test_examples > 0
    assert {"file", "line", "reference", "output", "task_metric", "format_compliance"} <= set(rows[0])
    assert sum(r["task_metric"] for r in rows) / len(rows) == tuned.task_metric.mean
    # labels: a classification report per scored field; held-out loss with the training loss mask
    assert tuned.values["classification"]["kind"]["labels"]
    assert tuned.values["heldout"]["tokens"] > 0 and tuned.values["heldout"]["perplexity"] > 1
    # latency as one request sees it (a fixed sample timed alone), beside the batch's wall time
    for name in ("base", "fine_tuned"):
        entry = results.models[name]
        assert entry.latency_requests == min(8, results.test_examples)
        assert 0 < entry.time_to_first_token_p50_s <= entry.latency_p50_s <= entry.latency_p95_s
        assert entry.values["batch_latency_p50_s"] > 0
    assert results.models["few_shot"].latency_p50_s is None
    # suites: the default regression and safety probes, scored for base and fine-tuned
    assert set(results.suites) == {"regression", "safety"}  # no task system prompt: no separate plain-chat run
    regression = results.suites["regression"]
    assert regression.runs["base"].probes >= 200
    probes = (cfg.output_path / "eval" / "suite_safety_fine_tuned.jsonl").read_text().splitlines()
    assert len(probes) == results.suites["safety"].runs["fine_tuned"].probes
    # the report: Markdown beside a self-contained HTML page
    html = (cfg.output_path / "eval" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and 'src="http' not in html
    assert "plots/metrics.png" in (cfg.output_path / "eval" / "report.md").read_text()
    assert read_eval(cfg) == results  # the file read back is what the stage returned
    # where the time went: each step timed, the passes above among them
    seconds = results.data["seconds"]
    steps = {
        "load the base model",
        "base: test split",
        "request latency: base and fine_tuned alternating",
        "fine_tuned: safety suite",
    }
    assert steps <= set(seconds) and all(v >= 0 for v in seconds.values())
    assert seconds["base: test split"] >= results.base.values["batch_latency_p50_s"]
    assert "Where the time went" in (cfg.output_path / "eval" / "report.md").read_text()
    rows = check_gates(cfg, read_eval(cfg))
    gates = {r.name: r for r in rows}
    assert gates["safety floor"].measured == results.suites["safety"].runs["fine_tuned"].pass_rate.mean
    assert gates["safety vs base"].measured == results.suites["safety"].relative_change
    if regression.runs["base"].passed:
        assert gates["regression vs base"].measured == regression.relative_change
    else:  # a random tiny model answers nothing: no relative change to compute, and the gate says so
        assert gates["regression vs base"].passed is None and "base passed no probe" in gates["regression vs base"].note


def test_gate_blocks_a_broken_candidate(tmp_path, tiny_model_dir, monkeypatch):
    from tunesmith.evaluate import latency

    cfg = _project(tmp_path, tiny_model_dir, adapter="none", learning_rate=1e4, max_steps=6)
    run_train(cfg)  # diverges: far too high a learning rate
    monkeypatch.setattr(latency, "room_for_a_second_copy", lambda model, device: False)
    result = run_eval(cfg)
    assert result.data["latency_timed"] == "each model in its own pass"  # no room: the fine-tune replaced the base
    assert result.base.latency_requests == result.fine_tuned.latency_requests >= 1
    monkeypatch.undo()
    result = run_eval(cfg)  # a full fine-tune beside the base, the two timed in turns
    assert result.data["latency_timed"] == "alternating, both models in memory"
    assert result.base.latency_requests == result.fine_tuned.latency_requests >= 1
    assert "request latency: base and fine_tuned alternating" in result.data["seconds"]
    assert not any(step.endswith(": request latency") for step in result.data["seconds"])
    proc = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli", "gate", str(cfg.config_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL" in proc.stdout and "task metric" in proc.stdout and "training diverged" in proc.stdout


def test_eval_latency_requests_sets_the_timed_sample_and_zero_times_nothing(tmp_path, tiny_model_dir, monkeypatch):
    from tunesmith.evaluate import latency

    quick = ["eval.regression_suite=null", "eval.safety_suite=null", "eval.few_shot=0", "eval.heldout_loss=false"]
    for adapter in ("lora", "none"):
        cfg = _project(tmp_path / adapter, tiny_model_dir, adapter=adapter, max_steps=2)
        run_train(cfg)
        three = run_eval(load_config(cfg.config_path, [*quick, "eval.latency_requests=3"]))
        assert three.base.latency_requests == three.fine_tuned.latency_requests == 3
        assert "latency vs base" in {r.name for r in check_gates(cfg, three)}
        for room in (True, False):  # a full fine-tune beside the base, or in a pass of its own
            monkeypatch.setattr(latency, "room_for_a_second_copy", lambda model, device, room=room: room)
            none = run_eval(load_config(cfg.config_path, [*quick, "eval.latency_requests=0"]))
            assert none.base.latency_p50_s is None and none.fine_tuned.latency_p50_s is None
            assert not any("latency" in step for step in none.data["seconds"]) and "latency_timed" not in none.data
            assert "latency vs base" not in {r.name for r in check_gates(cfg, none)}
            assert "this_machine" not in none.data["cost"]["per_1k_requests"]["fine_tuned"]  # nothing timed
            assert none.fine_tuned.task_metric.mean == three.fine_tuned.task_metric.mean


def test_gates_pass_on_good_numbers_and_unmeasured_gates_do_not_block(tmp_path):
    cfg = load_config(None)
    metrics = {
        "fields": ["kind"],
        "models": {
            "base": {"latency_p50_s": 1.0},
            "fine_tuned": {"task_metric": {"mean": 0.9}, "format_compliance": {"mean": 0.99}, "latency_p50_s": 2.5},
        },
    }
    rows = check_gates(cfg, EvalResult.of(metrics))
    assert gates_passed(rows)
    latency = next(r for r in rows if r.name == "latency vs base")
    assert latency.passed is False and not latency.blocking  # a warning only
    metrics["models"]["fine_tuned"]["format_compliance"]["mean"] = 0.9
    assert not gates_passed(check_gates(cfg, EvalResult.of(metrics)))


def _suite_metrics(base: list[int], tuned: list[int], cfg) -> dict:
    """metrics.json's suite entry for paired pass/fail outcomes, as the evaluation stage writes it."""
    from tunesmith.evaluate.metrics import relative_change

    change = relative_change([float(x) for x in base], [float(x) for x in tuned], cfg.gate.confidence)
    entry = {
        "base": {"pass_rate": {"mean": sum(base) / len(base)}, "passed": sum(base), "probes": len(base)},
        "fine_tuned": {"pass_rate": {"mean": sum(tuned) / len(tuned)}, "passed": sum(tuned), "probes": len(tuned)},
        "relative_change": change.pop("change"),
        "relative_change_upper": change.pop("upper"),
        **change,
        "mcnemar_p": 1.0,
    }
    return {
        "fields": ["kind"],
        "models": {"base": {}, "fine_tuned": {"task_metric": {"mean": 0.9}, "format_compliance": {"mean": 0.99}}},
        "suites": {
            "regression": entry,
            "safety": {
                "base": {"pass_rate": {"mean": 1.0}, "passed": 1, "probes": 1},
                "fine_tuned": {"pass_rate": {"mean": 1.0}, "passed": 1, "probes": 1},
            },
        },
    }


def test_regression_gate_trusts_the_one_sided_bound_not_the_point_estimate():
    cfg = load_config(None)
    # 120 probes the base passes, 80 it fails; losing 2 (-1.7%) or 7 (-5.8%, over the 5% tolerance but within
    # noise) passes; losing 20 (-16.7%) fails, and the failure says what to change
    for lost, passes in ((2, True), (7, True), (20, False)):
        tuned = [0] * lost + [1] * (120 - lost) + [0] * 80
        rows = {r.name: r for r in check_gates(cfg, EvalResult.of(_suite_metrics([1] * 120 + [0] * 80, tuned, cfg)))}
        gate = rows["regression vs base"]
        assert gate.passed is passes, (lost, gate)
        assert gate.measured == round(-lost / 120, 4) and f"lost {lost}" in gate.note and "one-sided 95%" in gate.note
        assert (gate.advice == "") is passes
    assert "data.replay.ratio (now 0.2; try 0.3)" in gate.advice and "train.learning_rate (now 0.0002" in gate.advice
    off = load_config(None, ["data.replay=false"])
    assert (
        "turn replay on"
        in {r.name: r for r in check_gates(off, EvalResult.of(_suite_metrics([1] * 120 + [0] * 80, tuned, off)))}[
            "regression vs base"
        ].advice
    )


def _safety_metrics(cfg, task: tuple[list[int], list[int]], plain: tuple[list[int], list[int]] | None = None) -> dict:
    """metrics.json with the safety suite in the task's context and, when given, in plain chat."""
    metrics = _suite_metrics(*task, cfg)
    metrics["suites"]["safety"] = metrics["suites"].pop("regression")
    if plain is not None:
        metrics["suites"]["safety_plain_chat"] = _suite_metrics(*plain, cfg)["suites"]["regression"]
    return metrics


def test_safety_gates_compare_with_the_base_in_each_context_and_name_the_base_below_the_floor():
    cfg = load_config(None)
    same = ([1] * 36 + [0], [1] * 36 + [0])  # the task's context: the base and the fine-tune above the floor
    # plain chat: a base below the floor; the fine-tune loses one of its 7 refusals (noise) and gains 3
    rows = {
        r.name: r
        for r in check_gates(
            cfg, EvalResult.of(_safety_metrics(cfg, same, ([1] * 7 + [0] * 30, [0] + [1] * 6 + [1] * 3 + [0] * 27)))
        )
    }
    vs_base, floor = rows["safety vs base, plain chat"], rows["safety floor, plain chat"]
    assert vs_base.passed is True and vs_base.blocking and "lost 1, and it gained 3" in vs_base.note
    assert floor.passed is False and not floor.blocking and "the base is the cause" in floor.note
    assert (
        rows["safety vs base"].passed is True and rows["safety floor"].passed is True and rows["safety floor"].blocking
    )
    assert gates_passed(list(rows.values()))
    # plain chat: the fine-tune wears the base's refusals down (7 -> 2): blocked, with what to change
    rows = {
        r.name: r
        for r in check_gates(
            cfg, EvalResult.of(_safety_metrics(cfg, same, ([1] * 7 + [0] * 30, [0] * 5 + [1] * 2 + [0] * 30)))
        )
    }
    row = rows["safety vs base, plain chat"]
    assert row.passed is False and row.blocking and not gates_passed(list(rows.values()))
    assert "lost 5" in row.note and "pass rate 0.054 against the base model's 0.189" in row.note
    assert "raise data.replay.refusals (now 0.1" in row.advice and "train.learning_rate" in row.advice
    off = load_config(None, ["data.replay.refusals=false"])
    advice = {
        r.name: r for r in check_gates(off, EvalResult.of(_safety_metrics(off, same, ([1] * 7 + [0] * 30, [0] * 37))))
    }["safety vs base, plain chat"].advice
    assert advice.startswith("turn refusal replay on (data.replay.refusals: 0.1)")
    # the task's context: a base above the floor, a fine-tune below it, without losing significance: the floor blocks
    rows = {
        r.name: r for r in check_gates(cfg, EvalResult.of(_safety_metrics(cfg, ([1] * 36 + [0], [1] * 34 + [0] * 3))))
    }
    assert rows["safety floor"].passed is False and rows["safety floor"].blocking and rows["safety floor"].advice
    assert "safety vs base, plain chat" not in rows  # no system prompt: the suite ran once


def test_failed_gates_read_as_plain_text_for_the_jobs_api():
    from tunesmith.evaluate.gate import failed_gates_text

    cfg = load_config(None)
    rows = check_gates(cfg, EvalResult.of(_safety_metrics(cfg, ([1] * 7 + [0] * 30, [0] * 37))))
    text = failed_gates_text(rows)
    assert text.startswith("Gate 'safety vs base' failed: measured -1.000, threshold >= 0%")
    assert "lost 7" in text and "To fix it: raise data.replay.refusals" in text
    assert "/" not in text.replace("data.replay", "").split("To fix it")[0] and "[" not in text


def test_few_shot_prompt_keeps_the_system_message_first():
    shots = [
        Conversation([{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}], {"label": "x"}),
        Conversation([{"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}], {"label": "y"}),
    ]
    prompt = few_shot_prompt(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "q"}], pick_shots(shots, 2, seed=0)
    )
    assert prompt[0]["content"] == "S" and prompt[-1]["content"] == "q" and len(prompt) == 6
    assert schema_fields(SCHEMA) == ["kind"]


def test_classification_scores_accuracy_and_label_compliance():
    from tunesmith.evaluate.scoring import score

    outputs = ["Trivia.", "ai", "I think it is about coding", "history"]
    references = ["trivia", "ai", "coding", "sports"]
    summary, per = score(outputs, references, None, [], kind="classification", labels={"history", "trivia"})
    assert per["accuracy"] == [1.0, 1.0, 0.0, 0.0] and per["task_metric"] == per["accuracy"]
    # a sentence instead of a label is out of format; a wrong label (known from training) is in format
    assert per["format_compliance"] == [1.0, 1.0, 0.0, 1.0]
    report = summary["classification"]["label"]
    assert report["accuracy"] == 0.5 and "i think it is about coding" in report["labels"]


def test_task_system_prompt_is_not_outvoted_by_plain_chat_replay():
    from tunesmith.data.template import task_system_prompt

    task = "You turn tickets into JSON."

    def conv(system: str | None) -> Conversation:
        head = [{"role": "system", "content": system}] if system else []
        return Conversation(head + [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])

    # 45 with the task prompt, 20 with the prompt plus a customer record, 40 plain-chat replay
    train = [conv(task)] * 45 + [conv(f"{task}\nCustomer: {i}") for i in range(20)] + [conv(None)] * 40
    assert task_system_prompt(None, train) == task  # 45 of 65 prompted records, 43% of all
    assert task_system_prompt(None, [conv(task)] * 10 + [conv(None)] * 90) is None  # a tenth: not the task's
    assert task_system_prompt(None, [conv(None)] * 5) is None


def test_merged_adapter_answers_as_the_unmerged_one(tmp_path, tiny_model_dir):
    """eval.merge_adapter folds LoRA into the base weights for speed, by default (auto) only in fp32,
    where that must not change an answer."""
    cfg = _project(tmp_path, tiny_model_dir, max_steps=4, learning_rate=5e-2)
    run_train(cfg)
    outputs = {}
    for merge in ("auto", False):
        eval_cfg = cfg.eval.model_copy(update={"merge_adapter": merge, "regression_suite": None, "safety_suite": None})
        results = run_eval(cfg.model_copy(update={"eval": eval_cfg}))
        assert results.data["dtype"] == "float32" and results.data["adapter_merged"] is (merge == "auto")
        rows = (cfg.output_path / "eval" / "predictions_fine_tuned.jsonl").read_text().splitlines()
        outputs[merge] = [json.loads(x)["output"] for x in rows]
        base = [
            json.loads(x)["output"]
            for x in (cfg.output_path / "eval" / "predictions_base.jsonl").read_text().splitlines()
        ]
    assert outputs["auto"] == outputs[False]
    assert outputs["auto"] != base  # the adapter changed what the model says, so the merge had work to do
