"""What a running server holds, in one object (`app.state.server`): the engine and tokenizer, the served
names, the canary routers, the request log and metrics, and the plugs other parts fill in (the jobs API
adds model finders and listers and its store; the alias watcher adds itself). The routers of chat and
completions, feedback, models, metrics and admin, the jobs API and the web pages all read it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from tunesmith.config import ServeConfig
from tunesmith.serve.engine import Engine
from tunesmith.serve.metrics import Metrics
from tunesmith.serve.models import Target
from tunesmith.serve.protocol import ApiError
from tunesmith.serve.requestlog import RequestLog


@dataclass
class ServerState:
    engine: Engine
    tokenizer: Any
    targets: dict[str, Target]  # served name -> what answers it
    settings: ServeConfig
    log: RequestLog
    metrics: Metrics
    routers: dict[str, Any] = field(default_factory=dict)  # routed name -> its canary/shadow Router
    project: Any = None  # the project config, when the server follows a registry
    versions: dict[str, str] = field(default_factory=dict)  # adapter name -> registry version
    # Other parts of the server serve models of their own: a finder maps a name not in `targets` to a
    # Target (it may load an adapter: it runs in a thread), a lister adds names to /v1/models; both get
    # the caller's key digest (None without keys).
    model_finders: list[Callable[[str, str | None], Target | None]] = field(default_factory=list)
    model_listers: list[Callable[[str | None], list[str]]] = field(default_factory=list)
    upload_paths: tuple[str, ...] = ("/v1/files",)
    aliases: Any = None  # the registry alias watcher (serve/live.py), when one runs
    jobs: Any = None  # the fine-tuning jobs store (jobs/api.py), when the jobs API is mounted
    config: Any = None  # the project config the web pages read (web/pages.py), when they are mounted

    def body_limit(self, path: str) -> int:
        """The largest request body accepted on `path`: uploads have their own limit."""
        return self.settings.jobs.max_file_bytes if path in self.upload_paths else self.settings.max_request_bytes

    async def resolve(self, name: str, request: Request) -> Target:
        """The Target a request's `model` names, or OpenAI's 404."""
        if name in self.targets:
            return self.targets[name]
        loop = asyncio.get_running_loop()
        for find in self.model_finders:
            found = await loop.run_in_executor(None, find, name, request.state.key_digest)
            if found is not None:
                return found
        raise ApiError(
            404,
            f"model {name!r} not found; GET /v1/models lists the served names",
            param="model",
            code="model_not_found",
        )

    def roll_back_if_needed(self, router: Any) -> None:
        """Roll the canary back when the router's trigger fires; the registry follows."""
        reason = router.trigger()
        if not reason or not router.canary:
            return
        bad = router.canary
        router.set_canary(None)
        router.rollbacks.append(f"canary {bad} rolled back: {reason}")
        self.metrics.rollbacks.labels(router.name).inc()
        self.log.event(router.name, "rollback", f"canary {bad} rolled back: {reason}")
        if self.project is not None and bad in self.versions:  # the registry follows; retried until it does
            from tunesmith.registry.store import clear_alias
            from tunesmith.serve.admin import without_canary

            project = self.project
            self.owe_registry(
                f"clear canary v{self.versions[bad]}",
                lambda: without_canary(project, clear_alias, f"automatic rollback: {reason}"),
            )

    def owe_registry(self, what: str, action: Callable[[], Any]) -> None:
        """Write to the registry: through the alias watcher, which retries until it succeeds, or once in a
        thread (no watcher: alias_poll_s 0), logged when it fails."""
        if self.aliases is not None:
            self.aliases.write(what, action)
            return

        def once() -> None:
            try:
                action()
            except Exception as exc:
                self.log.event("registry", "registry_error", f"{what}: {type(exc).__name__}: {exc}")

        threading.Thread(target=once, daemon=True).start()
