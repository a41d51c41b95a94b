"""Held-out loss and perplexity on the test answers, with the same loss mask as training."""

from __future__ import annotations

import math
from typing import Any

from tunesmith.data.records import Message
from tunesmith.data.template import IGNORE_INDEX, tokenize_messages, with_system_prompt


def token_logprobs(
    model: Any,
    tokenizer: Any,
    conversations: list[list[Message]],
    *,
    system_prompt: str | None = None,
    batch_size: int = 8,
    max_length: int | None = None,
) -> list[tuple[float, int]]:
    """Per conversation: the summed log-probability of its trained (assistant) tokens, and their count,
    with the same loss mask as training. Conversations are batched shortest first (less padding), and
    the LM head runs only at positions that predict a trained token (`logits_to_keep`, as in training):
    the 49k-entry vocabulary's logits for the prompt tokens were most of the pass's memory and time."""
    import torch
    import torch.nn.functional as F

    examples = [tokenize_messages(with_system_prompt(c, system_prompt), tokenizer) for c in conversations]
    if max_length:
        examples = [{k: v[:max_length] for k, v in e.items()} for e in examples]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[tuple[float, int]] = [(0.0, 0)] * len(examples)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
    model.eval()
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = [examples[i] for i in idx]
        width = max(len(e["input_ids"]) for e in batch)
        ids = torch.tensor([e["input_ids"] + [pad] * (width - len(e["input_ids"])) for e in batch])
        labels = torch.tensor([e["labels"] + [IGNORE_INDEX] * (width - len(e["labels"])) for e in batch])
        mask = torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in batch])
        ids, labels, mask = ids.to(model.device), labels.to(model.device), mask.to(model.device)
        targets = labels[:, 1:]
        keep = (targets != IGNORE_INDEX).any(dim=0).nonzero().squeeze(-1)  # positions t predicting token t+1
        if keep.numel() == 0:  # nothing trained in these conversations (their answers cut by max_length)
            continue
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits.float()
        picked = targets[:, keep]
        losses = F.cross_entropy(logits.transpose(1, 2), picked, ignore_index=IGNORE_INDEX, reduction="none")
        for i, row, n in zip(idx, losses, (picked != IGNORE_INDEX).sum(dim=1)):
            out[i] = (-float(row.sum()), int(n))
    return out


def heldout_loss(
    model: Any,
    tokenizer: Any,
    conversations: list[list[Message]],
    *,
    system_prompt: str | None = None,
    batch_size: int = 8,
    max_length: int | None = None,
) -> dict[str, float]:
    """Mean cross-entropy per trained (assistant) token over all conversations, and its perplexity."""
    rows = token_logprobs(
        model, tokenizer, conversations, system_prompt=system_prompt, batch_size=batch_size, max_length=max_length
    )
    total, count = -sum(lp for lp, _ in rows), sum(n for _, n in rows)
    loss = total / count if count else float("nan")
    return {"loss": round(loss, 4), "perplexity": round(math.exp(loss), 3) if count else float("nan"), "tokens": count}
