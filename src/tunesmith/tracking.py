"""Where MLflow keeps runs, models and their files for a project.

Default: a SQLite store at <output_dir>/mlflow.db with artifacts in <output_dir>/mlartifacts
(MLflow's own default would put them in ./mlruns of whatever folder the command ran from).
With registry.tracking_uri set to a server (PostgreSQL behind it), the server decides; set to a
local `sqlite:///` file, artifacts go to `mlartifacts` beside that file.
"""

from __future__ import annotations

import logging
from pathlib import Path
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
        location = (cfg.output_path.resolve() / "mlartifacts").as_uri()
        uri = cfg.registry.tracking_uri
        if uri and uri.startswith("sqlite:///"):  # a local store named by hand: its files beside it
            location = (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
        elif uri:  # a tracking server decides where artifacts go
            location = None
        mlflow.create_experiment(name, artifact_location=location)
    return mlflow.set_experiment(name)
