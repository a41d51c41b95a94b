"""`tunesmith registry ...`: versions in MLflow's registry."""

from __future__ import annotations

from pathlib import Path

import typer

from tunesmith.cli.common import ConfigArg, load
from tunesmith.console import out

registry_app = typer.Typer(
    help="Versioned models in MLflow's registry: add, list, show, promote, rollback, export.", no_args_is_help=True
)


@registry_app.command("add")
def registry_add(
    config: str = ConfigArg,
    force: bool = typer.Option(False, "--force", help="Register even though a blocking gate failed."),
) -> None:
    """Register the trained, evaluated model as a new version with lineage, gate result and model card."""
    from tunesmith.registry.store import add_version

    result = add_version(load(config, None), force=force)
    state = "[green]gates passed[/]" if result.gates_passed else "[red]gates FAILED (forced)[/]"
    out.print(f"registered [bold]{result.name} v{result.version}[/] ({state}); model card: {result.card}")
    out.print(
        f"Next: [bold]tunesmith registry promote {config} {result.version} --to production[/] then "
        f"[bold]tunesmith serve {config}[/]"
    )


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
def registry_promote(
    config: str = ConfigArg,
    ref: str = typer.Argument(..., help="Version number or alias."),
    to: str = typer.Option(..., "--to", help="Alias: production, canary or shadow."),
    force: bool = typer.Option(False, "--force", help="Allow a version whose gates failed."),
    reason: str = typer.Option("", help="Why, kept in the history."),
) -> None:
    """Point an alias at a version (the move is recorded in the history)."""
    from tunesmith.registry.store import promote

    event = promote(load(config, None), ref, to, force=force, reason=reason)
    out.print(f"{event['alias']}: v{event['previous'] or '-'} → [bold]v{event['version']}[/]")


@registry_app.command("rollback")
def registry_rollback(
    config: str = ConfigArg,
    alias: str = typer.Option("production", help="Alias to move back."),
    reason: str = typer.Option("", help="Why, kept in the history."),
) -> None:
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
def registry_export(
    config: str = ConfigArg,
    ref: str = typer.Argument(..., help="Version number or alias (vllm/tgi: `aliases` serves every aliased version)."),
    out_dir: Path = typer.Option(..., "--out", help="Folder to write."),
    fmt: str = typer.Option(
        "adapter",
        "--format",
        help="adapter (transformers/peft), merged (standalone "
        "folder), gguf (llama.cpp + Ollama Modelfile), hf (Hub-ready merged folder with a "
        "model card), hf-adapter (the same for the adapter alone), vllm, tgi (base, "
        "adapters and the launch command).",
    ),
    quant: str = typer.Option("f16", "--quant", help="gguf only: f16 or q8_0."),
    merged: bool = typer.Option(
        False,
        "--merged",
        help="adapter: also write the merged model; vllm/tgi: serve the merged model instead of base + adapter.",
    ),
    check: bool = typer.Option(
        False,
        "--check",
        help="gguf only: answer the test split in llama.cpp and in "
        "transformers and report their agreement (needs llama-cpp-python).",
    ),
) -> None:
    """Write a version in the form an engine loads: transformers/peft, GGUF for llama.cpp and Ollama, the Hub,
    vLLM or TGI. docs/deploy.md shows each."""
    from tunesmith.export.formats import export_version

    cfg = load(config, None)
    if check and fmt != "gguf":
        raise typer.BadParameter("--check applies to --format gguf")
    written = export_version(cfg, ref, out_dir, fmt=fmt, quant=quant, merged=merged, check=check)
    out.print(f"[green]exported[/] v{written.get('version', '')} as {fmt} to {written['folder']}")
    for key in ("model", "gguf", "modelfile", "card", "merged"):
        if written.get(key):
            out.print(f"  {key}: {written[key]}")
    if written.get("command"):
        out.print(f"  launch (from {written['folder']}; also in serve.sh):\n  {written['command']}")
    a = written.get("agreement")
    if a:
        out.print(
            f"  llama.cpp vs transformers on {a['examples']} test prompts: {a['identical']:.1%} identical "
            f"answers; {a['task_metric_name']} {a['metric_llama_cpp']:.3f} vs {a['metric_transformers']:.3f};"
            f" stopped at the end token: {a['stopped']:.1%}"
        )
