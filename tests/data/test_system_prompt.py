"""`data.system_prompt: auto`: a label task whose records bring no system prompt gets a classifier prompt naming
its labels, used alike in training, evaluation and serving, so the fine-tune can tell its task from plain chat."""

from __future__ import annotations

import json

import httpx
import pyarrow.parquet as pq
import yaml

from tests.conftest import chat
from tunesmith.config import load_config
from tunesmith.data.packing import window_records
from tunesmith.data.records import Conversation
from tunesmith.data.stage import AUTO_PROMPT, auto_system_prompt, system_prompt_for


def _labelled(n: int = 40) -> list[dict]:
    topics = ["billing", "shipping", "account"]
    return [
        {"messages": chat(f"Question {i}: something about my {topics[i % 3]}?", topics[i % 3]), "topic": topics[i % 3]}
        for i in range(n)
    ]


def test_auto_names_the_labels_only_for_a_label_task_without_a_prompt():
    def conversations(rows):
        return [Conversation(r["messages"]) for r in rows]

    prompt = auto_system_prompt(conversations(_labelled()))
    assert prompt == AUTO_PROMPT.format(labels="account, billing, shipping")
    with_prompt = [{"messages": chat("q", "billing", system="Sort the tickets.")}] + _labelled()
    assert auto_system_prompt(conversations(with_prompt)) is None  # the records bring one
    free_text = [{"messages": chat(f"Tell me about {i}.", f"A long, different answer number {i}.")} for i in range(20)]
    assert auto_system_prompt(conversations(free_text)) is None  # not a label task
    assert system_prompt_for(load_config(None, ["data.system_prompt=null"]), conversations(_labelled())) is None
    assert system_prompt_for(load_config(None, ["data.system_prompt=Be brief."]), []) == "Be brief."


def _project(tmp_path, model_dir):
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _labelled(60)))
    config = tmp_path / "tunesmith.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "base_model": str(model_dir),
                "output_dir": "out",
                "registry": {"name": "topics"},
                "data": {"datasets": [{"path": "d.jsonl"}], "label_field": "topic", "max_length": 256, "replay": False},
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
                    "max_new_tokens": 4,
                    "few_shot": 2,
                    "regression_suite": None,
                    "safety_suite": None,
                    "semantic_similarity": False,
                },
                "gate": {"task_metric_min": -1, "format_compliance_min": -1},
                "serve": {"log_texts": True, "redact_pii": False, "jobs": {"enabled": False}},
            }
        )
    )
    return config


def test_the_auto_prompt_is_trained_evaluated_registered_and_served(tmp_path, tiny_model_dir, tiny_tok):
    import tunesmith
    from tunesmith.registry import store
    from tunesmith.serve.stage import build_app, start_in_thread

    config = _project(tmp_path, tiny_model_dir)
    result = tunesmith.run(config)
    assert result.passed and result.registered.version == 1
    cfg = load_config(config)
    expected = AUTO_PROMPT.format(labels="account, billing, shipping")
    prepared = json.loads((cfg.output_path / "data" / "prepare.json").read_text())
    assert prepared["system_prompt"] == expected
    windows = pq.read_table(cfg.output_path / "data" / "prepared" / "train.parquet").to_pylist()
    texts = [tiny_tok.decode(r["input_ids"]) for w in windows for r in window_records(w)]
    assert texts and all(expected in t for t in texts)  # every training record, in the window
    predictions = [
        json.loads(x) for x in (cfg.output_path / "eval" / "predictions_base.jsonl").read_text().splitlines()
    ]
    assert all(p["prompt"][0] == {"role": "system", "content": expected} for p in predictions)
    shots = [json.loads(x) for x in (cfg.output_path / "eval" / "predictions_few_shot.jsonl").read_text().splitlines()]
    assert all(p["prompt"][0]["content"] == expected and len(p["prompt"]) == 6 for p in shots)  # prompt, 2 shots, ask
    version = store.client(cfg).get_model_version("topics", "1")
    assert version.tags["system_prompt"] == expected
    store.promote(cfg, "1", "production")
    running = start_in_thread(build_app(load_config(config)))
    try:
        for messages in (
            [{"role": "user", "content": "Question 99: my parcel?"}],
            [{"role": "system", "content": "Answer freely."}, {"role": "user", "content": "Hi"}],
        ):
            answer = httpx.post(
                f"{running.url}/v1/chat/completions",
                timeout=60,
                json={"model": "topics", "messages": messages, "max_tokens": 2},
            )
            assert answer.status_code == 200, answer.text
        prompts = [r["prompt"] for r in running.app.state.server.log.rows()]
        bare = next(p for p in prompts if "Question 99" in p)
        own = next(p for p in prompts if "Answer freely." in p)
        assert expected in bare and expected not in own  # added only where the request brought no system prompt
    finally:
        running.stop()
