"""Batched greedy generation with the chat template, timed per batch (evaluation, replay answers)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
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
    settled: list[Callable[[str], bool] | None] | None = None,
) -> list[dict[str, Any]]:
    """One greedy completion per prompt (left-padded batches of similar prompt lengths), with its batch
    latency. `batch_size` None: as many rows as fit (plan_batches), up to MAX_ROWS. `settled`, one test per
    prompt (or None), ends an answer as soon as its test is True of the text so far (a probe's verdict
    decided, evaluate/suites.settled_test); such an answer is marked `settled`."""
    import torch

    from tunesmith.hardware import available_memory
    from tunesmith.models.prepack import packed

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
    with packed(model):  # decoding steps' linear layers on prepacked weights (bf16 on a CPU)
        for number, idx in enumerate(batches):
            inputs = tokenizer.pad([{"input_ids": encoded[i]} for i in idx], padding=True, return_tensors="pt").to(
                model.device
            )
            began = time.perf_counter()
            with torch.no_grad():
                if drops_finished_rows(model):
                    tests = [settled[i] for i in idx] if settled else []

                    def done(row: int, ids: list[int], tests: list[Any] = tests) -> bool:
                        test = tests[row]  # None: this answer is read whole, and is not decoded as it grows
                        return test is not None and test(tokenizer.decode(ids, skip_special_tokens=True).strip())

                    rows = greedy_decode(
                        model,
                        inputs["input_ids"],
                        inputs["attention_mask"],
                        max_new_tokens,
                        tokenizer.eos_token_id,
                        settled=done if any(tests) else None,
                    )
                else:
                    out = model.generate(
                        **inputs,
                        max_new_tokens=max_new_tokens,
                        do_sample=False,
                        eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id,
                    )
                    rows = out[:, inputs["input_ids"].shape[1] :].tolist()
            latency = time.perf_counter() - began
            for row, i in enumerate(idx):
                ids = rows[row]
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
                if settled and settled[i] is not None:
                    results[i]["settled"] = not ended and len(ids) < max_new_tokens
            if progress:
                progress(len(idx))
    return results


SHRINK = 0.75  # the batch is cut down to its unfinished rows once they are this share of it or fewer
PREFILL_ROWS = 8  # prompts prefilled together, of similar lengths, each group padded only to its own longest
DECODER = f"greedy_decode, finished rows dropped at {SHRINK}, prefilled {PREFILL_ROWS} rows a group"  # cache key


def drops_finished_rows(model: Any) -> bool:
    """Whether `greedy_decode` can run this model: any causal LM with a KV cache, except a prompt-learning
    adapter (prefix tuning puts its own prefix into the cache, which peft's generate handles)."""
    config = getattr(model, "active_peft_config", None)
    return not (config is not None and config.is_prompt_learning)


def greedy_decode(
    model: Any,
    input_ids: Any,
    attention_mask: Any,
    max_new_tokens: int,
    eos_token_id: int,
    *,
    settled: Callable[[int, list[int]], bool] | None = None,
) -> list[list[int]]:
    """Greedy decoding of a left-padded batch that drops rows as they finish. transformers' `generate` keeps
    every row in the batch until the last one ends, so a batch costs its longest answer times all its rows;
    here, once the unfinished rows are SHRINK of the batch or fewer, the batch and its KV cache are cut
    down to them (`Cache.batch_select_indices`). transformers' continuous batching does this too, but measured
    3.3x slower than `generate` on a 2-core CPU (paged attention); no other library decodes a plain HF model
    this way. Returns each row's new tokens, ending with `eos_token_id` when the row ended there. Greedy
    only: no logits processors (the evaluation passes use none). `settled(row, tokens)` ends a row early
    when True."""
    import torch

    positions = attention_mask.long().cumsum(-1) - 1
    positions.masked_fill_(attention_mask == 0, 1)  # as generate does for left padding
    last = positions[:, -1]
    logits, cache = prefill(model, input_ids, attention_mask, positions, input_ids.shape[1] + max_new_tokens)
    tokens: list[list[int]] = [[] for _ in range(input_ids.shape[0])]
    active = list(range(input_ids.shape[0]))  # batch row -> the row it answers
    finished: set[int] = set()
    ids, mask = input_ids, attention_mask
    for step in range(max_new_tokens):
        if step:
            logits = model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1]
        chosen = torch.max(logits, dim=-1).indices  # argmax's pick (the first on ties), 4.6x faster on a CPU
        alive = []
        for j, token in enumerate(chosen.tolist()):
            row = active[j]
            answer = tokens[row]
            if row in finished:
                continue  # finished earlier, still in the batch until it is cut down
            answer.append(token)
            if token == eos_token_id or len(answer) >= max_new_tokens or (settled is not None and settled(row, answer)):
                finished.add(row)
            else:
                alive.append(j)
        if not alive:
            break
        if len(alive) <= SHRINK * len(active):
            keep = torch.tensor(alive, device=chosen.device)
            cache.batch_select_indices(keep)
            mask, last, chosen = mask[keep], last[keep], chosen[keep]
            active = [active[j] for j in alive]
        last = last + 1
        positions, ids = last[:, None], chosen[:, None]
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
    return tokens


