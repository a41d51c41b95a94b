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
from tunesmith.stats import p95


@dataclass
class Window:
    size: int
    requests: deque = field(default_factory=deque)  # (ok, latency_s)
    feedback: deque = field(default_factory=deque)  # scores 0-1
    flags: deque = field(default_factory=deque)  # 1 flagged, 0 checked and clean

    def __post_init__(self) -> None:
        self.requests = deque(maxlen=self.size)
        self.feedback = deque(maxlen=self.size)
        self.flags = deque(maxlen=self.size)

    def summary(self) -> dict[str, Any]:
        n = len(self.requests)
        latencies = sorted(lat for ok, lat in self.requests if ok)
        return {
            "requests": n,
            "error_rate": round(sum(1 for ok, _ in self.requests if not ok) / n, 4) if n else None,
            "latency_p95_s": round(p95(latencies), 4) if latencies else None,
            "latency_mean_s": round(sum(latencies) / len(latencies), 4) if latencies else None,
            "feedback": len(self.feedback),
            "feedback_mean": round(sum(self.feedback) / len(self.feedback), 4) if self.feedback else None,
            "checked": len(self.flags),
            "flagged_rate": round(sum(self.flags) / len(self.flags), 4) if self.flags else None,
        }


class Router:
    """Routing state for one registry model name; thread-safe."""

    def __init__(
        self,
        name: str,
        settings: RolloutConfig,
        production: str | None,
        canary: str | None = None,
        shadow: str | None = None,
        share: float | None = None,
    ) -> None:
        self.name, self.settings = name, settings
        self.production, self.canary, self.shadow = production, canary, shadow
        self.share = settings.canary_share if share is None else share
        self.windows: dict[str, Window] = {}
        self.counts: dict[str, int] = {}  # requests per adapter since start (monotonic, unlike the windows)
        self.lock = threading.Lock()
        self.rollbacks: list[str] = []

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
            self.counts[adapter] = self.counts.get(adapter, 0) + 1

    def add_feedback(self, adapter: str, score: float) -> None:
        with self.lock:
            self.window(adapter).feedback.append(score)

    def add_flag(self, adapter: str, flagged: bool) -> None:
        """A checked answer: flagged by a user report or the server's own check, or clean."""
        with self.lock:
            self.window(adapter).flags.append(1 if flagged else 0)

    def set_canary(self, adapter: str | None, share: float | None = None) -> None:
        with self.lock:
            if adapter != self.canary and adapter is not None:
                self.windows.pop(adapter, None)  # a new canary starts with a clean window
            self.canary = adapter
            if share is not None:
                self.share = share

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "name": self.name,
                "production": self.production,
                "canary": self.canary,
                "shadow": self.shadow,
                "canary_share": self.share,
                "counts": dict(self.counts),
                "rollbacks": list(self.rollbacks),
                "windows": {a: w.summary() for a, w in self.windows.items()},
            }

    def trigger(self) -> str | None:
        """The rollback rule the canary breaks against production, or None (also None until both have enough data)."""
        s = self.settings
        with self.lock:
            if not self.canary or not self.production:
                return None
            canary, prod = self.window(self.canary).summary(), self.window(self.production).summary()
        if (
            canary["checked"] >= s.min_flag_checks
            and prod["checked"] >= s.min_flag_checks
            and canary["flagged_rate"] - prod["flagged_rate"] > s.max_flag_increase
        ):
            return (
                f"safety incident: {canary['flagged_rate']:.1%} of checked canary answers flagged vs production "
                f"{prod['flagged_rate']:.1%} (> +{s.max_flag_increase:.0%} points)"
            )
        if canary["requests"] < s.min_requests or prod["requests"] < s.min_requests:
            return None
        if canary["error_rate"] - prod["error_rate"] > s.max_error_rate_increase:
            return (
                f"error rate {canary['error_rate']:.1%} vs production {prod['error_rate']:.1%} "
                f"(> +{s.max_error_rate_increase:.0%} points)"
            )
        if (
            canary["latency_p95_s"]
            and prod["latency_p95_s"]
            and canary["latency_p95_s"] > prod["latency_p95_s"] * (1 + s.max_latency_increase)
        ):
            return (
                f"p95 latency {canary['latency_p95_s']:.3f}s vs production {prod['latency_p95_s']:.3f}s "
                f"(> +{s.max_latency_increase:.0%})"
            )
        if (
            s.max_cost_increase is not None
            and canary["latency_mean_s"]
            and prod["latency_mean_s"]
            and canary["latency_mean_s"] > prod["latency_mean_s"] * (1 + s.max_cost_increase)
        ):
            return (
                f"cost per request {canary['latency_mean_s'] / prod['latency_mean_s'] - 1:+.0%} vs production "
                f"(mean machine time {canary['latency_mean_s']:.3f}s vs {prod['latency_mean_s']:.3f}s; "
                f"> +{s.max_cost_increase:.0%})"
            )
        if (
            canary["feedback"] >= s.min_feedback
            and prod["feedback"] >= s.min_feedback
            and prod["feedback_mean"] - canary["feedback_mean"] > s.max_feedback_drop
        ):
            return (
                f"feedback {canary['feedback_mean']:.2f} vs production {prod['feedback_mean']:.2f} "
                f"(> -{s.max_feedback_drop:.2f})"
            )
        return None

    def healthy(self) -> bool:
        """Enough canary traffic in the window and no trigger: a rollout step may advance."""
        with self.lock:
            if not self.canary:
                return False
            enough = self.window(self.canary).summary()["requests"] >= self.settings.min_requests
        return enough and self.trigger() is None


