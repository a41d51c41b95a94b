"""The data stage through the CLI on a tiny model: check, split, prepare, preview, redaction, leakage."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import yaml
from typer.testing import CliRunner

from tests.conftest import chat
from tunesmith.cli import app

runner = CliRunner()


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _project(tmp_path: Path, tiny_model_dir: Path, **data) -> Path:
    topics = ["billing", "shipping", "account"]
    rows = [
        {
            "messages": chat(f"Question {i} about {topics[i % 3]} number {i * 7}", f"Answer {i} for {topics[i % 3]}"),
            "topic": topics[i % 3],
        }
        for i in range(60)
    ]
    rows.append(dict(rows[0]))  # an exact duplicate
    rows.append({"messages": chat("Mail me at jane@example.com about my order", "Sure.")})
    (tmp_path / "data").mkdir()
    _write_jsonl(tmp_path / "data" / "pool.jsonl", rows)
    cfg = {
        "base_model": str(tiny_model_dir),
        "output_dir": "out",
        "data": {"datasets": [{"path": "data/pool.jsonl"}], "label_field": "topic", "max_length": 128, **data},
    }
    path = tmp_path / "tunesmith.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_split_and_prepare_write_every_artefact(tmp_path, tiny_model_dir):
    config = _project(tmp_path, tiny_model_dir)
    result = runner.invoke(app, ["data", "split", str(config)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / "data"
    summary = json.loads((out / "split.json").read_text())
    assert summary["dropped_exact_duplicates"] == 1 and summary["leaking_pairs"] == 0
    counts = {k: v["records"] for k, v in summary["splits"].items()}
    assert counts == {"train": 49, "validation": 6, "test": 6}
    assert summary["splits"]["test"]["labels"] == {"billing": 2, "shipping": 2, "account": 2}
    for name in ("train", "validation", "test"):
        assert sum(1 for _ in open(out / f"{name}.jsonl")) == counts[name]
    report = json.loads((out / "check.json").read_text())
    assert report["quality"]["length"]["measured"] == 62
    assert report["quality"]["pii"][0]["kind"] == "email"
    assert (out / "lengths.png").stat().st_size > 1000 and "# Data check" in (out / "report.md").read_text()
    assert yaml.safe_load((out / "config.yaml").read_text())["data"]["max_length"] == 128

    result = runner.invoke(app, ["data", "prepare", str(config)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out / "prepared" / "train.parquet").to_pylist()
    replay = json.loads((out / "prepare.json").read_text())["replay"]  # general answers and refusals mixed in
    assert sum(len(w["seq_lengths"]) for w in table) == 49 + replay["records"] + replay["refusals"]["records"]
    assert all(len(w["input_ids"]) <= 128 and len(w["labels"]) == len(w["input_ids"]) for w in table)
    assert json.loads((out / "prepare.json").read_text())["train"]["packing_efficiency"] > 0.7


def test_same_seed_same_files(tmp_path, tiny_model_dir):
    config = _project(tmp_path, tiny_model_dir)
    runner.invoke(app, ["data", "split", str(config), "--no-lengths"])
    first = json.loads((tmp_path / "out" / "data" / "split.json").read_text())
    runner.invoke(app, ["data", "split", str(config), "--no-lengths"])
    again = json.loads((tmp_path / "out" / "data" / "split.json").read_text())
    assert [s["sha256"] for s in first["splits"].values()] == [s["sha256"] for s in again["splits"].values()]
    runner.invoke(app, ["data", "split", str(config), "--no-lengths", "seed=7"])
    other = json.loads((tmp_path / "out" / "data" / "split.json").read_text())
    assert first["splits"]["test"]["sha256"] != other["splits"]["test"]["sha256"]


def test_redaction_writes_redacted_splits(tmp_path, tiny_model_dir):
    config = _project(tmp_path, tiny_model_dir, redact_pii=True)
    assert runner.invoke(app, ["data", "split", str(config), "--no-lengths"]).exit_code == 0
    out = tmp_path / "out" / "data"
    everything = "".join((out / f"{n}.jsonl").read_text() for n in ("train", "validation", "test"))
    assert "jane@example.com" not in everything and "[EMAIL]" in everything
    assert "[EMAIL]" in (out / "redacted.jsonl").read_text()


def test_leakage_between_given_train_and_test_files(tmp_path):
    same = {"messages": chat("What is the refund policy for annual plans?", "Refunds within 30 days.")}
    _write_jsonl(tmp_path / "train.jsonl", [same, {"messages": chat("Other question", "Other answer")}])
    _write_jsonl(tmp_path / "test.jsonl", [{"messages": chat("Unrelated", "Fine")}, same])
    result = runner.invoke(
        app,
        [
            "data",
            "check",
            str(tmp_path / "train.jsonl"),
            str(tmp_path / "test.jsonl"),
            "--json",
            "--no-lengths",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    report = json.loads(result.stdout)
    leak = report["quality"]["leakage"]
    assert leak["checked"] and leak["pairs"] == 1
    assert leak["examples"][0]["line"] == 2 and leak["examples"][0]["split"] == "test"


def test_preview_marks_trained_tokens(tmp_path, tiny_model_dir):
    _write_jsonl(tmp_path / "d.jsonl", [{"messages": chat("Tell me a secret word", "Pineapple")}])
    result = runner.invoke(app, ["data", "preview", str(tmp_path / "d.jsonl"), "--base-model", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    assert "Pineapple" in result.output and "trained" in result.output


def test_train_marked_files_stay_in_training_beside_unmarked_ones(tmp_path, tiny_model_dir):
    config = _project(tmp_path, tiny_model_dir)
    extra = [{"messages": chat(f"General question {i}?", f"General answer {i}.")} for i in range(20)]
    _write_jsonl(tmp_path / "data" / "replay.jsonl", extra)
    raw = yaml.safe_load(config.read_text())
    raw["data"]["datasets"].append({"path": "data/replay.jsonl", "split": "train"})
    config.write_text(yaml.safe_dump(raw))
    assert runner.invoke(app, ["data", "split", str(config)]).exit_code == 0
    out = tmp_path / "out" / "data"
    counts = {k: v["records"] for k, v in json.loads((out / "split.json").read_text())["splits"].items()}
    assert counts == {"train": 69, "validation": 6, "test": 6}  # as before, plus all 20 replay records in train
    for name in ("validation", "test"):
        assert "General question" not in (out / f"{name}.jsonl").read_text()
