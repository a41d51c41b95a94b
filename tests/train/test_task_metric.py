"""The validation task metric read off the validation-loss pass (train/task_metric.py): field spans,
scoring, the identity with greedy decoding on a real forward pass, and early stopping on it."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import yaml

from tests.train.helpers import make_project
from tunesmith.config import load_config
from tunesmith.errors import ConfigError
from tunesmith.train.task_metric import TeacherForcedScore, field_spans

ANSWER = '{"category": "billing", "priority": "high", "tags": ["a", "b"], "summary": "refund please"}'


def test_field_spans_point_at_each_value_as_written():
    text = ANSWER + "<|im_end|>\n"
    spans = field_spans(text)
    assert {k: text[a:b] for k, (a, b) in spans.items()} == {
        "category": '"billing"',
        "priority": '"high"',
        "tags": '["a", "b"]',
        "summary": '"refund please"',
    }
    assert field_spans(" {}") == {}
    assert field_spans("billing") is None and field_spans('{"a": 1,}') is None and field_spans('{"a" 1}') is None


def _score(tok, fields, wrong_in=(), text=ANSWER, gap=False):
    """Score `text` as one trained answer (two with `gap`) whose argmax is right except on the tokens
    overlapping the substrings `wrong_in`."""
    ids = tok(text + "<|im_end|>", add_special_tokens=False)["input_ids"]
    targets = torch.tensor([ids])
    predicted = targets.clone()
    for part in wrong_in:
        start = text.index(part)
        for i in range(len(ids)):
            begin, end = len(tok.decode(ids[:i])), len(tok.decode(ids[: i + 1]))
            if begin < start + len(part) and end > start:
                predicted[0, i] = (ids[i] + 1) % len(tok)
    positions = torch.arange(len(ids)) + 7
    if gap:  # a second answer: the same tokens after a break in positions
        positions = torch.cat([positions, positions + len(ids) + 5])
        targets, predicted = targets.repeat(1, 2), predicted.repeat(1, 2)
    score = TeacherForcedScore(tok, fields)
    score.add(positions, targets, predicted, -100)
    return score


def test_a_field_counts_wrong_only_when_its_own_value_is(tiny_tok):
    fields = ["category", "priority"]
    assert _score(tiny_tok, fields).pop() == 1.0
    assert _score(tiny_tok, fields, ["high"]).pop() == 0.5
    assert _score(tiny_tok, fields, ["billing", "high"]).pop() == 0.0
    assert _score(tiny_tok, fields, ["refund"]).pop() == 1.0  # the free-text summary is not scored
    assert _score(tiny_tok, [], ["refund"]).pop() == 0.0  # scored whole: any wrong token
    assert _score(tiny_tok, [], []).pop() == 1.0
    assert _score(tiny_tok, ["category"], text="not json").pop() == 1.0  # no such field: the answer whole
    two = _score(tiny_tok, fields, ["high"], gap=True)
    assert two.scores == [0.5, 0.5] and two.pop() == 0.5 and two.pop() is None


def test_whole_answers_score_as_greedy_decoding_reproduces_them(tiny_model_dir, tiny_tok):
    """An answer is right, teacher-forced, exactly when greedy decoding writes it: the model's own greedy
    continuation scores 1; the same with one token changed scores 0."""
    from tunesmith.models import load_model
    from tunesmith.train.sft import trained_positions_loss

    model = load_model(str(tiny_model_dir), dtype=torch.float32, device="cpu").eval()
    prompt = tiny_tok("What is the capital of France?", add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(prompt, max_new_tokens=10, do_sample=False, min_new_tokens=10)
    for change, expected in ((False, 1.0), (True, 0.0)):
        ids = out.clone()
        if change:
            ids[0, prompt.shape[1] + 4] = (ids[0, prompt.shape[1] + 4] + 1) % len(tiny_tok)
        labels = ids.clone()
        labels[0, : prompt.shape[1]] = -100
        score = TeacherForcedScore(tiny_tok, [])
        with torch.no_grad():
            trained_positions_loss(
                model,
                {"input_ids": ids, "labels": labels, "position_ids": torch.arange(ids.shape[1])[None]},
                answers=score,
            )
        assert score.pop() == expected


def _rows(n: int = 48) -> list[dict]:  # one label, learnt in a few steps; a note that is not scored
    return [
        {
            "messages": [
                {"role": "user", "content": f"Is {i} a number?"},
                {"role": "assistant", "content": json.dumps({"kind": "yes", "note": str(i)})},
            ]
        }
        for i in range(n)
    ]


def test_early_stopping_and_the_kept_checkpoint_follow_the_task_metric(tmp_path, tiny_model_dir):
    """The label is learnt well before the loss stops falling: training stops `patience` evaluations after
    the task metric's best and keeps that checkpoint, though a later one has the lower validation loss."""
    from tunesmith.train.stage import run_train

    path = make_project(
        tmp_path,
        tiny_model_dir,
        _rows(),
        max_steps=60,
        eval_steps=2,
        save_steps=2,
        learning_rate=2e-2,
        adapter="none",
        early_stopping_metric="task",
        early_stopping_patience=3,
    )
    raw = yaml.safe_load(path.read_text())
    raw["eval"] = {"fields": ["kind"]}
    path.write_text(yaml.safe_dump(raw))
    result = run_train(load_config(path))
    with open(result.run_dir / "metrics.csv") as fh:
        evals = [
            (int(r["step"]), float(r["eval_loss"]), float(r["eval_task_metric"]))
            for r in csv.DictReader(fh)
            if r["eval_loss"]
        ]
    scores = [s for _, _, s in evals]
    assert scores[0] == 0.0 and max(scores) == 1.0, scores
    meta = result.metadata
    kept = int(meta["best_checkpoint"].rsplit("-", 1)[1])
    assert kept == next(step for step, _, s in evals if s == 1.0)
    assert meta["best_metric"] == "task" and meta["eval_task_metric_best"] == 1.0
    assert meta["stopped_early"] and meta["steps"] == kept + 3 * 2
    assert min(evals, key=lambda e: e[1])[0] > kept  # the loss would have kept a later checkpoint


def test_the_task_metric_is_for_sft_only():
    with pytest.raises(ConfigError, match="sft only"):
        load_config(None, ["train.method=dpo", "train.early_stopping_metric=task"])
