"""A server killed with SIGKILL under load (issue 17): every request that was answered has its row in
the request log exactly once after a restart, and the restarted server answers and logs again."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import httpx
import pytest
import yaml

from tests.serve.test_server import _adapter

pytestmark = pytest.mark.reliability


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(config, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunesmith.cli", "serve", str(config), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    began = time.time()
    while time.time() - began < 180:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise AssertionError("the server did not start within 180 s")


def _client(url: str, n: int, stop: threading.Event, answered: list) -> None:
    with httpx.Client(timeout=60) as http:
        for i in range(10_000):
            if stop.is_set():
                return
            body = {
                "model": ["alpha", "base"][i % 2],
                "max_tokens": 6,
                "temperature": 0,
                "stream": i % 3 == 0,
                "messages": [{"role": "user", "content": f"client {n} request {i}"}],
            }
            try:
                if body["stream"]:
                    with http.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
                        lines = list(r.iter_lines())
                    if r.status_code == 200 and "data: [DONE]" in lines:  # answered to the end
                        answered.append(json.loads(next(x for x in lines if x.startswith("data: {"))[6:])["id"])
                    continue
                r = http.post(f"{url}/v1/chat/completions", json=body)
                if r.status_code == 200:
                    answered.append(r.json()["id"])
            except httpx.HTTPError:
                return  # the server is gone


def test_a_server_killed_under_load_loses_no_logged_request(tmp_path, tiny_model_dir):
    alpha = _adapter(tiny_model_dir, tmp_path / "alpha", 1)
    config = tmp_path / "tunesmith.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "base_model": str(tiny_model_dir),
                "output_dir": "out",
                "data": {"datasets": [{"path": "d.jsonl"}]},
                "serve": {
                    "adapters": {"alpha": str(alpha)},
                    "max_batch_size": 8,
                    "batch_wait_ms": 5,
                    "jobs": {"enabled": False},
                    "pages": False,
                },
            }
        )
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = _start(config, port)
    stop, answered = threading.Event(), []
    clients = [threading.Thread(target=_client, args=(url, n, stop, answered)) for n in range(8)]
    for c in clients:
        c.start()
    began = time.time()
    while len(answered) < 40 and time.time() - began < 120:
        time.sleep(0.05)
    server.send_signal(signal.SIGKILL)  # mid-batch: 8 clients have requests in flight
    server.wait(30)
    stop.set()
    for c in clients:
        c.join(60)
    assert len(answered) >= 40, "too few requests were answered before the kill"

    server = _start(config, port)  # the log reopens after the kill
    try:
        after = httpx.post(
            f"{url}/v1/chat/completions",
            timeout=60,
            json={"model": "alpha", "max_tokens": 4, "messages": [{"role": "user", "content": "after the restart"}]},
        )
        assert after.status_code == 200
        db = sqlite3.connect(str(tmp_path / "out" / "serve" / "requests.db"))
        rows = [r[0] for r in db.execute("SELECT id FROM requests WHERE shadow = 0")]
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        missing = set(answered) - set(rows)
        assert not missing, f"{len(missing)} answered requests have no log row"
        assert len(rows) == len(set(rows))  # none twice
        assert after.json()["id"] in rows
    finally:
        server.kill()
        server.wait(30)
