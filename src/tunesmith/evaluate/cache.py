"""The base model's evaluation outputs, generated once per base model and reused by every later run.

The base and few-shot passes and the base model's suite answers do not depend on what was trained: the
same base weights, prompts and greedy decoding give the same text. They are kept under
`$TUNESMITH_CACHE/eval/`, keyed by everything that could change them: the weights' fingerprint, the exact
prompts, the chat template, max_new_tokens, the batch size (padding can move a bf16 result), the decoder
(models/generate.DECODER) and which answers end once settled, dtype, device, and the torch / transformers /
tunesmith versions. A project iterating on its data or training settings then generates only with the
fine-tuned model. Batch latencies are those measured when the outputs were generated; the per-request
latency is cached only beside a full fine-tune for which memory holds no second copy of the weights (an
adapter, or a full fine-tune that fits beside the base, is timed alternating with it, evaluate/latency.py);
metrics.json says which passes were reused.
`eval.cache_base_outputs: false` turns it off.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.models.generate import DECODER

CACHED_PASSES = ("base", "few_shot")


def base_outputs(
    cfg: ProjectConfig,
    name: str,
    generate: Callable[..., list[dict[str, Any]]],
    model: Any,
    tokenizer: Any,
    messages: list[Any],
    *,
    max_new_tokens: int,
    batch_size: int | None,
    dtype: Any,
    device: str,
    reused: list[str] | None = None,
    label: str = "",
    settled: list[Any] | None = None,
) -> list[dict[str, Any]]:
    """`generate(model, tokenizer, messages, ...)`, or its cached result for the base model's passes."""

    def compute() -> list[dict[str, Any]]:
        return generate(
            model, tokenizer, messages, max_new_tokens=max_new_tokens, batch_size=batch_size, settled=settled
        )

    return _cached(
        cfg,
        name,
        compute,
        lambda rows: isinstance(rows, list) and len(rows) == len(messages),
        (tokenizer, messages, max_new_tokens, batch_size, dtype, device, [t is not None for t in settled or []]),
        reused,
        label or name,
    )


def base_latency(
    cfg: ProjectConfig,
    name: str,
    measure: Callable[[], dict[str, Any]],
    tokenizer: Any,
    messages: list[Any],
    *,
    max_new_tokens: int,
    dtype: Any,
    device: str,
    reused: list[str] | None = None,
) -> dict[str, Any]:
    """`measure()` (the per-request latency of these prompts, one at a time), or the base model's figures
    from the run that generated its cached outputs: timed on this machine, with the same prompts."""
    return _cached(
        cfg,
        name,
        measure,
        lambda row: isinstance(row, dict) and "latencies_s" in row,
        (tokenizer, messages, max_new_tokens, "one at a time", dtype, device),
        reused,
        f"{name} request latency",
    )


def _cached(
    cfg: ProjectConfig,
    name: str,
    compute: Callable[[], Any],
    valid: Callable[[Any], bool],
    key: tuple,
    reused: list[str] | None,
    label: str,
) -> Any:
    import os

    off = os.environ.get("TUNESMITH_EVAL_CACHE") == "0"  # the test suite's default: each test generates
    if name not in CACHED_PASSES or not cfg.eval.cache_base_outputs or off:
        return compute()
    from tunesmith.files import cache_root, write_json

    path = cache_root() / "eval" / f"{_key(cfg, *key)}.json"
    try:
        value = json.loads(path.read_text())
        if valid(value):
            if reused is not None:
                reused.append(label)
            return value
    except (OSError, ValueError):
        pass
    value = compute()
    write_json(path, value)
    return value


def _key(
    cfg: ProjectConfig,
    tokenizer: Any,
    messages: list[Any],
    max_new_tokens: int,
    batch_size: int | str | None,
    dtype: Any,
    device: str,
    settled: list[bool] | None = None,
) -> str:
    import torch
    import transformers

    from tunesmith import __version__
    from tunesmith.data.replay import model_fingerprint
    from tunesmith.models import resolve_model

    parts = {
        "weights": model_fingerprint(resolve_model(cfg.base_model)),
        "messages": messages,
        "template": getattr(tokenizer, "chat_template", None),
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "dtype": str(dtype),
        "device": device,
        "decoder": DECODER,
        "settled": settled or [],  # which answers end once their verdict is decided
        "versions": [__version__, torch.__version__, transformers.__version__],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]