def drive_rollout(
    cfg: Any,
    version: int,
    steps: list[float],
    url: str,
    api_key: str | None,
    *,
    step_timeout: float = 600.0,
    poll: float = 1.0,
    force: bool = False,
    echo: Any = print,
) -> bool:
    """Walk a gradual rollout on a running server: canary at each step's share, advancing only once the
    canary has served `min_requests` more requests with no trigger firing; at 100% it becomes production.
    Returns False when the server rolled the canary back (the registry alias is moved back by the server)."""
    import time

    import httpx

    from tunesmith.errors import TunesmithError
    from tunesmith.registry import store
    from tunesmith.tracking import model_name

    name = model_name(cfg)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=120)

    def post(**body: Any) -> dict[str, Any]:
        answer = client.post("/admin/rollout", json={"model": name, **body})
        if answer.status_code != 200:
            raise TunesmithError(f"the server at {url} refused the rollout step: {answer.status_code} {answer.text}")
        return answer.json()

    store.promote(cfg, str(version), "canary", force=force, reason="rollout")
    adapter = f"v{version}"
    need = cfg.serve.rollout.min_requests
    for i, step in enumerate(sorted(steps)):
        if step >= 100:
            post(action="promote") if i else post(canary_version=version, share=1.0, action="promote")
            store.promote(cfg, str(version), "production", force=force, reason="rollout complete")
            store.clear_alias(cfg, "canary", reason="rollout complete")
            echo(f"100%: v{version} is production")
            return True
        state = post(canary_version=version, share=step / 100) if i == 0 else post(share=step / 100)
        start = state["counts"].get(adapter, 0)
        echo(f"{step:g}%: canary v{version} takes {step:g}% of {name}; waiting for {need} canary requests")
        deadline = time.time() + step_timeout
        while True:
            state = client.get("/admin/rollout").json()[name]
            if state["canary"] != adapter:
                reason = state["rollbacks"][-1] if state["rollbacks"] else "canary removed"
                echo(f"rolled back at {step:g}%: {reason}")
                return False
            window = state["windows"].get(adapter, {})
            if state["counts"].get(adapter, 0) - start >= need:
                echo(
                    f"{step:g}%: healthy over {window.get('requests')} requests "
                    f"(errors {window.get('error_rate')}, p95 {window.get('latency_p95_s')} s)"
                )
                break
            if time.time() > deadline:
                raise TunesmithError(
                    f"step {step:g}%: the canary got fewer than {need} requests in {step_timeout:g} s; "
                    "is traffic reaching the server?"
                )
            time.sleep(poll)
    return True
