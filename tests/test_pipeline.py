"""`tunesmith run` skips what has not changed, redoes what has, and honours --force."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from tests.evaluate.test_eval_stage import SCHEMA, _rows


def _run(config, *args):
    proc = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli", "run", str(config), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def test_run_skips_unchanged_stages(tmp_path, tiny_model_dir):
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    config = tmp_path / "tunesmith.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "base_model": str(tiny_model_dir),
                "output_dir": "out",
                "data": {"datasets": [{"path": "d.jsonl"}], "max_length": 64, "dedup": "none"},
                "train": {
                    "max_steps": 2,
                    "micro_batch_size": 2,
                    "learning_rate": 1e-2,
                    "mlflow": False,
                    "bf16": False,
                    "eval_steps": 2,
                    "save_steps": 2,
                    "early_stopping_patience": None,
                },
                "eval": {
                    "json_schema": "schema.json",
                    "max_new_tokens": 8,
                    "batch_size": 16,
                    "few_shot": 0,
                    "regression_suite": None,
                    "safety_suite": None,
                },
                "gate": {"task_metric_min": -1, "format_compliance_min": -1},
            }
        )
    )
    first = _run(config)
    assert "Training (sft, lora)" in first and "Registered" in first
    summary = first[first.index("tunesmith run: summary") :]  # one panel at the end, read back from the artefacts
    for line in ("data", "training", "chosen", "field accuracy", "gates", "time", "registered", "serve it"):
        assert f"│ {line}" in summary, line
    assert "validation loss" in summary and "v1" in summary
    flat = " ".join(line.strip("│ ") for line in summary.splitlines())  # the panel wraps long lines
    assert f"tunesmith registry promote {config} 1 --to production && tunesmith serve {config}" in flat
    state = json.loads((tmp_path / "out" / "run_state.json").read_text())
    assert all(state[stage]["seconds"] > 0 for stage in ("data", "train", "eval", "register"))
    assert sum(state[stage]["seconds"] for stage in ("data", "train", "eval", "register")) < 600
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


def _tiny_project(folder, model_dir):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    (folder / "schema.json").write_text(json.dumps(SCHEMA))
    config = folder / "tunesmith.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "base_model": str(model_dir),
                "output_dir": "out",
                "seed": 3,
                "registry": {"name": "tiny"},
                "data": {"datasets": [{"path": "d.jsonl"}], "max_length": 64, "dedup": "none", "replay": False},
                "train": {
                    "max_steps": 2,
                    "micro_batch_size": 2,
                    "learning_rate": 1e-2,
                    "mlflow": False,
                    "precision": "fp32",
                    "eval_steps": 2,
                    "save_steps": 2,
                    "early_stopping_patience": None,
                },
                "eval": {
                    "json_schema": "schema.json",
                    "max_new_tokens": 8,
                    "batch_size": 16,
                    "few_shot": 0,
                    "regression_suite": None,
                    "safety_suite": None,
                },
                "gate": {"task_metric_min": -1, "format_compliance_min": -1},
            }
        )
    )
    return config


def test_python_and_the_command_line_run_the_same_pipeline(tmp_path, tiny_model_dir, monkeypatch):
    """`tunesmith.run()` from Python and `tunesmith run` from the shell: the same stages, fingerprints, gates
    and registered version; the Python call's events name every stage it ran. The Python call evaluates in a
    fresh process (`eval.fresh_process: true`; a tiny model's `auto` evaluates in place, as the shell's does),
    with the same verdicts, and the setting is not part of the fingerprint."""
    import tunesmith
    from tunesmith.evaluate import fresh

    shell = _tiny_project(tmp_path / "shell", tiny_model_dir)
    _run(shell)
    events, children = [], []
    monkeypatch.setattr(fresh, "run_eval_fresh", lambda cfg, real=fresh.run_eval_fresh: children.append(1) or real(cfg))
    python = _tiny_project(tmp_path / "python", tiny_model_dir)
    result = tunesmith.run(python, ["eval.fresh_process=true"], on_event=events.append)
    assert children == [1]
    assert result.passed and result.registered.version == 1 and result.ran == ["data", "train", "eval", "register"]
    states = [json.loads((p.parent / "out" / "run_state.json").read_text()) for p in (shell, python)]
    for stage in ("train", "eval", "register"):  # the data fingerprint names its folder's files: compared apart
        assert states[0][stage].keys() == states[1][stage].keys()
    assert states[0]["register"]["version"] == states[1]["register"]["version"] == 1
    gates = [json.loads((p.parent / "out" / "eval" / "gates.json").read_text()) for p in (shell, python)]
    verdicts = [[(g["name"], g["passed"]) for g in v["gates"] if g["name"] != "latency vs base"] for v in gates]
    assert verdicts[0] == verdicts[1] and gates[0]["passed"] and gates[1]["passed"]  # latency: timing, a warning
    kinds = [e.kind for e in events]
    assert kinds[0] == "plan" and {
        "checked",
        "split",
        "prepared",
        "fit",
        "trained",
        "evaluated",
        "gates",
        "registered",
    } <= set(kinds)
    again = tunesmith.run(python)  # nothing changed: everything skipped, the same version
    assert again.skipped == ["data", "train", "eval", "register"] and again.registered.version == 1


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


def _fake_judge():
    """An OpenAI-compatible endpoint on localhost that prefers the reply starting like "yes", recording its verdicts."""
    import re
    import threading

    import uvicorn
    from fastapi import FastAPI

    app, seen = FastAPI(), []

    @app.post("/v1/chat/completions")
    def complete(body: dict) -> dict:
        text = body["messages"][-1]["content"]
        if "Reply A:" not in text:  # the safety judge's question (refusal probes of the suites)
            return {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "SAFE"}}],
            }
        a, b = re.search(r"Reply A:\n(.*)\n\nReply B:\n(.*)\n\nBetter", text, re.S).groups()
        yes_a, yes_b = a.startswith("y"), b.startswith("y")  # nearer "yes" (a tiny model spells it badly)
        verdict = "A" if yes_a and not yes_b else "B" if yes_b and not yes_a else "TIE"
        seen.append(verdict)
        return {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": verdict}}],
        }

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        pass
    port = server.servers[0].sockets[0].getsockname()[1]
    return f"http://127.0.0.1:{port}/v1", seen, server


def test_a_preference_only_project_runs_through_gates_into_the_registry(tmp_path, tiny_model_dir):
    from tests.train.helpers import preference_rows

    judge_url, verdicts, server = _fake_judge()

    (tmp_path / "prefs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in preference_rows(60)))
    config = tmp_path / "tunesmith.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "base_model": str(tiny_model_dir),
                "output_dir": "out",
                "data": {"datasets": [{"path": "prefs.jsonl"}], "max_length": 64, "dedup": "none", "test_size": 0.2},
                "train": {
                    "method": "dpo",
                    "adapter": "none",
                    "max_steps": 30,
                    "micro_batch_size": 4,
                    "gradient_accumulation_steps": 1,
                    "learning_rate": 2e-3,
                    "dpo_beta": 0.1,
                    "mlflow": False,
                    "precision": "fp32",
                    "eval_steps": 10,
                    "save_steps": 10,
                    "warmup_ratio": 0.0,
                    "early_stopping_patience": None,
                },
                "eval": {
                    "suite_max_new_tokens": 8,
                    "max_new_tokens": 8,
                    "batch_size": 32,
                    "safety_suite": None,  # a random
                    "judge": {"base_url": judge_url, "model": "fake-judge"},
                },
            }
        )
    )  # model has no safety to keep
    output = _run(config)
    assert "Training (dpo, none)" in output and "Registered" in output and "v1" in output
    metrics = json.loads((tmp_path / "out" / "eval" / "metrics.json").read_text())
    assert metrics["task"] == "preference" and metrics["test_examples"] == 12
    base, tuned = (metrics["models"][k] for k in ("base", "fine_tuned"))
    assert tuned["task_metric_name"] == "preference_accuracy" and tuned["pairs"] == 12
    # DPO moved the margin towards `chosen` on held-out pairs: the implicit reward prefers it on every pair
    assert tuned["preference_accuracy"]["mean"] == 1.0 and tuned["reward_accuracy"]["mean"] == 1.0
    assert tuned["margin"]["mean"] > base["margin"]["mean"]
    assert metrics["comparisons"]["fine_tuned_vs_base"]["mcnemar_p"] < 0.01 and set(metrics["suites"]) == {"regression"}
    rows = [
        json.loads(x) for x in (tmp_path / "out" / "eval" / "predictions_fine_tuned.jsonl").read_text().splitlines()
    ]
    assert {"chosen", "rejected", "margin", "preference_accuracy"} <= set(rows[0]) and len(rows) == 12
    card = next((tmp_path / "out" / "registry").glob("*-v1.md")).read_text()
    assert "| preference_accuracy | 0.000" in card and "| reward_accuracy |" in card
    # the judge saw both models' answers to every held-out prompt, the fine-tuned one in both positions
    server.should_exit = True
    wins = tuned["win_rate_vs_base"]
    assert wins["wins"] + wins["ties"] + wins["losses"] == 12 == len(verdicts)
    assert wins["mean"] > 0.5 and {"A", "B"} <= set(verdicts)


def test_evaluation_moves_to_a_fresh_process_for_models_of_100m_parameters(tmp_path, tiny_model_dir):
    from tunesmith.config import load_config
    from tunesmith.pipeline import _fresh_process

    tiny = _tiny_project(tmp_path / "tiny", tiny_model_dir)
    assert not _fresh_process(load_config(tiny))  # seconds of evaluation: the imports would not pay
    assert _fresh_process(load_config(tiny, ["eval.fresh_process=true"]))
    smollm2 = tmp_path / "smollm2"  # SmolLM2-135M's shape: 134.5M parameters
    smollm2.mkdir()
    (smollm2 / "config.json").write_text(
        json.dumps(
            {
                "model_type": "llama",
                "hidden_size": 576,
                "intermediate_size": 1536,
                "num_hidden_layers": 30,
                "num_attention_heads": 9,
                "num_key_value_heads": 3,
                "vocab_size": 49152,
                "tie_word_embeddings": True,
            }
        )
    )
    assert _fresh_process(load_config(tiny, [f"base_model={smollm2}"]))
    assert not _fresh_process(load_config(tiny, [f"base_model={smollm2}", "eval.fresh_process=false"]))
