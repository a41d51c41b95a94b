"""Prometheus metrics of a server (`GET /metrics`): requests, latency, tokens, time to first token, queue
wait and depth, the batch in flight, rollbacks and feedback. A caller without the admin key sees no
other organisation's fine-tuned model names."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from tunesmith.serve.keys import organisation, owned_by


class Metrics:
    def __init__(self, engine: Any) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "tunesmith_requests", "Requests by model and status", ["model", "status"], registry=registry
        )
        self.latency = Histogram(
            "tunesmith_request_latency_seconds",
            "Request latency",
            ["model"],
            registry=registry,
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
        )
        self.tokens = Counter("tunesmith_tokens", "Tokens by model and kind", ["model", "kind"], registry=registry)
        self.first_token = Histogram(
            "tunesmith_time_to_first_token_seconds",
            "Queue to first token, in the engine",
            ["model"],
            registry=registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
        )
        self.queued = Histogram(
            "tunesmith_queue_wait_seconds",
            "Queue to prefill, in the engine",
            ["model"],
            registry=registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
        )
        Gauge("tunesmith_queue_depth", "Requests waiting", registry=registry).set_function(lambda: engine.queue.qsize())
        Gauge("tunesmith_batch_in_flight", "Requests in the running batch", registry=registry).set_function(
            lambda: engine.busy
        )
        self.rollbacks = Counter("tunesmith_rollbacks", "Automatic canary rollbacks", ["model"], registry=registry)
        self.feedback = Counter("tunesmith_feedback", "Feedback received", ["model", "version"], registry=registry)

    def text(self) -> str:
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()


router = APIRouter()


@router.get("/metrics")
async def metrics(request: Request) -> PlainTextResponse:
    from prometheus_client import CONTENT_TYPE_LATEST

    state = request.app.state.server
    text = state.metrics.text()
    if not request.state.is_admin:  # another organisation's fine-tuned models are not named to this caller
        org = organisation(state.settings, request.state.key_digest)
        text = "\n".join(
            line
            for line in text.split("\n")
            if 'model="ft:' not in line or owned_by(line.split('model="', 1)[1].split('"')[0], org)
        )
    return PlainTextResponse(text, media_type=CONTENT_TYPE_LATEST)
