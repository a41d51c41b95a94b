"""Batched greedy generation with the chat template, timed per batch (evaluation, replay answers)."""

from __future__ import annotations

import math
import time
from typing import Any

Message = dict[str, str]  # a chat message, as in tunesmith.data.records (the models layer sits below data)

# Rows decoded together when the batch size is left to auto. A decoding step reads every weight once
# whatever the rows, so more rows cost little more per step: SmolLM2-135M on a 2-core AMX CPU, bf16, measured
# 209 / 387 / 629 generated tokens/s at 32 / 64 / 128 rows; fp32 166 / 198 / 306 (docs/benchmarks.md).
MAX_ROWS = 128
MEMORY_SHARE = 0.5  # of the memory available when generation starts, for the KV cache and the step's activations


def row_bytes(config: Any, dtype: Any, tokens: int) -> int:
    """Memory one generated row holds at `tokens` tokens: its KV cache, and the prefill's MLP activations
    and the step's fp32 logits (transient, counted whole to stay on the safe side)."""
    import torch

    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    size = torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 4
    kv = 2 * text.num_hidden_layers * kv_heads * head_dim * size * tokens
    activations = tokens * (2 * getattr(text, "intermediate_size", 4 * text.hidden_size) + 4 * text.hidden_size) * size
    return kv + activations + 4 * text.vocab_size


def plan_batches(
    lengths: list[int],
    max_new_tokens: int,
    batch_size: int | None,
    *,
    per_row: Any = None,
    budget: float = float("inf"),
) -> list[list[int]]:
    """Indices of `lengths` (prompt tokens), shortest first, in batches of even size: 130 rows at 128 a batch
    go as 65 + 65, not 128 + 2 (a decoding step of 2 rows costs nearly what 128 do). With `batch_size`
    None, up to MAX_ROWS rows a batch, and a batch whose rows would need more than `budget` bytes
    (`per_row(tokens)` each, at its longest prompt plus `max_new_tokens`) is split until it fits."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    if not order:
        return []
    cap = batch_size or MAX_ROWS
    count = math.ceil(len(order) / cap)
    size, extra = divmod(len(order), count)  # the first `extra` batches take one row more
    bounds = [0]
    for b in range(count):
        bounds.append(bounds[-1] + size + (b < extra))
    batches = [order[a:b] for a, b in zip(bounds, bounds[1:])]
    if batch_size is not None or per_row is None:
        return batches
    fitted = []
    while batches:
        batch = batches.pop(0)
        if len(batch) > 1 and len(batch) * per_row(lengths[batch[-1]] + max_new_tokens) > budget:
            half = len(batch) // 2
            batches[:0] = [batch[:half], batch[half:]]
        else:
            fitted.append(batch)
    return fitted


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[list[Message]],
    *,
    max_new_tokens: int,
    batch_size: int | None = None,
    progress: Any = None,
) -> list[dict[str, Any]]:
    """One greedy completion per prompt (left-padded batches of similar prompt lengths), with its batch
    latency. `batch_size` None: as many rows as fit (plan_batches), up to MAX_ROWS."""
    import torch

    from tunesmith.hardware import available_memory

    tokenizer.padding_side = "left"
    plain = [[{"role": m["role"], "content": m["content"]} for m in p] for p in prompts]
    encoded = [
        tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        for p in plain
    ]
    device = str(model.device.type)
    budget = available_memory("cuda" if device == "cuda" else "cpu")[0] * MEMORY_SHARE if batch_size is None else 0
    batches = plan_batches(
        [len(ids) for ids in encoded],
        max_new_tokens,
        batch_size,
        budget=budget,
        per_row=lambda tokens: row_bytes(model.config, model.dtype, tokens),
    )
    results: list[dict[str, Any]] = [{} for _ in prompts]
    model.eval()
    for number, idx in enumerate(batches):
        inputs = tokenizer.pad([{"input_ids": encoded[i]} for i in idx], padding=True, return_tensors="pt").to(
            model.device
        )
        began = time.perf_counter()
        with torch.no_grad():
            out = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        latency = time.perf_counter() - began
        new = out[:, inputs["input_ids"].shape[1] :]
        for row, i in enumerate(idx):
            ids = new[row].tolist()
            ended = tokenizer.eos_token_id in ids
            ids = ids[: ids.index(tokenizer.eos_token_id)] if ended else ids
            results[i] = {
                "output": tokenizer.decode(ids, skip_special_tokens=True).strip(),
                "batch": number,
                "batch_rows": len(idx),
                "new_tokens": len(ids),
                "stopped": ended,
                "latency_s": round(latency, 3),
            }
        if progress:
            progress(len(idx))
    return results


def request_latency(model: Any, tokenizer: Any, prompts: list[list[Message]], *, max_new_tokens: int) -> dict[str, Any]:
    """What one request costs, as a user of the model sees it: each prompt generated alone (batch 1, greedy),
    its whole time and its time to the first new token (taken when the first token is checked for stopping).
    Batched generation measures throughput; this is the per-request latency beside it."""
    import statistics

    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class FirstToken(StoppingCriteria):
        def __init__(self) -> None:
            self.at: float | None = None

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            if self.at is None:
                self.at = time.perf_counter()
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    totals, firsts = [], []
    model.eval()
    for prompt in prompts:
        plain = [{"role": m["role"], "content": m["content"]} for m in prompt]
        inputs = tokenizer.apply_chat_template(
            plain, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(model.device)
        first = FirstToken()
        began = time.perf_counter()
        with torch.no_grad():
            model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                stopping_criteria=StoppingCriteriaList([first]),
            )
        totals.append(time.perf_counter() - began)
        firsts.append((first.at or time.perf_counter()) - began)
    if not totals:
        return {}
    ordered = sorted(totals)
    return {
        "latency_p50_s": round(statistics.median(totals), 3),
        "latency_mean_s": round(statistics.mean(totals), 3),
        "latency_p95_s": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 3),
        "time_to_first_token_p50_s": round(statistics.median(firsts), 3),
        "latency_requests": len(totals),
    }
