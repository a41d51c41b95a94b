"""Per-request latency: a fixed sample of test prompts, each generated alone (batch 1), the figure the
latency gate compares and the cost prices (evaluate/cost.py).

A fine-tuned adapter is timed against the base model in one pass, before it is merged: prompt by prompt,
the two alternate (the order swapped at every prompt), so that both ratios' terms see the same load on a
shared machine, which a base-model timing cached from another run did not (its ratio read 0.97 where the
same run's read 0.73). Both run as the built-in server runs them: the unmerged adapter through
`models/multilora.rows` (base + B(A(x))·scale per LoRA layer, nothing for the base). Against the
built-in engine at one client on the demo's 8 timed prompts (`benchmarks/eval_latency.py`, AMX), the
fine-tune read 1.01x the server's time through these rows in fp32 and 1.03x in bf16; through peft's own
forward 1.12x and 1.19x; merged (what `eval.merge_adapter: auto` does in fp32) 0.84x and 0.90x. An
adapter these rows do not cover (DoRA, prefix tuning) runs through peft, the base with its layers switched
off. A full fine-tune is loaded beside the base and the two alternate the same way, where memory holds both
(twice the weights free with the base loaded); otherwise each is timed in a pass of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from typing import Any


def spread(items: list[Any], n: int) -> list[Any]:
    """`n` items evenly spaced through the list (all of them when it has fewer)."""
    if len(items) <= n:
        return list(items)
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)] if n > 1 else items[:1]


def contexts(model: Any) -> tuple[Callable[[], AbstractContextManager], Callable[[], AbstractContextManager], str]:
    """(base, fine-tune, how): the contexts a peft model's forward passes run in as each model."""
    from tunesmith.models.multilora import BASE, install, other_layers, rows, unsupported

    name = model.active_adapter
    if unsupported(model.peft_config[name].to_dict()) is None and not other_layers(model):
        install(model)
        return (lambda: rows(model, BASE)), (lambda: rows(model, name)), "unmerged, as the built-in server runs it"
    return model.disable_adapter, nullcontext, "unmerged, through peft"


def paired_latency(
    model: Any, tokenizer: Any, prompts: list[Any], *, max_new_tokens: int, full: Any = None
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(base, fine-tuned, how they ran): per-request latency alternating prompt by prompt, of a peft model's
    base and adapter, or of `model`, the base, and `full`, a full fine-tune loaded beside it."""
    if full is not None:
        arms, how = [(model, nullcontext), (full, nullcontext)], "both models in memory"
    else:
        base, tuned, how = contexts(model)
        arms = [(model, base), (model, tuned)]
    base_summary, tuned_summary = alternating(tokenizer, prompts, arms, max_new_tokens=max_new_tokens)
    return base_summary, tuned_summary, f"alternating, {how}"


def alternating(
    tokenizer: Any,
    prompts: list[Any],
    arms: list[tuple[Any, Callable[[], AbstractContextManager]]],
    *,
    max_new_tokens: int,
) -> list[dict[str, Any]]:
    """Each arm's (model, the context it runs in) latency summary, the arms taking turns at every prompt and
    the order swapped at every prompt, after one short warm-up request each."""
    from tunesmith.models.generate import latency_summary, time_request
    from tunesmith.models.prepack import packed

    timed: list[list[tuple[float, float]]] = [[] for _ in arms]
    with ExitStack() as stack:
        for model in {id(m): m for m, _ in arms}.values():  # as `generate` and the server decode (bf16 on a CPU)
            stack.enter_context(packed(model))
        for model, context in arms:  # a short request each first: one-time costs stay out of the figures
            with context():
                time_request(model, tokenizer, prompts[0], max_new_tokens=2)
        for i, prompt in enumerate(prompts):
            for k in range(len(arms)) if i % 2 == 0 else reversed(range(len(arms))):
                model, context = arms[k]
                with context():
                    timed[k].append(time_request(model, tokenizer, prompt, max_new_tokens=max_new_tokens))
    return [latency_summary(t) for t in timed]


def room_for_a_second_copy(model: Any, device: str) -> bool:
    """Whether a full fine-tune fits beside `model`, the base, in memory: twice its weights still free."""
    from tunesmith.hardware import available_memory

    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return available_memory(device)[0] > 2 * weights


def own_pass(run: Any, name: str, prompts: list[Any]) -> dict[str, Any]:
    """One model's per-request latency in a pass of its own (a full fine-tune for which memory holds no second
    copy of the weights); the base model's from the cache when its outputs are (evaluate/cache.py). `run` is
    the EvalRun."""
    from tunesmith.console import err
    from tunesmith.evaluate.cache import base_latency
    from tunesmith.models.generate import request_latency

    sample = spread(prompts, run.e.latency_requests)

    def measure() -> dict[str, Any]:
        err.print(f"timing: {name}, {len(sample)} requests one at a time")
        return request_latency(run.model, run.tokenizer, sample, max_new_tokens=run.e.max_new_tokens)

    return base_latency(
        run.cfg,
        name,
        measure,
        run.tokenizer,
        sample,
        max_new_tokens=run.e.max_new_tokens,
        dtype=run.dtype,
        device=run.device,
        reused=run.reused,
    )
