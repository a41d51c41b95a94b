"""lm-evaluation-harness tasks beside the task (evaluate/harness.py): a custom local task (a task YAML and a
JSONL, no hub) on a tiny model for base and fine-tuned, in metrics.json, the before/after table and the model
card; and a gate on it that blocks a drop larger than allowed."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.evaluate.test_eval_stage import _project, _suite_metrics
from tunesmith.config import load_config
from tunesmith.evaluate.gate import check_gates, gates_passed
from tunesmith.evaluate.result import EvalResult

pytest.importorskip("lm_eval")

TASK = """task: parity_choice
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Is {{{{number}}}} even or odd? Answer:"
doc_to_choice: ["even", "odd"]
doc_to_target: "{{{{label}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def test_a_local_lm_eval_task_lands_in_metrics_table_and_card(tmp_path, tiny_model_dir):
    from tunesmith.cli.views import print_eval
    from tunesmith.console import out
    from tunesmith.evaluate.stage import run_eval
    from tunesmith.registry.card import model_card
    from tunesmith.train.stage import run_train

    cfg = _project(tmp_path, tiny_model_dir, max_steps=2)
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "parity.jsonl").write_text("".join(json.dumps({"number": i, "label": i % 2}) + "\n" for i in range(10)))
    (tasks / "parity.yaml").write_text(TASK.format(data=tasks / "parity.jsonl"))
    raw = yaml.safe_load(cfg.config_path.read_text())
    raw["eval"].update(
        {
            "lm_eval": {"tasks": ["parity_choice"], "include_path": "tasks", "limit": 8},
            "regression_suite": None,
            "safety_suite": None,
        }
    )
    cfg.config_path.write_text(yaml.safe_dump(raw))
    cfg = load_config(cfg.config_path)
    run_train(cfg)
    results = run_eval(cfg, limit=4)
    entry = results.lm_eval["tasks"]["parity_choice"]
    assert entry["metric"] == "acc" and entry["examples"] == 8
    for name in ("base", "fine_tuned"):
        assert 0 <= entry[name]["value"] <= 1 and entry[name]["stderr"] is not None
    assert entry["change"] == pytest.approx(entry["fine_tuned"]["value"] - entry["base"]["value"], abs=1e-4)
    saved = json.loads((cfg.output_path / "eval" / "metrics.json").read_text())
    assert saved["lm_eval"] == results.lm_eval
    width, out.width = out.width, 200
    try:
        with out.capture() as shown:
            print_eval(results, cfg.output_path / "eval")
    finally:
        out.width = width
    assert "lm-eval parity_choice (acc)" in shown.get()
    card = model_card(cfg, 1, results, check_gates(cfg, results), None, {})
    assert "| parity_choice | acc |" in card


def test_a_gate_on_an_lm_eval_task_blocks_a_larger_drop():
    cfg = load_config(None, ["gate.lm_eval={arc_easy: 0.05}"])
    metrics = _suite_metrics([1] * 10, [1] * 10, cfg)
    metrics["lm_eval"] = {
        "tasks": {
            "arc_easy": {
                "metric": "acc",
                "base": {"value": 0.60, "stderr": 0.02},
                "fine_tuned": {"value": 0.50, "stderr": 0.02},
                "change": -0.10,
            }
        }
    }
    row = {r.name: r for r in check_gates(cfg, EvalResult.of(metrics))}["lm-eval: arc_easy"]
    assert row.passed is False and row.blocking and "acc 0.500 against the base model's 0.600" in row.note
    assert not gates_passed(check_gates(cfg, EvalResult.of(metrics)))
    metrics["lm_eval"]["tasks"]["arc_easy"].update(change=-0.03, fine_tuned={"value": 0.57, "stderr": 0.02})
    assert {r.name: r for r in check_gates(cfg, EvalResult.of(metrics))}["lm-eval: arc_easy"].passed is True
    missing = load_config(None, ["gate.lm_eval={mmlu: 0.02}"])
    row = {r.name: r for r in check_gates(missing, EvalResult.of(metrics))}["lm-eval: mmlu"]
    assert row.passed is None and "add the task to eval.lm_eval.tasks" in row.note
