"""A KV cache that grows in place: for the evaluation's batched decoding (`generate.greedy_decode`, whose
prompts are prefilled in groups and stacked into one cache with `stacked_cache`), its per-request timing, and the
server's engine.

transformers' `DynamicLayer.update` concatenates each layer's whole cache with the step's new keys and values,
so every decoding step copies the entire KV cache once more: with 37 rows of ~230 tokens, SmolLM2-135M copies
about 400 MB a step in fp32, 15% of the step's CPU time on a 2-core AVX2 CPU (`aten::cat`, profiled;
docs/benchmarks.md). `GrowingLayer` reserves the room for the whole answer when the prompt is prefilled and
writes each step's keys and values into it; attention reads a view of the filled part. The views hold the same
values in the same shapes as the concatenated tensors, so the answers are the same token for token (tested).
transformers' `StaticCache` also preallocates, but attends over its whole fixed length under a mask, which
changes the attention's arithmetic and needs a compiled graph to pay.
"""

from __future__ import annotations

import functools
from typing import Any

GROW = 128  # tokens reserved past the need when a call runs past the buffers (the server's rows have no fixed end)


def growing_cache(model: Any, capacity: int) -> Any:
    """A `DynamicCache` for `model` whose full-attention layers reserve `capacity` tokens (prompt plus new
    tokens) at their first update; a model with other kinds of layers (sliding windows) keeps transformers'."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=model.config)
    if all(type(layer) is DynamicLayer for layer in cache.layers):
        cache.layers = [_layer_class()(capacity) for _ in cache.layers]
    return cache


def grows(cache: Any) -> bool:
    """Whether `cache` is one `growing_cache` made with growing layers (a full-attention model)."""
    return all(isinstance(layer, _layer_class()) for layer in cache.layers)


def stacked_cache(cache: Any, parts: list[tuple[Any, Any]], width: int) -> Any:
    """`cache` (an unfilled `growing_cache` with growing layers) filled from caches prefilled for groups of its
    rows: `parts` holds (the rows' indices, their cache), each part's tokens ending at column `width`, the columns
    before them zeros (left padding, which the attention mask hides)."""
    rows = sum(len(index) for index, _ in parts)
    for number, layer in enumerate(cache.layers):
        first = parts[0][1].layers[number]
        shape = (rows, first.keys.shape[1], max(layer.capacity, width), first.keys.shape[-1])
        keys = first.keys.new_zeros(shape)
        values = first.values.new_zeros((*shape[:-1], first.values.shape[-1]))
        for index, part in parts:
            filled = part.layers[number]
            keys[index, :, width - filled.keys.shape[-2] : width] = filled.keys
            values[index, :, width - filled.values.shape[-2] : width] = filled.values
        layer.adopt(keys, values, width)
    return cache


@functools.cache
def _layer_class() -> Any:
    """GrowingLayer, defined at first use: the module imports without transformers."""
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        """A `DynamicLayer` whose keys and values are views of buffers reserved `capacity` tokens long at
        the first update, GROW tokens past what a later call needs when it runs past them. Keys and values
        set from outside (the server's engine joins, pads and trims its batch's caches) are taken into new
        buffers at the next update."""

        def __init__(self, capacity: int) -> None:
            super().__init__()
            self.capacity, self.length = capacity, 0
            self.key_buffer: Any = None
            self.value_buffer: Any = None

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            if not self._views_of_buffers():
                self.key_buffer = self.value_buffer = None
                self.length = self.keys.shape[-2] if self.keys.dim() == 4 else 0
            end = self.length + key_states.shape[-2]
            if self.key_buffer is None or end > self.key_buffer.shape[-2]:
                self._reserve(key_states, value_states, self.capacity if end <= self.capacity else end + GROW)
            self.key_buffer[:, :, self.length : end] = key_states
            self.value_buffer[:, :, self.length : end] = value_states
            self.length = end
            return self._views()

        def adopt(self, key_buffer: Any, value_buffer: Any, length: int) -> None:
            """Take buffers whose first `length` tokens are filled (`stacked_cache`)."""
            if not self.is_initialized:
                self.lazy_initialization(key_buffer, value_buffer)
            self.key_buffer, self.value_buffer, self.length = key_buffer, value_buffer, length
            self._views()

        def _views_of_buffers(self) -> bool:
            """Whether keys and values are still this layer's views (nobody replaced them)."""
            if self.key_buffer is None:
                return False
            return all(
                view.data_ptr() == buffer.data_ptr()
                and view.shape == (*buffer.shape[:2], self.length, buffer.shape[-1])
                for view, buffer in ((self.keys, self.key_buffer), (self.values, self.value_buffer))
            )

        def _reserve(self, key_states: Any, value_states: Any, size: int) -> None:
            """Buffers `size` tokens long, holding what is cached so far."""
            keys = key_states.new_empty((*key_states.shape[:-2], size, key_states.shape[-1]))
            values = value_states.new_empty((*value_states.shape[:-2], size, value_states.shape[-1]))
            if self.length:
                keys[:, :, : self.length] = self.keys
                values[:, :, : self.length] = self.values
            self.key_buffer, self.value_buffer = keys, values

        def _views(self) -> tuple[Any, Any]:
            self.keys = self.key_buffer[:, :, : self.length]
            self.values = self.value_buffer[:, :, : self.length]
            return self.keys, self.values

        def batch_select_indices(self, indices: Any) -> None:
            if not self._views_of_buffers():
                return super().batch_select_indices(indices)
            self.key_buffer, self.value_buffer = self.key_buffer[indices], self.value_buffer[indices]
            self._views()

        def batch_repeat_interleave(self, repeats: int) -> None:
            if not self._views_of_buffers():
                return super().batch_repeat_interleave(repeats)
            self.key_buffer = self.key_buffer.repeat_interleave(repeats, dim=0)
            self.value_buffer = self.value_buffer.repeat_interleave(repeats, dim=0)
            self._views()

        def crop(self, tokens_to_remove: int) -> None:
            own = self._views_of_buffers()
            super().crop(tokens_to_remove)  # its checks; it slices the views, which stay views of the buffers
            if own:
                self.length = self.keys.shape[-2]

        def reset(self) -> None:
            super().reset()
            self.length, self.key_buffer, self.value_buffer = 0, None, None

    return GrowingLayer
