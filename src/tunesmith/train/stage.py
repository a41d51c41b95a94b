"""The training stage: prepared data + base model → adapter (or full model), under `<output_dir>/train/`.

model/            the result (best checkpoint by validation loss): adapter or full model in
                  safetensors, tokenizer, chat template, generation config (its stop token)
checkpoints/      checkpoint-N folders; only those marked complete are resumed from
metrics.csv       training and validation loss and token accuracy, learning rate, tokens/s per logged step
progress.json     step, max_steps and timing, rewritten every step (for other processes)
alarms.jsonl      what the alarms said
loss.png          the loss curves
config.yaml       the resolved config
metadata.json     lineage: base model, adapter, data hashes, versions, results
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith import __version__
from tunesmith.config import ProjectConfig, dump_config
from tunesmith.console import err
from tunesmith.data.stage import load_split
from tunesmith.errors import TunesmithError
from tunesmith.files import replace_dir, write_atomic, write_json
from tunesmith.paths import data_dir, train_dir
from tunesmith.train.callbacks import (
    COMPLETE,
    Alarms,
    MarkComplete,
    MetricsLog,
    ProgressFile,
    RichProgress,
    StopAtStep,
    task_early_stopping,
)


def latest_complete_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint whose files were all written (marked complete)."""
    marked = [p for p in folder.glob("checkpoint-*") if (p / COMPLETE).exists() and p.name.split("-")[-1].isdigit()]
    return max(marked, key=lambda p: int(p.name.split("-")[-1]), default=None)


@dataclass
class TrainResult:
    """A finished training run: its folder, the trained model (adapter or weights) and `metadata.json`
    (steps, losses, alarms, the pre-flight choices, versions)."""

    run_dir: Path
    model_dir: Path
    metadata: dict[str, Any]


def _mlflow_start(cfg: ProjectConfig, run_dir: Path) -> str | None:
    """tunesmith's own MLflow run for this training (resumed when the run folder names one): its id."""
    if not cfg.train.mlflow:
        return None
    import mlflow

    from tunesmith.tracking import use_experiment

    use_experiment(cfg)
    previous = run_dir / "mlflow_run_id"
    run_id = previous.read_text().strip() if previous.exists() else None
    run = mlflow.start_run(run_id=run_id, run_name=f"{cfg.train.method}-{cfg.train.adapter}")
    previous.write_text(run.info.run_id)
    if run_id is None:
        flat = _flatten(
            {
                "train": cfg.train.model_dump(mode="json"),
                "data": {k: v for k, v in cfg.data.model_dump(mode="json").items() if k != "datasets"},
            }
        )
        mlflow.log_params({**flat, "base_model": cfg.base_model})
    return run.info.run_id


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = str(v)[:500]
    return out


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    found = {}
    for name in ("torch", "transformers", "peft", "trl", "datasets", "accelerate"):
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return found


def preflight(cfg: ProjectConfig, nproc: int = 1, strict: bool = True) -> Any:
    """The pre-flight check (`estimate.fit`): every auto setting chosen, the run checked to fit memory,
    before any model is loaded. Raises a `TunesmithError` that names a fix when it cannot fit."""
    from tunesmith.estimate.fit import fit_training
    from tunesmith.train.adapters import check_hardware

    check_hardware(cfg.train, cfg.device)
    prepared = data_dir(cfg) / "prepared"
    if cfg.train.method == "sft" and not (prepared / "train.parquet").exists():
        raise TunesmithError(
            f"no prepared training data in {prepared}; run `tunesmith data split` and "
            f"`tunesmith data prepare` on {cfg.config_path or 'the config'} (or `tunesmith run`)"
        )
    return fit_training(cfg, nproc=nproc, strict=strict)


def previous_choices(cfg: ProjectConfig) -> ProjectConfig:
    """For a resumed run: the auto settings as the interrupted run chose them (free memory may differ now,
    and a checkpoint only continues under the batch and schedule it was made with)."""
    path = train_dir(cfg) / "fit.json"
    if not path.exists():
        return cfg
    from tunesmith.config import with_overrides

    left = {
        f"{section}.{name}"
        for section, names in (
            ("train", cfg.train.auto_fields()),
            ("data", ["max_length"] if cfg.data.max_length == "auto" else []),
        )
        for name in names
    }
    chosen = [
        f"{c['setting']}={c['value']}" for c in json.loads(path.read_text()).get("choices", []) if c["setting"] in left
    ]
    return with_overrides(cfg, chosen) if chosen else cfg


