"""Evaluation in a fresh process (`tunesmith.evaluate.fresh`), as the pipeline runs it after training in
its own: the same files as in this process, and a user's mistake comes back as the same clear error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.evaluate.test_eval_stage import _project
from tunesmith.errors import TunesmithError
from tunesmith.evaluate import fresh
from tunesmith.evaluate.stage import run_eval
from tunesmith.train.stage import run_train

TIMING = {"latency_s", "seconds"}


def _outputs(cfg) -> dict[str, list[dict]]:
    rows = {}
    for path in sorted((cfg.output_path / "eval").glob("*.jsonl")):
        rows[path.name] = [
            {k: v for k, v in json.loads(line).items() if k not in TIMING} for line in path.read_text().splitlines()
        ]
    return rows


def test_a_fresh_process_evaluates_as_this_one_does(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("TUNESMITH_EVAL_CACHE", "0")
    cfg = _project(tmp_path / "p", tiny_model_dir, max_steps=2)
    request = json.loads(json.dumps({"config": cfg.model_dump(mode="json"), "config_path": str(cfg.config_path)}))
    assert fresh._config(request) == cfg  # the child rebuilds the very config, overrides included

    with pytest.raises(TunesmithError, match="no trained model in .*tunesmith train"):
        fresh.run_eval_fresh(cfg)  # raised in the child, the same message here
    with pytest.raises(TunesmithError, match=r"train it first: `tunesmith.run_train\(config\)`"):
        run_eval(cfg.model_copy(update={"config_path": None}))  # a config built in Python: no file to name

    run_train(cfg)
    here, here_rows = run_eval(cfg), _outputs(cfg)
    there, there_rows = fresh.run_eval_fresh(cfg), _outputs(cfg)
    assert here_rows.keys() == there_rows.keys() and here_rows
    assert here_rows == there_rows  # every answer and score, timings aside
    for name in ("base", "few_shot", "fine_tuned"):
        assert there.models[name].task_metric == here.models[name].task_metric
    assert {k: s.runs for k, s in there.suites.items()} == {k: s.runs for k, s in here.suites.items()}


def test_the_child_imports_the_parents_tunesmith(tmp_path, monkeypatch):
    import tunesmith

    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    here = Path(tunesmith.__file__).resolve().parents[1]
    env = fresh._env()
    if here.name not in ("site-packages", "dist-packages"):  # a checkout: its folder first
        assert env["PYTHONPATH"] == f"{here}{os.pathsep}/elsewhere"
    fake = tmp_path / "lib" / "site-packages" / "tunesmith" / "__init__.py"
    monkeypatch.setattr(tunesmith, "__file__", str(fake))
    assert fresh._env()["PYTHONPATH"] == "/elsewhere"  # installed: left as it is, no site-packages first
