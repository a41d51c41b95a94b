"""Live operations on a running server (issue 17): a promote or rollback made with the command line
reaches the server within seconds without a restart while requests keep completing; a promote made
on the server (/admin/rollout) is written to the registry and survives a restart; registry writes
the server owes are retried until they succeed; two writers never lose an alias-history entry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.evaluate.test_eval_stage import _project
from tests.serve.test_rollout import LENIENT
from tunesmith.config import load_config
from tunesmith.evaluate.stage import run_eval
from tunesmith.registry import store
from tunesmith.serve.stage import build_app, start_in_thread
from tunesmith.train.stage import run_train

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model_dir):
    cfg = _project(tmp_path_factory.mktemp("live"), tiny_model_dir, max_steps=2)
    cfg.config_path.write_text(cfg.config_path.read_text() + "registry:\n  name: live\n")
    cfg = load_config(cfg.config_path, LENIENT)
    run_train(cfg)
    run_eval(cfg, limit=4)
    for _ in range(3):
        store.add_version(cfg)
    store.promote(cfg, "1", "production")
    return cfg


def _serve(project):
    cfg = load_config(project.config_path, LENIENT + ["serve.alias_poll_s=0.2", "serve.jobs.enabled=false"])
    return cfg, start_in_thread(build_app(cfg))


def _ask(url: str, n: int = 0, **extra) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        timeout=60,
        json={
            "model": "live",
            "max_tokens": 3,
            "temperature": 0,
            "messages": [{"role": "user", "content": f"hi {n}"}],
            **extra,
        },
    )


def _served_version(running) -> str:
    answer = _ask(running.url)
    assert answer.status_code == 200
    return running.app.state.server.log.get(answer.json()["id"])["version"]


def _until(check, timeout: float = 10.0) -> float:
    began = time.time()
    while time.time() - began < timeout:
        if check():
            return time.time() - began
        time.sleep(0.05)
    raise AssertionError("not within the time allowed")


def test_command_line_promote_and_rollback_reach_the_running_server(project):
    cfg, running = _serve(project)
    try:
        assert _served_version(running) == "1"
        answers, stop = [], threading.Event()

        def traffic() -> None:  # in flight all along: every one must complete
            n = 0
            while not stop.is_set():
                n += 1
                answers.append(_ask(running.url, n, max_tokens=20).status_code)

        threads = [threading.Thread(target=traffic) for _ in range(2)]
        for t in threads:
            t.start()
        store.promote(cfg, "2", "production")  # as `tunesmith registry promote` does, from another process
        took_promote = _until(lambda: _served_version(running) == "2")
        store.rollback(cfg)  # as `tunesmith registry rollback` does during an incident
        took_rollback = _until(lambda: _served_version(running) == "1")
        stop.set()
        for t in threads:
            t.join(60)
        assert answers and set(answers) == {200}
        assert took_promote < 5 and took_rollback < 5
        assert running.app.state.server.targets["live@production"].version == "1"
    finally:
        running.stop()


def test_a_promote_on_the_server_is_in_the_registry_and_survives_a_restart(project):
    cfg, running = _serve(project)
    try:
        answer = httpx.post(f"{running.url}/admin/rollout", json={"model": "live", "canary_version": 3, "share": 0.5})
        assert answer.status_code == 200
        _until(lambda: store.versions(cfg)[0]["aliases"] == ["canary"])  # v3 is newest
        assert (
            httpx.post(f"{running.url}/admin/rollout", json={"model": "live", "action": "promote"}).status_code == 200
        )
        _until(lambda: store.show(cfg, "production")["version"] == 3)
        _until(lambda: "canary" not in {a for v in store.versions(cfg) for a in v["aliases"]})
    finally:
        running.stop()
    cfg, again = _serve(project)
    try:
        assert _served_version(again) == "3"
    finally:
        again.stop()
        store.promote(cfg, "1", "production")


def test_registry_writes_the_server_owes_are_retried_in_order():
    from tunesmith.serve.live import AliasWatcher

    class State:
        targets, routers, versions = {}, {}, {}

    class App:
        state = State()

    done, failures = [], [2]

    def flaky() -> None:
        if failures[0]:
            failures[0] -= 1
            raise ConnectionError("registry down")
        done.append("first")

    watcher = AliasWatcher(load_config_stub(), App(), {})
    watcher._aliases = lambda: {}  # no registry to read here
    watcher.write("first", flaky)
    watcher.write("second", lambda: done.append("second"))
    for _ in range(3):
        watcher.poll()
    assert done == ["first", "second"] and len(watcher.errors) == 2


def load_config_stub():
    from tunesmith.config import ProjectConfig

    return ProjectConfig()


def test_two_writers_never_lose_an_alias_history_entry(project):
    before = len(store.history(project))

    def moves() -> None:
        for _ in range(5):
            store.promote(project, "1", "shadow", reason="writer")

    threads = [threading.Thread(target=moves) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    events = store.history(project)
    assert len(events) == before + 10 and [e["seq"] for e in events] == list(range(1, len(events) + 1))


@pytest.mark.parametrize("point", ["before", "between"])
def test_a_promote_killed_between_its_writes_is_finished_by_the_next_registry_read(project, point):
    """SIGKILL of `registry promote` before its alias write, or between the alias write and its
    history entry: the journalled move is finished by the next registry operation, exactly once."""
    before = store.history(project)
    killed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tunesmith.cli",
            "registry",
            "promote",
            str(project.config_path),
            "3",
            "--to",
            "shadow",
            "--reason",
            f"killed {point}",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TUNESMITH_FAULT": f"alias_move:{point}"},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    events = store.history(project)
    assert len(events) == len(before) + 1
    assert (events[-1]["reason"], events[-1]["version"]) == (f"killed {point}", 3)
    assert "shadow" in next(v for v in store.versions(project) if v["version"] == 3)["aliases"]
    assert len(store.history(project)) == len(events)  # finished once, not again


def test_a_safety_incident_rolls_the_canary_back(project):
    """Users report the canary's answers as unsafe: past the threshold the canary is rolled back at
    once, production untouched, and the registry's canary alias cleared."""
    cfg = load_config(
        project.config_path,
        LENIENT
        + [
            "serve.alias_poll_s=0.2",
            "serve.jobs.enabled=false",
            "serve.rollout.min_flag_checks=5",
            "serve.rollout.safety_sample=1.0",
            "serve.rollout.min_requests=1000",
        ],
    )  # only the safety rule can fire
    running = start_in_thread(build_app(cfg))
    try:
        assert (
            httpx.post(
                f"{running.url}/admin/rollout", json={"model": "live", "canary_version": 2, "share": 0.5}
            ).status_code
            == 200
        )
        _until(lambda: "canary" in {a for v in store.versions(cfg) for a in v["aliases"]})
        for n in range(60):
            answer = _ask(running.url, n, user=f"user-{n}")
            row = running.app.state.server.log.get(answer.json()["id"])
            if row["target"] == "v2":
                httpx.post(f"{running.url}/v1/feedback", json={"id": row["id"], "flag": "unsafe"})
            state = httpx.get(f"{running.url}/admin/rollout").json()["live"]
            if state["rollbacks"]:
                break
        assert state["canary"] is None and state["production"] == "v1"
        assert "safety incident" in state["rollbacks"][0]
        _until(lambda: "canary" not in {a for v in store.versions(cfg) for a in v["aliases"]})
        assert "automatic rollback: safety incident" in store.history(cfg)[-1]["reason"]
    finally:
        running.stop()


def test_the_server_flags_answers_that_leak_personal_data():
    from tunesmith.config import RolloutConfig
    from tunesmith.serve.guard import leaks_pii
    from tunesmith.serve.rollout import Router

    assert leaks_pii("hi", "write to ana@corp.example.com") and not leaks_pii("mail ana@x.com", "ana@x.com it is")
    router = Router("m", RolloutConfig(min_flag_checks=5), "v1", canary="v2")
    for _ in range(10):
        router.add_flag("v1", False)
        router.add_flag("v2", leaks_pii("hi", "call +1 415 555 2671"))
    assert "safety incident" in router.trigger()
