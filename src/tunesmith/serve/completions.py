"""`POST /v1/chat/completions` and `/v1/completions`: one request from its body to the engine and back,
streamed or whole, through the canary router, with the shadow copy, the metrics and the request log."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from tunesmith.serve.engine import GenRequest, QueueFull
from tunesmith.serve.guard import leaks_pii
from tunesmith.serve.models import Target
from tunesmith.serve.protocol import (
    ApiError,
    ChatRequest,
    CompletionRequest,
    Sampling,
    chunk_of,
    sse,
    text_of,
    usage_of,
)
from tunesmith.serve.state import ServerState
from tunesmith.serve.upstream import proxy

router = APIRouter()


def gen_request(state: ServerState, body: Sampling, prompt_ids: list[int], target: Target) -> GenRequest:
    """The engine's request, after the server's limits: max_tokens, prompt length, the model's context."""
    settings = state.settings
    max_tokens = body.max_completion_tokens or body.max_tokens or min(256, settings.max_tokens_limit)
    if max_tokens > settings.max_tokens_limit:
        raise ApiError(
            400,
            f"max_tokens {max_tokens} is over this server's limit of {settings.max_tokens_limit}",
            param="max_tokens",
        )
    if not prompt_ids:
        raise ApiError(400, "the prompt is empty", param="prompt")
    if len(prompt_ids) > settings.max_prompt_tokens:
        raise ApiError(
            400,
            f"the prompt has {len(prompt_ids)} tokens; this server takes at most "
            f"{settings.max_prompt_tokens} (serve.max_prompt_tokens)",
            param="messages",
            code="context_length_exceeded",
        )
    context = getattr(getattr(state.engine.model, "config", None), "max_position_embeddings", None)
    if isinstance(context, int) and len(prompt_ids) + max_tokens > context:
        raise ApiError(
            400,
            f"the prompt ({len(prompt_ids)} tokens) plus max_tokens ({max_tokens}) is more than "
            f"the model's context of {context} tokens; shorten the prompt or lower max_tokens",
            param="max_tokens",
            code="context_length_exceeded",
        )
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    return GenRequest(
        prompt_ids,
        adapter=target.adapter,
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=stop,
        deadline=time.perf_counter() + settings.request_timeout_s,
    )


def route(state: ServerState, target: Target, body: Sampling, request: Request) -> tuple[str, str, Any]:
    """(adapter, version, router): a routed name sends its canary share to the canary version."""
    router = state.routers.get(target.router) if target.router else None
    if router is None:
        return target.adapter, target.version, None
    user = body.user or request.headers.get("x-session-id")  # sticky per caller's key and user, so a caller
    adapter = router.pick(f"{request.state.key_digest or ''}:{user}" if user else None)  # cannot pick its bucket
    return adapter, state.versions.get(adapter, ""), router


def shadow_copy(
    state: ServerState, router: Any, body: Sampling, prompt_ids: list[int], rid: str, prompt_text: str
) -> None:
    """The shadow version answers a copy in the background; its answer is logged, never returned."""
    if router is None or not router.shadow:
        return
    copy = gen_request(state, body, prompt_ids, Target(body.model, adapter=router.shadow))
    began = time.perf_counter()
    try:
        future = state.engine.submit(copy)
    except QueueFull:
        state.log.event(router.name, "shadow_skipped", "queue full")
        return

    def done(f: Any) -> None:
        elapsed = time.perf_counter() - began
        failed = f.exception() is not None
        result = None if failed else f.result()
        router.observe(router.shadow, not failed, elapsed)
        state.log.write(
            id=f"{rid}-shadow",
            model=body.model,
            target=router.shadow,
            version=state.versions.get(router.shadow, ""),
            user=body.user or "",
            prompt_tokens=len(prompt_ids),
            completion_tokens=result["completion_tokens"] if result else 0,
            latency_ms=round(elapsed * 1000, 1),
            status=500 if failed else 200,
            finish_reason=result["finish_reason"] if result else "",
            prompt=prompt_text,
            completion=result["text"] if result else None,
            shadow=True,
        )

    future.add_done_callback(done)


