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
"""

from __future__ import annotations

import types
from typing import Any


def _stack(layer: Any) -> None:
    import torch

    names = sorted(layer.lora_A.keys())
    first = layer.lora_A[names[0]].weight
    rank = max(layer.lora_A[n].weight.shape[0] for n in names)
    a = torch.zeros(len(names) + 1, rank, first.shape[1], dtype=first.dtype, device=first.device)
    b = torch.zeros(len(names) + 1, layer.lora_B[names[0]].weight.shape[0], rank, dtype=first.dtype,
                    device=first.device)
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
    layer._ts_last = (None, None)


def _bgmv_forward(self: Any, x: Any, *args: Any, adapter_names: list[str], **kwargs: Any) -> Any:
    import torch

    for key in ("alora_offsets",):
        kwargs.pop(key, None)
    result = self.base_layer(x, *args, **kwargs)
    names_id, idx = self._ts_last
    if names_id is not id(adapter_names):
        idx = torch.tensor([self._ts_index.get(n, self._ts_base) for n in adapter_names], device=self._ts_a_t.device)
        self._ts_last = (id(adapter_names), idx)
    squeeze = x.dim() == 2
    h = x.unsqueeze(1) if squeeze else x
    h = torch.bmm(h.to(self._ts_a_t.dtype), self._ts_a_t[idx])        # [batch, tokens, rank]
    h = torch.bmm(h, self._ts_b[idx]) * self._ts_scale[idx].view(-1, 1, 1)  # [batch, tokens, out]
    return result + (h.squeeze(1) if squeeze else h).to(result.dtype)


def install(model: Any) -> int:
    """Stack every LoRA layer's adapters and route mixed batches through the batched matmul; returns the layer count.
    Call again after loading or removing an adapter."""
    from peft.tuners.lora import Linear

    count = 0
    for module in model.modules():
        if isinstance(module, Linear) and module.lora_A:
            _stack(module)
            module._mixed_batch_forward = types.MethodType(_bgmv_forward, module)
            count += 1
    return count