def run_train(
    cfg: ProjectConfig,
    *,
    resume: bool = False,
    extra_callbacks: list[Any] | None = None,
    on_fit: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train as `cfg.train` says (auto settings chosen by the pre-flight check first, shown through
    `on_fit`); returns where the result is. Resumable with `resume=True`. One function on purpose: the
    steps share the run's state in order (pre-flight, run folder, seed, model, MLflow run, trainer,
    finish) and the `finally` that closes the MLflow runs must wrap all of them."""
    import os

    from tunesmith.hardware import is_main_process
    from tunesmith.models import load_tokenizer
    from tunesmith.train.adapters import learning_rate, load_for_training

    main = is_main_process()
    if resume:
        cfg = previous_choices(cfg)
    # under `--nproc` the launcher already chose and checked the settings for all processes
    launched = "TUNESMITH_PREFLIGHT_DONE" in os.environ
    fit = preflight(cfg, nproc=int(os.environ.get("WORLD_SIZE", "1")), strict=not launched)
    if main and on_fit and fit.choices and not launched:
        on_fit(fit.to_dict())
    cfg = fit.cfg
    t = cfg.train
    run_dir = train_dir(cfg)
    checkpoints = run_dir / "checkpoints"
    resume_from = None
    if resume:
        resume_from = latest_complete_checkpoint(checkpoints)
        if resume_from is None and main and checkpoints.exists():
            err.print(f"[yellow]no complete checkpoint in {checkpoints}; starting from the beginning[/]")
    elif run_dir.exists() and main:
        shutil.rmtree(run_dir)  # a fresh run; --resume keeps the old one
    run_dir.mkdir(parents=True, exist_ok=True)
    if main:
        write_atomic(run_dir / "config.yaml", dump_config(cfg))  # resolved: every auto setting as chosen
        write_json(run_dir / "fit.json", fit.to_dict())

    from transformers import set_seed

    precision = fit.precision
    set_seed(cfg.seed)  # before the adapter exists: its random initialisation must be reproducible
    tokenizer = load_tokenizer(cfg.base_model, trust_remote_code=cfg.trust_remote_code)
    model = load_for_training(cfg.base_model, t, precision=precision, trust_remote_code=cfg.trust_remote_code)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    if main:
        err.print(
            f"{t.method.upper()} · adapter {t.adapter} · {trainable:,} of {total:,} parameters trained "
            f"({trainable / total:.2%}) · lr {learning_rate(t):g} · {precision} on {fit.device}"
            + (" · layers compiled (the first step waits for it)" if t.compile is True else "")
        )

    mlflow_run = _mlflow_start(cfg, run_dir) if main else None
    mlflow_on = mlflow_run is not None
    alarms = Alarms(run_dir / "alarms.jsonl")
    started = time.time()
    try:
        progress = RichProgress()
        callbacks = [
            progress,
            MetricsLog(run_dir / "metrics.csv", progress, mlflow_run),
            alarms,
            MarkComplete(),
            ProgressFile(run_dir / "progress.json"),
        ]
        trainer = _trainer(cfg, model, tokenizer, fit, callbacks, progress)
        for cb in [*trackers(cfg, run_dir, main, nested=mlflow_on), *(extra_callbacks or [])]:
            trainer.add_callback(cb)
        output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        # A real kill never gets here; StopAtStep simulates one in tests. Early stopping and
        # alarms that stop training still end in a saved model.
        finished = not any(isinstance(cb, StopAtStep) and cb.fired for cb in extra_callbacks or [])
        metadata = _finish(cfg, trainer, tokenizer, run_dir, output, alarms, started, fit, finished)
    finally:
        if mlflow_on:
            import mlflow

            while mlflow.active_run() is not None:  # transformers' nested run too, when training failed inside it
                mlflow.end_run()
    return TrainResult(run_dir, run_dir / "model", metadata)


def _trainer(cfg: ProjectConfig, model: Any, tokenizer: Any, fit: Any, callbacks: list[Any], progress: Any) -> Any:
    """The SFT or preference trainer over the prepared data, with early stopping as configured and the Rich
    progress bar and metrics.csv in place of transformers' printing."""
    t = cfg.train
    checkpoints = train_dir(cfg) / "checkpoints"
    if t.method == "sft":
        from tunesmith.train.sft import build_sft_trainer

        prepared = data_dir(cfg) / "prepared"
        trainer, progress.collator = build_sft_trainer(
            cfg,
            model,
            tokenizer,
            prepared / "train.parquet",
            prepared / "validation.parquet",
            checkpoints,
            precision=fit.precision,
            device=fit.device,
            callbacks=callbacks,
        )
    else:
        from tunesmith.train.preference import build_preference_trainer

        trainer = build_preference_trainer(
            cfg,
            model,
            tokenizer,
            load_split(cfg, "train"),
            load_split(cfg, "validation"),
            checkpoints,
            precision=fit.precision,
            device=fit.device,
            callbacks=callbacks,
        )
    if t.early_stopping_patience and trainer.args.load_best_model_at_end:
        from transformers import EarlyStoppingCallback

        patience = t.early_stopping_patience
        trainer.add_callback(
            task_early_stopping(patience)
            if t.early_stopping_metric == "task"
            else EarlyStoppingCallback(early_stopping_patience=patience)
        )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # the Rich progress bar and metrics.csv replace its prints
    return trainer


