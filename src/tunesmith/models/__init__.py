"""Base models: hub ids, local folders, the packaged SmolLM2 GGUF, and tiny test models."""

from tunesmith.models.loading import context_length, load_model, load_tokenizer, resolve_model

__all__ = ["context_length", "load_model", "load_tokenizer", "resolve_model"]
