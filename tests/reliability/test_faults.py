"""Faults (issue 17): training killed with SIGKILL — at a random moment, and at the worst one, after
the Trainer rotated old checkpoints and before tunesmith marked the new one complete — resumes from
a complete checkpoint onto the same loss curve as a run never interrupted (same losses to 1e-4)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.train.helpers import arithmetic_rows, make_project

pytestmark = pytest.mark.reliability
COMMON = dict(max_steps=12, save_steps=4, eval_steps=4, save_total_limit=1, lora_dropout=0.1)


def _train(config, *args, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "tunesmith.cli", "train", str(config), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _curve(config, key="loss"):
    rows = csv.DictReader(open(config.parent / "out" / "train" / "metrics.csv"))
    return {int(r["step"]): float(r[key]) for r in rows if r.get(key)}


@pytest.fixture(scope="module")
def whole(tmp_path_factory, tiny_model_dir):
    config = make_project(tmp_path_factory.mktemp("whole"), tiny_model_dir, arithmetic_rows(), **COMMON)
    assert _train(config).wait() == 0
    return _curve(config), _curve(config, "eval_loss")


def _resume_and_compare(config, whole):
    resumed = _train(config, "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-2000:]
    assert "starting from the beginning" not in err  # a complete checkpoint was there to resume from
    losses, evals = _curve(config), _curve(config, "eval_loss")
    assert losses.keys() == whole[0].keys() == set(range(1, 13))
    for step, loss in whole[0].items():
        assert losses[step] == pytest.approx(loss, rel=1e-4), (step, losses[step], loss)
    assert evals == pytest.approx(whole[1], rel=1e-4)
    meta = json.loads((config.parent / "out" / "train" / "metadata.json").read_text())
    assert meta["completed"] and meta["steps"] == 12


def test_killed_between_rotation_and_the_completion_mark(tmp_path, tiny_model_dir, whole):
    config = make_project(tmp_path, tiny_model_dir, arithmetic_rows(), **COMMON)
    killed = _train(config, env={"TUNESMITH_FAULT": "before_mark:8"})
    assert killed.wait() == -signal.SIGKILL
    checkpoints = config.parent / "out" / "train" / "checkpoints"
    complete = sorted(p.parent.name for p in checkpoints.glob("*/tunesmith-complete.json"))
    assert complete == ["checkpoint-4"]  # checkpoint-8 exists unmarked; 4 survived the rotation
    _resume_and_compare(config, whole)


def test_killed_at_a_random_moment(tmp_path, tiny_model_dir, whole):
    import random

    config = make_project(tmp_path, tiny_model_dir, arithmetic_rows(), **COMMON)
    run = _train(config)
    progress = config.parent / "out" / "train" / "progress.json"
    target = random.Random(os.getpid()).randint(5, 10)  # somewhere after the first checkpoint
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if json.loads(progress.read_text())["step"] >= target:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    _resume_and_compare(config, whole)


def test_a_full_disk_gives_a_clear_error_and_keeps_the_previous_state(tmp_path, tiny_model_dir):
    config = make_project(tmp_path, tiny_model_dir, arithmetic_rows())
    split = config.parent / "out" / "data" / "split.json"
    before = split.read_bytes()
    run = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli", "data", "split", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "TUNESMITH_FAULT": "enospc", "COLUMNS": "200"},
    )
    assert run.returncode == 1 and "the disk is full" in run.stderr and "Traceback" not in run.stderr
    assert split.read_bytes() == before  # the previous split is intact
    assert not [p for p in split.parent.rglob(".*") if p.is_file()]  # no half-written temporary files left


@pytest.fixture
def small_disk(tmp_path):
    """A real size-limited filesystem (tmpfs, 64 MB), where mounting is allowed (root in CI)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root); the injected ENOSPC test still runs")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_training_that_fills_a_real_disk_stops_clearly_and_resumes_on_the_same_curve(small_disk, tiny_model_dir, whole):
    """The disk fills up after the first checkpoint: the run stops with the full-disk message, the
    complete checkpoint is intact, and once space is freed `--resume` ends on the same loss curve."""
    config = make_project(small_disk / "project", tiny_model_dir, arithmetic_rows(), **COMMON)
    run = _train(config)
    first = config.parent / "out" / "train" / "checkpoints" / "checkpoint-4" / "tunesmith-complete.json"
    filler = small_disk / "filler"
    deadline = time.time() + 120
    while not first.exists() and time.time() < deadline:
        time.sleep(0.002)
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    subprocess.run(["fallocate", "-l", str(free - 16 * 1024), str(filler)], check=True)
    _, err = run.communicate(timeout=300)
    assert run.returncode == 1 and "the disk is full" in err and "Traceback" not in err, err[-3000:]
    checkpoints = config.parent / "out" / "train" / "checkpoints"
    assert sorted(p.parent.name for p in checkpoints.glob("*/tunesmith-complete.json")) == ["checkpoint-4"]
    filler.unlink()
    _resume_and_compare(config, whole)
