"""Where MLflow keeps runs, models and their files for a project.

Default: a SQLite store at <output_dir>/mlflow.db with artifacts in <output_dir>/mlartifacts
(MLflow's own default would put them in ./mlruns of whatever folder the command ran from).
With registry.tracking_uri set (a shared server, PostgreSQL behind it), the server decides.
"""

from __future__ import annotations

import logging
from typing import Any

from tunesmith.config import ProjectConfig


def tracking_uri(cfg: ProjectConfig) -> str:
    return cfg.registry.tracking_uri or f"sqlite:///{cfg.output_path.resolve() / 'mlflow.db'}"


def model_name(cfg: ProjectConfig) -> str:
    return cfg.registry.name or cfg.root.name


def use_experiment(cfg: ProjectConfig) -> Any:
    """Point mlflow at the project's store and experiment (created with a local artifact folder)."""
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(tracking_uri(cfg))
    name = model_name(cfg)
    if mlflow.get_experiment_by_name(name) is None:
        location = None if cfg.registry.tracking_uri else (cfg.output_path.resolve() / "mlartifacts").as_uri()
        mlflow.create_experiment(name, artifact_location=location)
    return mlflow.set_experiment(name)
