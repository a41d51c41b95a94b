"""`tunesmith train` and `tunesmith merge`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tunesmith.cli.common import OverridesArg, load
from tunesmith.console import out


def train(
    config: str = typer.Argument(..., help="tunesmith.yaml"),
    overrides: Optional[list[str]] = OverridesArg,
    resume: bool = typer.Option(False, "--resume", help="Continue from the last complete checkpoint."),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Data-parallel processes (torchrun; gloo on CPU)."),
) -> None:
    """Fine-tune the base model on the prepared data (SFT or DPO; LoRA, DoRA, IA3, prefix or full)."""
    from tunesmith.cli.views import print_fit, print_train

    cfg = load(config, overrides)  # a `registry:` base model is merged here, once, for every process
    if nproc > 1:
        from tunesmith.train.launch import launch

        raise typer.Exit(
            launch(cfg, [*(overrides or []), f"base_model={cfg.base_model}"], nproc, resume, on_fit=print_fit)
        )
    from tunesmith.train.stage import run_train

    print_train(run_train(cfg, resume=resume, on_fit=print_fit))


def merge(
    run_dir: Path = typer.Argument(..., help="A training run folder (<output_dir>/train)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Where to write it (default RUN/merged)."),
) -> None:
    """Merge a LoRA adapter into its base model: a standalone safetensors folder."""
    from tunesmith.train.merge import merge_run

    out.print(f"[green]merged model written to[/] {merge_run(run_dir, out_dir)}")