def prefill(
    model: Any, input_ids: Any, attention_mask: Any, positions: Any, capacity: int, *, grouped: bool = True
) -> tuple[Any, Any]:
    """A left-padded batch's prompts through the model: each row's next-token logits and the batch's KV cache,
    with room for `capacity` tokens (models/kvcache.py). Rows of similar lengths are prefilled PREFILL_ROWS at a
    time, each group padded only to its own longest prompt, and their caches are stacked, left-padded, into the
    batch's: padded together, the demo's 39 test prompts prefilled 6,396 tokens for 4,097 real ones, and a
    prefill's arithmetic is what an AVX2 CPU spends most on (docs/benchmarks.md). The answers differ from a
    whole-batch prefill only by rounding (the matmuls' and attention's sizes differ). `grouped=False`: the whole
    batch at once (the server's burst that mixes adapters, whose per-row LoRA mask covers the whole batch)."""
    import torch

    from tunesmith.models.kvcache import growing_cache, grows, stacked_cache

    def forward(rows: Any, width: int, cache: Any) -> Any:
        return model(
            input_ids=input_ids[rows, -width:],
            attention_mask=attention_mask[rows, -width:],
            position_ids=positions[rows, -width:],
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1]

    width = input_ids.shape[1]
    whole = growing_cache(model, capacity)
    lengths = attention_mask.sum(-1)
    if not grouped or input_ids.shape[0] <= PREFILL_ROWS or not grows(whole):
        return forward(slice(None), width, whole), whole
    order = torch.argsort(lengths, stable=True)
    groups = [order[a : a + PREFILL_ROWS] for a in range(0, len(order), PREFILL_ROWS)]
    logits, caches = [], []
    for rows in groups:
        longest = int(lengths[rows].max())
        caches.append(growing_cache(model, longest))
        logits.append(forward(rows, longest, caches[-1]))
    joined = torch.cat(logits)[torch.argsort(torch.cat(groups))]
    return joined, stacked_cache(whole, list(zip(groups, caches)), width)


def time_request(model: Any, tokenizer: Any, prompt: list[Message], *, max_new_tokens: int) -> tuple[float, float]:
    """One request as a user of the model sees it: the prompt generated alone (batch 1, greedy); its whole
    time and its time to the first new token (taken when the first token is checked for stopping)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    from tunesmith.models.kvcache import growing_cache

    class FirstToken(StoppingCriteria):
        def __init__(self) -> None:
            self.at: float | None = None

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            if self.at is None:
                self.at = time.perf_counter()
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    model.eval()
    plain = [{"role": m["role"], "content": m["content"]} for m in prompt]
    inputs = tokenizer.apply_chat_template(plain, add_generation_prompt=True, return_tensors="pt", return_dict=True).to(
        model.device
    )
    # the KV cache the server grows in place; a prompt-learning adapter puts its own prefix into the cache
    cache = growing_cache(model, inputs["input_ids"].shape[1] + max_new_tokens) if drops_finished_rows(model) else None
    first = FirstToken()
    began = time.perf_counter()
    with torch.no_grad():
        model.generate(
            **inputs,
            past_key_values=cache,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            stopping_criteria=StoppingCriteriaList([first]),
        )
    total = time.perf_counter() - began
    return total, (first.at or time.perf_counter()) - began


def latency_summary(timed: list[tuple[float, float]]) -> dict[str, Any]:
    """p50/p95/mean of requests' (whole, first-token) seconds, and each request's seconds (for the cost's
    interval)."""
    import statistics

    if not timed:
        return {}
    totals, firsts = [t for t, _ in timed], [f for _, f in timed]
    ordered = sorted(totals)
    return {
        "latency_p50_s": round(statistics.median(totals), 3),
        "latency_mean_s": round(statistics.mean(totals), 3),
        "latency_p95_s": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 3),
        "time_to_first_token_p50_s": round(statistics.median(firsts), 3),
        "latency_requests": len(totals),
        "latencies_s": [round(t, 3) for t in totals],
    }


def request_latency(model: Any, tokenizer: Any, prompts: list[list[Message]], *, max_new_tokens: int) -> dict[str, Any]:
    """What one request costs: each prompt generated alone (`time_request`). Batched generation measures
    throughput; this is the per-request latency beside it."""
    from tunesmith.models.prepack import packed

    with packed(model):
        return latency_summary([time_request(model, tokenizer, p, max_new_tokens=max_new_tokens) for p in prompts])
