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
"""

from __future__ import annotations

from typing import Any

VARLEN = "eager_varlen"

_causal_masks: dict[tuple[int, Any, Any], Any] = {}


def _causal(n: int, like: Any) -> Any:
    import torch

    key = (n, like.device, like.dtype)
    if key not in _causal_masks:
        _causal_masks[key] = torch.full((n, n), torch.finfo(like.dtype).min, device=like.device,
                                        dtype=like.dtype).triu(1)
    return _causal_masks[key]


def record_lengths(position_ids: Any, batch: int, length: int) -> list[list[int]]:
    """Each window's record lengths, read from position ids that restart at 0 for every record."""
    starts = position_ids.expand(batch, -1) == 0
    lengths = []
    for row in starts.tolist():
        bounds = [0] + [i for i, s in enumerate(row) if s and i > 0] + [length]
        lengths.append([b - a for a, b in zip(bounds, bounds[1:])])
    return lengths


def varlen_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
                     scaling: float | None = None, position_ids: Any = None, **kwargs: Any) -> tuple[Any, None]:
    """transformers' attention-function signature: query [B, H, L, D], key/value [B, KV, L, D];
    returns [B, L, H, D]."""
    import torch

    batch, heads, length, dim = query.shape
    if attention_mask is not None or key.shape[2] != length or (module.training and dropout > 0):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    kv_heads = key.shape[1]
    scale = scaling if scaling is not None else dim ** -0.5
    if position_ids is None:
        lengths = [[length]] * batch
    else:
        lengths = record_lengths(position_ids, batch, length)
    windows = []
    for q, k, v, sizes in zip(query.unbind(0), key.unbind(0), value.unbind(0), lengths):
        pieces = []
        for qs, ks, vs in zip(q.split(sizes, 1), k.split(sizes, 1), v.split(sizes, 1)):
            n = qs.shape[1]
            grouped = qs.reshape(kv_heads, heads // kv_heads, n, dim)  # query heads grouped by key/value head
            scores = torch.matmul(grouped, ks.unsqueeze(1).transpose(-1, -2)) * scale + _causal(n, qs)
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
