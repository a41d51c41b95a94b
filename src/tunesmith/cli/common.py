"""What every command module shares: config loading, the overrides argument, the tokenizer helper."""

from __future__ import annotations

from typing import Any

import typer

OverridesArg = typer.Argument(None, help="Dotted overrides, e.g. data.max_length=1024 train.learning_rate=1e-4")
ConfigArg = typer.Argument(..., help="tunesmith.yaml (names the model and the MLflow store)")


def is_config(path: str) -> bool:
    """True for a tunesmith.yaml (rather than a data file)."""
    return path.lower().endswith((".yaml", ".yml"))


def load(config: str, overrides: list[str] | None) -> Any:
    """The project config with overrides applied, the base model resolved (tunesmith.pipeline.load)."""
    from tunesmith.pipeline import load as load_project

    return load_project(config, overrides or [])


def tokenizer_or_none(base_model: str, trust_remote_code: bool) -> Any:
    """The tokenizer, or None with a warning (models/loading.py)."""
    from tunesmith.models import tokenizer_or_none as load

    return load(base_model, trust_remote_code)
