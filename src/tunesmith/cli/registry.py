"""`tunesmith registry ...`: versions in MLflow's registry."""

from __future__ import annotations

from pathlib import Path

import typer

from tunesmith.cli.common import ConfigArg, load
from tunesmith.console import out

registry_app = typer.Typer(help="Versioned models in MLflow's registry: add, list, show, promote, rollback, export.",
                           no_args_is_help=True)


@registry_app.command("add")
def registry_add(config: str = ConfigArg,
                 force: bool = typer.Option(False, "--force", help="Register even though a blocking gate failed.")
                 ) -> None:
    """Register the trained, evaluated model as a new version with lineage, gate result and model card."""
    from tunesmith.registry.store import add_version

    result = add_version(load(config, None), force=force)
    state = "[green]gates passed[/]" if result["gates_passed"] else "[red]gates FAILED (forced)[/]"
    out.print(f"registered [bold]{result['name']} v{result['version']}[/] ({state}); model card: {result['card']}")
    out.print(f"Next: [bold]tunesmith registry promote {config} {result['version']} --to production[/] then "
              f"[bold]tunesmith serve {config}[/]")


@registry_app.command("list")
def registry_list(config: str = ConfigArg) -> None:
    """Every version, newest first, with aliases and gate status."""
    from tunesmith.cli.views import print_versions
    from tunesmith.registry.store import versions

    print_versions(versions(load(config, None)))


@registry_app.command("show")
def registry_show(config: str = ConfigArg, ref: str = typer.Argument(..., help="Version number or alias.")) -> None:
    """A version's lineage tags and model card."""
    from rich.markdown import Markdown

    from tunesmith.registry.store import show

    info = show(load(config, None), ref)
    for key, value in sorted(info["tags"].items()):
        out.print(f"[dim]{key}[/] {value}", highlight=False)
    out.print(f"[dim]source[/] {info['source']}")
    out.print(Markdown(info["card"]))


@registry_app.command("promote")
def registry_promote(config: str = ConfigArg, ref: str = typer.Argument(..., help="Version number or alias."),
                     to: str = typer.Option(..., "--to", help="Alias: production, canary or shadow."),
                     force: bool = typer.Option(False, "--force", help="Allow a version whose gates failed."),
                     reason: str = typer.Option("", help="Why, kept in the history.")) -> None:
    """Point an alias at a version (the move is recorded in the history)."""
    from tunesmith.registry.store import promote

    event = promote(load(config, None), ref, to, force=force, reason=reason)
    out.print(f"{event['alias']}: v{event['previous'] or '-'} → [bold]v{event['version']}[/]")


@registry_app.command("rollback")
def registry_rollback(config: str = ConfigArg,
                      alias: str = typer.Option("production", help="Alias to move back."),
                      reason: str = typer.Option("", help="Why, kept in the history.")) -> None:
    """Move an alias back to the version that held it before."""
    from tunesmith.registry.store import rollback

    event = rollback(load(config, None), alias, reason)
    out.print(f"{event['alias']}: v{event['previous']} → [bold]v{event['version']}[/] (rolled back)")


@registry_app.command("history")
def registry_history(config: str = ConfigArg) -> None:
    """Every alias move, oldest first."""
    from tunesmith.cli.views import print_history
    from tunesmith.registry.store import history

    print_history(history(load(config, None)))


@registry_app.command("export")
def registry_export(config: str = ConfigArg, ref: str = typer.Argument(..., help="Version number or alias."),
                    out_dir: Path = typer.Option(..., "--out", help="Folder to write."),
                    merged: bool = typer.Option(False, "--merged", help="Also write the merged standalone model.")
                    ) -> None:
    """Write a version's adapter (and optionally the merged model) for plain transformers/peft."""
    from tunesmith.registry.store import export

    folder = export(load(config, None), ref, out_dir, merged=merged)
    out.print(f"[green]exported to[/] {folder}")
