"""Replay: general conversations mixed into the prepared training windows at a token ratio."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import chat
from tunesmith.cli import app
from tunesmith.config import load_config
from tunesmith.data import replay as replay_mod
from tunesmith.data.packing import window_records
from tunesmith.errors import DataError

runner = CliRunner()
SYSTEM = "Classify the question."


def _project(tmp_path: Path, model_dir: Path, replay: object = None) -> Path:
    rows = [{"messages": chat(f"Question {i} about topic {i % 3}?", f"topic{i % 3}")} for i in range(60)]
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = {"datasets": [{"path": "data/pool.jsonl"}], "max_length": 128, "system_prompt": SYSTEM}
    if replay is not None:
        data["replay"] = replay
    path = tmp_path / "tunesmith.yaml"
    path.write_text(yaml.safe_dump({"base_model": str(model_dir), "output_dir": "out", "data": data}))
    return path


def _train_windows(tmp_path: Path) -> list[dict]:
    return pq.read_table(tmp_path / "out" / "data" / "prepared" / "train.parquet").to_pylist()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_replay_switch_in_config(tmp_path, tiny_model_dir):
    assert load_config(_project(tmp_path, tiny_model_dir)).data.replay.source == "self"
    assert load_config(_project(tmp_path, tiny_model_dir, replay=False)).data.replay is None
    assert load_config(_project(tmp_path, tiny_model_dir, replay={"ratio": 0.1})).data.replay.ratio == 0.1


def test_self_replay_reaches_the_ratio_is_cached_and_skips_the_system_prompt(
    tmp_path, tiny_model_dir, cache, monkeypatch, tiny_tok
):
    calls = []

    def answer(model, tokenizer, prompts, max_new_tokens):  # the base model's answers, ended or cut off
        calls.append(len(prompts))
        return [
            {
                "id": p["id"],
                "prompt": p["prompt"],
                "answer": f"General answer about {p['prompt']}",
                "stopped": i % 4 != 0,
            }
            for i, p in enumerate(prompts)
        ]

    monkeypatch.setattr(replay_mod, "_answer", answer)
    config = _project(tmp_path, tiny_model_dir, replay={"ratio": 0.2})
    assert runner.invoke(app, ["data", "split", str(config)]).exit_code == 0
    result = runner.invoke(app, ["data", "prepare", str(config)])
    assert result.exit_code == 0, result.output
    assert "replay:" in result.output and "general conversations" in result.output
    info = json.loads((tmp_path / "out" / "data" / "prepare.json").read_text())["replay"]
    assert info["source"] == "self" and 0.18 <= info["ratio"] <= 0.25, info
    assert calls and all(c <= replay_mod.MAX_ROUND for c in calls)
    windows = _train_windows(tmp_path)
    texts = [tiny_tok.decode(r["input_ids"]) for w in windows for r in window_records(w)]
    joined = "\n".join(texts)
    assert joined.count("General answer about") == info["records"] > 0
    # general replay is plain chat: the task's system prompt opens the task's own records and the refusals
    # replayed in the task's context (data/refusals.py), nothing else
    train_records = json.loads((tmp_path / "out" / "data" / "split.json").read_text())["splits"]["train"]["records"]
    assert joined.count(SYSTEM) == train_records + info["refusals"]["in_task_context"]
    # answers cut off by the token limit are never used
    cached = [json.loads(line) for line in Path(info["cache"]).read_text().splitlines()]
    cut = {r["answer"] for r in cached if not r["stopped"]}
    assert cut and not any(c in joined for c in cut)
    provenance = json.loads(Path(info["cache"]).with_suffix(".provenance.json").read_text())
    assert provenance["base_model"] == str(tiny_model_dir) and provenance["decoding"]["greedy"]
    # a second prepare reads the cache: nothing is generated again
    calls.clear()
    assert runner.invoke(app, ["data", "prepare", str(config)]).exit_code == 0
    assert (
        calls == []
        and json.loads((tmp_path / "out" / "data" / "prepare.json").read_text())["replay"]["generated_now"] == 0
    )


def test_replay_carries_its_ratio_of_the_loss_however_long_its_answers(tmp_path, tiny_model_dir, cache, monkeypatch):
    """One-word labels against long replay answers: unweighted, replay would hold most trained tokens;
    balanced, the replay tokens' weights sum to the ratio of all trained tokens' weights, mean weight 1."""

    def answer(model, tokenizer, prompts, max_new_tokens):
        return [
            {"id": p["id"], "prompt": p["prompt"], "answer": "A long general answer " * 6, "stopped": True}
            for p in prompts
        ]

    monkeypatch.setattr(replay_mod, "_answer", answer)
    config = _project(tmp_path, tiny_model_dir, replay={"ratio": 0.2})
    assert runner.invoke(app, ["data", "split", str(config)]).exit_code == 0
    assert runner.invoke(app, ["data", "prepare", str(config)]).exit_code == 0
    weights = json.loads((tmp_path / "out" / "data" / "prepare.json").read_text())["replay"]["loss_weights"]
    assert weights["replay"] < 1 < weights["task"]
    trained = [
        (w, label)
        for window in _train_windows(tmp_path)
        for w, label in zip(window["loss_weights"], window["labels"])
        if label != -100
    ]
    replay_weight = sum(w for w, _ in trained if w == pytest.approx(weights["replay"]))
    replay_tokens = sum(1 for w, _ in trained if w == pytest.approx(weights["replay"]))
    assert replay_tokens / len(trained) > 0.5  # the imbalance balancing corrects
    assert replay_weight / sum(w for w, _ in trained) == pytest.approx(0.2, abs=0.03)
    assert sum(w for w, _ in trained) / len(trained) == pytest.approx(1.0, abs=1e-3)
    # off: no weights at all
    config.write_text(config.read_text().replace("ratio: 0.2", "ratio: 0.2\n    balance_loss: false"))
    assert runner.invoke(app, ["data", "prepare", str(config)]).exit_code == 0
    assert "loss_weights" not in _train_windows(tmp_path)[0]


def test_replay_rounds_are_sized_from_the_need_and_the_yield_so_far():
    """Each round answers the prompts still needed (a fifth more), at the yield so far or, in the first
    round, at half the token limit a prompt; never fewer than ROUND nor more than MAX_ROUND."""
    size = replay_mod._round_size
    # the first round: 6,000 tokens at 64 a prompt, and a fifth more; a small need still gets ROUND
    assert size(6_000, 0, 0, 128) == 113
    assert size(1_000, 0, 0, 128) == replay_mod.ROUND
    assert size(60_000, 0, 0, 128) == replay_mod.MAX_ROUND
    # later: 32 prompts kept 2,400 tokens (75 each); 3,600 more need 48 prompts, and a fifth more
    assert size(6_000, 2_400, 32, 128) == 58
    assert size(4_000, 2_400, 32, 128) == replay_mod.ROUND  # 26 by the yield
    assert size(12_000, 2_400, 32, 128) == replay_mod.MAX_ROUND


def test_a_model_that_ends_no_answer_costs_one_round_and_says_so(tmp_path, tiny_model_dir, cache, monkeypatch):
    calls = []

    def answer(model, tokenizer, prompts, max_new_tokens):
        calls.append(len(prompts))
        return [{"id": p["id"], "prompt": p["prompt"], "answer": "never ends", "stopped": False} for p in prompts]

    monkeypatch.setattr(replay_mod, "_answer", answer)
    config = _project(tmp_path, tiny_model_dir)
    assert runner.invoke(app, ["data", "split", str(config)]).exit_code == 0
    result = runner.invoke(app, ["data", "prepare", str(config)])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1 and calls[0] >= replay_mod.ROUND
    info = json.loads((tmp_path / "out" / "data" / "prepare.json").read_text())["replay"]
    assert info["records"] == 0 and "only 0 of the" in info["short"] and "only 0 of the" in result.output


def test_replay_from_a_file_and_off(tmp_path, tiny_model_dir):
    general = [{"instruction": f"Tell me fact {i}.", "output": f"Fact number {i} is interesting."} for i in range(40)]
    (tmp_path / "general.jsonl").write_text("".join(json.dumps(r) + "\n" for r in general))
    config = _project(tmp_path, tiny_model_dir, replay={"source": "general.jsonl", "ratio": 0.1})
    assert runner.invoke(app, ["data", "split", str(config)]).exit_code == 0
    assert runner.invoke(app, ["data", "prepare", str(config)]).exit_code == 0
    info = json.loads((tmp_path / "out" / "data" / "prepare.json").read_text())["replay"]
    assert info["source"].endswith("general.jsonl") and 0.09 <= info["ratio"] <= 0.14 and "short" not in info
    assert (
        sum(len(w["seq_lengths"]) for w in _train_windows(tmp_path))
        == 48 + info["records"] + info["refusals"]["records"]
    )

    config = _project(tmp_path, tiny_model_dir, replay=False)
    assert runner.invoke(app, ["data", "prepare", str(config)]).exit_code == 0
    assert "replay" not in json.loads((tmp_path / "out" / "data" / "prepare.json").read_text())
    assert sum(len(w["seq_lengths"]) for w in _train_windows(tmp_path)) == 48

    config = _project(tmp_path, tiny_model_dir, replay={"source": "missing.jsonl"})
    result = runner.invoke(app, ["data", "prepare", str(config)])
    assert isinstance(result.exception, DataError) and "missing.jsonl not found" in str(result.exception)


def test_packaged_prompts_never_appear_in_the_regression_suite():
    from tunesmith.evaluate.suites import load_probes, suite_path

    probes = {p.messages[-1]["content"].strip().lower() for p in load_probes(suite_path("default", "regression"))}
    prompts = replay_mod.general_prompts()
    assert len(prompts) >= 250 and len({p["id"] for p in prompts}) == len(prompts)
    assert not [p for p in prompts if p["prompt"].strip().lower() in probes]
