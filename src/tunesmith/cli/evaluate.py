"""`tunesmith eval`, `tunesmith eval human export|import` and `tunesmith gate`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from typer.core import TyperGroup

from tunesmith.cli.common import OverridesArg, load
from tunesmith.console import out


class _DefaultRun(TyperGroup):
    """`tunesmith eval CONFIG` runs the evaluation; `tunesmith eval human ...` is a subcommand."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args.insert(0, "run")
        return super().resolve_command(ctx, args)


eval_app = typer.Typer(
    cls=_DefaultRun,
    no_args_is_help=True,
    help="Evaluate: `tunesmith eval CONFIG` compares base, few-shot and fine-tuned models; "
    "`tunesmith eval human export|import` runs a blind human comparison.",
)
human_app = typer.Typer(help="Blind A/B human evaluation: export sheets, import the filled ones.", no_args_is_help=True)
eval_app.add_typer(human_app, name="human")


@eval_app.command("run")
def evaluate(
    config: str = typer.Argument(..., help="tunesmith.yaml"),
    overrides: Optional[list[str]] = OverridesArg,
    limit: Optional[int] = typer.Option(None, help="Score only the first N test examples."),
) -> None:
    """Compare the fine-tuned model with the base model and a few-shot prompt on the test split and the suites."""
    from tunesmith.cli.views import print_eval
    from tunesmith.evaluate.stage import run_eval
    from tunesmith.paths import eval_dir

    cfg = load(config, overrides)
    print_eval(run_eval(cfg, limit=limit), eval_dir(cfg))


@human_app.command("export")
def human_export(
    config: str = typer.Argument(..., help="tunesmith.yaml"),
    n: Optional[int] = typer.Option(None, "--n", min=1, help="Pairs to rate (default: all test examples)."),
    a: str = typer.Option("fine_tuned", help="First model (base, few_shot or fine_tuned)."),
    b: str = typer.Option("base", help="Second model."),
) -> None:
    """Write blind A/B sheets (CSV and a standalone HTML form) from the last evaluation."""
    from tunesmith.evaluate.human import export_sheets

    folder = export_sheets(load(config, None), a, b, n)
    out.print(
        f"[green]wrote[/] {folder / 'sheet.csv'} and {folder / 'form.html'} for the raters; "
        f"keep {folder / 'key.json'} from them"
    )
    out.print(f"Then: [bold]tunesmith eval human import {config} RATER1.csv RATER2.csv ...[/]")


@human_app.command("import")
def human_import(
    config: str = typer.Argument(..., help="tunesmith.yaml"),
    sheets: list[Path] = typer.Argument(..., help="Filled sheets, one per rater (named after the rater)."),
) -> None:
    """Unblind filled sheets: win rates with intervals, rubric means, inter-rater agreement."""
    from tunesmith.cli.views import print_human
    from tunesmith.evaluate.human import human_dir, import_sheets

    cfg = load(config, None)
    print_human(import_sheets(cfg, sheets), human_dir(cfg))


def gate(
    config: str = typer.Argument(..., help="tunesmith.yaml"), overrides: Optional[list[str]] = OverridesArg
) -> None:
    """Check the evaluation against the quality gates; exit status 1 when a blocking gate fails."""
    raise typer.Exit(0 if gate_passes(load(config, overrides)) else 1)


def gate_rows(cfg: Any) -> list[Any]:
    """Check and print the gates; the rows say what passed."""
    from tunesmith.cli.views import print_gates
    from tunesmith.evaluate.gate import check_gates, write_gates
    from tunesmith.evaluate.result import read_eval
    from tunesmith.paths import train_dir

    meta_path = train_dir(cfg) / "metadata.json"
    training = json.loads(meta_path.read_text()) if meta_path.exists() else None
    rows = check_gates(cfg, read_eval(cfg), training)
    write_gates(cfg, rows)
    print_gates(rows)
    return rows


def gates_ok(rows: list[Any]) -> bool:
    from tunesmith.evaluate.gate import gates_passed

    return gates_passed(rows)


def gate_passes(cfg: Any) -> bool:
    return gates_ok(gate_rows(cfg))
