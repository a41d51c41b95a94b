"""Attention for packed training windows that attends within each record only ("eager_varlen").

A packed window holds several records; padding-free packing tells them apart by position ids
that restart at 0 (data/packing.py). transformers' eager and sdpa paths turn those into a
block-diagonal mask over the whole window and still compute every score of it: for a 512-token
window holding three 170-token records, about three times the work and memory that the records
need, and in bf16 the fp32 softmax of that square is the largest tensor of the step.
FlashAttention's varlen kernels skip the masked blocks, but on GPUs only; torch's CPU flash
kernel measured slower per record than eager maths here (its backward dominates).

So on CPUs this computes eager attention (fp32 softmax, as transformers' eager does) record by
record, and hands everything else (padding masks, generation with a KV cache) to transformers'
sdpa. Grouped-query heads share their key/value head by broadcasting, without repeat copies.
It is registered with transformers' `AttentionInterface` and `AttentionMaskInterface`, so
`model.set_attn_implementation(VARLEN)` selects it like a built-in kernel.

Windows packed with shared prefixes (data/packing.py, `share_prefix`) hold segments whose position
ids start past 0: such a segment also sees the first p keys and values of the record before it, p
its first position id. Only this attention reads those windows right.
"""

from __future__ import annotations

from typing import Any

VARLEN = "eager_varlen"

_causal_masks: dict[tuple[int, int, Any, Any], Any] = {}


def record_lengths(position_ids: Any, batch: int, length: int) -> list[list[int]]:
    """Each window's segment lengths, read from its position ids (see `record_segments`)."""
    return [[n for n, _ in row] for row in record_segments(position_ids, batch, length)]


def record_segments(position_ids: Any, batch: int, length: int) -> list[list[tuple[int, int]]]:
    """Each window's segments as (length, shared prefix): a segment starts wherever the position ids do
    not count on by one. One that starts at 0 is a record (prefix 0); one that starts at p > 0 is the
    rest of a record whose first p tokens it shares with the window's last record (data/packing.py,
    `share_prefix`)."""
    import torch

    positions = position_ids.expand(batch, -1)
    starts = torch.ones_like(positions, dtype=torch.bool)
    starts[:, 1:] = positions[:, 1:] != positions[:, :-1] + 1
    segments = []
    for row, first in zip(starts.tolist(), positions.tolist()):
        bounds = [i for i, s in enumerate(row) if s] + [length]
        segments.append([(b - a, first[a]) for a, b in zip(bounds, bounds[1:])])
    return segments


def _mask(n: int, prefix: int, like: Any) -> Any:
    """Causal over a segment's own n tokens, with its shared prefix's `prefix` keys all visible."""
    import torch

    key = (n, prefix, like.device, like.dtype)
    if key not in _causal_masks:
        causal = torch.full((n, n), torch.finfo(like.dtype).min, device=like.device, dtype=like.dtype).triu(1)
        _causal_masks[key] = torch.cat([causal.new_zeros(n, prefix), causal], 1) if prefix else causal
    return _causal_masks[key]


def varlen_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    position_ids: Any = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers' attention-function signature: query [B, H, L, D], key/value [B, KV, L, D];
    returns [B, L, H, D]."""
    import torch

    batch, heads, length, dim = query.shape
    if attention_mask is not None or key.shape[2] != length or (module.training and dropout > 0):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    kv_heads = key.shape[1]
    scale = scaling if scaling is not None else dim**-0.5
    if position_ids is None:
        segments = [[(length, 0)]] * batch
    else:
        segments = record_segments(position_ids, batch, length)
    windows = []
    for q, k, v, row in zip(query.unbind(0), key.unbind(0), value.unbind(0), segments):
        sizes = [n for n, _ in row]
        pieces = []
        root_k = root_v = None  # the window's last record: the prefix later segments share
        for (n, prefix), qs, ks, vs in zip(row, q.split(sizes, 1), k.split(sizes, 1), v.split(sizes, 1)):
            if prefix == 0:
                root_k, root_v = ks, vs
            else:
                if root_k is None or root_k.shape[1] < prefix:
                    raise ValueError(
                        f"a packed segment starts at position {prefix} with no record of at least "
                        f"{prefix} tokens before it in its window"
                    )
                ks, vs = torch.cat([root_k[:, :prefix], ks], 1), torch.cat([root_v[:, :prefix], vs], 1)
            grouped = qs.reshape(kv_heads, heads // kv_heads, n, dim)  # query heads grouped by key/value head
            scores = torch.matmul(grouped, ks.unsqueeze(1).transpose(-1, -2)) * scale + _mask(n, prefix, qs)
            probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(qs.dtype)
            pieces.append(torch.matmul(probs, vs.unsqueeze(1)).reshape(heads, n, dim))
        windows.append(torch.cat(pieces, 1) if len(pieces) > 1 else pieces[0])
    return torch.stack(windows, 0).transpose(1, 2).contiguous(), None


def varlen_mask(**kwargs: Any) -> Any:
    """No mask for a full window without padding (the attention reads records from the position
    ids); sdpa's mask otherwise (padding, or a query against a longer KV cache)."""
    from transformers.masking_utils import sdpa_mask

    if kwargs.get("attention_mask") is None and kwargs["q_length"] == kwargs["kv_length"]:
        return None
    return sdpa_mask(**kwargs)


def register() -> str:
    """Make VARLEN selectable with `attn_implementation` (idempotent); returns its name."""
    import torch
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    # left out of torch.compile's graphs (train.compile): its loop over each window's records would
    # recompile for every new set of record lengths; the layer around it is compiled
    AttentionInterface.register(VARLEN, torch.compiler.disable(varlen_attention))
    AttentionMaskInterface.register(VARLEN, varlen_mask)
    return VARLEN
