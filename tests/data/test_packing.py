"""Packing: windows are full, position ids restart per record, and no token attends across records."""

from __future__ import annotations

import torch

from tests.conftest import chat
from tunesmith.data.packing import pack_sequences, packing_efficiency
from tunesmith.data.prepare import prepare_examples
from tunesmith.data.records import Conversation
from tunesmith.data.template import IGNORE_INDEX, tokenize_messages


def test_best_fit_fills_windows_and_keeps_every_token():
    examples = [{"input_ids": [i] * n, "labels": [i] * n} for i, n in enumerate([6, 5, 4, 3, 2, 1, 7], start=1)]
    windows = pack_sequences(examples, max_length=10)
    assert sorted(n for w in windows for n in w["seq_lengths"]) == [1, 2, 3, 4, 5, 6, 7]
    assert len(windows) == 3 and all(len(w["input_ids"]) <= 10 for w in windows)
    assert packing_efficiency(windows, 10) == 28 / 30
    for w in windows:
        start = 0
        for n in w["seq_lengths"]:
            assert w["position_ids"][start:start + n] == list(range(n))
            assert w["labels"][start] == IGNORE_INDEX  # never predict the next record's first token
            start += n


def test_no_token_attends_across_records(tiny_model_dir, tiny_tok):
    from tunesmith.models import load_model

    model = load_model(str(tiny_model_dir)).eval()
    a = tokenize_messages(chat("What is the capital of France?", "Paris."), tiny_tok)
    b = tokenize_messages(chat("Say hello", '{"category": "billing"}'), tiny_tok)
    c = tokenize_messages(chat("0 + 1 = ?", "1"), tiny_tok)
    (window,) = pack_sequences([a, b, c], max_length=512)
    with torch.no_grad():
        packed = model(input_ids=torch.tensor([window["input_ids"]]),
                       position_ids=torch.tensor([window["position_ids"]]), use_cache=False).logits[0]
        start = 0
        for ex in (a, b, c):
            alone = model(input_ids=torch.tensor([ex["input_ids"]]), use_cache=False).logits[0]
            n = len(ex["input_ids"])
            torch.testing.assert_close(packed[start:start + n], alone, atol=1e-5, rtol=1e-4)
            start += n


def test_prepare_drops_or_truncates_long_records(tiny_tok):
    records = [Conversation(chat("short", "ok")), Conversation(chat("long " * 200, "answer"))]
    kept, stats = prepare_examples(records, tiny_tok, max_length=64, truncation="drop", packing=False)
    assert stats.dropped_too_long == 1 and len(kept) == 1
    cut, stats = prepare_examples(records, tiny_tok, max_length=64, truncation="truncate", packing=True)
    assert stats.truncated == 1
    assert sum(len(w["input_ids"]) for w in cut) <= 128
