"""`tunesmith init` and `tunesmith config`: a new project, a resolved config."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tunesmith.cli.common import OverridesArg, load
from tunesmith.console import out


def init(directory: Path = typer.Argument(..., help="Folder for the new project (created if missing).")) -> None:
    """Write a commented example project: tunesmith.yaml and a small data file."""
    from tunesmith.project import write_example_project

    for path in write_example_project(directory):
        out.print(f"[green]wrote[/] {path}")
    out.print(f"Next: [bold]tunesmith data check {directory / 'tunesmith.yaml'}[/]")


def show_config(
    config: str = typer.Argument(..., help="tunesmith.yaml"), overrides: Optional[list[str]] = OverridesArg
) -> None:
    """Validate a config and print it fully resolved (defaults filled in, overrides applied)."""
    from tunesmith.config import dump_config

    out.print(dump_config(load(config, overrides)), highlight=False, markup=False)
