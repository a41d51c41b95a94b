"""The benchmarks run, on the tiny model and a few steps: they are run for real only now and then, for an
hour, and a rename in the package otherwise shows up only then (serve_throughput's naive process failed at
its start after 895aea2). Their figures here mean nothing; a crash fails. Exit 1 is a missed target."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

RUNS = {
    "train_throughput.py": ["--model", "tiny", "--no-compile", "--records", "8", "--batch", "2"],
    "serve_throughput.py": ["--model", "tiny", "--clients", "2", "--requests", "1", "--rounds", "1", "--tokens", "4"],
    "serve_prefill_hold.py": ["--model", "tiny", "--clients", "2", "--rounds", "1", "--tokens", "4"],
    "memory_estimate.py": ["--models", "tiny", "--methods", "lora", "--epochs", "0.25", "--max-length", "128"],
}


@pytest.mark.parametrize("script", sorted(RUNS))
def test_the_benchmark_runs_on_the_tiny_model(script, tmp_path):
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *RUNS[script]],
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # their scratch folders, under pytest's
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode in (0, 1) and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert out.stdout.strip(), out.stderr[-3000:]
