"""Limits every request meets before any endpoint runs: body size (however it is sent) and JSON depth.

`Content-Length` alone is not a limit: a chunked body has none. `BodyGuard` is a plain ASGI
middleware that reads the body as it streams in and answers 413 as soon as it passes the
limit, so an endless body costs at most the limit in memory. A JSON body nested deeper than
`max_json_depth` is answered 400 (Python's parser would otherwise recurse until it fails with
a 500). Everything else reaches the app unchanged; later `receive` calls go to the client's
own channel, so a streaming endpoint still sees the client disconnect.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(rb"[\[\]{}]")


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def leaks_pii(prompt: str, answer: str) -> bool:
    """The server's own safety check on sampled answers: personal data in the answer that the
    prompt did not contain (a model reciting memorised e-mails, numbers or keys)."""
    from tunesmith.pii import find_pii

    given = {prompt[m.start : m.end] for m in find_pii(prompt)}
    return any(answer[m.start : m.end] not in given for m in find_pii(answer))


def json_depth(body: bytes, limit: int) -> int:
    """The nesting depth of a JSON text, counted up to `limit + 1` (brackets inside strings ignored)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return 0  # cannot be deeper than the number of brackets it opens
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub(b"", body)):
        depth += 1 if bracket in (b"[", b"{") else -1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                break
    return deepest


class BodyGuard:
    def __init__(self, app: Any, limit_for: Callable[[str], int], max_depth: int):
        self.app, self.limit_for, self.max_depth = app, limit_for, max_depth

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        kind = dict(scope.get("headers") or []).get(b"content-type", b"").lower()
        if kind.startswith(b"multipart/"):  # an upload: streamed on to the app, counted, never held here
            await self._stream(scope, receive, send, limit)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            piece = message.get("body", b"")
            size += len(piece)
            if size > limit:
                await _answer(send, 413, error_body(f"request body over {limit} bytes", "invalid_request_error"))
                return
            chunks.append(piece)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        # any body a route may parse as JSON, whatever its declared type (a route reading request.json() does not
        # look at it); forms are not JSON
        parsed = not kind.startswith(b"application/x-www-form-urlencoded")
        if parsed and json_depth(body, self.max_depth) > self.max_depth:
            await _answer(
                send, 400, error_body(f"JSON body nested deeper than {self.max_depth} levels", "invalid_request_error")
            )
            return
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _stream(self, scope: dict[str, Any], receive: Any, send: Any, limit: int) -> None:
        """Pass the body through as it arrives; past the limit answer 413 and tell the app the client left."""
        size, refused = 0, False

        async def counted() -> dict[str, Any]:
            nonlocal size, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    refused = True
                    await _answer(send, 413, error_body(f"request body over {limit} bytes", "invalid_request_error"))
                    return {"type": "http.disconnect"}
            return message

        async def unless_refused(message: dict[str, Any]) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, counted, unless_refused)
        except Exception:
            if not refused:  # the app's own failure; a refused upload's parser stopping is expected
                raise


async def _answer(send: Any, status: int, payload: dict[str, Any]) -> None:
    data = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})
