"""The OpenAI-compatible HTTP API (FastAPI): the server's state, its error shape, its guards, and the
routers of each concern (serve/completions.py, feedback.py, status.py, metrics.py, admin.py).

Errors use OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, so the
official client raises its usual exceptions (400 BadRequestError, 401 AuthenticationError,
404 NotFoundError, 429 RateLimitError).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tunesmith.config import ServeConfig
from tunesmith.serve.access import SECURITY_HEADERS, refusal
from tunesmith.serve.engine import Engine
from tunesmith.serve.guard import BodyGuard, error_body
from tunesmith.serve.keys import accepted_keys, admin_keys, hash_key
from tunesmith.serve.metrics import Metrics
from tunesmith.serve.models import Target
from tunesmith.serve.protocol import ApiError
from tunesmith.serve.requestlog import RequestLog
from tunesmith.serve.state import ServerState

__all__ = ["create_app", "hash_key"]


def create_app(
    engine: Engine,
    tokenizer: Any,
    targets: dict[str, Target],
    settings: ServeConfig,
    log: RequestLog,
    *,
    title: str = "tunesmith",
    routers: dict[str, Any] | None = None,
    project: Any = None,
) -> FastAPI:
    """The API over `engine`: `targets` are the served names, `routers` the canary routers of routed
    names, `project` the config whose registry the server follows (None: no registry writes)."""
    from tunesmith.serve import admin, completions, feedback, metrics, status

    app = FastAPI(title=title, docs_url=None, redoc_url=None)
    state = ServerState(
        engine,
        tokenizer,
        targets,
        settings,
        log,
        Metrics(engine),
        routers=routers or {},
        project=project,
        versions={t.adapter: t.version for t in targets.values() if t.version},
    )
    app.state.server = state
    _error_handlers(app)
    _guards(app, state)
    for module in (completions, feedback, status, metrics, admin):
        app.include_router(module.router)
    return app


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.detail, exc.type, exc.param, exc.code), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(str(exc.detail), "invalid_request_error"), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(p) for p in first["loc"] if p != "body") or None
        return JSONResponse(
            error_body(f"{param or 'body'}: {first['msg']}", "invalid_request_error", param), status_code=400
        )


def _guards(app: FastAPI, state: ServerState) -> None:
    """Body size and JSON depth (streamed bodies too), then keys and the admin rule (serve/access.py), and
    the security headers on every answer."""
    keys, admins = accepted_keys(state.settings), admin_keys(state.settings)
    app.add_middleware(BodyGuard, limit_for=state.body_limit, max_depth=state.settings.max_json_depth)

    @app.middleware("http")
    async def _guard(request: Request, call_next: Any) -> Any:
        size = request.headers.get("content-length")
        limit = state.body_limit(request.url.path)
        if size and size.isdigit() and int(size) > limit:  # refused before a byte of it is read
            return JSONResponse(
                error_body(f"request body over {limit} bytes", "invalid_request_error"), status_code=413
            )
        answer = refusal(request, keys, admins)
        if answer is None:
            answer = await call_next(request)
        answer.headers.update(SECURITY_HEADERS)
        return answer
