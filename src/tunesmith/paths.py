"""Where each stage keeps its artefacts under `output_dir`: the project's folder layout, shared by
every stage so none has to import another to find its inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig


def data_dir(cfg: ProjectConfig) -> Path:
    """`<output_dir>/data`: check report, splits, prepared windows."""
    return cfg.output_path / "data"


def train_dir(cfg: ProjectConfig) -> Path:
    """`<output_dir>/train`: the trained model, checkpoints, metrics, the pre-flight choices."""
    return cfg.output_path / "train"


def eval_dir(cfg: ProjectConfig) -> Path:
    """`<output_dir>/eval`: predictions, metrics.json, reports."""
    return cfg.output_path / "eval"


def human_dir(cfg: ProjectConfig) -> Path:
    """`<output_dir>/eval/human`: blind A/B sheets and their results."""
    return eval_dir(cfg) / "human"


def monitor_dir(cfg: ProjectConfig) -> Path:
    """`<output_dir>/monitor`: drift results and production reports."""
    return cfg.output_path / "monitor"


def parent_dir(cfg: ProjectConfig) -> Path:
    """`<output_dir>/parent`: the registered version a continual run starts from (its lineage and splits)."""
    return cfg.output_path / "parent"


def parent_info(cfg: ProjectConfig) -> dict[str, Any] | None:
    """What `registry.parent.resolve_parent` recorded, when this project's base model is a registered version."""
    path = parent_dir(cfg) / "parent.json"
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    return info if info.get("merged") == cfg.base_model else None
