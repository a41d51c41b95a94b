"""The `tunesmith` command line: one module per stage, thin, calling the stage functions; this module
only assembles them.

Heavy libraries (torch, transformers, datasets) are imported inside the commands that
need them, so `--help`, `init` and `config` answer at once.
"""

from __future__ import annotations

import sys

import typer

from tunesmith import __version__
from tunesmith.cli import advise, evaluate, monitor, project, registry, run, serve, train
from tunesmith.cli.data import data_app
from tunesmith.console import err, out
from tunesmith.errors import TunesmithError

app = typer.Typer(
    help="Fine-tune language models end to end: data → train → evaluate → register → serve.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        out.print(f"tunesmith {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """tunesmith: fine-tune language models end to end."""


# The order here is the order of `tunesmith --help`.
app.command()(project.init)
app.command("config")(project.show_config)
app.command()(advise.advise)
app.command()(train.train)
app.command()(evaluate.gate)
app.command("serve")(serve.serve_cmd)
app.command("rollout")(serve.rollout_cmd)
app.command("api-key")(serve.api_key)
app.add_typer(serve.jobs_app, name="jobs")
app.command()(train.merge)
app.command()(run.run)
app.add_typer(data_app, name="data")
app.add_typer(evaluate.eval_app, name="eval")
app.add_typer(registry.registry_app, name="registry")
app.add_typer(monitor.feedback_app, name="feedback")
app.add_typer(monitor.monitor_app, name="monitor")


def main() -> None:
    """Entry point: user mistakes become one clear message and exit status 2, not a traceback."""
    try:
        app()
    except TunesmithError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True, markup=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        sys.exit(130)
    except Exception as exc:
        if not _disk_full(exc):
            raise
        where = getattr(exc, "filename", None) or "a file"
        err.print(
            f"[bold red]error:[/] the disk is full (writing {where}); nothing already "
            "written was replaced. Free some space (or point output_dir / TUNESMITH_CACHE elsewhere) and run "
            "the command again: finished stages and complete checkpoints are kept (`--resume`).",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)


def _disk_full(exc: BaseException | None) -> bool:
    """Whether an error, or one it came from, is a full disk. safetensors (Rust) and torch.save (C++)
    do not raise OSError: they put the OS message in their own exception's text, so that is read too."""
    import errno

    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(exc) or "os error 28" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
