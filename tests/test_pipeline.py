"""`tunesmith run` skips what has not changed, redoes what has, and honours --force."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from tests.evaluate.test_eval_stage import SCHEMA, _rows


def _run(config, *args):
    proc = subprocess.run([sys.executable, "-m", "tunesmith.cli", "run", str(config), *args],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def test_run_skips_unchanged_stages(tmp_path, tiny_model_dir):
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    config = tmp_path / "tunesmith.yaml"
    config.write_text(yaml.safe_dump({
        "base_model": str(tiny_model_dir), "output_dir": "out",
        "data": {"datasets": [{"path": "d.jsonl"}], "max_length": 64, "dedup": "none"},
        "train": {"max_steps": 2, "micro_batch_size": 2, "learning_rate": 1e-2, "mlflow": False, "bf16": False,
                  "eval_steps": 2, "save_steps": 2, "early_stopping_patience": None},
        "eval": {"json_schema": "schema.json", "max_new_tokens": 8, "batch_size": 16, "few_shot": 0,
                 "regression_suite": None, "safety_suite": None},
        "gate": {"task_metric_min": -1, "format_compliance_min": -1}}))
    first = _run(config)
    assert "Training (sft, lora)" in first and "Registered" in first
    summary = first[first.index("tunesmith run: summary"):]  # one panel at the end, read back from the artefacts
    for line in ("data", "training", "chosen", "field accuracy", "gates", "registered", "serve it"):
        assert f"│ {line}" in summary, line
    assert "validation loss" in summary and "v1" in summary
    flat = " ".join(line.strip("│ ") for line in summary.splitlines())  # the panel wraps long lines
    assert f"tunesmith registry promote {config} 1 --to production && tunesmith serve {config}" in flat
    again = _run(config)
    assert "skipped: data, train, eval, register" in again and "Training (sft" not in again
    assert "Already registered as v1" in again and "Quality gates" in again
    raw = yaml.safe_load(config.read_text())
    raw["eval"]["max_new_tokens"] = 6  # only evaluation (and registration) depend on it
    config.write_text(yaml.safe_dump(raw))
    changed = _run(config)
    assert "skipped: data, train" in changed and "Training (sft" not in changed and "Before / after" in changed
    assert "Registered" in changed and "v2" in changed
    forced = _run(config, "--force", "train")
    assert "skipped: data" in forced and "Training (sft, lora)" in forced
    with open(tmp_path / "d.jsonl", "a") as fh:  # new data: everything again
        fh.write(json.dumps(_rows(60)[-1]) + "\n")
    assert "skipped" not in _run(config)


def test_an_interrupted_training_run_is_resumed(tmp_path):
    from tunesmith import pipeline
    from tunesmith.config import load_config

    (tmp_path / "d.jsonl").write_text("{}\n")
    config = tmp_path / "tunesmith.yaml"
    config.write_text(yaml.safe_dump({"output_dir": "out", "data": {"datasets": [{"path": "d.jsonl"}]}}))
    cfg = load_config(config)
    fps = pipeline.fingerprints(cfg)
    pipeline.mark(cfg, "data", fps["data"])
    assert pipeline.plan(cfg, []) == {"data": "skip", "train": "run", "eval": "run", "register": "run"}
    pipeline.mark(cfg, "train_started", fps["train"])
    (cfg.output_path / "train" / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    assert pipeline.plan(cfg, [])["train"] == "resume"
    assert pipeline.plan(cfg, ["train"])["train"] == "run"  # --force train starts over
    assert pipeline.plan(load_config(config, ["train.learning_rate=1e-5"]), [])["train"] == "run"  # another run
