"""Synthetic data from a teacher at an OpenAI-compatible endpoint: validated, de-duplicated, tagged, capped."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml
from fastapi import FastAPI, Request  # module level: FastAPI resolves the string annotations here

from tunesmith.config import load_config
from tunesmith.serve.stage import build_app, start_in_thread

SYSTEM = "Turn tickets into JSON with keys category and summary."


def _seed_file(path, n=4):
    rows = [
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"My invoice number {i} for plan {i * 7} shows the wrong amount."},
                {
                    "role": "assistant",
                    "content": json.dumps({"category": "billing", "summary": f"Wrong amount on invoice {i}"}),
                },
            ]
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _teacher():
    """A stand-in teacher: a fresh example per request seed, sometimes a copy of the seed, sometimes prose."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        example = json.loads(body["messages"][-1]["content"])
        n = body["seed"]
        if n % 3 == 1:
            content = json.dumps(example)  # repeats the seed: must be dropped as a duplicate
        elif n % 3 == 2:
            content = "Sure! Here is another example of a ticket."  # not JSON: rejected
        else:
            words = ["router", "laptop", "printer", "phone", "tablet", "camera", "watch", "speaker"]
            thing = words[n % len(words)]
            content = json.dumps(
                {
                    "user": f"The {thing} I bought in week {n} never shipped, order {n * 13} is missing.",
                    "assistant": json.dumps({"category": "shipping", "summary": f"{thing} order {n * 13} missing"}),
                }
            )
        return {
            "id": "t",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        }

    return start_in_thread(app)


def _synth(tmp_path, base_url, model, *extra):
    out = tmp_path / "synthetic.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tunesmith.cli",
            "data",
            "synth",
            str(_seed_file(tmp_path / "seed.jsonl")),
            "--base-url",
            base_url,
            "--model",
            model,
            "--out",
            str(out),
            *extra,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout, [json.loads(line) for line in out.read_text().splitlines()]


def test_synth_keeps_valid_new_examples_with_provenance(tmp_path):
    teacher = _teacher()
    try:
        stdout, kept = _synth(tmp_path, f"{teacher.url}/v1", "teacher-x", "--per-seed", "3", "--max-share", "0.4")
    finally:
        teacher.server.should_exit = True
        teacher.thread.join(5)
    assert "asked 12" in stdout and "rejected 4: teacher reply is not a JSON object" in stdout
    assert "rejected 4: exact duplicate" in stdout
    assert len(kept) == 2 and "rejected 2: over the synthetic share cap (40%)" in stdout  # 4 fresh; 2/(4+2) <= 40%
    for r in kept:
        assert r["messages"][0] == {"role": "system", "content": SYSTEM}
        assert set(json.loads(r["messages"][-1]["content"])) == {"category", "summary"}
        assert r["meta"]["synthetic"] is True and r["meta"]["teacher"] == "teacher-x" and r["meta"]["seed_line"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tunesmith.cli",
            "data",
            "check",
            str(tmp_path / "synthetic.jsonl"),
            "--json",
            "--no-lengths",
            "--out",
            str(tmp_path / "check"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and json.loads(proc.stdout)["records"]["rejected"] == 0


def test_synth_against_tunesmiths_own_server(tmp_path, tiny_model_dir):
    config = tmp_path / "serve.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "base_model": str(tiny_model_dir),
                "output_dir": "out",
                "data": {"datasets": [{"path": "d.jsonl"}]},
                "train": {"bf16": False},
            }
        )
    )
    running = start_in_thread(build_app(load_config(config)))
    try:
        stdout, kept = _synth(tmp_path, f"{running.url}/v1", "base", "--per-seed", "1")
        served = [r for r in running.app.state.server.log.rows() if r["status"] == 200]
    finally:
        running.stop()
    assert len(served) == 4  # one request per seed reached the server and was answered
    # the random tiny model cannot write the JSON asked for: every answer is rejected, with the reason
    assert "asked 4" in stdout and kept == [] and "not a JSON object" in stdout
