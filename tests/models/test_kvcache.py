"""The growing KV cache: the tokens transformers' DynamicCache gives, without concatenating the cache a step."""

from __future__ import annotations

from unittest import mock

import torch
from transformers import DynamicCache

from tunesmith.models import kvcache, load_model
from tunesmith.models.generate import greedy_decode

PROMPTS = ["hello there", "a longer question about the weather today", "why", "name three rivers in Europe"]


def _decode(model, tok, new_tokens, **kwargs):
    tok.padding_side = "left"
    prompts = [[{"role": "user", "content": t}] for t in PROMPTS]
    enc = tok.apply_chat_template(
        prompts, add_generation_prompt=True, return_tensors="pt", return_dict=True, padding=True
    )
    with torch.no_grad():
        return greedy_decode(model, enc["input_ids"], enc["attention_mask"], new_tokens, tok.eos_token_id, **kwargs)


def test_growing_cache_gives_dynamic_caches_tokens_with_rows_dropped(tiny_model_dir, tiny_tok):
    model = load_model(str(tiny_model_dir), dtype=torch.float32)
    made, real = [], kvcache.growing_cache

    def recorded(model, capacity):
        made.append(real(model, capacity))
        return made[-1]

    def plain(model, capacity):
        return DynamicCache(config=model.config)

    ends = {0: 3, 2: 5}  # rows 0 and 2 end early, so the batch is cut down mid-answer (batch_select_indices)

    def settled(row, ids):
        return len(ids) >= ends.get(row, 99)

    with mock.patch.object(kvcache, "growing_cache", plain):
        expected = _decode(model, tiny_tok, 16, settled=settled)
    with mock.patch.object(kvcache, "growing_cache", recorded):
        got = _decode(model, tiny_tok, 16, settled=settled)
    assert got == expected
    assert [len(t) for t in got][:3:2] == [3, 5]
    layer = made[0].layers[0]
    assert type(layer).__name__ == "GrowingLayer"
    assert layer.keys.data_ptr() == layer.key_buffer.data_ptr()  # a view of the reserved buffer, not a copy
    assert layer.key_buffer.shape[0] < len(PROMPTS)  # cut down to the unfinished rows


def test_a_call_past_the_reserved_room_grows_the_buffers(tiny_model_dir):
    model = load_model(str(tiny_model_dir), dtype=torch.float32)
    cache = kvcache.growing_cache(model, 4)
    layer = cache.layers[0]
    first, second = torch.randn(2, 2, 3, 8), torch.randn(2, 2, 3, 8)
    layer.update(first, first + 1)
    keys, values = layer.update(second, second + 1)
    assert torch.equal(keys, torch.cat([first, second], dim=-2))
    assert torch.equal(values, torch.cat([first + 1, second + 1], dim=-2))
    assert layer.key_buffer.shape[-2] >= 6 and layer.get_seq_length() == 6
    layer.crop(-2)
    assert layer.get_seq_length() == 4 and torch.equal(layer.update(second, second)[0][:, :, 4:], second)


def test_keys_set_from_outside_are_taken_into_new_buffers(tiny_model_dir):
    """The server's engine pads, joins and trims its batch's caches by assigning keys and values."""
    model = load_model(str(tiny_model_dir), dtype=torch.float32)
    layer = kvcache.growing_cache(model, 8).layers[0]
    a, b, c = (torch.randn(2, 2, n, 8) for n in (3, 1, 1))
    layer.update(a, a)
    layer.keys = layer.values = torch.cat([torch.zeros(2, 2, 2, 8), layer.keys], dim=-2)  # padded on the left
    keys, _ = layer.update(b, b)
    assert torch.equal(keys, torch.cat([torch.zeros(2, 2, 2, 8), a, b], dim=-2))
    assert keys.data_ptr() == layer.key_buffer.data_ptr() and layer.get_seq_length() == 6
    layer.keys = layer.values = layer.keys[..., 2:, :]  # trimmed: a view at an offset of the buffer
    layer.batch_select_indices(torch.tensor([1]))
    keys, values = layer.update(c[1:], c[1:])
    assert torch.equal(keys, torch.cat([a, b, c], dim=-2)[1:]) and torch.equal(values, keys)


def test_grouped_prefill_gives_the_whole_batch_prefills_logits_and_cache(tiny_model_dir, tiny_tok, monkeypatch):
    """Prompts prefilled in groups of similar lengths (each padded to its own longest) and stacked into one
    left-padded cache: the logits and the keys and values at every real position are the whole batch's, up to
    rounding, row for row whatever order the rows come in."""
    from tunesmith.models import generate

    model = load_model(str(tiny_model_dir), dtype=torch.float32)
    tiny_tok.padding_side = "left"
    texts = ["why " * n for n in (9, 1, 30, 4, 17, 2, 25, 6, 12)]  # lengths out of order
    enc = tiny_tok(texts, return_tensors="pt", padding=True)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)
    monkeypatch.setattr(generate, "PREFILL_ROWS", 4)  # 9 rows: groups of 4, 4 and 1
    with torch.no_grad():
        grouped, cache = generate.prefill(model, ids, mask, positions, ids.shape[1] + 5)
        monkeypatch.setattr(generate, "PREFILL_ROWS", 100)
        whole, reference = generate.prefill(model, ids, mask, positions, ids.shape[1] + 5)
    assert torch.allclose(grouped, whole, atol=1e-5)
    real = mask.bool()
    for layer, expected in zip(cache.layers, reference.layers):
        assert layer.keys.shape == expected.keys.shape and layer.key_buffer.shape[-2] == ids.shape[1] + 5
        assert torch.allclose(layer.keys.transpose(1, 2)[real], expected.keys.transpose(1, 2)[real], atol=1e-5)
        assert torch.allclose(layer.values.transpose(1, 2)[real], expected.values.transpose(1, 2)[real], atol=1e-5)
        assert not layer.keys.transpose(1, 2)[~real].any()  # padding: zeros, hidden by the mask
