"""`train.report_to: [mlflow]`: transformers' own MLflowCallback, in a run nested under tunesmith's.

tunesmith keeps its own MLflow run for a training (its settings, the loss curve, the evaluation, the
registered model). transformers' MLflowCallback logs what a Hugging Face user expects to find: every
TrainingArguments field and the model config as parameters, every logged step as metrics. Given the
same run, the two would collide (MLflow refuses a parameter logged twice with another value), so the
callback gets a child run (`MLFLOW_NESTED_RUN`), on the tracking server tunesmith already points
MLflow at (registry.tracking_uri, or the project's SQLite store). A resumed training reattaches to the
same child run (`MLFLOW_RUN_ID`). The callback reads its settings from the environment when training
begins, so they are set for that call only.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig

RUN_ID_FILE = "mlflow_trainer_run_id"


@contextmanager
def _environment(values: dict[str, str | None]) -> Any:
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def nested_mlflow(cfg: ProjectConfig, run_dir: Path, *, nested: bool) -> Any:
    """An MLflowCallback that logs into a child of tunesmith's active run (`nested`), or, with
    `train.mlflow: false`, into a run of its own in the project's experiment."""
    from transformers.integrations import MLflowCallback

    from tunesmith.tracking import use_experiment

    class NestedMLflowCallback(MLflowCallback):
        run_id: str | None = None

        def setup(self, args: Any, state: Any, model: Any) -> None:
            import mlflow

            if state.is_world_process_zero and not nested:
                use_experiment(cfg)  # the project's store and experiment, not ./mlruns
            saved = run_dir / RUN_ID_FILE
            previous = saved.read_text().strip() if saved.exists() else None
            with _environment(
                {
                    "MLFLOW_NESTED_RUN": "TRUE" if nested else None,
                    "MLFLOW_RUN_ID": previous,
                    "MLFLOW_EXPERIMENT_NAME": None,
                    "MLFLOW_TRACKING_URI": None,
                }
            ):
                super().setup(args, state, model)
            if state.is_world_process_zero and mlflow.active_run() is not None:
                self.run_id = mlflow.active_run().info.run_id
                saved.write_text(self.run_id)

    return NestedMLflowCallback()


def tracker_place(trainer: Any, run_dir: Path, name: str) -> str:
    """Where a tracker's logs went: its folder, or for MLflow the tracking URI and the run."""
    if name != "mlflow":
        return str(run_dir / name)
    import mlflow

    run = next((cb.run_id for cb in trainer.callback_handler.callbacks if getattr(cb, "run_id", None)), None)
    return f"{mlflow.get_tracking_uri()} run {run}" if run else "mlflow: no run started"
