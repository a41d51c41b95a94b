"""Batches of packed windows: padded to the longest window, no attention mask.

Each window already carries per-record position ids; the padding at its end gets its own
position ids (0, 1, ...) so transformers treats it as one more independent sequence, and
labels of -100 so it never counts in the loss. Windows with `loss_weights` (replay balanced
against the task, data/prepare.py) pass them on for the loss. With no 2-D attention mask, transformers
builds the block-diagonal mask from the position ids (padding-free packing).

The tokens it counts are the records' own (`seq_lengths`): a prefix that records share in their window
(data/packing.py) counts once for every record that holds it, so tokens/s measures the data trained on,
and runs with and without shared prefixes compare.
"""

from __future__ import annotations

from typing import Any

import torch

from tunesmith.data.template import IGNORE_INDEX


class PackedCollator:
    """Collate prepared windows; counts the records' real (non-padding) tokens it has batched."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id
        self.real_tokens = 0

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        ids, labels, positions, weights = [], [], [], []
        for f in features:
            pad = longest - len(f["input_ids"])
            ids.append(list(f["input_ids"]) + [self.pad_token_id] * pad)
            labels.append(list(f["labels"]) + [IGNORE_INDEX] * pad)
            positions.append(list(f["position_ids"]) + list(range(pad)))
            if f.get("loss_weights") is not None:
                weights.append(list(f["loss_weights"]) + [0.0] * pad)
            self.real_tokens += sum(f["seq_lengths"]) if f.get("seq_lengths") else len(f["input_ids"])
        batch = {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "position_ids": torch.tensor(positions),
        }
        if weights and len(weights) == len(features):
            batch["loss_weights"] = torch.tensor(weights, dtype=torch.float32)
        return batch
