"""Models served by another OpenAI-compatible server (`serve.upstreams`, e.g. vLLM): requests passed through."""

from __future__ import annotations

import os
from typing import Any

from fastapi.responses import JSONResponse, StreamingResponse

from tunesmith.serve.models import Target
from tunesmith.serve.protocol import ApiError


async def proxy(target: Target, path: str, payload: dict[str, Any], stream: bool) -> Any:
    """Send the request to the upstream OpenAI-compatible server (e.g. vLLM) and pass its answer through."""
    import httpx

    up = target.upstream
    assert up is not None
    payload = {**payload, "model": up.model or target.name}
    headers = {}
    if up.api_key_env and os.environ.get(up.api_key_env):
        headers["Authorization"] = f"Bearer {os.environ[up.api_key_env]}"
    url = f"{up.base_url.rstrip('/')}/{path}"
    client = httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=10.0))
    try:
        if not stream:
            answer = await client.post(url, json=payload, headers=headers)
            await client.aclose()
            return JSONResponse(answer.json(), status_code=answer.status_code)
        upstream = await client.send(client.build_request("POST", url, json=payload, headers=headers), stream=True)
    except httpx.HTTPError as exc:
        await client.aclose()
        raise ApiError(
            502, f"upstream for {target.name!r} at {up.base_url} failed: {type(exc).__name__}", "upstream_error"
        ) from None

    async def relay() -> Any:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        finally:
            await upstream.aclose()
            await client.aclose()

    return StreamingResponse(relay(), status_code=upstream.status_code, media_type="text/event-stream")
