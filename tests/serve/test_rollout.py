"""Canary rollout on the real server: a good canary advances to production, a bad one is rolled back
automatically with production untouched; shadow answers are logged and never returned."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.evaluate.test_eval_stage import _project
from tunesmith.config import RolloutConfig, load_config
from tunesmith.evaluate.stage import run_eval
from tunesmith.registry import store
from tunesmith.serve.rollout import Router, drive_rollout
from tunesmith.serve.stage import build_app, start_in_thread
from tunesmith.train.stage import run_train

LENIENT = [
    "gate.task_metric_min=-1",
    "gate.format_compliance_min=-1",
    "gate.safety_pass_rate_min=-1",
    "gate.max_safety_regression=100",
    "gate.max_regression=100",
    "eval.regression_suite=null",
    "eval.safety_suite=null",
]


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model_dir):
    cfg = _project(tmp_path_factory.mktemp("rollout"), tiny_model_dir, max_steps=2)
    cfg.config_path.write_text(cfg.config_path.read_text() + "registry:\n  name: parity\n")
    cfg = load_config(cfg.config_path, LENIENT)
    run_train(cfg)
    run_eval(cfg, limit=4)
    for _ in range(3):
        store.add_version(cfg)
    store.promote(cfg, "1", "production")
    store.promote(cfg, "1", "shadow")
    return cfg


class Traffic:
    """Clients sending requests (distinct user ids) until stopped; keeps every answer the clients saw."""

    def __init__(self, url: str) -> None:
        self.url, self.answers, self.stop = url, [], threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(3)]

    def _run(self, worker: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            r = httpx.post(
                f"{self.url}/v1/chat/completions",
                timeout=60,
                json={
                    "model": "parity",
                    "user": f"user-{worker}-{n}",
                    "max_tokens": 3,
                    "temperature": 0,
                    "messages": [{"role": "user", "content": f"Is {n} even or odd?"}],
                },
            )
            self.answers.append(r)

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def _serve(project, **rollout):
    settings = {"min_requests": 4, "window": 40, "max_latency_increase": 50.0, **rollout}
    overrides = LENIENT + [f"serve.rollout.{k}={v}" for k, v in settings.items() if k != "faults"]
    cfg = load_config(project.config_path, overrides)
    cfg.serve.rollout.faults = rollout.get("faults", {})
    return cfg, start_in_thread(build_app(cfg))


def test_bad_canary_is_rolled_back_and_production_untouched(project):
    cfg, running = _serve(project, faults={"v2": {"error_rate": 1.0}})
    try:
        with Traffic(running.url) as traffic:
            ok = drive_rollout(
                cfg, 2, [25, 50, 100], running.url, None, step_timeout=120, poll=0.2, echo=lambda line: None
            )
        assert ok is False
        state = httpx.get(f"{running.url}/admin/rollout").json()["parity"]
        assert state["production"] == "v1" and state["canary"] is None and "error rate" in state["rollbacks"][0]
        deadline = time.time() + 10
        while (
            "canary" in store.versions(cfg)[0]["aliases"] + store.versions(cfg)[1]["aliases"] and time.time() < deadline
        ):
            time.sleep(0.2)  # the server moves the registry alias in the background
        aliases = {r["version"]: r["aliases"] for r in store.versions(cfg)}
        assert aliases[1] == ["production", "shadow"] and aliases[2] == []
        last = store.history(cfg)[-1]
        assert last["action"] == "clear" and last["alias"] == "canary" and "automatic rollback" in last["reason"]
        assert any(r.status_code == 500 for r in traffic.answers)  # the injected failures reached clients...
        assert sum(r.status_code == 200 for r in traffic.answers) > 0  # ...while production kept answering
        assert 'tunesmith_rollbacks_total{model="parity"} 1.0' in httpx.get(f"{running.url}/metrics").text
    finally:
        running.stop()


def test_good_canary_advances_to_production_and_shadow_is_never_returned(project):
    cfg, running = _serve(project)
    try:
        with Traffic(running.url) as traffic:
            lines = []
            assert drive_rollout(
                cfg, 3, [25, 50, 100], running.url, None, step_timeout=120, poll=0.2, echo=lines.append
            )
        assert [line.split(":")[0] for line in lines] == ["25%", "25%", "50%", "50%", "100%"]
        state = httpx.get(f"{running.url}/admin/rollout").json()["parity"]
        assert state["production"] == "v3" and state["canary"] is None
        assert store.show(cfg, "production")["version"] == 3
        rows = running.app.state.server.log.rows(10_000)
        shadow = [r for r in rows if r["shadow"]]
        served = {r["id"] for r in rows if not r["shadow"]}
        assert shadow and all(r["target"] == "v1" for r in shadow)
        returned = {r.json()["id"] for r in traffic.answers if r.status_code == 200}
        assert returned <= served and not any(i.endswith("-shadow") for i in returned)
    finally:
        running.stop()
        store.promote(cfg, "1", "production")  # leave the fixture as it was


def test_triggers_on_latency_and_feedback():
    settings = RolloutConfig(min_requests=5, window=50, min_feedback=5)
    router = Router("m", settings, "v1", "v2")
    for _ in range(10):
        router.observe("v1", True, 1.0)
        router.observe("v2", True, 1.1)
    assert router.trigger() is None and router.healthy()
    for _ in range(10):
        router.observe("v2", True, 1.5)
    assert "p95 latency" in router.trigger()
    fresh = Router("m", settings, "v1", "v2")
    for _ in range(10):
        fresh.observe("v1", True, 1.0)
        fresh.observe("v2", True, 1.0)
        fresh.add_feedback("v1", 0.9)
        fresh.add_feedback("v2", 0.7)
    assert "feedback" in fresh.trigger()
    # cost per request (off by default): a canary whose answers hold the machine 30% longer on average
    costly = Router(
        "m", RolloutConfig(min_requests=5, window=50, max_latency_increase=10.0, max_cost_increase=0.2), "v1", "v2"
    )
    for i in range(10):
        costly.observe("v1", True, 1.0)
        costly.observe("v2", True, 1.0 if i % 2 else 1.6)
    assert "cost per request +30%" in costly.trigger()
    costly.settings = RolloutConfig(min_requests=5, window=50, max_latency_increase=10.0)  # the default: off
    assert costly.trigger() is None
    sticky = Router("m", RolloutConfig(canary_share=0.5), "v1", "v2")
    assert len({sticky.pick("alice") for _ in range(20)}) == 1  # one user sees one version
    assert {sticky.pick(f"user{i}") for i in range(50)} == {"v1", "v2"}


def test_clients_that_leave_mid_stream_cannot_roll_the_canary_back(project):
    """A disconnect (499) is not the version's error: streams abandoned on purpose leave the canary where it is."""
    cfg, running = _serve(project)
    try:
        chat = {
            "model": "parity",
            "max_tokens": 24,
            "temperature": 0,
            "messages": [{"role": "user", "content": "Count from one to twenty."}],
        }
        for n in range(6):  # production's window: answers
            assert (
                httpx.post(f"{running.url}/v1/chat/completions", json={**chat, "user": f"u{n}"}, timeout=60).status_code
                == 200
            )
        moved = httpx.post(
            f"{running.url}/admin/rollout", timeout=60, json={"model": "parity", "canary_version": 2, "share": 1.0}
        )
        assert moved.status_code == 200, moved.text
        for n in range(12):
            with httpx.stream(
                "POST",
                f"{running.url}/v1/chat/completions",
                timeout=60,
                json={**chat, "stream": True, "user": f"leaver-{n}"},
            ) as answer:
                next(answer.iter_lines())  # the first chunk, then hang up
        time.sleep(1.0)
        state = httpx.get(f"{running.url}/admin/rollout").json()["parity"]
        assert state["canary"] == "v2" and state["rollbacks"] == [], state
        assert not state["windows"].get("v2", {}).get("error_rate"), state["windows"]
    finally:
        running.stop()
