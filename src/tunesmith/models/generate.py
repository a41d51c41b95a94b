"""Batched greedy generation with the chat template, timed per batch (evaluation, replay answers)."""

from __future__ import annotations

import time
from typing import Any

Message = dict[str, str]  # a chat message, as in tunesmith.data.records (the models layer sits below data)


def generate(model: Any, tokenizer: Any, prompts: list[list[Message]], *, max_new_tokens: int, batch_size: int,
             progress: Any = None) -> list[dict[str, Any]]:
    """One greedy completion per prompt (left-padded batches, shortest first), with its batch latency."""
    import torch

    tokenizer.padding_side = "left"
    order = sorted(range(len(prompts)), key=lambda i: len(str(prompts[i])))
    results: list[dict[str, Any]] = [{} for _ in prompts]
    model.eval()
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        plain = [[{"role": m["role"], "content": m["content"]} for m in prompts[i]] for i in idx]
        inputs = tokenizer.apply_chat_template(plain, add_generation_prompt=True, return_tensors="pt", padding=True,
                                               return_dict=True).to(model.device)
        began = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        latency = time.perf_counter() - began
        new = out[:, inputs["input_ids"].shape[1]:]
        for row, i in enumerate(idx):
            ids = new[row].tolist()
            ended = tokenizer.eos_token_id in ids
            ids = ids[: ids.index(tokenizer.eos_token_id)] if ended else ids
            results[i] = {"output": tokenizer.decode(ids, skip_special_tokens=True).strip(), "batch": start // batch_size,
                          "new_tokens": len(ids), "stopped": ended, "latency_s": round(latency, 3)}
        if progress:
            progress(len(idx))
    return results
