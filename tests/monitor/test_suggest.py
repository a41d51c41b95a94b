"""`tunesmith data suggest`: mislabelled training records head list (a); list (b) takes inputs unlike the
training set over near-copies of it, least certain first, and writes records ready for labelling."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.train.helpers import make_project
from tunesmith.cli import app
from tunesmith.config import load_config
from tunesmith.train.stage import run_train

WRONG = {5, 17, 29}  # deliberately mislabelled


def _rows() -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"Question {i}: is the order ready?"},
                {"role": "assistant", "content": "The quick brown fox." if i in WRONG else f"Order {i} is ready."},
            ]
        }
        for i in range(40)
    ]


def test_suggest_ranks_mislabelled_records_first_and_new_inputs_over_near_copies(tmp_path, tiny_model_dir):
    path = make_project(tmp_path, tiny_model_dir, _rows(), max_steps=40, eval_steps=20, save_steps=20)
    cfg = load_config(path)
    run_train(cfg)
    near = [{"prompt": f"Question {i}: is the order ready?"} for i in (50, 51, 52)]
    new = [
        {"prompt": "What is the capital of France? Paris."},
        {"prompt": "Hello! How can I help you today?"},
        {"prompt": "0123456789 + - * / = ( ) [ ] { } : , . ! ?"},
    ]
    (tmp_path / "inputs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in near + new))
    result = CliRunner().invoke(
        app,
        [
            "data",
            "suggest",
            str(path),
            "--inputs",
            str(tmp_path / "inputs.jsonl"),
            "--out",
            str(tmp_path / "next.jsonl"),
            "--top",
            "5",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "next.jsonl").read_text().splitlines()]
    hard = [r for r in rows if r["meta"]["suggest"] == "hard_training_record"]
    in_train = {r["messages"][0]["content"] for r in hard}
    wrong_in_split = {f"Question {i}: is the order ready?" for i in WRONG} & {
        json.loads(line)["messages"][0]["content"]
        for line in (cfg.output_path / "data" / "train.jsonl").read_text().splitlines()
    }
    assert wrong_in_split and {r["messages"][0]["content"] for r in hard[: len(wrong_in_split)]} == wrong_in_split
    assert in_train >= wrong_in_split
    losses = [r["meta"]["loss"] for r in hard]
    assert losses == sorted(losses, reverse=True)
    uncertain = [r for r in rows if r["meta"]["suggest"] == "uncertain_input"]
    asked = [r["messages"][0]["content"] for r in uncertain]
    assert set(asked) == {p["prompt"] for p in new}  # the near-copies are covered by the training data
    certainty = [r["meta"]["mean_logprob"] for r in uncertain]
    assert certainty == sorted(certainty)  # least certain first
    assert all(r["messages"][-1]["role"] == "assistant" for r in rows)  # ready to label: the answer to correct
    assert "Which examples next" in (tmp_path / "next.md").read_text()
