"""Packing: windows are full, position ids restart per record, and no token attends across records."""

from __future__ import annotations

import numpy as np
import torch

from tests.conftest import chat
from tunesmith.data.packing import pack_sequences, packing_efficiency, window_records
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
            assert w["position_ids"][start : start + n] == list(range(n))
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
        packed = model(
            input_ids=torch.tensor([window["input_ids"]]),
            position_ids=torch.tensor([window["position_ids"]]),
            use_cache=False,
        ).logits[0]
        start = 0
        for ex in (a, b, c):
            alone = model(input_ids=torch.tensor([ex["input_ids"]]), use_cache=False).logits[0]
            n = len(ex["input_ids"])
            torch.testing.assert_close(packed[start : start + n], alone, atol=1e-5, rtol=1e-4)
            start += n


def test_prepare_drops_or_truncates_long_records(tiny_tok):
    records = [Conversation(chat("short", "ok")), Conversation(chat("long " * 200, "answer"))]
    kept, stats = prepare_examples(records, tiny_tok, max_length=64, truncation="drop", packing=False)
    assert stats.dropped_too_long == 1 and len(kept) == 1
    cut, stats = prepare_examples(records, tiny_tok, max_length=64, truncation="truncate", packing=True)
    assert stats.truncated == 1
    assert sum(len(w["input_ids"]) for w in cut) <= 128


SYSTEM = "You turn customer support tickets into JSON with the keys category and priority, nothing else."


def _tickets(tok, n=6):
    users = [
        "My card was charged twice",
        "The app crashes at login",
        "Where is my parcel?",
        "Please add dark mode",
        "I cannot reset my password",
        "Refund my last order",
    ]
    return [
        tokenize_messages(
            chat(users[i % len(users)] + "!" * (i // len(users)), f'{{"category": "c{i}"}}', system=SYSTEM), tok
        )
        for i in range(n)
    ]


def test_shared_prefix_windows_hold_every_record_once_with_less_work(tiny_tok):
    from tunesmith.data.packing import shareable_length, shared_tokens

    examples = _tickets(tiny_tok) + [tokenize_messages(chat("0 + 1 = ?", "1"), tiny_tok)]
    plain = pack_sequences(examples, max_length=512)
    shared = pack_sequences(examples, max_length=512, share_prefix=True)
    assert shared_tokens(plain) == 0 and shared_tokens(shared) > 0
    assert sum(len(w["input_ids"]) for w in shared) + shared_tokens(shared) == sum(
        len(e["input_ids"]) for e in examples
    )
    assert sorted(i for w in shared for i in w["records"]) == list(range(len(examples)))
    trained = sum(x != IGNORE_INDEX for w in plain for x in w["labels"])
    assert sum(x != IGNORE_INDEX for w in shared for x in w["labels"]) == trained  # no trained token lost
    for w in shared:  # each record whole again: its window's last record's opening + its own tokens
        rebuilt = window_records(w)
        assert [r["input_ids"] for r in rebuilt] == [examples[i]["input_ids"] for i in w["records"]]
        for r, i in zip(rebuilt, w["records"]):  # the same trained labels
            assert [x for x in r["labels"][1:] if x != IGNORE_INDEX] == [
                x for x in examples[i]["labels"][1:] if x != IGNORE_INDEX
            ]
    shares = [p for w in shared for p, q in zip(w["position_ids"][1:], w["position_ids"]) if p != q + 1 and p > 0]
    assert shares and all(16 <= p <= min(shareable_length(e) for e in examples[:6]) for p in shares)


def test_shared_prefix_windows_give_the_same_loss_and_gradients(tiny_model_dir, tiny_tok):
    """The exactness claim of data/packing.py: each record's loss, and every parameter's gradient, as
    from windows without shared prefixes (fp32, eager_varlen)."""
    from tunesmith.models import load_model
    from tunesmith.models.attention import VARLEN, register
    from tunesmith.train.collate import PackedCollator
    from tunesmith.train.sft import trained_positions_loss

    register()
    model = load_model(str(tiny_model_dir), dtype=torch.float32)
    model.set_attn_implementation(VARLEN)
    examples = _tickets(tiny_tok, 9)
    collate = PackedCollator(tiny_tok.pad_token_id)
    results = []
    for share in (False, True):
        windows = pack_sequences(examples, max_length=192, share_prefix=share)
        batch = collate(windows)
        model.zero_grad()
        loss, _ = trained_positions_loss(model, batch)
        loss.backward()
        results.append(
            (
                batch["input_ids"].numel(),
                loss.detach(),
                {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
            )
        )
    (plain_size, plain_loss, plain_grads), (shared_size, shared_loss, shared_grads) = results
    assert shared_size < plain_size
    torch.testing.assert_close(shared_loss, plain_loss, atol=1e-6, rtol=1e-5)
    assert plain_grads.keys() == shared_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(shared_grads[name], grad, atol=1e-6, rtol=1e-4, msg=name)


def test_auto_window_packs_many_short_records_full():
    """1,000 records of about 85 tokens: the covering window (128) holds one record each and is a third
    empty; `max_length: auto` takes a longer one that packing fills at least 90%, with fewer windows for
    the same records (steps, at the same tokens per step)."""
    import random

    from tunesmith.data.packing import windows_needed
    from tunesmith.data.window import choose_window, packing_fill

    rng = random.Random(0)
    lengths = [max(40, min(110, round(rng.gauss(85, 12)))) for _ in range(1000)]
    chosen = choose_window(lengths, 8192)
    covering = 128
    assert packing_fill(np.asarray(lengths), covering) < 0.75  # one record a window, mostly
    assert chosen["max_length"] > covering and chosen["packing_fill"] >= 0.9, chosen
    assert "packs" in chosen["reason"] and chosen["covers"] >= 0.99
    tokens_before = windows_needed(lengths, covering) * covering
    tokens_after = windows_needed(lengths, chosen["max_length"]) * chosen["max_length"]
    assert tokens_after < 0.8 * tokens_before  # the same records in a fifth fewer window-tokens or better
    # records that already pack full keep the covering window
    assert choose_window([250] * 100 + [256] * 10, 8192)["max_length"] == 256
