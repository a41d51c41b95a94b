"""Packing tokenised records into full windows without cross-contamination.

Records are placed into windows of `max_length` tokens by best-fit decreasing (few
windows, little waste). Inside a window every record keeps its own position ids
(0, 1, 2, ... restarting at each record), which transformers turns into a block-diagonal
causal mask, so no token attends to another record; the first label of each record is
ignored so no record is trained to predict the next one's first token.

transformers (5.x) infers the record boundaries from position ids only when the model is
called with no 2-D attention mask and no KV cache: pass `position_ids` and
`use_cache=False`, and leave `attention_mask` out (tests/data/test_packing.py checks it).
"""

from __future__ import annotations

import bisect
from typing import Any

from tunesmith.data.template import IGNORE_INDEX


def pack_sequences(examples: list[dict[str, list[int]]], max_length: int) -> list[dict[str, Any]]:
    """Windows of at most `max_length` tokens: input_ids, labels, position_ids, seq_lengths."""
    order = sorted(range(len(examples)), key=lambda i: (-len(examples[i]["input_ids"]), i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (space left, bin index), kept sorted for best-fit lookup
    for i in order:
        size = len(examples[i]["input_ids"])
        if size > max_length:
            raise ValueError(f"example {i} has {size} tokens, more than max_length={max_length}; drop or truncate it first")
        pos = bisect.bisect_left(free, (size, -1))
        if pos < len(free):
            space, b = free.pop(pos)
            bins[b].append(i)
            bisect.insort(free, (space - size, b))
        else:
            bins.append([i])
            bisect.insort(free, (max_length - size, len(bins) - 1))
    windows = []
    for members in bins:
        members.sort()  # original order inside a window: deterministic and easy to read
        window: dict[str, Any] = {"input_ids": [], "labels": [], "position_ids": [], "seq_lengths": []}
        for i in members:
            ids = examples[i]["input_ids"]
            labels = list(examples[i]["labels"])
            labels[0] = IGNORE_INDEX
            window["input_ids"] += ids
            window["labels"] += labels
            window["position_ids"] += list(range(len(ids)))
            window["seq_lengths"].append(len(ids))
            if "loss_weights" in examples[i]:
                window.setdefault("loss_weights", []).extend(examples[i]["loss_weights"])
        windows.append(window)
    return windows


def packing_efficiency(windows: list[dict[str, Any]], max_length: int) -> float:
    """Real tokens over window capacity (1.0 means no padding at all)."""
    if not windows:
        return 0.0
    return sum(len(w["input_ids"]) for w in windows) / (len(windows) * max_length)
