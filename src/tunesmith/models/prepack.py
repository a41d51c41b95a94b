"""bf16 linear layers on weights prepacked for oneDNN, for the few-row calls of decoding on a CPU.

A bf16 matmul on a CPU runs in oneDNN, which reorders the plain weight into its blocked layout at every
call. A decoding step multiplies a few rows, and at that size the reorder is a large part of the call:
SmolLM2-135M's 576 -> 1536 projection, one row, 97 us plain against 54 us on a prepacked weight, 228 against
171 us at 128 rows (2-core AMX CPU; 90 against 58 us at one row with AVX512-BF16 and no AMX); a decoding
step at batch 1 ran slower in bf16 than in fp32. PyTorch prepacks weights only in graphs it compiles with
freezing (inductor's oneDNN weight-pack pass, whose two ops are used here); eager transformers models never
do, and compiling an evaluation's model costs more than it saves. So `install` gives each bf16 `nn.Linear` a
packed copy of its weight (the linear weights' memory once more), used for calls of up to ROWS rows without
autograd, where oneDNN gives the same result bit for bit as the plain call (checked once per weight shape on
this CPU at CHECKED row counts; a shape that differs stays plain). Longer calls (prefills) take the plain path.
The packed copy goes stale if the weight changes: `remove` before merging an adapter into the weights, or run
generation inside `packed(model)`.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

ROWS = 128  # calls of up to this many rows use the packed weight (a decoding step of up to 128 rows)
HINT = 64  # the rows oneDNN packs for: packed for 1 or 128, some 33-128-row calls differed from plain ones (AMX)
CHECKED = (1, 2, 3, 8, 16, 31, 32, 33, 48, 64, 65, 96, 127, 128)  # row counts compared once per weight shape
MEMORY_SHARE = 0.25  # the packed copies may take at most this share of the free memory
_identical: dict[tuple[int, int], bool] = {}  # weight shape -> packed calls match plain ones on this CPU


def _ops() -> Any:
    import torch

    ops = torch.ops.mkldnn
    if not torch.backends.mkldnn.is_available() or not hasattr(ops, "_linear_pointwise"):
        return None
    if not ops._is_mkldnn_bf16_supported():  # AVX2 only: oneDNN refuses to pack bf16 (and evaluates in fp32)
        return None
    return ops


def _matches(ops: Any, weight: Any) -> bool:
    """Whether packed calls give the plain call's result bit for bit at CHECKED rows (random inputs)."""
    import torch
    from torch.nn.functional import linear

    shape = tuple(weight.shape)
    if shape not in _identical:
        try:
            packed = ops._reorder_linear_weight(weight, HINT)
            with torch.no_grad():
                _identical[shape] = all(
                    torch.equal(linear(x, weight), ops._linear_pointwise(x, packed, None, "none", [], ""))
                    for rows in CHECKED
                    for x in [torch.randn(rows, shape[1], dtype=weight.dtype)]
                )
        except RuntimeError:  # this oneDNN build cannot pack it
            _identical[shape] = False
    return _identical[shape]


def _forward(self: Any, x: Any) -> Any:
    import torch
    from torch.nn.functional import linear

    if x.numel() <= ROWS * self.in_features and not torch.is_grad_enabled():
        return torch.ops.mkldnn._linear_pointwise(x, self._ts_packed, self.bias, "none", [], "")
    return linear(x, self.weight, self.bias)


def _layers(model: Any) -> list[Any]:
    import torch

    return [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.Linear) and m.weight.dtype == torch.bfloat16 and m.weight.device.type == "cpu"
    ]


def install(model: Any) -> int:
    """Pack the bf16 linear weights of a model on the CPU (see the module docstring); returns the layers packed,
    0 where oneDNN is missing, the model is not bf16 on a CPU, or the copies would not fit in memory."""
    from tunesmith.hardware import available_memory

    ops = _ops()
    layers = [m for m in _layers(model) if "_ts_packed" not in m.__dict__]
    if ops is None or not layers:
        return 0
    size = sum(m.weight.numel() * m.weight.element_size() for m in layers)
    if size > MEMORY_SHARE * available_memory("cpu")[0]:
        return 0
    count = 0
    for m in layers:
        weight = m.weight.detach()
        if _matches(ops, weight):
            m._ts_packed = ops._reorder_linear_weight(weight, HINT)
            m.forward = types.MethodType(_forward, m)
            count += 1
    return count


def _unpack(layer: Any) -> None:
    layer.__dict__.pop("_ts_packed", None)
    layer.__dict__.pop("forward", None)


def remove(model: Any) -> None:
    """Drop the packed copies: every linear layer back on its plain weight."""
    for m in _layers(model):
        _unpack(m)


@contextlib.contextmanager
def packed(model: Any) -> Iterator[None]:
    """The model's bf16 linear layers on packed weights while the block runs (packing SmolLM2-135M took 0.1 s);
    layers packed before it stay packed after it."""
    before = {id(m) for m in _layers(model) if "_ts_packed" in m.__dict__}
    install(model)
    try:
        yield
    finally:
        for m in _layers(model):
            if id(m) not in before:
                _unpack(m)
