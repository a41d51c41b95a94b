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
    # 6 steps cannot pass the default gates; thresholds at 0 exercise the whole pipeline's plumbing. Short suite
    # answers and 2 timed requests: on a 2-core AVX2-only CPU (fp32) the suites at 32 tokens took 179 s and
    # 8 timed requests 81 s of this run's 700
    overrides = [
        f"output_dir={tmp_path}",
        "train.max_steps=6",
        "train.eval_steps=3",
        "train.save_steps=3",
        "train.mlflow=true",
        "eval.max_new_tokens=64",
        "eval.suite_max_new_tokens=16",
        "eval.latency_requests=2",
        "gate.task_metric_min=0",
        "gate.format_compliance_min=0",
        "gate.safety_pass_rate_min=-1",
        "gate.max_safety_regression=100",
        "gate.max_regression=100",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli", "run", str(EXAMPLE), *overrides],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Prepared for training" in proc.stdout and "Training (sft, lora)" in proc.stdout
    assert "Before / after" in proc.stdout and "Quality gates" in proc.stdout and "Gates passed" in proc.stdout
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"base", "few_shot", "fine_tuned"} and metrics["test_examples"] == 39
    assert set(metrics["suites"]) == {"regression", "safety", "safety_plain_chat"}  # the tickets share a system prompt
    assert metrics["suites"]["regression"]["base"]["probes"] == 223
    assert metrics["models"]["fine_tuned"]["latency_requests"] == 2 == metrics["models"]["base"]["latency_requests"]
    gates = json.loads((tmp_path / "eval" / "gates.json").read_text())["gates"]
    assert "latency vs base" in {g["name"] for g in gates}
    assert (tmp_path / "eval" / "report.html").exists() and "Registered" in proc.stdout
    assert list((tmp_path / "registry").glob("*-v1.md"))

    data = tmp_path / "data"
    report = json.loads((data / "check.json").read_text())
    assert report["records"] == {"total": 400, "valid": 400, "rejected": 0}
    assert report["quality"]["length"]["over_max_length"] == 0
    split = json.loads((data / "split.json").read_text())
    assert split["leaking_pairs"] == 0
    assert set(split["splits"]["test"]["labels"]) == {"billing", "technical", "account", "shipping", "feature_request"}
    prepare = json.loads((data / "prepare.json").read_text())
    assert prepare["train"]["packing_efficiency"] > 0.85
    # replay by default: the base model's own answers to general prompts, about a fifth of the training tokens
    assert prepare["replay"]["source"] == "self" and 0.15 <= prepare["replay"]["ratio"] <= 0.22
    refusals = prepare["replay"]["refusals"]  # refusal replay by default: 10% of the tokens, some in the task's prompt
    assert 0.08 <= refusals["ratio"] <= 0.12 and 0 < refusals["in_task_context"] < refusals["records"]
    assert prepare["train"]["replay_records"] == prepare["replay"]["records"] + refusals["records"]
    assert prepare["replay"]["records"] > 50

    meta = json.loads((tmp_path / "train" / "metadata.json").read_text())
    assert meta["steps"] == 6 and not meta["alarms"]
    assert meta["eval_loss_best"] < meta["eval_loss_first"]  # the fine-tune lowers validation loss
    assert (tmp_path / "mlflow.db").exists() and (tmp_path / "train" / "loss.png").exists()

    # the saved adapter reloads on the base model and stops at the end-of-turn token
    from tunesmith.config import load_config
    from tunesmith.data.stage import load_split
    from tunesmith.models import load_tokenizer
    from tunesmith.models.merge import load_trained

    model_dir = tmp_path / "train" / "model"
    tok = load_tokenizer(str(model_dir))
    model = load_trained(model_dir, "smollm2-135m-instruct").eval()
    record = load_split(load_config(EXAMPLE, [f"output_dir={tmp_path}"]), "test")[0]
    inputs = tok.apply_chat_template(
        record.messages[:-1], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=120, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1] :].tolist()
    assert new[-1] == tok.eos_token_id, tok.decode(new)


TOPICS = REPO / "examples" / "topic-classification"


def test_topic_data_is_what_make_data_writes_from_the_package(tmp_path):
    """The committed questions are regenerated from the installed chatterbot-corpus, byte for byte."""
    plain = REPO / "examples" / "new-user-topics" / "data" / "questions.jsonl"  # the same, without the prompt
    committed = (TOPICS / "data" / "questions.jsonl").read_bytes(), plain.read_bytes()
    proc = subprocess.run([sys.executable, str(TOPICS / "make_data.py")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "in 21 topics" in proc.stdout
    assert ((TOPICS / "data" / "questions.jsonl").read_bytes(), plain.read_bytes()) == committed
    assert not any(json.loads(line)["messages"][0]["role"] == "system" for line in plain.read_text().splitlines())


def test_topic_classification_example_end_to_end(tmp_path):
    """The example as shipped (only the output folder moved): accuracy and macro-F1 before and after.

    On a 2-core CPU without native bf16 (fp32, AVX2 only), 36 optimizer steps train in 5 min 22 s and
    the full schedule (102) about three times that, too long for CI there; CI trains 36 steps and checks
    that it learns, and evaluates the task alone: the suites, the held-out loss and the few-shot baseline
    are the bundled example's to check (above), and took 310 s of this test's 755 s on that CPU.
    TUNESMITH_FULL_EXAMPLES=1 runs it as shipped and checks that it passes its gates."""
    import os

    full = os.environ.get("TUNESMITH_FULL_EXAMPLES") == "1"
    short = ["train.max_steps=36", "eval.regression_suite=null", "eval.safety_suite=null"]
    short += ["eval.heldout_loss=false", "eval.few_shot=0"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tunesmith.cli",
            "run",
            str(TOPICS / "tunesmith.yaml"),
            f"output_dir={tmp_path}",
            *([] if full else short),
        ],
        capture_output=True,
        text=True,
        timeout=5400 if full else 2400,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    split = json.loads((tmp_path / "data" / "split.json").read_text())
    assert len(split["splits"]["test"]["labels"]) >= 15  # stratified: most topics reach the test split
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["task"] == "classification" and metrics["test_examples"] == 109
    base, tuned = (metrics["models"][n]["classification"]["label"] for n in ("base", "fine_tuned"))
    assert tuned["accuracy"] > base["accuracy"] + (0.5 if full else 0.3)
    assert tuned["macro_f1"] > base["macro_f1"] + (0.4 if full else 0.1)
    low, _ = metrics["comparisons"]["fine_tuned_vs_base"]["task_metric_diff"]["ci95"]
    assert low > 0  # the gain's 95% interval excludes zero
    assert metrics["models"]["fine_tuned"]["format_compliance"]["mean"] > (0.95 if full else 0.8)  # answers are labels
    assert "macro-F1" in proc.stdout and "tunesmith run: summary" in proc.stdout
    if full:  # as shipped, every blocking gate passes and the model is registered
        assert proc.returncode == 0 and "Registered" in proc.stdout, proc.stdout[-3000:]
