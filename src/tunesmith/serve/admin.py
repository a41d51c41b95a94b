"""`/admin/rollout`: the canary of a routed registry model, changed on a running server (admin key only).

`GET` shows each router's state; `POST {model, canary_version?, share?, action: set|promote|clear}`
loads a version as canary (checked like the adapters loaded at start-up), changes its share,
promotes it to production or clears it. Every change is also written to the registry's aliases
(retried by the alias watcher until it succeeds), so a restarted server serves the same versions.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from tunesmith.serve.protocol import ApiError, RolloutUpdate

router = APIRouter()


@router.get("/admin/rollout")
async def rollout_state(request: Request) -> dict[str, Any]:
    return {name: r.state() for name, r in request.app.state.server.routers.items()}


@router.post("/admin/rollout")
async def rollout_update(body: RolloutUpdate, request: Request) -> dict[str, Any]:
    state = request.app.state.server
    project = state.project
    routed = state.routers.get(body.model)
    if routed is None:
        raise ApiError(404, f"{body.model!r} is not a routed registry model", param="model")
    if body.canary_version is not None:
        if project is None:
            raise ApiError(400, "this server has no registry to load versions from")
        from tunesmith.errors import TunesmithError
        from tunesmith.registry.store import promote
        from tunesmith.serve.models import check_adapter, version_adapter

        loop = asyncio.get_running_loop()
        name, folder = await loop.run_in_executor(None, version_adapter, project, str(body.canary_version))
        try:
            check_adapter(folder)  # a DoRA or prefix adapter cannot share batches: refuse it, as at start-up
        except TunesmithError as exc:
            raise ApiError(400, str(exc), param="canary_version") from None
        await loop.run_in_executor(None, state.engine.add_adapter, name, str(folder))
        state.versions[name] = str(body.canary_version)
        routed.set_canary(name, body.share)
        state.log.event(routed.name, "canary", f"{name} at {routed.share:.0%}")
        version = str(body.canary_version)
        state.owe_registry(f"canary v{version}", lambda: _move(project, "canary", version, promote))
    elif body.share is not None:
        routed.set_canary(routed.canary, body.share)
        state.log.event(routed.name, "share", f"{routed.canary} at {routed.share:.0%}")
    if body.action == "promote":
        if not routed.canary:
            raise ApiError(400, "no canary to promote")
        with routed.lock:
            routed.production, routed.canary = routed.canary, None
        state.targets[routed.name].adapter = routed.production
        version = state.versions.get(routed.production, "")
        state.targets[routed.name].version = version
        state.log.event(routed.name, "promote", f"{routed.production} is production")
        if project is not None and version:
            from tunesmith.registry.store import clear_alias, promote

            state.owe_registry(
                f"production v{version}",
                lambda: (_move(project, "production", version, promote), without_canary(project, clear_alias)),
            )
    elif body.action == "clear":
        routed.set_canary(None)
        state.log.event(routed.name, "clear", "canary cleared")
        if project is not None:
            from tunesmith.registry.store import clear_alias

            state.owe_registry("clear canary", lambda: without_canary(project, clear_alias))
    return routed.state()


def _move(project: Any, alias: str, version: str, promote: Any) -> None:
    """Point the registry alias at the version unless it already does (a retry after a lost answer)."""
    from tunesmith.registry.store import client
    from tunesmith.tracking import model_name

    if str(client(project).get_registered_model(model_name(project)).aliases.get(alias)) != version:
        promote(project, version, alias, force=True, reason="on the running server (/admin/rollout)")


def without_canary(project: Any, clear_alias: Any, reason: str = "on the running server (/admin/rollout)") -> None:
    """Clear the registry's canary alias unless it is already gone (a retry after a lost answer)."""
    from tunesmith.registry.store import client
    from tunesmith.tracking import model_name

    if "canary" in client(project).get_registered_model(model_name(project)).aliases:
        clear_alias(project, "canary", reason=reason)
