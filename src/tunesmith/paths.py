"""Where each stage keeps its artefacts under `output_dir`: the project's folder layout, shared by
every stage so none has to import another to find its inputs."""

from __future__ import annotations

from pathlib import Path

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
