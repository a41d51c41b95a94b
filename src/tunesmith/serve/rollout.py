"""Traffic routing between a model's production, canary and shadow versions, and rollback triggers.

Requests for a registry name go to its production version; the canary version gets
`share` of them — sticky per user or session id (hashed), so one user sees one version —
and the shadow version gets a copy of every request in the background, whose answer is
logged and never returned. Each version keeps a sliding window of its last requests
(status, latency) and feedback scores; `trigger()` compares the canary's window with
production's and names the rule that fired, if any.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tunesmith.config import RolloutConfig


@dataclass
class Window:
    size: int
    requests: deque = field(default_factory=deque)  # (ok, latency_s)
    feedback: deque = field(default_factory=deque)  # scores 0-1

    def __post_init__(self) -> None:
        self.requests = deque(maxlen=self.size)
        self.feedback = deque(maxlen=self.size)

    def summary(self) -> dict[str, Any]:
        n = len(self.requests)
        latencies = sorted(lat for ok, lat in self.requests if ok)
        return {"requests": n,
                "error_rate": round(sum(1 for ok, _ in self.requests if not ok) / n, 4) if n else None,
                "latency_p95_s": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 4)
                if latencies else None,
                "feedback": len(self.feedback),
                "feedback_mean": round(sum(self.feedback) / len(self.feedback), 4) if self.feedback else None}


class Router:
    """Routing state for one registry model name; thread-safe."""

    def __init__(self, name: str, settings: RolloutConfig, production: str | None, canary: str | None = None,
                 shadow: str | None = None, share: float | None = None) -> None:
        self.name, self.settings = name, settings
        self.production, self.canary, self.shadow = production, canary, shadow
        self.share = settings.canary_share if share is None else share
        self.windows: dict[str, Window] = {}
        self.lock = threading.Lock()
        self.events: list[dict[str, Any]] = []

    def window(self, adapter: str) -> Window:
        if adapter not in self.windows:
            self.windows[adapter] = Window(self.settings.window)
        return self.windows[adapter]

    def pick(self, key: str | None) -> str | None:
        """The adapter that answers this request."""
        with self.lock:
            if not self.canary or self.share <= 0:
                return self.production
            if key:
                bucket = int.from_bytes(hashlib.sha256(f"{self.name}:{key}".encode()).digest()[:8], "big") / 2**64
            else:
                bucket = random.random()
            return self.canary if bucket < self.share else self.production

    def observe(self, adapter: str, ok: bool, latency_s: float) -> None:
        with self.lock:
            self.window(adapter).requests.append((ok, latency_s))

    def add_feedback(self, adapter: str, score: float) -> None:
        with self.lock:
            self.window(adapter).feedback.append(score)

    def set_canary(self, adapter: str | None, share: float | None = None) -> None:
        with self.lock:
            if adapter != self.canary and adapter is not None:
                self.windows.pop(adapter, None)  # a new canary starts with a clean window
            self.canary = adapter
            if share is not None:
                self.share = share

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {"name": self.name, "production": self.production, "canary": self.canary, "shadow": self.shadow,
                    "canary_share": self.share,
                    "windows": {a: w.summary() for a, w in self.windows.items()}}

    def trigger(self) -> str | None:
        """The rollback rule the canary breaks against production, or None (also None until both have enough data)."""
        s = self.settings
        with self.lock:
            if not self.canary or not self.production:
                return None
            canary, prod = self.window(self.canary).summary(), self.window(self.production).summary()
        if canary["requests"] < s.min_requests or prod["requests"] < s.min_requests:
            return None
        if canary["error_rate"] - prod["error_rate"] > s.max_error_rate_increase:
            return (f"error rate {canary['error_rate']:.1%} vs production {prod['error_rate']:.1%} "
                    f"(> +{s.max_error_rate_increase:.0%} points)")
        if canary["latency_p95_s"] and prod["latency_p95_s"] and \
                canary["latency_p95_s"] > prod["latency_p95_s"] * (1 + s.max_latency_increase):
            return (f"p95 latency {canary['latency_p95_s']:.3f}s vs production {prod['latency_p95_s']:.3f}s "
                    f"(> +{s.max_latency_increase:.0%})")
        if canary["feedback"] >= s.min_feedback and prod["feedback"] >= s.min_feedback and \
                prod["feedback_mean"] - canary["feedback_mean"] > s.max_feedback_drop:
            return (f"feedback {canary['feedback_mean']:.2f} vs production {prod['feedback_mean']:.2f} "
                    f"(> -{s.max_feedback_drop:.2f})")
        return None

    def healthy(self) -> bool:
        """Enough canary traffic in the window and no trigger: a rollout step may advance."""
        with self.lock:
            if not self.canary:
                return False
            enough = self.window(self.canary).summary()["requests"] >= self.settings.min_requests
        return enough and self.trigger() is None
