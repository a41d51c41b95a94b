"""Base models: hub ids, local folders, the packaged SmolLM2 GGUF, and tiny test models."""

from tunesmith.models.loading import (
    context_length,
    contiguous_lm_head,
    inference_dtype,
    load_model,
    load_tokenizer,
    resolve_model,
    tokenizer_or_none,
)

__all__ = [
    "context_length",
    "contiguous_lm_head",
    "inference_dtype",
    "load_model",
    "load_tokenizer",
    "resolve_model",
    "tokenizer_or_none",
]
