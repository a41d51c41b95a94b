"""Packing tokenised records into full windows without cross-contamination.

Records are placed into windows of `max_length` tokens by best-fit decreasing (few
windows, little waste). Inside a window every record keeps its own position ids
(0, 1, 2, ... restarting at each record), which transformers turns into a block-diagonal
causal mask, so no token attends to another record; the first label of each record is
ignored so no record is trained to predict the next one's first token.

transformers (5.x) infers the record boundaries from position ids only when the model is
called with no 2-D attention mask and no KV cache: pass `position_ids` and
`use_cache=False`, and leave `attention_mask` out (tests/data/test_packing.py checks it).

**Shared prefixes** (`share_prefix=True`). Fine-tuning records mostly open with the same
system prompt: in the bundled support-tickets data 47% of the tokens repeat a neighbour's
opening. Records whose untrained openings agree are then packed as one copy of that prefix
followed by each record's remainder ("body"): [prefix + body 1][body 2][body 3]... Each later
body's position ids go on from the prefix's length (body 2 of a 74-token prefix starts at 74), and
`eager_varlen` attention (models/attention.py) lets a segment that starts at position p > 0 see
the first p tokens of the window's last segment that started at 0, plus itself, causally. That is
the same attention, the same positions and so the same logits, loss and gradients as each record
alone (the prefix's activations are an identical function of the weights in every record, and
the gradients its copies would get add up in the one copy), for less work. The prefix holds no
trained token, and the body's first token is not trained either, so no loss moves. No library
does this for training (vLLM's and SGLang's prefix caching share the KV cache at inference only;
FlashAttention's varlen kernels take disjoint sequences), hence by hand. Only `eager_varlen`
reads such windows: transformers' own masks would cut each body off from its prefix.
"""

from __future__ import annotations

import bisect
from typing import Any

from tunesmith.data.template import IGNORE_INDEX

MIN_SHARED = 16
"""Tokens a prefix must hold to be shared: shorter ones save less than a segment costs."""


def pack_sequences(
    examples: list[dict[str, list[int]]], max_length: int, share_prefix: bool = False
) -> list[dict[str, Any]]:
    """Windows of at most `max_length` tokens: input_ids, labels, position_ids, seq_lengths (each record's
    own length, as it would be alone) and records (the indices of the examples it holds)."""
    for i, e in enumerate(examples):
        if len(e["input_ids"]) > max_length:
            raise ValueError(
                f"example {i} has {len(e['input_ids'])} tokens, more than max_length={max_length}; "
                "drop or truncate it first"
            )
    # items: (members, shared prefix length); a record alone is an item with prefix 0
    items: list[tuple[list[int], int]] = []
    for members, prefix in _prefix_groups(examples) if share_prefix else [([i], 0) for i in range(len(examples))]:
        if len(members) == 1 or prefix == 0:
            items += [([i], 0) for i in members]
            continue
        bodies = [len(examples[i]["input_ids"]) - prefix for i in members]
        for chunk in _best_fit(bodies, max_length - prefix):
            chunk_members = sorted(members[j] for j in chunk)
            items.append((chunk_members, prefix if len(chunk_members) > 1 else 0))
    sizes = [_item_size(examples, members, prefix) for members, prefix in items]
    windows = []
    for bin_ in _best_fit(sizes, max_length):
        parts = sorted((items[j] for j in bin_), key=lambda item: item[0][0])  # in the records' order: deterministic
        window: dict[str, Any] = {"input_ids": [], "labels": [], "position_ids": [], "seq_lengths": [], "records": []}
        for members, prefix in parts:
            for n, i in enumerate(members):
                _append(window, examples[i], i, prefix if n > 0 else 0)
        windows.append(window)
    return windows


def _append(window: dict[str, Any], example: dict[str, Any], index: int, skip: int) -> None:
    """Add a record to a window, less its first `skip` tokens (the shared prefix already there)."""
    ids = example["input_ids"]
    labels = list(example["labels"])
    labels[skip] = IGNORE_INDEX  # predicted from the previous segment's last position: never trained
    window["input_ids"] += ids[skip:]
    window["labels"] += labels[skip:]
    window["position_ids"] += list(range(skip, len(ids)))
    window["seq_lengths"].append(len(ids))
    window["records"].append(index)
    if "loss_weights" in example:
        window.setdefault("loss_weights", []).extend(example["loss_weights"][skip:])


