"""Feedback through the server's endpoint, exported as training data that `data check` accepts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import httpx
import yaml

from tunesmith.config import load_config
from tunesmith.monitor.feedback import export_feedback
from tunesmith.monitor.stage import write_monitor_report
from tunesmith.serve.stage import build_app, start_in_thread


def test_feedback_round_trips_into_data_check(tmp_path, tiny_model_dir):
    config = tmp_path / "tunesmith.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "base_model": str(tiny_model_dir),
                "output_dir": "out",
                "data": {"datasets": [{"path": "d.jsonl"}]},
                "train": {"bf16": False},
                "serve": {"log_texts": True},
            }
        )
    )
    cfg = load_config(config)
    running = start_in_thread(build_app(cfg))
    try:
        ids = []
        for i in range(4):
            answer = httpx.post(
                f"{running.url}/v1/chat/completions",
                json={
                    "model": "base",
                    "max_tokens": 8,
                    "temperature": 1.0,
                    "seed": i,  # sampled: the random model's
                    # greedy answer is whitespace
                    "messages": [
                        {"role": "system", "content": "Be brief."},
                        {"role": "user", "content": f"Question {i}: write to me at me{i}@example.com"},
                    ],
                },
            )
            ids.append(answer.json()["id"])
        feedback = [
            {"id": ids[0], "thumbs": "down", "correction": "A corrected answer."},
            {"id": ids[1], "thumbs": "up"},
            {"id": ids[2], "rating": 1},
            {"id": ids[3], "score": 0.9},
        ]
        for body in feedback:
            assert httpx.post(f"{running.url}/v1/feedback", json=body).status_code == 200
        assert httpx.post(f"{running.url}/v1/feedback", json={"id": "nope", "thumbs": "up"}).status_code == 404
        assert httpx.post(f"{running.url}/v1/feedback", json={"id": ids[0]}).status_code == 400
    finally:
        running.stop()

    result = export_feedback(cfg, tmp_path / "fb.jsonl", tmp_path / "pairs.jsonl")
    assert result["chat_records"] == 3 and result["preference_pairs"] == 1, result
    assert result["skipped"] == {"negative without a correction": 1}
    records = [json.loads(x) for x in (tmp_path / "fb.jsonl").read_text().splitlines()]
    corrected = next(r for r in records if r["meta"]["request_id"] == ids[0])
    assert corrected["messages"][-1] == {"role": "assistant", "content": "A corrected answer."}
    assert corrected["messages"][0]["role"] == "system"
    assert "me0@example.com" not in json.dumps(records)  # logged texts were PII-redacted
    for path in ("fb.jsonl", "pairs.jsonl"):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "tunesmith.cli",
                "data",
                "check",
                str(tmp_path / path),
                "--json",
                "--no-lengths",
                "--out",
                str(tmp_path / f"check-{path}"),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        report = json.loads(proc.stdout)
        assert proc.returncode == 0 and report["records"]["rejected"] == 0, proc.stdout + proc.stderr
    # drift from the logged prompts against the project's splits, with output quality per hour
    from tunesmith.monitor.stage import run_drift

    data = cfg.output_path / "data"
    data.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 20), ("validation", 5)):
        rows = [
            {
                "messages": [
                    {"role": "user", "content": f"Please refund order {i} for my Router X200."},
                    {"role": "assistant", "content": "ok"},
                ]
            }
            for i in range(n)
        ]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    drift = run_drift(cfg)
    assert drift["recent"] == 4 and {"similarity", "length", "output_quality"} <= set(drift)
    assert all(set(q) == {"format_fail", "refused"} for q in drift["output_quality"].values())
    assert (cfg.output_path / "monitor" / "drift.json").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a legend with no visible labels
        md, html = write_monitor_report(cfg)
    assert "Input drift" in md.read_text()
    assert "| base |" in md.read_text() and "__base__" not in md.read_text()  # the display name, not the engine's
    assert "Traffic per version" in md.read_text() and "data:image/png;base64," in html.read_text()
    # cost per 1K requests per version: the report's figure is the one recomputed from the request log
    from tunesmith.serve.requestlog import RequestLog

    log = RequestLog(cfg.output_path / "serve" / "requests.db")
    answered = [r["latency_ms"] / 1000 for r in log.rows() if r["status"] == 200 and not r["shadow"]]
    log.close()
    expected = cfg.cost.serving_usd_per_hour / 3600 * (sum(answered) / len(answered)) * 1000
    row = next(line for line in md.read_text().splitlines() if line.startswith("| base |"))
    assert row.rstrip(" |").endswith(f"${expected:.4f}")
