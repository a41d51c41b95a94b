"""Held-out log-probabilities score the trained tokens only, and computing logits at those positions
alone (batched shortest first) gives what each conversation's full forward pass gives."""

from __future__ import annotations

from tests.conftest import chat


def _full_pass(model, tokenizer, conversation):
    """The reference: one conversation alone, logits at every position, the training loss mask."""
    import torch
    import torch.nn.functional as F

    from tunesmith.data.template import IGNORE_INDEX, tokenize_messages

    e = tokenize_messages(conversation, tokenizer)
    ids, labels = torch.tensor([e["input_ids"]]), torch.tensor([e["labels"]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    losses = F.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=IGNORE_INDEX, reduction="none")
    return -float(losses.sum()), int((labels[0, 1:] != IGNORE_INDEX).sum())


def test_logprobs_at_trained_positions_equal_a_full_pass(tiny_model_dir, tiny_tok):
    import torch

    from tunesmith.evaluate.heldout import heldout_loss, token_logprobs
    from tunesmith.models import load_model

    model = load_model(str(tiny_model_dir), dtype=torch.float32)
    conversations = [
        chat("A much longer question that goes on for a while, " * 4, "Short."),
        chat("Hi?", "A longer answer, with several words in it."),
        chat("Mid-length question here?", "Yes.", system="Be brief."),
        chat("Q?", "A."),
    ]
    # batches of 3 mix lengths and, sorted shortest first, reorder the conversations
    rows = token_logprobs(model, tiny_tok, conversations, batch_size=3)
    for conversation, (logprob, count) in zip(conversations, rows):
        want_logprob, want_count = _full_pass(model, tiny_tok, conversation)
        assert count == want_count > 0
        assert abs(logprob - want_logprob) <= 1e-4 * abs(want_logprob)
    assert rows[0][1] < rows[1][1]  # the answers' own lengths, in the input order
    summary = heldout_loss(model, tiny_tok, conversations, batch_size=3)
    assert summary["tokens"] == sum(n for _, n in rows)
    assert abs(summary["loss"] - (-sum(lp for lp, _ in rows) / summary["tokens"])) < 1e-3
