"""Registry alias changes reach a running server: `registry promote` / `rollback` during an incident
take effect within `serve.alias_poll_s` seconds, without a restart.

A thread re-reads the registered model's aliases and applies what changed since it last looked
(a new production, canary or shadow version is downloaded, checked and loaded between batches;
a removed alias leaves routing). In-flight requests finish on the adapter they started with.
Changes the server makes itself (a promote through /admin/rollout, an automatic rollback) are
written to the registry too, retried here until they succeed, so a restart serves the same
versions and a failed write is never just logged and forgotten.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tunesmith.config import ProjectConfig


class AliasWatcher:
    def __init__(self, cfg: ProjectConfig, app: Any, seen: dict[str, str]):
        self.cfg, self.app = cfg, app
        self.seen = dict(seen)  # alias -> version as applied
        self.pending: list[tuple[str, Callable[[], Any]]] = []  # registry writes still to make
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="tunesmith-aliases", daemon=True)

    def start(self) -> AliasWatcher:
        if self.cfg.serve.alias_poll_s > 0:
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def write(self, what: str, action: Callable[[], Any]) -> None:
        """A registry write the server owes (tried now in the watcher thread, and until it succeeds)."""
        with self._lock:
            self.pending.append((what, action))

    def _loop(self) -> None:
        while not self._stop.wait(self.cfg.serve.alias_poll_s):
            self.poll()

    def poll(self) -> None:
        with self._lock:
            owed, self.pending = self.pending, []
        for i, (what, action) in enumerate(owed):
            try:
                action()
            except Exception as exc:  # the registry is down: keep it and the rest, try again next time
                self.errors.append(f"{what}: {type(exc).__name__}: {exc}")
                with self._lock:
                    self.pending[:0] = owed[i:]
                return  # later changes wait for the earlier one, so their order is kept
        try:
            aliases = self._aliases()
        except Exception as exc:
            self.errors.append(f"reading aliases: {type(exc).__name__}: {exc}")
            return
        for alias, version in sorted(aliases.items()):
            if self.seen.get(alias) != version:
                try:
                    self._apply(alias, version)
                except Exception as exc:  # a version that cannot be served leaves routing as it was
                    self.errors.append(f"{alias} -> v{version}: {type(exc).__name__}: {exc}")
                    self.app.state.server.log.event(self._name(), "alias_error", f"{alias} -> v{version}: {exc}")
                    continue
                self.seen[alias] = version
        for alias in [a for a in self.seen if a not in aliases]:
            self._apply(alias, None)
            del self.seen[alias]

    def _name(self) -> str:
        from tunesmith.tracking import model_name

        return model_name(self.cfg)

    def _aliases(self) -> dict[str, str]:
        from mlflow.exceptions import MlflowException

        from tunesmith.registry.store import client

        try:
            return {a: str(v) for a, v in client(self.cfg).get_registered_model(self._name()).aliases.items()}
        except MlflowException:
            return {}

    def _apply(self, alias: str, version: str | None) -> None:
        from tunesmith.serve.models import Target, check_adapter, version_adapter

        state, name = self.app.state.server, self._name()
        adapter = None
        if version is not None:
            adapter, folder = version_adapter(self.cfg, version)
            if adapter not in state.engine.adapters:
                check_adapter(folder)
                state.engine.add_adapter(adapter, str(folder))
            state.versions[adapter] = version
            state.targets[f"{name}@v{version}"] = Target(f"{name}@v{version}", adapter=adapter, version=version)
        router = state.routers.get(name)
        if version is None:
            state.targets.pop(f"{name}@{alias}", None)
        else:
            state.targets[f"{name}@{alias}"] = Target(f"{name}@{alias}", adapter=adapter, version=version)
        if alias == "production" and version is not None:
            if name in state.targets:
                state.targets[name].adapter, state.targets[name].version = adapter, version
            else:
                state.targets[name] = Target(name, adapter=adapter, version=version, router=name)
            if router is None:
                from tunesmith.serve.rollout import Router

                state.routers[name] = router = Router(name, self.cfg.serve.rollout, adapter)
            with router.lock:
                router.production = adapter
        elif router is not None and alias == "canary":
            router.set_canary(adapter)
        elif router is not None and alias == "shadow":
            with router.lock:
                router.shadow = adapter
        state.log.event(name, "alias", f"{alias} -> " + (f"v{version}" if version else "none") + " (from the registry)")


def watch(cfg: ProjectConfig, app: Any) -> AliasWatcher:
    """Start watching the registry's aliases for a server built by `build_app`."""
    from tunesmith.serve.models import Target

    name_targets: dict[str, Target] = app.state.server.targets
    seen = {}
    for key, target in name_targets.items():
        if "@" in key and not key.split("@", 1)[1].startswith("v") and target.version:
            seen[key.split("@", 1)[1]] = target.version
    watcher = AliasWatcher(cfg, app, seen)
    app.state.server.aliases = watcher
    return watcher.start()
