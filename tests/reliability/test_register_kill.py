"""`tunesmith registry add` killed with SIGKILL at each point between its store writes (artifacts
logged, version created, card written): the next `registry add` finishes that same registration, so
the model ends up registered exactly once, with its card, and nothing is left half done (issue 17)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.evaluate.test_eval_stage import _project
from tests.serve.test_rollout import LENIENT
from tunesmith.config import load_config
from tunesmith.evaluate.stage import run_eval
from tunesmith.registry import store
from tunesmith.train.stage import run_train

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model_dir):
    cfg = _project(tmp_path_factory.mktemp("register"), tiny_model_dir, max_steps=1)
    cfg.config_path.write_text(cfg.config_path.read_text() + "registry:\n  name: kill\n")
    cfg = load_config(cfg.config_path, LENIENT)
    run_train(cfg)
    run_eval(cfg, limit=2)
    return cfg


def _kill_add(cfg, point: str) -> None:
    killed = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli", "registry", "add", str(cfg.config_path), "--force"],
        capture_output=True,
        text=True,
        env={**os.environ, "TUNESMITH_FAULT": f"registry_add:{point}"},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]


@pytest.mark.parametrize("point", ["artifacts", "version", "card"])
def test_a_registration_killed_midway_is_finished_once_by_the_next(project, point):
    before = store.versions(project)
    _kill_add(project, point)
    assert (project.output_path / "registry" / "add.json").exists()  # the journal of the unfinished one
    result = store.add_version(project, force=True)
    after = store.versions(project)
    assert len(after) == len(before) + 1 and after[0]["version"] == result.version
    shown = store.show(project, str(result.version))
    assert shown["card"].startswith("#") and result.card.read_text() == shown["card"]
    assert shown["tags"]["registration"] not in ("", "interrupted")
    assert not (project.output_path / "registry" / "add.json").exists()
    again = store.add_version(project, force=True)  # a later, deliberate add is a new version
    assert again.version == result.version + 1


def test_an_interrupted_registration_of_an_older_evaluation_is_marked_not_reused(project):
    _kill_add(project, "version")
    half = store.versions(project)[0]
    metrics = project.output_path / "eval" / "metrics.json"
    metrics.write_text(metrics.read_text() + "\n")  # evaluated again since: a different model state
    result = store.add_version(project, force=True)
    assert result.version == half["version"] + 1
    assert store.show(project, str(half["version"]))["tags"]["registration"] == "interrupted"
