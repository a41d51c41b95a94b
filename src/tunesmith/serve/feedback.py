"""`POST /v1/feedback`: a score, thumbs, rating, correction or flag on an answer, by its request id.
Counted once per request and key (a repeat replaces the score); a routed model's canary router gets it,
and may roll back."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from tunesmith.serve.protocol import ApiError, FeedbackRequest
from tunesmith.serve.state import ServerState

router = APIRouter()


def score_of(body: FeedbackRequest) -> float | None:
    """The feedback as one score in [0, 1]: score, else thumbs, else a 1–5 rating; a bare correction is 0."""
    if body.score is not None:
        return body.score
    if body.thumbs:
        return 1.0 if body.thumbs == "up" else 0.0
    if body.rating is not None:
        return (body.rating - 1) / 4
    return 0.0 if body.correction is not None else None


@router.post("/v1/feedback")
async def feedback(body: FeedbackRequest, request: Request) -> dict[str, Any]:
    state: ServerState = request.app.state.server
    row = state.log.get(body.id)
    if row is None:
        raise ApiError(404, f"no request with id {body.id!r} in the request log", param="id", code="request_not_found")
    score = score_of(body)
    if score is None and body.flag is None:
        raise ApiError(400, "give a score (0-1), thumbs (up/down), a rating (1-5), a correction or a flag")
    score = score or 0.0
    first = state.log.add_feedback(body.id, score, body.correction, request.state.key_digest or "")
    if not first:  # counted once per request and key: a repeat replaces the score, never adds weight
        return {"id": body.id, "recorded": True, "score": score, "replaced": True}
    state.metrics.feedback.labels(row["model"], row["version"] or "-").inc()
    canary = state.routers.get(row["model"])
    if canary is not None:
        if body.score is not None or body.thumbs or body.rating is not None or body.correction is not None:
            canary.add_feedback(row["target"], score)
        if body.flag:
            canary.add_flag(row["target"], True)
        state.roll_back_if_needed(canary)
    return {"id": body.id, "recorded": True, "score": score}
