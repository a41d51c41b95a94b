"""The OpenAI-compatible HTTP API (FastAPI): chat and text completions, streaming, models, health, metrics.

Errors use OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, so the
official client raises its usual exceptions (400 BadRequestError, 401 AuthenticationError,
404 NotFoundError, 429 RateLimitError).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException

from tunesmith.config import ServeConfig
from tunesmith.serve.access import SECURITY_HEADERS, refusal
from tunesmith.serve.engine import Engine, GenRequest, QueueFull
from tunesmith.serve.guard import BodyGuard, error_body, leaks_pii
from tunesmith.serve.keys import accepted_keys, admin_keys, hash_key, organisation, owned_by
from tunesmith.serve.models import Target
from tunesmith.serve.protocol import (
    ApiError,
    ChatRequest,
    CompletionRequest,
    FeedbackRequest,
    Sampling,
    chunk_of,
    sse,
    text_of,
    usage_of,
)
from tunesmith.serve.requestlog import RequestLog
from tunesmith.serve.upstream import proxy as _proxy

__all__ = ["create_app", "hash_key"]


def create_app(engine: Engine, tokenizer: Any, targets: dict[str, Target], settings: ServeConfig,
               log: RequestLog, *, title: str = "tunesmith", routers: dict[str, Any] | None = None,
               project: Any = None) -> FastAPI:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

    app = FastAPI(title=title, docs_url=None, redoc_url=None)
    keys = accepted_keys(settings)
    registry = CollectorRegistry()
    requests_total = Counter("tunesmith_requests", "Requests by model and status", ["model", "status"],
                             registry=registry)
    latency = Histogram("tunesmith_request_latency_seconds", "Request latency", ["model"], registry=registry,
                        buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120))
    tokens = Counter("tunesmith_tokens", "Tokens by model and kind", ["model", "kind"], registry=registry)
    first_token = Histogram("tunesmith_time_to_first_token_seconds", "Queue to first token, in the engine", ["model"],
                            registry=registry, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60))
    queued = Histogram("tunesmith_queue_wait_seconds", "Queue to prefill, in the engine", ["model"],
                       registry=registry, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
    Gauge("tunesmith_queue_depth", "Requests waiting", registry=registry).set_function(lambda: engine.queue.qsize())
    Gauge("tunesmith_batch_in_flight", "Requests in the running batch", registry=registry).set_function(
        lambda: engine.busy)
    rollbacks = Counter("tunesmith_rollbacks", "Automatic canary rollbacks", ["model"], registry=registry)
    feedback_total = Counter("tunesmith_feedback", "Feedback received", ["model", "version"], registry=registry)
    routers = routers or {}
    versions = {t.adapter: t.version for t in targets.values() if t.version}
    app.state.engine, app.state.log, app.state.targets, app.state.metrics_registry = engine, log, targets, registry
    app.state.routers, app.state.versions, app.state.tokenizer = routers, versions, tokenizer
    # Other parts of the server (the fine-tuning jobs API) serve models of their own: a finder maps a
    # name not in `targets` to a Target (it may load an adapter: it runs in a thread), a lister adds
    # names to /v1/models; both get the caller's key digest (None without keys).
    app.state.model_finders, app.state.model_listers = [], []
    app.state.upload_paths, app.state.max_upload_bytes = ("/v1/files",), settings.jobs.max_file_bytes

    def roll_back_if_needed(router: Any) -> None:
        reason = router.trigger()
        if not reason or not router.canary:
            return
        bad = router.canary
        router.set_canary(None)
        router.rollbacks.append(f"canary {bad} rolled back: {reason}")
        rollbacks.labels(router.name).inc()
        log.event(router.name, "rollback", f"canary {bad} rolled back: {reason}")
        if project is not None and bad in versions:  # the registry follows; retried until it does
            from tunesmith.registry.store import clear_alias
            from tunesmith.serve.admin import without_canary

            owe_registry(f"clear canary v{versions[bad]}",
                         lambda: without_canary(project, clear_alias, f"automatic rollback: {reason}"))

    def owe_registry(what: str, action: Any) -> None:
        watcher = getattr(app.state, "aliases", None)
        if watcher is not None:
            watcher.write(what, action)
            return
        import threading

        def once() -> None:  # no watcher (alias_poll_s: 0): one try, logged when it fails
            try:
                action()
            except Exception as exc:
                log.event("registry", "registry_error", f"{what}: {type(exc).__name__}: {exc}")

        threading.Thread(target=once, daemon=True).start()

    app.state.owe_registry = owe_registry

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.detail, exc.type, exc.param, exc.code),
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail), "invalid_request_error"),
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(p) for p in first["loc"] if p != "body") or None
        return JSONResponse(error_body(f"{param or 'body'}: {first['msg']}", "invalid_request_error", param),
                            status_code=400)

    def body_limit(path: str) -> int:
        return app.state.max_upload_bytes if path in app.state.upload_paths else settings.max_request_bytes

    app.add_middleware(BodyGuard, limit_for=body_limit, max_depth=settings.max_json_depth)  # streamed bodies too
    admins = admin_keys(settings)

    @app.middleware("http")
    async def _guard(request: Request, call_next: Any) -> Any:
        size = request.headers.get("content-length")
        limit = body_limit(request.url.path)
        if size and size.isdigit() and int(size) > limit:  # refused before a byte of it is read
            return JSONResponse(error_body(f"request body over {limit} bytes", "invalid_request_error"),
                                status_code=413)
        answer = refusal(request, keys, admins)
        if answer is None:
            answer = await call_next(request)
        answer.headers.update(SECURITY_HEADERS)
        return answer

    async def resolve(name: str, request: Request) -> Target:
        if name in targets:
            return targets[name]
        loop = asyncio.get_running_loop()
        for find in app.state.model_finders:
            found = await loop.run_in_executor(None, find, name, request.state.key_digest)
            if found is not None:
                return found
        raise ApiError(404, f"model {name!r} not found; GET /v1/models lists the served names",
                       param="model", code="model_not_found")

    context = getattr(getattr(engine.model, "config", None), "max_position_embeddings", None)

    def gen_request(body: Sampling, prompt_ids: list[int], target: Target) -> GenRequest:
        max_tokens = body.max_completion_tokens or body.max_tokens or min(256, settings.max_tokens_limit)
        if max_tokens > settings.max_tokens_limit:
            raise ApiError(400, f"max_tokens {max_tokens} is over this server's limit of {settings.max_tokens_limit}",
                           param="max_tokens")
        if not prompt_ids:
            raise ApiError(400, "the prompt is empty", param="prompt")
        if len(prompt_ids) > settings.max_prompt_tokens:
            raise ApiError(400, f"the prompt has {len(prompt_ids)} tokens; this server takes at most "
                           f"{settings.max_prompt_tokens} (serve.max_prompt_tokens)", param="messages",
                           code="context_length_exceeded")
        if isinstance(context, int) and len(prompt_ids) + max_tokens > context:
            raise ApiError(400, f"the prompt ({len(prompt_ids)} tokens) plus max_tokens ({max_tokens}) is more than "
                           f"the model's context of {context} tokens; shorten the prompt or lower max_tokens",
                           param="max_tokens", code="context_length_exceeded")
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        return GenRequest(prompt_ids, adapter=target.adapter, max_tokens=max_tokens, temperature=body.temperature,
                          top_p=body.top_p, seed=body.seed, stop=stop,
                          deadline=time.perf_counter() + settings.request_timeout_s)

    def route(target: Target, body: Sampling, request: Request) -> tuple[str, str, Any]:
        """(adapter, version, router): a routed name sends its canary share to the canary version."""
        router = routers.get(target.router) if target.router else None
        if router is None:
            return target.adapter, target.version, None
        user = body.user or request.headers.get("x-session-id")  # sticky per caller's key and user, so a caller
        adapter = router.pick(f"{request.state.key_digest or ''}:{user}" if user else None)  # cannot pick its bucket
        return adapter, versions.get(adapter, ""), router

    def shadow_copy(router: Any, body: Sampling, prompt_ids: list[int], rid: str, prompt_text: str) -> None:
        """The shadow version answers a copy in the background; its answer is logged, never returned."""
        if router is None or not router.shadow:
            return
        copy = gen_request(body, prompt_ids, Target(body.model, adapter=router.shadow))
        began = time.perf_counter()
        try:
            future = engine.submit(copy)
        except QueueFull:
            log.event(router.name, "shadow_skipped", "queue full")
            return

        def done(f: Any) -> None:
            elapsed = time.perf_counter() - began
            failed = f.exception() is not None
            result = None if failed else f.result()
            router.observe(router.shadow, not failed, elapsed)
            log.write(id=f"{rid}-shadow", model=body.model, target=router.shadow,
                      version=versions.get(router.shadow, ""), user=body.user or "", prompt_tokens=len(prompt_ids),
                      completion_tokens=result["completion_tokens"] if result else 0,
                      latency_ms=round(elapsed * 1000, 1), status=500 if failed else 200,
                      finish_reason=result["finish_reason"] if result else "", prompt=prompt_text,
                      completion=result["text"] if result else None, shadow=True)

        future.add_done_callback(done)

    async def run(kind: str, body: Sampling, target: Target, prompt_ids: list[int], prompt_text: str,
                  wrap: Any, request: Request) -> Any:
        rid = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        created, began = int(time.time()), time.perf_counter()
        adapter, version, router = route(target, body, request)
        req = gen_request(body, prompt_ids, Target(target.name, adapter=adapter))
        fault = settings.rollout.faults.get(adapter) or settings.rollout.faults.get(body.model) or {}
        if fault.get("error_rate", 0) > 0 and random.random() < fault["error_rate"]:
            requests_total.labels(body.model, "500").inc()
            log.write(id=rid, model=body.model, target=adapter, version=version, user=body.user or "",
                      prompt_tokens=len(prompt_ids), status=500, error="injected fault")
            if router:
                router.observe(adapter, False, time.perf_counter() - began)
                roll_back_if_needed(router)
            raise ApiError(500, "injected fault (serve.rollout.faults)", "server_error")
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        if body.stream:
            req.on_text = lambda piece: loop.call_soon_threadsafe(pieces.put_nowait, piece)
        try:
            future = engine.submit(req)
        except QueueFull:
            requests_total.labels(body.model, "429").inc()
            log.write(id=rid, model=body.model, target=adapter, version=version, user=body.user or "",
                      prompt_tokens=len(prompt_ids), status=429, error="queue full")
            raise ApiError(429, "the server is at capacity; retry shortly", "rate_limit_error",
                           code="queue_full", headers={"Retry-After": "1"}) from None
        shadow_copy(router, body, prompt_ids, rid, prompt_text)

        def record(result: dict[str, Any] | None, status: int, error: str = "") -> None:
            elapsed = time.perf_counter() - began
            requests_total.labels(body.model, str(status)).inc()
            latency.labels(body.model).observe(elapsed)
            if result:
                tokens.labels(body.model, "prompt").inc(result["prompt_tokens"])
                tokens.labels(body.model, "completion").inc(result["completion_tokens"])
                if "first_token_s" in result:  # the built-in engine's (an upstream server times its own)
                    first_token.labels(body.model).observe(result["first_token_s"])
                    queued.labels(body.model).observe(result["queued_s"])
            if router and status != 499:  # a client that left is neither an answer nor an error of the version
                router.observe(adapter, status == 200, elapsed)
                if result and random.random() < settings.rollout.safety_sample:
                    router.add_flag(adapter, leaks_pii(prompt_text, result["text"]))
                roll_back_if_needed(router)
            log.write(id=rid, model=body.model, target=adapter, version=version, user=body.user or "",
                      prompt_tokens=len(prompt_ids), completion_tokens=result["completion_tokens"] if result else 0,
                      latency_ms=round(elapsed * 1000, 1), status=status,
                      finish_reason=result["finish_reason"] if result else "", error=error, prompt=prompt_text,
                      completion=result["text"] if result else None)

        async def wait() -> dict[str, Any]:
            try:
                return await asyncio.wait_for(asyncio.wrap_future(future), settings.request_timeout_s)
            except asyncio.TimeoutError:
                req.deadline = 0.0  # the engine drops the row at its next step
                record(None, 504, "timeout")
                raise ApiError(504, f"no answer within {settings.request_timeout_s:g} s", "timeout") from None
            except Exception as exc:  # the engine failed on this batch; the server keeps running
                record(None, 500, type(exc).__name__)
                raise ApiError(500, f"generation failed ({type(exc).__name__})", "server_error") from None

        delay = fault.get("delay_ms", 0) / 1000
        if not body.stream:
            result = await wait()
            if delay:
                await asyncio.sleep(delay)
            record(result, 200)
            return JSONResponse(wrap(rid, created, result))

        async def events() -> Any:
            finished = False
            try:
                async for piece in stream():
                    yield piece
                finished = True
            finally:
                if not finished and not future.done():  # the client went away: stop generating for it
                    req.deadline = 0.0
                    record(None, 499, "client disconnected")

        async def stream() -> Any:
            first = {"role": "assistant", "content": ""} if kind == "chat" else None
            if first:
                yield sse(chunk_of(kind, rid, created, body.model, first, None))
            done = asyncio.ensure_future(asyncio.wrap_future(future))
            while True:
                getter = asyncio.ensure_future(pieces.get())
                finished, _ = await asyncio.wait({getter, done}, timeout=settings.request_timeout_s,
                                                 return_when=asyncio.FIRST_COMPLETED)
                if getter in finished:
                    piece = getter.result()
                    yield sse(chunk_of(kind, rid, created, body.model, {"content": piece} if kind == "chat" else piece,
                                      None))
                    continue
                getter.cancel()
                if done in finished:
                    break
                req.deadline = 0.0
                record(None, 504, "timeout")
                return
            while not pieces.empty():
                piece = pieces.get_nowait()
                yield sse(chunk_of(kind, rid, created, body.model, {"content": piece} if kind == "chat" else piece, None))
            result = done.result()
            if delay:
                await asyncio.sleep(delay)
            record(result, 200)
            yield sse(chunk_of(kind, rid, created, body.model, {} if kind == "chat" else "",
                              result["finish_reason"] if result["finish_reason"] != "timeout" else "length"))
            if body.stream_options and body.stream_options.include_usage:
                yield sse({**chunk_of(kind, rid, created, body.model, None, None), "choices": [],
                           "usage": usage_of(result)})
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request) -> Any:
        target = await resolve(body.model, request)
        if target.kind == "upstream":
            return await _proxy(target, "chat/completions", await request.json(), body.stream)
        messages = [{"role": m.role, "content": text_of(m.content)} for m in body.messages]
        if target.system_prompt and not any(m["role"] == "system" for m in messages):  # as it was trained
            messages = [{"role": "system", "content": target.system_prompt}, *messages]
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]

        def wrap(rid: str, created: int, result: dict[str, Any]) -> dict[str, Any]:
            out = {"id": rid, "object": "chat.completion", "created": created, "model": body.model,
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": result["text"]},
                                "finish_reason": "length" if result["finish_reason"] == "timeout"
                                else result["finish_reason"]}],
                   "usage": usage_of(result)}
            schema = (body.response_format or {}).get("json_schema", {}).get("schema")
            if schema:
                out["tunesmith"] = {"schema_valid": _valid(result["text"], schema)}
            return out

        return await run("chat", body, target, ids, json.dumps(messages, ensure_ascii=False), wrap, request)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Any:
        target = await resolve(body.model, request)
        if target.kind == "upstream":
            return await _proxy(target, "completions", await request.json(), body.stream)
        ids = tokenizer(body.prompt, add_special_tokens=False)["input_ids"]

        def wrap(rid: str, created: int, result: dict[str, Any]) -> dict[str, Any]:
            return {"id": rid, "object": "text_completion", "created": created, "model": body.model,
                    "choices": [{"index": 0, "text": result["text"], "logprobs": None,
                                 "finish_reason": "length" if result["finish_reason"] == "timeout"
                                 else result["finish_reason"]}],
                    "usage": usage_of(result)}

        return await run("completion", body, target, ids, body.prompt, wrap, request)

    @app.post("/v1/feedback")
    async def feedback(body: FeedbackRequest, request: Request) -> dict[str, Any]:
        row = log.get(body.id)
        if row is None:
            raise ApiError(404, f"no request with id {body.id!r} in the request log", param="id",
                           code="request_not_found")
        score = body.score
        if score is None and body.thumbs:
            score = 1.0 if body.thumbs == "up" else 0.0
        if score is None and body.rating is not None:
            score = (body.rating - 1) / 4
        if score is None and body.correction is None and body.flag is None:
            raise ApiError(400, "give a score (0-1), thumbs (up/down), a rating (1-5), a correction or a flag")
        if score is None:
            score = 0.0  # a correction says the answer was wrong
        first = log.add_feedback(body.id, score, body.correction, request.state.key_digest or "")
        if not first:  # counted once per request and key: a repeat replaces the score, never adds weight
            return {"id": body.id, "recorded": True, "score": score, "replaced": True}
        feedback_total.labels(row["model"], row["version"] or "-").inc()
        router = routers.get(row["model"])
        if router is not None:
            if body.score is not None or body.thumbs or body.rating is not None or body.correction is not None:
                router.add_feedback(row["target"], score)
            if body.flag:
                router.add_flag(row["target"], True)
            roll_back_if_needed(router)
        return {"id": body.id, "recorded": True, "score": score}

    from tunesmith.serve.admin import add_admin_routes

    add_admin_routes(app, project)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        names = set(targets)
        for more in app.state.model_listers:
            names.update(more(request.state.key_digest))
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "tunesmith"}
                                           for name in sorted(names)]}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "queue": engine.queue.qsize(), "models": len(targets)}

    @app.get("/metrics")
    async def metrics(request: Request) -> PlainTextResponse:
        text = generate_latest(registry).decode()
        if not request.state.is_admin:  # another organisation's fine-tuned models are not named to this caller
            org = organisation(settings, request.state.key_digest)
            text = "\n".join(line for line in text.split("\n")
                             if 'model="ft:' not in line or owned_by(line.split('model="', 1)[1].split('"')[0], org))
        return PlainTextResponse(text, media_type=CONTENT_TYPE_LATEST)

    return app


def _valid(text: str, schema: dict[str, Any]) -> bool:
    from tunesmith.evaluate.metrics import schema_compliance

    return schema_compliance([text], schema)[0] == 1.0

