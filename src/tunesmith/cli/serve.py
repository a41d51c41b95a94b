"""`tunesmith serve`, `tunesmith rollout` and `tunesmith api-key`."""

from __future__ import annotations

from typing import Any, Optional

import typer

from tunesmith.cli.common import OverridesArg, load
from tunesmith.console import out


def serve_cmd(
    config: str = typer.Argument(..., help="tunesmith.yaml"),
    overrides: Optional[list[str]] = OverridesArg,
    host: Optional[str] = typer.Option(None, help="Address to bind (default serve.host, 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, help="TCP port (default serve.port)."),
) -> None:
    """Serve the registry's versions and extra adapters behind an OpenAI-compatible API, with
    OpenAI's files and fine-tuning jobs API (serve.jobs) and a worker process that runs the jobs."""
    from tunesmith.serve.stage import serve

    cfg = load(config, overrides)
    serve(cfg, host, port, extend=lambda app: with_extras(app, cfg))


def with_extras(app: Any, cfg: Any) -> Any:
    """The web pages (serve.pages) and the fine-tuning jobs API with its worker (serve.jobs)."""
    if cfg.serve.pages:
        from tunesmith.web.pages import mount_pages

        mount_pages(app, cfg)
    return with_jobs(app, cfg)


def with_jobs(app: Any, cfg: Any) -> Any:
    """Mount the fine-tuning jobs API on `app` and start its worker; returns the worker's stop."""
    if not cfg.serve.jobs.enabled:
        return None
    from tunesmith.jobs.api import mount_jobs

    store = mount_jobs(app, cfg)
    if not cfg.serve.jobs.worker:
        out.print(f"fine-tuning jobs: run `tunesmith jobs worker {cfg.config_path}` to train them")
        return store.close
    from tunesmith.jobs.supervisor import SupervisedWorker

    worker = SupervisedWorker(cfg.config_path)

    def stop() -> None:
        worker()
        store.close()

    stop.worker = worker  # type: ignore[attr-defined]  # tests kill its process to see it restarted
    return stop


jobs_app = typer.Typer(help="The local OpenAI fine-tuning jobs API: its worker.", no_args_is_help=True)


@jobs_app.command("worker")
def jobs_worker(
    config: str = typer.Argument(..., help="tunesmith.yaml of the server (its output_dir holds the jobs)"),
    overrides: Optional[list[str]] = OverridesArg,
) -> None:
    """Train queued fine-tuning jobs (`tunesmith serve` starts one unless serve.jobs.worker is false).
    A job whose worker died is taken over and resumed from its last complete checkpoint."""
    from tunesmith.jobs.worker import Worker

    Worker(load(config, overrides)).run_forever()


def rollout_cmd(
    config: str = typer.Argument(..., help="tunesmith.yaml"),
    to: int = typer.Option(..., "--to", help="Registry version to roll out."),
    steps: str = typer.Option("", help="Percent per step, e.g. 5,25,50,100 (default serve.rollout.steps)."),
    url: Optional[str] = typer.Option(None, help="The running server (default http://serve.host:serve.port)."),
    step_timeout: float = typer.Option(600, help="Seconds a step may wait for canary traffic."),
    force: bool = typer.Option(False, "--force", help="Allow a version whose gates failed."),
) -> None:
    """Gradual rollout on a running server: canary at each step, advancing while its metrics hold, else rolled back.
    Authenticates with $TUNESMITH_ADMIN_KEY (an admin key: serve.admin_key_sha256)."""
    import os

    from tunesmith.serve.rollout import drive_rollout

    cfg = load(config, None)
    plan = [float(x) for x in steps.split(",") if x.strip()] if steps else cfg.serve.rollout.steps
    ok = drive_rollout(
        cfg,
        to,
        plan,
        url or f"http://{cfg.serve.host}:{cfg.serve.port}",
        os.environ.get("TUNESMITH_ADMIN_KEY") or os.environ.get("TUNESMITH_API_KEY"),
        step_timeout=step_timeout,
        force=force,
        echo=lambda line: out.print(line, highlight=False),
    )
    raise typer.Exit(0 if ok else 1)


def api_key() -> None:
    """Make a new API key; put its SHA-256 in serve.api_key_sha256 and give the key to the client."""
    import secrets

    from tunesmith.serve.app import hash_key

    key = f"ts-{secrets.token_urlsafe(32)}"
    out.print(f"key (give it to the client, it is not stored): {key}", highlight=False)
    out.print(f"serve.api_key_sha256 entry: {hash_key(key)}", highlight=False)