async def run(
    state: ServerState,
    kind: str,
    body: Sampling,
    target: Target,
    prompt_ids: list[int],
    prompt_text: str,
    wrap: Any,
    request: Request,
) -> Any:
    """Answer one request: pick the version, inject a configured fault, queue it, then wait for the whole
    answer or stream its pieces; every outcome (200, 429, 499, 500, 504) is counted, logged and told to
    the canary router, which may roll back. Kept as one function: its closures share the request's
    future, timing and router, and each is short."""
    settings, metrics, log = state.settings, state.metrics, state.log
    rid = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}"
    created, began = int(time.time()), time.perf_counter()
    adapter, version, router = route(state, target, body, request)
    req = gen_request(state, body, prompt_ids, Target(target.name, adapter=adapter))

    def record(result: dict[str, Any] | None, status: int, error: str = "") -> None:
        elapsed = time.perf_counter() - began
        metrics.requests.labels(body.model, str(status)).inc()
        if status != 429:  # turned away before it queued: counted, not timed
            metrics.latency.labels(body.model).observe(elapsed)
        if result:
            metrics.tokens.labels(body.model, "prompt").inc(result["prompt_tokens"])
            metrics.tokens.labels(body.model, "completion").inc(result["completion_tokens"])
            if "first_token_s" in result:  # the built-in engine's (an upstream server times its own)
                metrics.first_token.labels(body.model).observe(result["first_token_s"])
                metrics.queued.labels(body.model).observe(result["queued_s"])
        if router and status not in (429, 499):  # a full queue or a client that left: not the version's doing
            router.observe(adapter, status == 200, elapsed)
            if result and random.random() < settings.rollout.safety_sample:
                router.add_flag(adapter, leaks_pii(prompt_text, result["text"]))
            state.roll_back_if_needed(router)
        log.write(
            id=rid,
            model=body.model,
            target=adapter,
            version=version,
            user=body.user or "",
            prompt_tokens=len(prompt_ids),
            completion_tokens=result["completion_tokens"] if result else 0,
            latency_ms=round(elapsed * 1000, 1),
            status=status,
            finish_reason=result["finish_reason"] if result else "",
            error=error,
            prompt=prompt_text,
            completion=result["text"] if result else None,
        )

    fault = settings.rollout.faults.get(adapter) or settings.rollout.faults.get(body.model) or {}
    if fault.get("error_rate", 0) > 0 and random.random() < fault["error_rate"]:
        record(None, 500, "injected fault")
        raise ApiError(500, "injected fault (serve.rollout.faults)", "server_error")
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[str | None] = asyncio.Queue()
    if body.stream:
        req.on_text = lambda piece: loop.call_soon_threadsafe(pieces.put_nowait, piece)
    try:
        future = state.engine.submit(req)
    except QueueFull:
        record(None, 429, "queue full")
        raise ApiError(
            429,
            "the server is at capacity; retry shortly",
            "rate_limit_error",
            code="queue_full",
            headers={"Retry-After": "1"},
        ) from None
    shadow_copy(state, router, body, prompt_ids, rid, prompt_text)

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

    def chunk(delta: Any, finish: str | None) -> dict[str, Any]:
        return chunk_of(kind, rid, created, body.model, delta, finish)

    async def stream() -> Any:
        if kind == "chat":
            yield sse(chunk({"role": "assistant", "content": ""}, None))
        done = asyncio.ensure_future(asyncio.wrap_future(future))
        while True:
            getter = asyncio.ensure_future(pieces.get())
            finished, _ = await asyncio.wait(
                {getter, done}, timeout=settings.request_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            if getter in finished:
                piece = getter.result()
                yield sse(chunk({"content": piece} if kind == "chat" else piece, None))
                continue
            getter.cancel()
            if done in finished:
                break
            req.deadline = 0.0
            record(None, 504, "timeout")
            return
        while not pieces.empty():
            piece = pieces.get_nowait()
            yield sse(chunk({"content": piece} if kind == "chat" else piece, None))
        result = done.result()
        if delay:
            await asyncio.sleep(delay)
        record(result, 200)
        yield sse(
            chunk(
                {} if kind == "chat" else "",
                result["finish_reason"] if result["finish_reason"] != "timeout" else "length",
            )
        )
        if body.stream_options and body.stream_options.include_usage:
            yield sse({**chunk(None, None), "choices": [], "usage": usage_of(result)})
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def _finish_reason(result: dict[str, Any]) -> str:
    return "length" if result["finish_reason"] == "timeout" else result["finish_reason"]


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatRequest, request: Request) -> Any:
    state: ServerState = request.app.state.server
    target = await state.resolve(body.model, request)
    if target.kind == "upstream":
        return await proxy(target, "chat/completions", await request.json(), body.stream)
    messages = [{"role": m.role, "content": text_of(m.content)} for m in body.messages]
    if target.system_prompt and not any(m["role"] == "system" for m in messages):  # as it was trained
        messages = [{"role": "system", "content": target.system_prompt}, *messages]
    text = state.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = state.tokenizer(text, add_special_tokens=False)["input_ids"]

    def wrap(rid: str, created: int, result: dict[str, Any]) -> dict[str, Any]:
        out = {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": body.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result["text"]},
                    "finish_reason": _finish_reason(result),
                }
            ],
            "usage": usage_of(result),
        }
        schema = (body.response_format or {}).get("json_schema", {}).get("schema")
        if schema:
            out["tunesmith"] = {"schema_valid": _valid(result["text"], schema)}
        return out

    return await run(state, "chat", body, target, ids, json.dumps(messages, ensure_ascii=False), wrap, request)


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request) -> Any:
    state: ServerState = request.app.state.server
    target = await state.resolve(body.model, request)
    if target.kind == "upstream":
        return await proxy(target, "completions", await request.json(), body.stream)
    ids = state.tokenizer(body.prompt, add_special_tokens=False)["input_ids"]

    def wrap(rid: str, created: int, result: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": body.model,
            "choices": [
                {"index": 0, "text": result["text"], "logprobs": None, "finish_reason": _finish_reason(result)}
            ],
            "usage": usage_of(result),
        }

    return await run(state, "completion", body, target, ids, body.prompt, wrap, request)


def _valid(text: str, schema: dict[str, Any]) -> bool:
    from tunesmith.schemas import schema_compliance

    return schema_compliance([text], schema)[0] == 1.0
