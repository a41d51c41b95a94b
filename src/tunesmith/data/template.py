"""Chat template rendering and the loss mask: which tokens are trained on.

TRL's `assistant_only_loss` needs `{% generation %}` markers that most chat templates
(SmolLM2's among them) lack, and a plain run then silently trains on the prompt too
(TRL #1507, Unsloth #867). So the mask is built here, for any template: each assistant
turn's characters are found by rendering the conversation up to that turn with and
without it, and tokens are labelled by their character offsets in the full rendering.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tunesmith.data.records import Conversation, Message, Preference, Record
from tunesmith.errors import DataError

IGNORE_INDEX = -100


def with_system_prompt(messages: list[Message], system_prompt: str | None) -> list[Message]:
    """Messages with `system_prompt` first, unless they already start with a system turn."""
    if not system_prompt or (messages and messages[0]["role"] == "system"):
        return messages
    return [{"role": "system", "content": system_prompt}, *messages]


def task_system_prompt(system_prompt: str | None, train: list[Conversation]) -> str | None:
    """The system prompt the task is deployed with: `data.system_prompt`, or the one most training records that
    have a system prompt start with, provided it opens at least a quarter of all training records. Records
    without one (plain-chat replay mixed in to keep general ability) do not outvote the task's prompt."""
    if system_prompt:
        return system_prompt
    firsts = Counter(r.messages[0]["content"] for r in train if r.messages and r.messages[0]["role"] == "system")
    if not firsts:
        return None
    prompt, count = firsts.most_common(1)[0]
    return prompt if count * 2 >= sum(firsts.values()) and count * 4 >= len(train) else None


def _chat(tokenizer: Any, messages: list[Message], *, generation_prompt: bool = False) -> str:
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]
    return tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=generation_prompt)


def render_with_spans(
    messages: list[Message], tokenizer: Any, train_on_prompt: bool = False
) -> tuple[str, list[tuple[int, int]]]:
    """The templated text and the character spans to train on (assistant turns, end-of-turn included)."""
    full = _chat(tokenizer, messages)
    if train_on_prompt:
        return full, [(0, len(full))]
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or message.get("weight", 1) == 0:
            continue
        before = _chat(tokenizer, messages[:i], generation_prompt=True) if i else ""
        upto = _chat(tokenizer, messages[: i + 1])
        if not (full.startswith(upto) and upto.startswith(before)):
            raise DataError(
                "the chat template renders earlier turns differently once later turns are added, so the "
                "assistant turns cannot be located; set data.train_on_prompt=true or use a template without "
                "that behaviour"
            )
        spans.append((len(before), len(upto)))
    return full, spans


def tokenize_messages(messages: list[Message], tokenizer: Any, train_on_prompt: bool = False) -> dict[str, list[int]]:
    """input_ids and labels (IGNORE_INDEX where not trained) for one conversation."""
    text, spans = render_with_spans(messages, tokenizer, train_on_prompt)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = []
    span_index = 0
    for token_id, (start, _end) in zip(enc["input_ids"], enc["offset_mapping"]):
        while span_index < len(spans) and start >= spans[span_index][1]:
            span_index += 1
        inside = span_index < len(spans) and spans[span_index][0] <= start < spans[span_index][1]
        labels.append(token_id if inside else IGNORE_INDEX)
    return {"input_ids": list(enc["input_ids"]), "labels": labels}


def conversation_of(record: Record) -> list[Message]:
    """The messages a record trains on (the chosen side of a preference pair)."""
    return record.messages if isinstance(record, Conversation) else record.chosen_conversation()


def record_texts(record: Record, tokenizer: Any, system_prompt: str | None = None) -> list[str]:
    """Templated texts of a record: one for a conversation, chosen and rejected for a preference."""
    if isinstance(record, Preference):
        convs = [record.chosen_conversation(), record.rejected_conversation()]
    else:
        convs = [record.messages]
    return [_chat(tokenizer, with_system_prompt(c, system_prompt)) for c in convs]
