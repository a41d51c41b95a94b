"""Preparation for training: tokenise with loss masks, drop or cut long records, pack."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunesmith.data.packing import pack_sequences, packing_efficiency
from tunesmith.data.records import Conversation, Record
from tunesmith.data.template import IGNORE_INDEX, conversation_of, tokenize_messages, with_system_prompt


@dataclass
class PrepareStats:
    records: int = 0
    dropped_too_long: int = 0
    truncated: int = 0
    dropped_no_trained_tokens: int = 0
    sequences: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    windows: int = 0
    packing_efficiency: float | None = None
    replay_records: int = 0
    replay_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def prepare_examples(
    records: list[Record],
    tokenizer: Any,
    *,
    max_length: int,
    train_on_prompt: bool = False,
    system_prompt: str | None = None,
    truncation: str = "drop",
    packing: bool = True,
    replay: list[Record] | None = None,
) -> tuple[list[dict[str, Any]], PrepareStats]:
    """Training examples (input_ids, labels, position_ids) from SFT records, packed when asked.
    `replay` records (general examples, see data/replay.py) are added without the system prompt;
    the stats count the user's records, and the replay ones apart."""
    stats = PrepareStats(records=len(records))
    examples = []
    replay = replay or []
    for n, record in enumerate(list(records) + list(replay)):
        is_replay = n >= len(records)
        messages = conversation_of(record) if is_replay else with_system_prompt(conversation_of(record), system_prompt)
        enc = tokenize_messages(messages, tokenizer, train_on_prompt)
        if is_replay:
            if len(enc["input_ids"]) <= max_length:
                stats.replay_records += 1
                stats.replay_tokens += len(enc["input_ids"])
                examples.append(enc)
            continue
        if len(enc["input_ids"]) > max_length:
            if truncation == "drop":
                stats.dropped_too_long += 1
                continue
            stats.truncated += 1
            enc = {k: v[:max_length] for k, v in enc.items()}
        if all(label == IGNORE_INDEX for label in enc["labels"][1:]):
            stats.dropped_no_trained_tokens += 1
            continue
        examples.append(enc)
    stats.sequences = len(examples)
    stats.tokens = sum(len(e["input_ids"]) for e in examples)
    stats.trained_tokens = sum(sum(1 for x in e["labels"][1:] if x != IGNORE_INDEX) for e in examples)
    if packing:
        windows = pack_sequences(examples, max_length)
        stats.windows = len(windows)
        stats.packing_efficiency = round(packing_efficiency(windows, max_length), 4)
        return windows, stats
    out = [{**e, "position_ids": list(range(len(e["input_ids"]))), "seq_lengths": [len(e["input_ids"])]}
           for e in examples]
    stats.windows = len(out)
    return out, stats


def sft_records(records: list[Record]) -> list[Conversation]:
    return [r for r in records if isinstance(r, Conversation)]
