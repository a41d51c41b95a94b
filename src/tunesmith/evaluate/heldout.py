"""Held-out loss and perplexity on the test answers, with the same loss mask as training."""

from __future__ import annotations

import math
from typing import Any

from tunesmith.data.records import Message
from tunesmith.data.template import IGNORE_INDEX, tokenize_messages, with_system_prompt


def token_logprobs(model: Any, tokenizer: Any, conversations: list[list[Message]], *, system_prompt: str | None = None,
                   batch_size: int = 8, max_length: int | None = None) -> list[tuple[float, int]]:
    """Per conversation: the summed log-probability of its trained (assistant) tokens, and their count,
    with the same loss mask as training."""
    import torch
    import torch.nn.functional as F

    examples = [tokenize_messages(with_system_prompt(c, system_prompt), tokenizer) for c in conversations]
    if max_length:
        examples = [{k: v[:max_length] for k, v in e.items()} for e in examples]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[tuple[float, int]] = []
    model.eval()
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size]
        width = max(len(e["input_ids"]) for e in batch)
        ids = torch.tensor([e["input_ids"] + [pad] * (width - len(e["input_ids"])) for e in batch])
        labels = torch.tensor([e["labels"] + [IGNORE_INDEX] * (width - len(e["labels"])) for e in batch])
        mask = torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in batch])
        ids, labels, mask = ids.to(model.device), labels.to(model.device), mask.to(model.device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
        shifted = labels[:, 1:]
        losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), shifted, ignore_index=IGNORE_INDEX, reduction="none")
        trained = shifted != IGNORE_INDEX
        out += [(-float(row.sum()), int(n)) for row, n in zip(losses, trained.sum(dim=1))]
    return out


def heldout_loss(model: Any, tokenizer: Any, conversations: list[list[Message]], *, system_prompt: str | None = None,
                 batch_size: int = 8, max_length: int | None = None) -> dict[str, float]:
    """Mean cross-entropy per trained (assistant) token over all conversations, and its perplexity."""
    rows = token_logprobs(model, tokenizer, conversations, system_prompt=system_prompt, batch_size=batch_size,
                          max_length=max_length)
    total, count = -sum(lp for lp, _ in rows), sum(n for _, n in rows)
    loss = total / count if count else float("nan")
    return {"loss": round(loss, 4), "perplexity": round(math.exp(loss), 3) if count else float("nan"), "tokens": count}
