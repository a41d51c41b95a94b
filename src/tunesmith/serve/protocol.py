"""The OpenAI wire format: request models, error type, response and stream-chunk shapes.

Requests are validated by these pydantic models; unknown fields are ignored as OpenAI's API
does, except on tunesmith's own endpoints (feedback, rollout), which reject them.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException


class ApiError(HTTPException):
    """An error answered in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status, detail=message, headers=headers)
        self.type, self.param, self.code = type, param, code


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: str | list[dict[str, Any]]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False  # a last chunk with `usage` and no choices, before [DONE]


class Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, lt=2**63)  # torch generators take 64-bit seeds
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    n: int = Field(1, ge=1, le=1)


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    response_format: dict[str, Any] | None = None


class CompletionRequest(Sampling):
    prompt: str


def text_of(content: str | list[dict[str, Any]]) -> str:
    """The text of a message's content (a string, or OpenAI's list of parts); a malformed part is a 400."""
    if isinstance(content, str):
        return content
    texts = []
    for i, part in enumerate(content):
        if part.get("type") != "text":
            continue
        if not isinstance(part.get("text"), str):
            raise ApiError(400, f"messages[].content[{i}].text must be a string", param="messages")
        texts.append(part["text"])
    return "".join(texts)


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    score: float | None = Field(None, ge=0.0, le=1.0)
    thumbs: Literal["up", "down"] | None = None
    rating: int | None = Field(None, ge=1, le=5)
    correction: str | None = None
    flag: Literal["unsafe"] | None = None  # a user report: counts toward the safety-incident trigger


class RolloutUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    canary_version: int | None = None
    share: float | None = Field(None, ge=0.0, le=1.0)
    action: Literal["set", "promote", "clear"] = "set"


def usage_of(result: dict[str, Any]) -> dict[str, int]:
    """OpenAI's `usage` block for a generation result."""
    return {
        "prompt_tokens": result["prompt_tokens"],
        "completion_tokens": result["completion_tokens"],
        "total_tokens": result["prompt_tokens"] + result["completion_tokens"],
    }


def chunk_of(kind: str, rid: str, created: int, model: str, delta: Any, finish: str | None) -> dict[str, Any]:
    """One streamed chunk of a chat or text completion."""
    if kind == "chat":
        return {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    return {
        "id": rid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": delta, "logprobs": None, "finish_reason": finish}],
    }


def sse(data: dict[str, Any]) -> str:
    """A server-sent event carrying `data` as JSON."""
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
