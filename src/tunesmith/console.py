"""The shared Rich consoles: results to stdout, progress and messages to stderr."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

out = Console()
err = Console(stderr=True)


@contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner on stderr while something slow happens."""
    with err.status(message):
        yield
    err.print(f"[green]✓[/] {message}")


def bytes_progress() -> Progress:
    """A progress bar over bytes read, with speed and ETA (on stderr, gone when done)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
