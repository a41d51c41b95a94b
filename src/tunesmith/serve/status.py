"""`GET /v1/models` (the served names, and the caller's organisation's fine-tuned models) and `GET /health`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from tunesmith.serve.state import ServerState

router = APIRouter()


@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    state: ServerState = request.app.state.server
    names = set(state.targets)
    for more in state.model_listers:
        names.update(more(request.state.key_digest))
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": 0, "owned_by": "tunesmith"} for name in sorted(names)],
    }


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    state: ServerState = request.app.state.server
    return {"status": "ok", "queue": state.engine.queue.qsize(), "models": len(state.targets)}
