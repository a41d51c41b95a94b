"""Preparation for training: tokenise with loss masks, drop or cut long records, pack."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunesmith.data.packing import pack_sequences, packing_efficiency, shared_tokens
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
    shared_prefix_tokens: int = 0  # the records' tokens that shared prefixes spared computing
    replay_records: int = 0
    replay_tokens: int = 0
    loss_weights: dict[str, float] | None = None  # per trained token, by source (balance_loss)

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
    share_prefix: bool = False,
    replay: list[Record] | None = None,
    loss_shares: dict[str, float] | None = None,
) -> tuple[list[dict[str, Any]], PrepareStats]:
    """Training examples (input_ids, labels, position_ids) from SFT records, packed when asked.
    `replay` records (general examples, see data/replay.py) are added without the system prompt;
    the stats count the user's records, and the replay ones apart. With `loss_shares` (the share of
    the loss each replay source carries, by its `meta["source"]`) every example gets `loss_weights`.
    With `share_prefix`, packed records share their common untrained openings (data/packing.py)."""
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
                enc["source"] = record.meta.get("source", "replay")
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
    if loss_shares and replay:
        stats.loss_weights = balance_weights(examples, loss_shares)
        for e in examples:
            e["loss_weights"] = [stats.loss_weights[e.get("source", "task")]] * len(e["input_ids"])
    for e in examples:
        e.pop("source", None)
    if packing:
        windows = pack_sequences(examples, max_length, share_prefix=share_prefix)
        stats.windows = len(windows)
        stats.shared_prefix_tokens = shared_tokens(windows)
        stats.packing_efficiency = round(packing_efficiency(windows, max_length), 4)
        return windows, stats
    out = [
        {**e, "position_ids": list(range(len(e["input_ids"]))), "seq_lengths": [len(e["input_ids"])]} for e in examples
    ]
    stats.windows = len(out)
    return out, stats


def balance_weights(examples: list[dict[str, Any]], shares: dict[str, float]) -> dict[str, float]:
    """A loss weight per trained token of each source ("task" and the replay sources) such that each
    replay source carries its share of the summed loss, the task the rest, and the mean weight over
    all trained tokens is 1 (so the loss keeps its scale and the Trainer's per-token averaging holds).

    Weighted per token, not per batch: a batch's loss is sum(weight * token loss) / trained tokens,
    whose expectation over batches is the balanced mixture."""
    trained: dict[str, int] = {}
    for e in examples:
        source = e.get("source", "task")
        trained[source] = trained.get(source, 0) + sum(1 for x in e["labels"][1:] if x != IGNORE_INDEX)
    total = sum(trained.values())
    present = {s: shares.get(s, 0.0) for s in trained if s != "task" and trained[s]}
    task_share = 1.0 - sum(present.values())
    if not total or not trained.get("task") or task_share <= 0:
        return {s: 1.0 for s in trained} | {"task": 1.0}
    weights = {s: round(share * total / trained[s], 6) for s, share in present.items()}
    weights["task"] = round(task_share * total / trained["task"], 6)
    return weights


def sft_records(records: list[Record]) -> list[Conversation]:
    return [r for r in records if isinstance(r, Conversation)]
