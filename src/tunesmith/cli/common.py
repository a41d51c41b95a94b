"""What every command module shares: config loading, the overrides argument, the tokenizer helper."""

from __future__ import annotations

from typing import Any

import typer

from tunesmith.console import err
from tunesmith.errors import TunesmithError

OverridesArg = typer.Argument(None, help="Dotted overrides, e.g. data.max_length=1024 train.learning_rate=1e-4")
ConfigArg = typer.Argument(..., help="tunesmith.yaml (names the model and the MLflow store)")


def is_config(path: str) -> bool:
    """True for a tunesmith.yaml (rather than a data file)."""
    return path.lower().endswith((".yaml", ".yml"))


def load(config: str, overrides: list[str] | None) -> Any:
    """The project config with overrides applied (imports nothing heavy, unless the base model is a
    registered version: `registry:NAME@production` is then merged once and named by its folder)."""
    from tunesmith.config import load_config

    cfg = load_config(config, overrides or [])
    if cfg.base_model.startswith("registry:"):
        from tunesmith.registry.parent import resolve_parent

        cfg = resolve_parent(cfg)
    return cfg


def tokenizer_or_none(base_model: str, trust_remote_code: bool) -> Any:
    """The tokenizer, or None with a warning when it cannot be loaded (lengths are then not measured)."""
    from tunesmith.models import load_tokenizer

    try:
        return load_tokenizer(base_model, trust_remote_code=trust_remote_code)
    except TunesmithError as exc:
        err.print(f"[yellow]warning:[/] token lengths not measured: {exc}")
        return None
