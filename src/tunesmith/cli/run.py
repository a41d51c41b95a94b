"""`tunesmith run`: the pipeline (tunesmith.pipeline.run_pipeline), its events drawn in the terminal."""

from __future__ import annotations

from typing import Any, Optional

import typer

from tunesmith.cli.common import OverridesArg, load
from tunesmith.console import out


def run(
    config: str = typer.Argument(..., help="tunesmith.yaml"),
    overrides: Optional[list[str]] = OverridesArg,
    force: Optional[list[str]] = typer.Option(
        None, "--force", help="Redo this stage and those after it: data, train, eval, register (repeatable)."
    ),
) -> None:
    """Run the pipeline: data (check → split → prepare) → train → eval → gate → register.

    A stage whose inputs have not changed since it last completed is skipped; an interrupted
    training run resumes from its last complete checkpoint."""
    from tunesmith.cli.run_views import print_run_summary
    from tunesmith.paths import eval_dir
    from tunesmith.pipeline import run_pipeline

    cfg = load(config, overrides)
    out.rule(f"[bold]tunesmith run[/] {cfg.config_path}")
    result = run_pipeline(cfg, force=force or [], on_event=lambda event: render(event, eval_dir(cfg)))
    registered = result.registered
    if not result.passed:
        print_run_summary(cfg, result.gates, None)
        out.print(
            "[bold red]A blocking gate failed;[/] the model is not registered. See the gates above and "
            f"{eval_dir(cfg) / 'report.html'}."
        )
        raise typer.Exit(1)
    print_run_summary(cfg, result.gates, (registered.name, registered.version, registered.card))


def render(event: Any, eval_folder: Any) -> None:
    """One pipeline event in the terminal: the tables of `tunesmith data`, `train`, `eval` and `gate`."""
    kind, data = event.kind, event.data
    if kind == "plan":
        skipped = [s for s, what in data.items() if what == "skip"]
        if skipped:
            out.print(
                f"unchanged since they last completed, skipped: [bold]{', '.join(skipped)}[/] "
                "(--force STAGE redoes one)"
            )
    elif kind == "stage" and event.stage in ("train", "eval", "register"):
        title = {"train": "train", "eval": "evaluate", "register": "register"}[event.stage]
        out.rule(f"[bold]{title}" + (" (resuming)" if data == "resuming" else ""))
    elif kind in ("checked", "split", "prepared"):
        from tunesmith.cli.data_views import print_check, print_prepare, print_split

        if kind == "checked":
            print_check(data.report, data.out_dir, brief=True)
            if data.result.rejected:
                out.print(
                    f"[yellow]{data.result.rejected} records rejected and left out; see {data.out_dir / 'report.md'}[/]"
                )
        elif kind == "split":
            print_split(*data)
        else:
            print_prepare(data)
    elif kind in ("fit", "trained"):
        from tunesmith.cli.views import print_fit, print_train

        if kind == "fit":
            print_fit(data)
        else:
            print_train(data)
    elif kind == "evaluated":
        from tunesmith.cli.views import print_eval

        print_eval(data, eval_folder, payback=False)  # the run summary says it
    elif kind == "gates":
        from tunesmith.cli.views import print_gates

        out.rule("[bold]gate")
        print_gates(data)
    elif kind == "unchanged":
        out.print(f"[bold green]Gates passed.[/] Already registered as v{data.version} (unchanged).")
    elif kind == "registered":
        out.print(
            f"[bold green]Gates passed.[/] Registered [bold]{data.name} v{data.version}[/]; model card: {data.card}"
        )
