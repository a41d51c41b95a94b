"""Multi-task training: sampling shares by size, equal or temperature, per-task splits, metrics and gates."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import chat
from tunesmith.cli import app
from tunesmith.config import load_config
from tunesmith.data.packing import window_records
from tunesmith.data.tasks import task_shares
from tunesmith.evaluate.gate import check_gates
from tunesmith.evaluate.result import EvalResult

runner = CliRunner()


def test_task_shares_follow_the_t5_rule():
    sizes = {"big": 900, "small": 100}
    assert task_shares(sizes, "size") == pytest.approx({"big": 0.9, "small": 0.1})
    assert task_shares(sizes, "equal") == pytest.approx({"big": 0.5, "small": 0.5})
    assert task_shares(sizes, "temperature", 2.0) == pytest.approx({"big": 0.75, "small": 0.25})  # 30 : 10
    assert task_shares(sizes, "temperature", 1.0) == pytest.approx(task_shares(sizes, "size"))


@pytest.mark.parametrize("rule, small_share", [("size", 0.1), ("temperature", 0.25), ("equal", 0.5)])
def test_prepare_draws_each_task_at_its_share(tmp_path, tiny_model_dir, tiny_tok, rule, small_share):
    big = [{"messages": chat(f"Sum {i} and {i + 1}?", f"BIG{i}")} for i in range(180)]
    small = [{"messages": chat(f"Name colour {i}?", f"SMALL{i}")} for i in range(20)]
    for name, rows in (("big", big), ("small", small)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tmp_path / "tunesmith.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "base_model": str(tiny_model_dir),
                "output_dir": "out",
                "data": {
                    "datasets": [{"path": "big.jsonl", "task": "sums"}, {"path": "small.jsonl", "task": "colours"}],
                    "max_length": 64,
                    "replay": False,
                    "task_sampling": rule,
                },
            }
        )
    )
    assert runner.invoke(app, ["data", "split", str(config)]).exit_code == 0
    split = json.loads((tmp_path / "out" / "data" / "split.json").read_text())
    # stratified by task: the small task keeps its share of validation and test
    assert split["splits"]["test"]["tasks"] == {"sums": 18, "colours": 2}
    result = runner.invoke(app, ["data", "prepare", str(config)])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "data" / "prepare.json").read_text())["tasks"]
    assert summary["rule"] == rule and summary["tasks"]["colours"]["records"] == 16
    drawn = {t: v["drawn"] for t, v in summary["tasks"].items()}
    assert sum(drawn.values()) == 160 and drawn["colours"] == round(160 * small_share)
    windows = pq.read_table(tmp_path / "out" / "data" / "prepared" / "train.parquet").to_pylist()
    text = "".join(tiny_tok.decode(r["input_ids"]) for w in windows for r in window_records(w))
    assert text.count("SMALL") == drawn["colours"] and text.count("BIG") == drawn["sums"]


def test_each_task_has_its_own_blocking_gate():
    cfg = load_config(None, ["gate.task_metric_min_by_task={colours: 0.5}"])
    metrics = {
        "fields": [],
        "models": {
            "base": {},
            "fine_tuned": {
                "task_metric": {"mean": 0.9},
                "format_compliance": {"mean": 0.99},
                "by_task": {"sums": {"mean": 0.95, "examples": 18}, "colours": {"mean": 0.6, "examples": 2}},
            },
        },
    }
    rows = {r.name: r for r in check_gates(cfg, EvalResult.of(metrics))}
    assert rows["task metric: sums"].passed and rows["task metric: colours"].passed  # 0.6 > its own 0.5
    metrics["models"]["fine_tuned"]["by_task"]["sums"]["mean"] = 0.8  # under the default 0.85
    rows = {r.name: r for r in check_gates(cfg, EvalResult.of(metrics))}
    assert rows["task metric: sums"].passed is False and rows["task metric: sums"].blocking
