"""Continual learning: a second task trained from the first task's registered version, with and without
replaying the first task's training records, on a tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

SHOPS = ("grocer", "hardware")
SOUNDS = ("moo", "woof")


def _cli(*args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _project(root: Path, model: str, rows: list[dict], store: Path, previous: float = 0.0) -> Path:
    root.mkdir(parents=True)
    (root / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = root / "tunesmith.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "base_model": model,
                "output_dir": "out",
                "data": {
                    "datasets": [{"path": "d.jsonl"}],
                    "max_length": 64,
                    "dedup": "none",
                    "test_size": 0.2,
                    "replay": {"ratio": 0.0, "previous": previous},
                    "system_prompt": None,
                },  # two label tasks that must not share one classifier prompt
                "train": {
                    "adapter": "none",
                    "max_steps": 60,
                    "micro_batch_size": 8,
                    "gradient_accumulation_steps": 1,
                    "learning_rate": 3e-3,
                    "mlflow": False,
                    "precision": "fp32",
                    "eval_steps": 30,
                    "save_steps": 30,
                    "warmup_ratio": 0.0,
                    "early_stopping_patience": None,
                },
                "eval": {
                    "task": "classification",
                    "max_new_tokens": 12,
                    "batch_size": 32,
                    "few_shot": 0,
                    "semantic_similarity": False,
                    "regression_suite": None,
                    "safety_suite": None,
                },
                "gate": {"task_metric_min": 0.5, "format_compliance_min": -1, "max_previous_task_drop": 1.0},
                "registry": {"name": "shop", "tracking_uri": f"sqlite:///{store}"},
            }
        )
    )
    return config


def _rows(kinds: tuple[str, ...], answers: tuple[str, ...], n: int = 80) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"{kinds[i % 2]} number {i}: which one?"},
                {"role": "assistant", "content": answers[i % 2]},
            ]
        }
        for i in range(n)
    ]


def test_second_task_from_the_first_registered_version_keeps_the_first_with_replay(tmp_path):
    from tunesmith.models.tiny import make_tiny_model

    model = make_tiny_model(tmp_path / "model", hidden_size=64)  # room for two tasks
    store = tmp_path / "registry.db"
    first = _project(tmp_path / "first", str(model), _rows(("fruit", "tool"), SHOPS), store)
    _cli("run", str(first))
    _cli("registry", "promote", str(first), "1", "--to", "production")
    first_metric = json.loads((tmp_path / "first" / "out" / "eval" / "metrics.json").read_text())
    assert first_metric["models"]["fine_tuned"]["task_metric"]["mean"] >= 0.9  # the first task is learned

    results = {}
    for previous in (0.0, 0.3):
        folder = tmp_path / f"second-{previous}"
        second = _project(folder, "registry:shop@production", _rows(("cow", "dog"), SOUNDS), store, previous)
        output = _cli("run", str(second))
        assert "Registered" in output
        metrics = json.loads((folder / "out" / "eval" / "metrics.json").read_text())
        parent = json.loads((folder / "out" / "parent" / "parent.json").read_text())
        assert parent["name"] == "shop" and parent["version"] == 1 and parent["base_model"] == str(model)
        prev = metrics["previous_task"]
        assert prev["version"] == "shop v1" and prev["examples"] == 16
        # "base" is the registered version: it still knows its own task
        assert prev["base"]["task_metric"]["mean"] >= 0.9
        assert metrics["models"]["fine_tuned"]["task_metric"]["mean"] >= 0.9  # the second task is learned
        results[previous] = prev
        prepare = json.loads((folder / "out" / "data" / "prepare.json").read_text())
        if previous:
            assert (
                prepare["replay"]["previous"]["version"] == "shop v1" and prepare["replay"]["previous"]["records"] > 0
            )
        card = next((folder / "out" / "registry").glob("shop-v*.md")).read_text()
        assert "fine-tune of shop v1 (itself a fine-tune of" in card and "previous version's task" in card
    # with the first task's records replayed, the second version keeps it within 5 points; without, it does not
    assert results[0.3]["change"]["mean"] >= -0.05, results[0.3]
    assert results[0.0]["change"]["mean"] < -0.05, results[0.0]