def trackers(cfg: ProjectConfig, run_dir: Path, main: bool, *, nested: bool) -> list[Any]:
    """Callbacks for `train.report_to` that transformers does not place itself: TensorBoard's event files in
    the run's folder, and MLflow's run nested under tunesmith's own (`nested`) on the project's tracking
    server. wandb is prepared here (offline without a key) and added by transformers."""
    import os

    report_to, out = cfg.train.report_to, []
    if "wandb" in report_to:
        import importlib.util

        if importlib.util.find_spec("wandb") is None:
            raise TunesmithError(
                "train.report_to names wandb, which is not installed: pip install wandb "
                "(or remove it from train.report_to)"
            )
        if not os.environ.get("WANDB_API_KEY") and not os.environ.get("WANDB_MODE"):
            os.environ["WANDB_MODE"] = "offline"
            err.print(
                f"wandb: no WANDB_API_KEY, so the run is logged offline in {run_dir / 'wandb'} "
                "(`wandb sync` uploads it later)"
            )
        os.environ.setdefault("WANDB_DIR", str(run_dir))
    if "tensorboard" in report_to and main:
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        out.append(TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(run_dir / "tensorboard"))))
    if "mlflow" in report_to and main:
        from tunesmith.train.trackers import nested_mlflow

        out.append(nested_mlflow(cfg, run_dir, nested=nested))
    return out


def _save_model(model: Any, tokenizer: Any, tmp: Path, model_dir: Path) -> None:
    """The saved weights with their tokenizer and generation settings, moved into place whole."""
    (tmp / "training_args.bin").unlink(missing_ok=True)  # pickle; config.yaml holds the same settings
    tokenizer.save_pretrained(str(tmp))  # tokenizer and chat template travel with the weights
    generation = getattr(getattr(model, "base_model", model), "generation_config", None) or model.generation_config
    generation.eos_token_id = tokenizer.eos_token_id  # stop at the end-of-turn token when served
    generation.pad_token_id = tokenizer.pad_token_id
    generation.save_pretrained(str(tmp))
    replace_dir(tmp, model_dir)


def _finish(
    cfg: ProjectConfig,
    trainer: Any,
    tokenizer: Any,
    run_dir: Path,
    output: Any,
    alarms: Alarms,
    started: float,
    fit: Any,
    finished: bool,
) -> dict[str, Any]:
    from tunesmith.plots import loss_curve
    from tunesmith.train.trackers import tracker_place

    state = trainer.state
    model_dir = run_dir / "model"
    tmp = run_dir / ".model.tmp"
    if finished:
        if trainer.is_world_process_zero():
            shutil.rmtree(tmp, ignore_errors=True)  # left by a run killed while saving
        trainer.save_model(str(tmp))  # every process takes part (FSDP/ZeRO gather); only the main one writes
    if not trainer.is_world_process_zero():
        return {}
    if finished:
        _save_model(trainer.model, tokenizer, tmp, model_dir)
    png = loss_curve(
        run_dir / "metrics.csv",
        run_dir / "loss.png",
        f"{cfg.train.method.upper()} {cfg.train.adapter} on {cfg.base_model}",
    )
    split = json.loads((data_dir(cfg) / "split.json").read_text()) if (data_dir(cfg) / "split.json").exists() else {}
    evals = [h for h in state.log_history if "eval_loss" in h]
    best_step = int(state.best_model_checkpoint.rsplit("-", 1)[1]) if state.best_model_checkpoint else None
    kept = next((h for h in evals if h["step"] == best_step), {})  # the evaluation of the checkpoint kept
    losses = [h["loss"] for h in state.log_history if "loss" in h]
    metadata = {
        "tunesmith_version": __version__,
        "base_model": cfg.base_model,
        "method": cfg.train.method,
        "adapter": cfg.train.adapter,
        "data": {
            name: {"sha256": s.get("sha256"), "records": s.get("records")}
            for name, s in split.get("splits", {}).items()
        },
        "steps": state.global_step,
        "max_steps": state.max_steps,
        "report_to": {name: tracker_place(trainer, run_dir, name) for name in cfg.train.report_to},
        "completed": finished,
        "stopped_early": state.global_step < state.max_steps,
        "epochs": round(state.epoch or 0, 3),
        "train_loss_first": losses[0] if losses else None,
        "train_loss_last": losses[-1] if losses else None,
        "eval_loss_first": evals[0]["eval_loss"] if evals else None,
        "eval_loss_best": kept.get("eval_loss"),
        "eval_task_metric_first": evals[0].get("eval_task_metric") if evals else None,
        "eval_task_metric_best": kept.get("eval_task_metric"),
        "best_metric": cfg.train.early_stopping_metric if evals else None,
        "best_checkpoint": state.best_model_checkpoint,
        "runtime_s": round(time.time() - started, 1),
        "train_runtime_s": round(output.metrics.get("train_runtime", 0.0), 1),
        "precision": fit.precision,
        "device": fit.device,
        "fit": fit.to_dict(),
        "alarms": alarms.raised,
        "versions": _versions(),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "loss_curve": png.name if png else None,
    }
    write_json(run_dir / "metadata.json", metadata)
    if cfg.train.mlflow and trainer.is_world_process_zero():
        import mlflow

        if png:
            mlflow.log_artifact(str(png))
        mlflow.log_dict(metadata, "metadata.json")
    return metadata
