"""Scoring a model's answers against the references: the metrics of one pass, few-shot prompts, task kinds.

Shared by the evaluation stage (evaluate/stage.py) and the previous version's re-scoring
(evaluate/previous.py), so neither imports the other.
"""

from __future__ import annotations

from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.data.records import Conversation, Message
from tunesmith.errors import TunesmithError
from tunesmith.evaluate import metrics as m
from tunesmith.schemas import parse_json, schema_compliance


def few_shot_prompt(messages: list[Message], shots: list[Conversation]) -> list[Message]:
    """The prompt with solved training examples as earlier turns, after any system message."""
    head = [msg for msg in messages[:1] if msg["role"] == "system"]
    turns = [
        {"role": msg["role"], "content": msg["content"]}
        for s in shots
        for msg in s.messages
        if msg["role"] in ("user", "assistant")
    ]
    return head + turns + messages[len(head) :]


def pick_shots(train: list[Conversation], k: int, seed: int) -> list[Conversation]:
    """k training examples, one per label first (so every class is shown), deterministically."""
    import random

    rng = random.Random(seed)
    pool = list(train)
    rng.shuffle(pool)
    chosen, seen = [], set()
    for r in pool:
        label = r.meta.get("label")
        if len(chosen) < k and label not in seen:
            chosen.append(r)
            seen.add(label)
    for r in pool:
        if len(chosen) >= k:
            break
        if r not in chosen:
            chosen.append(r)
    return chosen


def task_kind(cfg: ProjectConfig, references: list[str]) -> str:
    """json with a schema; classification when the answers are few short labels; else generation."""
    if cfg.eval.task != "auto":
        return cfg.eval.task
    if cfg.eval.json_schema:
        return "json"
    labels = {r.strip() for r in references}
    if references and len(labels) <= max(2, len(references) // 2) and all(len(r) <= 40 for r in labels):
        return "classification"
    return "generation"


def label_of(text: str) -> str:
    return text.strip().rstrip(".").strip().lower()


def json_value(text: str, name: str) -> str:
    value = parse_json(text)
    if not isinstance(value, dict) or name not in value:
        return "<missing>"
    return label_of(str(value[name]))


def score(
    outputs: list[str],
    references: list[str],
    schema: dict[str, Any] | None,
    fields: list[str],
    kind: str = "json",
    task_metric: str = "auto",
    semantic: bool = False,
    labels: set[str] | None = None,
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Summary metrics (with bootstrap intervals) and the per-example scores behind them."""
    per: dict[str, list[float]] = {
        "exact_match": m.exact_match(outputs, references),
        "rouge_l": m.rouge_l(outputs, references),
    }
    summary: dict[str, Any] = {"bleu": round(m.bleu(outputs, references), 2)}
    if semantic:
        per["semantic_similarity"] = m.semantic_similarity(outputs, references)
    if schema is not None:
        per["json_valid"] = m.json_validity(outputs)
        per["format_compliance"] = schema_compliance(outputs, schema)
    if kind == "json" and fields:
        by_field = m.field_accuracy(outputs, references, fields)
        for f, values in by_field.items():
            per[f"field:{f}"] = values
        per["field_accuracy"] = [sum(v[i] for v in by_field.values()) / len(fields) for i in range(len(outputs))]
        per["all_fields_correct"] = [float(all(v[i] == 1.0 for v in by_field.values())) for i in range(len(outputs))]
        summary["classification"] = {
            f: m.classification([json_value(o, f) for o in outputs], [json_value(r, f) for r in references])
            for f in fields
        }
    if kind == "classification":
        predicted, expected = [label_of(o) for o in outputs], [label_of(r) for r in references]
        per["accuracy"] = [float(p == e) for p, e in zip(predicted, expected)]
        known = set(expected) | {label_of(x) for x in labels or ()}  # a classifier's format: one of the labels
        per["format_compliance"] = [float(p in known) for p in predicted]
        summary["classification"] = {"label": m.classification(predicted, expected)}
    metric = task_metric
    if metric == "auto":
        metric = {"json": "field_accuracy", "classification": "accuracy"}.get(
            kind, "semantic_similarity" if semantic else "rouge_l"
        )
    if metric not in per:
        raise TunesmithError(
            f"eval.task_metric {metric!r} is not measured for a {kind} task; "
            f"choose one of: {', '.join(sorted(k for k in per if ':' not in k))}"
        )
    per["task_metric"] = per[metric]
    summary["task_metric_name"] = metric
    for name, values in per.items():
        mean, low, high = m.bootstrap_ci(values)
        summary[name] = {"mean": round(mean, 4), "ci95": [round(low, 4), round(high, 4)]}
    return summary, per
