"""The bundled example runs end to end through the CLI on the packaged model (the README's main job)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration
EXAMPLE = REPO / "examples" / "support-tickets-json" / "tunesmith.yaml"


def test_run_on_the_bundled_example(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tunesmith.cli", "run", str(EXAMPLE), f"output_dir={tmp_path}"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Prepared for training" in proc.stdout
    data = tmp_path / "data"
    report = json.loads((data / "check.json").read_text())
    assert report["records"] == {"total": 400, "valid": 400, "rejected": 0}
    assert report["quality"]["length"]["over_max_length"] == 0
    split = json.loads((data / "split.json").read_text())
    assert split["leaking_pairs"] == 0
    assert set(split["splits"]["test"]["labels"]) == {"billing", "technical", "account", "shipping", "feature_request"}
    prepared = json.loads((data / "prepare.json").read_text())
    assert prepared["train"]["trained_tokens"] > 0 and prepared["train"]["packing_efficiency"] > 0.85
