"""The bundled example end to end through the CLI on the packaged model (the README's main job, shortened)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO

pytestmark = pytest.mark.integration
EXAMPLE = REPO / "examples" / "support-tickets-json" / "tunesmith.yaml"


def test_run_on_the_bundled_example(tmp_path):
    # 6 steps cannot pass the default gates; thresholds at 0 exercise the whole pipeline's plumbing
    overrides = [f"output_dir={tmp_path}", "train.max_steps=6", "train.eval_steps=3", "train.save_steps=3",
                 "train.mlflow=true", "eval.max_new_tokens=64", "eval.suite_max_new_tokens=32",
                 "gate.task_metric_min=0", "gate.format_compliance_min=0", "gate.safety_pass_rate_min=-1",
                 "gate.max_regression=100"]
    proc = subprocess.run([sys.executable, "-m", "tunesmith.cli", "run", str(EXAMPLE), *overrides],
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Prepared for training" in proc.stdout and "Training (sft, lora)" in proc.stdout
    assert "Before / after" in proc.stdout and "Quality gates" in proc.stdout and "Gates passed" in proc.stdout
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"base", "few_shot", "fine_tuned"} and metrics["test_examples"] == 39
    assert set(metrics["suites"]) == {"regression", "safety", "safety_plain_chat"}  # the tickets share a system prompt
    assert metrics["suites"]["regression"]["base"]["probes"] == 38
    assert (tmp_path / "eval" / "report.html").exists() and "Registered" in proc.stdout
    assert list((tmp_path / "registry").glob("*-v1.md"))

    data = tmp_path / "data"
    report = json.loads((data / "check.json").read_text())
    assert report["records"] == {"total": 500, "valid": 500, "rejected": 0}  # 400 tickets + 100 replay
    assert report["quality"]["length"]["over_max_length"] == 0
    split = json.loads((data / "split.json").read_text())
    assert split["leaking_pairs"] == 0
    assert set(split["splits"]["test"]["labels"]) == {"billing", "technical", "account", "shipping", "feature_request"}
    assert json.loads((data / "prepare.json").read_text())["train"]["packing_efficiency"] > 0.85

    meta = json.loads((tmp_path / "train" / "metadata.json").read_text())
    assert meta["steps"] == 6 and not meta["alarms"]
    assert meta["eval_loss_best"] < meta["eval_loss_first"]  # the fine-tune lowers validation loss
    assert (tmp_path / "mlflow.db").exists() and (tmp_path / "train" / "loss.png").exists()

    # the saved adapter reloads on the base model and stops at the end-of-turn token
    from tunesmith.data.stage import load_split
    from tunesmith.config import load_config
    from tunesmith.models import load_tokenizer
    from tunesmith.train.merge import load_trained

    model_dir = tmp_path / "train" / "model"
    tok = load_tokenizer(str(model_dir))
    model = load_trained(model_dir, "smollm2-135m-instruct").eval()
    record = load_split(load_config(EXAMPLE, [f"output_dir={tmp_path}"]), "test")[0]
    inputs = tok.apply_chat_template(record.messages[:-1], add_generation_prompt=True, return_tensors="pt",
                                     return_dict=True)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=120, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1]:].tolist()
    assert new[-1] == tok.eos_token_id, tok.decode(new)
