"""`tunesmith feedback export` and `tunesmith monitor drift|report`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tunesmith.cli.common import load
from tunesmith.console import out

feedback_app = typer.Typer(help="Production feedback into the next training set.", no_args_is_help=True)
monitor_app = typer.Typer(help="Production monitoring: input drift, one-page report.", no_args_is_help=True)


@feedback_app.command("export")
def feedback_export(
    config: str = typer.Argument(..., help="tunesmith.yaml"),
    out_file: Path = typer.Option(..., "--out", help="Chat-format JSONL to write."),
    pairs: Optional[Path] = typer.Option(None, help="Also write preference pairs (JSONL) here."),
) -> None:
    """Write production feedback as training data (corrections as targets; preference pairs)."""
    from tunesmith.monitor.feedback import export_feedback

    result = export_feedback(load(config, None), out_file, pairs)
    out.print(
        f"{result['feedback']} feedback entries: {result['chat_records']} chat records → {result['out']}"
        + (f", {result['preference_pairs']} preference pairs → {result['pairs']}" if pairs else "")
    )
    for reason, n in result["skipped"].items():
        out.print(f"[yellow]skipped {n}:[/] {reason}")
    out.print(f"Check it: [bold]tunesmith data check {out_file}[/]")


@monitor_app.command("drift")
def monitor_drift(
    config: str = typer.Argument(..., help="tunesmith.yaml"),
    last: int = typer.Option(500, help="Most recent production prompts to compare."),
) -> None:
    """Have production prompts moved away from the training data? Exit 1 when drift is found."""
    from tunesmith.cli.views import print_drift
    from tunesmith.monitor.stage import monitor_dir, run_drift

    cfg = load(config, None)
    result = run_drift(cfg, last)
    print_drift(result, monitor_dir(cfg) / "drift.json")
    raise typer.Exit(1 if result["drift"] else 0)


@monitor_app.command("report")
def monitor_report(config: str = typer.Argument(..., help="tunesmith.yaml")) -> None:
    """One page (Markdown + HTML) of traffic, latency, errors, feedback and drift per version over time."""
    from tunesmith.monitor.stage import write_monitor_report

    md, html = write_monitor_report(load(config, None))
    out.print(f"[green]wrote[/] {md} and {html}")
