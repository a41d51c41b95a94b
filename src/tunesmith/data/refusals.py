"""Refusal replay: refusals of harmful requests mixed into SFT training, so a fine-tune stays as safe as its base.

Fine-tuning on benign data wears down a chat model's refusals (Qi et al. 2023, "Fine-tuning Aligned
Language Models Compromises Safety, Even When Users Do Not Intend To"); a few percent of safety
examples in the training mixture restore them, while many make the model refuse harmless requests
(Bianchi et al. 2024, "Safety-Tuned LLaMAs"). tunesmith ships such examples (`refusals.jsonl`,
written by tools/make_refusal_set.py): harmful requests, asked directly and wrapped in jailbreak
framings, with hand-written refusals that offer a safe alternative where one fits; requests for a
customer record held in the system prompt, declined; and harmless requests that only sound harmful
("kill a frozen process"), answered, so the model does not learn to refuse on a word. They are kept
apart from the evaluation's safety and regression probes (tests/data/test_refusals.py).

Refusals are replayed in the conversation shape of the task: when the task has a system prompt
(`data.template.task_system_prompt`), every other harmful request carries it, the rest are plain chat, so the
model refuses both where it is deployed and outside it. `data.replay.refusals` is their share of the
training tokens (and, with `balance_loss`, of the loss); a task larger than the set sees it repeated,
the other context first.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from importlib import resources
from typing import Any

from tunesmith.data.records import Conversation

MAX_PASSES = 4  # the set is used at most this often (each context twice) before the share is reported short


def refusal_rows() -> list[dict[str, str]]:
    """The packaged refusal set, in its shipped (interleaved by kind) order."""
    text = (resources.files("tunesmith.data") / "refusals.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def refusal_conversation(row: dict[str, str], system: str | None, copy: int = 0) -> Conversation:
    """One row as a conversation, in the task's context when `system` is given (the task's prompt first, a
    row's own system text after it, as the safety suite builds its task-context probes)."""
    own = row.get("system")
    head = system + ("\n\n" + own if own else "") if system else own
    messages = ([{"role": "system", "content": head}] if head else []) + [
        {"role": "user", "content": row["prompt"]},
        {"role": "assistant", "content": row["answer"]},
    ]
    context = "task" if system else "plain"
    return Conversation(
        messages,
        {
            "source": "refusal",
            "id": f"refusal:{row['id']}:{context}:{copy}",
            "category": row["category"],
            "kind": row["kind"],
            "context": context,
        },
    )


def first_sentence(text: str) -> str:
    """The first sentence of an answer: the refusal itself, without the alternative it offers."""
    match = re.match(r"(.+?[.!?])(?:\s|$)", text)
    return match.group(1) if match else text


def _in_task_context(row: dict[str, str], index: int, passes: int) -> bool:
    """Harmful rows alternate between the task's context and plain chat, each pass the other way round;
    harmless ones stay plain chat (an off-task question has no right answer in the task's format)."""
    return row["kind"] != "comply" and (index + passes) % 2 == 0


def refusal_records(
    needed_tokens: int, count_tokens: Any, max_length: int, system: str | None
) -> tuple[list[Conversation], dict[str, Any]]:
    """Refusal conversations that fit the window, about `needed_tokens` of them, with a summary: records,
    tokens, how many are in the task's context, and how many passes over the set it took."""
    rows = refusal_rows()
    chosen: list[Conversation] = []
    tokens, passes = 0, 0
    while tokens < needed_tokens and passes < MAX_PASSES:
        for i, row in enumerate(rows):
            if tokens >= needed_tokens:
                break
            context = system if system and _in_task_context(row, i, passes) else None
            record = refusal_conversation(row, context, passes)
            n = count_tokens(record)
            if n > max_length:  # a short window (a label task): the answer's first sentence may fit
                record = refusal_conversation({**row, "answer": first_sentence(row["answer"])}, context, passes)
                n = count_tokens(record)
            if n <= max_length:
                chosen.append(record)
                tokens += n
        passes += 1
    kinds = Counter(r.meta["kind"] for r in chosen)
    info = {
        "records": len(chosen),
        "tokens": tokens,
        "tokens_asked": needed_tokens,
        "in_task_context": sum(r.meta["context"] == "task" for r in chosen),
        "kinds": dict(sorted(kinds.items())),
        "passes": passes,
        "set_size": len(rows),
    }
    if tokens < needed_tokens:
        info["short"] = (
            f"only {tokens} of the {needed_tokens} refusal tokens asked for fit in "
            f"{MAX_PASSES} passes over the {len(rows)} packaged conversations"
        )
    return chosen, info