def _item_size(examples: list[dict[str, Any]], members: list[int], prefix: int) -> int:
    return sum(len(examples[i]["input_ids"]) for i in members) - prefix * (len(members) - 1)


def _best_fit(sizes: list[int], capacity: int) -> list[list[int]]:
    """Best-fit decreasing: bins (lists of indices into `sizes`) of at most `capacity`."""
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (space left, bin index), kept sorted for best-fit lookup
    for i in order:
        pos = bisect.bisect_left(free, (sizes[i], -1))
        if pos < len(free):
            space, b = free.pop(pos)
            bins[b].append(i)
            bisect.insort(free, (space - sizes[i], b))
        else:
            bins.append([i])
            bisect.insort(free, (capacity - sizes[i], len(bins) - 1))
    return bins


def windows_needed(lengths: list[int], capacity: int) -> int:
    """How many windows of `capacity` tokens best-fit packing fills with these records (those that fit)."""
    return len(_best_fit([n for n in lengths if n <= capacity], capacity))


def shareable_length(example: dict[str, Any]) -> int:
    """How many opening tokens may be shared: the prefix must end before the position that predicts the
    first trained token, and leave the record at least one token of its own."""
    labels = example["labels"]
    first = next((i for i in range(1, len(labels)) if labels[i] != IGNORE_INDEX), len(labels))
    return max(0, min(first - 1, len(labels) - 1))


def _prefix_groups(examples: list[dict[str, Any]]) -> list[tuple[list[int], int]]:
    """Records grouped by a shared untrained opening, with its length (0: shared with none).

    Sorted by their tokens, records with a common opening sit side by side; a run of them becomes a
    group while its common prefix (the shortest of the neighbours' common prefixes) keeps at least
    `MIN_SHARED` tokens and a new member does not lower what the group saves (members x prefix)."""
    order = sorted(range(len(examples)), key=lambda i: examples[i]["input_ids"])
    groups: list[tuple[list[int], int]] = []
    members: list[int] = []
    prefix = 0
    for i in order:
        if members:
            common = min(
                prefix,
                _common_length(examples[members[-1]]["input_ids"], examples[i]["input_ids"]),
                shareable_length(examples[i]),
            )
            size = len(members)
            if common >= MIN_SHARED and (size == 1 or (size + 1) * common >= size * prefix):
                members.append(i)
                prefix = common
                continue
            groups.append((members, prefix if len(members) > 1 else 0))
        members, prefix = [i], shareable_length(examples[i])
    if members:
        groups.append((members, prefix if len(members) > 1 else 0))
    return groups


def _common_length(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def window_records(window: dict[str, Any]) -> list[dict[str, list[int]]]:
    """The records a window holds, each whole again (a shared prefix copied back in front; its labels, and
    the first label of every record, are ignored as in the window)."""
    records: list[dict[str, list[int]]] = []
    start, root = 0, None
    positions = window["position_ids"]
    for n in window["seq_lengths"]:
        first = positions[start]
        own = n - first
        ids, labels = window["input_ids"][start : start + own], window["labels"][start : start + own]
        if first == 0:
            root = ids
        else:
            assert root is not None and len(root) >= first, "a shared-prefix segment without its record"
            ids, labels = root[:first] + ids, [IGNORE_INDEX] * first + labels
        records.append({"input_ids": ids, "labels": labels})
        start += own
    return records


def packing_efficiency(windows: list[dict[str, Any]], max_length: int) -> float:
    """Real tokens over window capacity (1.0 means no padding at all)."""
    if not windows:
        return 0.0
    return sum(len(w["input_ids"]) for w in windows) / (len(windows) * max_length)


def shared_tokens(windows: list[dict[str, Any]]) -> int:
    """Tokens the windows' records hold that shared prefixes spared computing."""
    return sum(sum(w["seq_lengths"]) - len(w["input_ids"]) for w in windows)
