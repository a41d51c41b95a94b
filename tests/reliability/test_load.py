"""Load: 8, 32 and 64 concurrent clients against a real server (tiny model, two adapters and the
base, streaming and not, one request in ten malformed). No 5xx; overload is answered 429 only; every
malformed request gets its 400 and never fails a neighbour in its batch; memory stays flat.

Each level runs $TUNESMITH_LOAD_SECONDS seconds (8 in `make test`; the long run in
docs/reliability.md uses 180). The figures go to $TUNESMITH_LOAD_REPORT (JSON lines) when set."""

from __future__ import annotations

import json
import os
import random
import statistics
import threading
import time

import httpx
import pytest
import yaml

from tests.serve.test_server import _adapter
from tunesmith.config import load_config
from tunesmith.serve.stage import build_app, start_in_thread

pytestmark = pytest.mark.reliability
SECONDS = float(os.environ.get("TUNESMITH_LOAD_SECONDS", "8"))
BAD = [
    {"seed": 2**70},
    {"max_tokens": 10**6},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]},
    {"temperature": -1},
    {"messages": "not a list"},
]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("load")
    alpha = _adapter(tiny_model_dir, root / "alpha", 1)
    beta = _adapter(tiny_model_dir, root / "beta", 2)
    config = root / "tunesmith.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "base_model": str(tiny_model_dir),
                "output_dir": "out",
                "data": {"datasets": [{"path": "d.jsonl"}]},
                "serve": {
                    "adapters": {"alpha": str(alpha), "beta": str(beta)},
                    "max_batch_size": 8,
                    "max_queue": 16,
                    "batch_wait_ms": 5,
                    "max_tokens_limit": 64,
                    "jobs": {"enabled": False},
                },
            }
        )
    )
    running = start_in_thread(build_app(load_config(config)))
    yield running
    running.stop()


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024


def _client_loop(url: str, seed: int, stop: threading.Event, results: list) -> None:
    rng = random.Random(seed)
    with httpx.Client(timeout=120) as http:
        while not stop.is_set():
            bad = rng.random() < 0.1
            body = {
                "model": rng.choice(["alpha", "beta", "base"]),
                "max_tokens": rng.randint(4, 24),
                "temperature": rng.choice([0, 0.7]),
                "seed": rng.randint(0, 1000),
                "messages": [{"role": "user", "content": f"Tell me about {rng.randint(0, 10**6)}"}],
            }
            if bad:
                body.update(rng.choice(BAD))
            stream = not bad and rng.random() < 0.5
            began = time.perf_counter()
            try:
                if stream:
                    with http.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True}) as r:
                        text = "".join(r.iter_lines())
                        status = r.status_code if r.status_code != 200 or "[DONE]" in text else 599  # cut short
                else:
                    status = http.post(f"{url}/v1/chat/completions", json=body).status_code
            except httpx.HTTPError as exc:
                status = f"client error {type(exc).__name__}"
            results.append((bad, status, time.perf_counter() - began))
            if status == 429:
                time.sleep(0.05)  # as the Retry-After header asks, briefly


@pytest.mark.parametrize("clients", [8, 32, 64])
def test_concurrent_clients_get_answers_or_429s_never_5xx(server, clients):
    results: list = []
    stop = threading.Event()
    threads = [threading.Thread(target=_client_loop, args=(server.url, i, stop, results)) for i in range(clients)]
    rss_start = _rss_mb()
    for t in threads:
        t.start()
    time.sleep(SECONDS * 0.25)
    rss_warm = _rss_mb()
    time.sleep(SECONDS * 0.75)
    stop.set()
    for t in threads:
        t.join(180)
    rss_end = _rss_mb()
    statuses = [s for _, s, _ in results]
    good = [(s, t) for bad, s, t in results if not bad]
    bad = [s for b, s, _ in results if b]
    ok_latency = sorted(t for s, t in good if s == 200)
    report = {
        "clients": clients,
        "seconds": SECONDS,
        "requests": len(results),
        "ok": len(ok_latency),
        "429": statuses.count(429),
        "400": bad.count(400),
        "malformed": len(bad),
        "p50_s": round(statistics.median(ok_latency), 3),
        "p99_s": round(ok_latency[int(len(ok_latency) * 0.99) - 1], 3),
        "ok_per_s": round(len(ok_latency) / SECONDS, 1),
        "rss_mb": [round(rss_start), round(rss_warm), round(rss_end)],
    }
    if os.environ.get("TUNESMITH_LOAD_REPORT"):
        with open(os.environ["TUNESMITH_LOAD_REPORT"], "a") as fh:
            fh.write(json.dumps(report) + "\n")
    print(report)
    assert not [s for s in statuses if not isinstance(s, int) or s >= 500], report
    assert {s for s, _ in good} <= {200, 429}, report  # a good request is answered, or told to come back
    assert bad and set(bad) == {400}, report  # every malformed request gets its own 400, nothing else
    assert ok_latency, report  # served throughout, however overloaded
    assert rss_end - rss_warm < 150, report  # flat after warm-up (no growth with requests served)
