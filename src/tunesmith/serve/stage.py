"""`tunesmith serve`: load the served models, start the engine, run uvicorn (localhost by default)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tunesmith.config import ProjectConfig


def build_app(cfg: ProjectConfig) -> Any:
    from tunesmith.serve.app import create_app
    from tunesmith.serve.requestlog import RequestLog
    from tunesmith.serve.threads import off_this_thread
    from tunesmith.tracking import model_name

    s = cfg.serve
    if s.engine == "llama-cpp":
        from tunesmith.serve.llamacpp import build_llama_cpp

        engine, tokenizer, targets, routers = build_llama_cpp(cfg)
        engine.start()
    elif s.engine == "vllm":
        from tunesmith.serve.vllm import build_vllm

        engine, tokenizer, targets, routers = build_vllm(cfg)
        engine.start()
    else:
        engine, tokenizer, targets, routers = off_this_thread(_built_in, cfg)  # the engine's thread decodes alone
        engine.start()
    log = RequestLog(cfg.output_path / "serve" / "requests.db", log_texts=s.log_texts, redact_pii=s.redact_pii)
    app = create_app(
        engine, tokenizer, targets, s, log, title=f"tunesmith: {model_name(cfg)}", routers=routers, project=cfg
    )
    if cfg.registry.tracking_uri or (cfg.output_path / "mlflow.db").exists():
        from tunesmith.serve.live import watch

        watch(cfg, app)  # registry alias moves reach this server without a restart
    return app


def _built_in(cfg: ProjectConfig) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    """The built-in engine over the served model and adapters (not started), and what the app routes to."""
    from tunesmith.serve.engine import Engine
    from tunesmith.serve.models import load_served

    s = cfg.serve
    model, tokenizer, targets, routers = load_served(cfg)
    engine = Engine(
        model, tokenizer, max_batch=s.max_batch_size, max_queue=s.max_queue, batch_wait_s=s.batch_wait_ms / 1000
    )
    return engine, tokenizer, targets, routers


def close_app(app: Any) -> None:
    watcher = app.state.server.aliases
    if watcher is not None:
        watcher.close()
    app.state.server.engine.close()
    app.state.server.log.close()


@dataclass
class Running:
    """A server started in a background thread (tests, benchmarks)."""

    server: Any
    thread: threading.Thread
    app: Any

    @property
    def url(self) -> str:
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        close_app(self.app)


def start_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0) -> Running:
    import time

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    return Running(server, thread, app)


def serve(
    cfg: ProjectConfig,
    host: str | None = None,
    port: int | None = None,
    extend: Callable[[Any], Callable[[], None] | None] | None = None,
) -> None:
    """Serve until interrupted. `extend(app)` adds endpoints (the fine-tuning jobs API) and may
    return a function to call when the server stops."""
    import uvicorn

    from tunesmith.console import out

    app = build_app(cfg)
    cleanup = extend(app) if extend else None
    host, port = host or cfg.serve.host, port or cfg.serve.port
    names = ", ".join(sorted(app.state.server.targets))
    out.print(
        f"serving [bold]{names}[/] on http://{host}:{port}/v1"
        + (" (API key required)" if cfg.serve.api_key_sha256 else "")
    )
    if host not in ("127.0.0.1", "localhost", "::1") and not cfg.serve.api_key_sha256:
        out.print("[yellow]warning:[/] listening beyond localhost without API keys; set serve.api_key_sha256")
    try:
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        if cleanup:
            cleanup()
        close_app(app)
