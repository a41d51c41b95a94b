"""Mixed-adapter LoRA batches as one gathered batched matmul per layer (the BGMV idea of Punica/S-LoRA).

peft's mixed-batch path (`adapter_names`) loops over the adapters present in the batch,
slicing a sub-batch and running each adapter's two matmuls; on a CPU the per-op overhead
of that loop made a batch of 4 adapters 3x slower than a batch of one (benchmarks/
serve_throughput.py). Here every LoRA layer keeps its adapters' A and B matrices stacked
(zero-padded to the largest rank, plus an all-zero slot for "__base__"), and a mixed
batch gathers each row's matrices and runs two `torch.bmm`s, whatever the number of
adapters. No library offers this for peft models on CPU (LoRAX and vLLM ship CUDA
kernels), so it is written here: it replaces `_mixed_batch_forward` on each peft
`lora.Linear`, and is only used for plain LoRA (the server refuses DoRA and others).

With few adapters loaded (their ranks summing to at most DENSE_MAX_RANK) there is no gather
at all: every row goes through all adapters' A matrices at once (one matmul to sum-of-ranks
columns), a 0/1 mask keeps each row's own adapter's columns, and one matmul by the stacked,
pre-scaled B matrices finishes it. That is the single-adapter path's op count (two matmuls
per layer), with a few more columns; on a CPU per-op overhead, not FLOPs, dominates a decoding
step, and this measured faster than the gathered bmm (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

BASE = "__base__"  # a row without adapter
DENSE_MAX_RANK = 256  # all adapters' ranks summed: up to this, the dense path; beyond it, the gathered bmm


def _stack(layer: Any) -> None:
    import torch

    names = sorted(layer.lora_A.keys())
    first = layer.lora_A[names[0]].weight
    rank = max(layer.lora_A[n].weight.shape[0] for n in names)
    a = torch.zeros(len(names) + 1, rank, first.shape[1], dtype=first.dtype, device=first.device)
    b = torch.zeros(
        len(names) + 1, layer.lora_B[names[0]].weight.shape[0], rank, dtype=first.dtype, device=first.device
    )
    scale = torch.zeros(len(names) + 1, dtype=first.dtype, device=first.device)
    for i, n in enumerate(names):
        r = layer.lora_A[n].weight.shape[0]
        a[i, :r] = layer.lora_A[n].weight.detach()
        b[i, :, :r] = layer.lora_B[n].weight.detach()
        scale[i] = layer.scaling[n]
    layer._ts_index = {n: i for i, n in enumerate(names)}
    layer._ts_base = len(names)
    layer._ts_a, layer._ts_b, layer._ts_scale = a, b.transpose(1, 2).contiguous(), scale
    layer._ts_a_t = a.transpose(1, 2).contiguous()
    layer._ts_one = {n: (layer.lora_A[n].weight, layer.lora_B[n].weight, layer.scaling[n]) for n in names}
    layer._ts_last = (None, None, None)
    ranks = [layer.lora_A[n].weight.shape[0] for n in names]
    if sum(ranks) <= DENSE_MAX_RANK:  # all A matrices side by side, all B matrices (scaled) stacked
        layer._ts_dense_a = torch.cat([layer.lora_A[n].weight.detach() for n in names]).t().contiguous()
        layer._ts_dense_b = torch.cat([layer.lora_B[n].weight.detach().t() * layer.scaling[n] for n in names])
        onehot = torch.zeros(len(names) + 1, sum(ranks), dtype=first.dtype, device=first.device)
        start = 0
        for i, r in enumerate(ranks):
            onehot[i, start : start + r] = 1
            start += r
        layer._ts_onehot = onehot  # the last row ("__base__") is all zeros
    else:
        layer._ts_dense_a = None


def _bgmv_forward(self: Any, x: Any, *args: Any, adapter_names: list[str], **kwargs: Any) -> Any:
    import torch

    for key in ("alora_offsets",):
        kwargs.pop(key, None)
    result = self.base_layer(x, *args, **kwargs)
    cached, idx, mask = self._ts_last
    if cached is not adapter_names:  # once per forward pass: every step passes a new list
        # (the list itself is kept, not its id: a freed list's id is soon another list's)
        idx = torch.tensor([self._ts_index.get(n, self._ts_base) for n in adapter_names], device=self._ts_a_t.device)
        mask = self._ts_onehot[idx].unsqueeze(1) if self._ts_dense_a is not None else None
        self._ts_last = (adapter_names, idx, mask)
    squeeze = x.dim() == 2
    h = x.unsqueeze(1) if squeeze else x
    if mask is not None:
        h = torch.matmul(h.to(self._ts_dense_a.dtype), self._ts_dense_a) * mask
        h = torch.matmul(h, self._ts_dense_b)
        return (result + (h.squeeze(1) if squeeze else h)).to(result.dtype)
    h = torch.bmm(h.to(self._ts_a_t.dtype), self._ts_a_t[idx])  # [batch, tokens, rank]
    h = torch.bmm(h, self._ts_b[idx]) * self._ts_scale[idx].view(-1, 1, 1)  # [batch, tokens, out]
    return (result + (h.squeeze(1) if squeeze else h)).to(result.dtype)


def _one_forward(self: Any, x: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    """One adapter for every row: peft's arithmetic for plain LoRA in eval mode (base + B(A(x))·scale, in
    that order, so answers match its path bit for bit) without its per-call checks, dropout call and
    module calls, which at batch 1 on a CPU cost more than the two small matmuls themselves."""
    from torch.nn.functional import linear

    result = self.base_layer(x, *args, **kwargs)
    weights = self._ts_one.get(name)
    if weights is None:  # this adapter does not touch this layer
        return result
    a, b, scale = weights
    return (result + linear(linear(x.to(a.dtype), a), b) * scale).to(result.dtype)  # summed in the adapter's dtype


def _forward(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
    """peft's forward, unless `rows` set one adapter for the pass or each row's."""
    names = self._ts_rows[0]
    if names is None or "adapter_names" in kwargs:
        return type(self).forward(self, x, *args, **kwargs)
    if isinstance(names, str):
        return _one_forward(self, x, names, *args, **kwargs)
    return _bgmv_forward(self, x, *args, adapter_names=names, **kwargs)


@contextlib.contextmanager
def rows(model: Any, adapter_names: list[str] | str) -> Iterator[None]:
    """Run the model's forward passes with one adapter per batch row ("__base__" for none), as peft's
    `adapter_names=` does, but without peft's way there: it registers and removes a forward hook on
    every LoRA layer at each call, which measured a large share of a CPU decoding step. One name (a str)
    puts that adapter on every row."""
    holder = model._ts_rows
    holder[0] = adapter_names
    try:
        yield
    finally:
        holder[0] = None


def unsupported(config: dict[str, Any]) -> str | None:
    """What, in an adapter's config (adapter_config.json), these paths would compute wrongly, or None for plain
    LoRA: they apply base + B(A(x))·scale on linear layers and nothing else."""
    if config.get("peft_type") != "LORA":
        return f"a {config.get('peft_type')} adapter"
    for key, what in (
        ("use_dora", "DoRA (use_dora)"),
        ("lora_bias", "a bias on its B matrices (lora_bias)"),
        ("modules_to_save", f"fully trained modules (modules_to_save: {config.get('modules_to_save')})"),
        ("trainable_token_indices", "trained token embeddings (trainable_token_indices)"),
    ):
        if config.get(key):
            return f"a LoRA adapter with {what}"
    return None


def other_layers(model: Any) -> list[str]:
    """LoRA layers on anything but a linear layer (embeddings, convolutions), which these paths do not cover."""
    from peft.tuners.lora import Linear, LoraLayer

    return [n for n, m in model.named_modules() if isinstance(m, LoraLayer) and not isinstance(m, Linear)]


def install(model: Any) -> int:
    """Stack every LoRA layer's adapters and route mixed batches through the batched matmul; returns the layer count.
    Call again after loading or removing an adapter. Refuses LoRA layers it does not cover (`other_layers`)."""
    from peft.tuners.lora import Linear

    from tunesmith.errors import TunesmithError

    others = other_layers(model)
    if others:
        raise TunesmithError(
            f"LoRA on {others[0]}{f' and {len(others) - 1} more' if len(others) > 1 else ''}, not a linear layer: "
            "only LoRA on linear layers shares batches; merge the adapter with `tunesmith merge` and serve the "
            "merged model as base_model"
        )

    holder = model.__dict__.setdefault("_ts_rows", [None])  # the rows' adapters, shared by every layer
    count = 0
    for module in model.modules():
        if isinstance(module, Linear) and module.lora_A:
            _stack(module)
            module._mixed_batch_forward = types.MethodType(_bgmv_forward, module)
            module._ts_rows = holder
            module.forward = types.MethodType(_forward, module)
            count += 1
    return count
