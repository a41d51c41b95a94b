"""`TrainConfig` → transformers/TRL training arguments, with method-aware defaults."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.train.adapters import learning_rate


def training_kwargs(
    cfg: ProjectConfig, output_dir: Path, *, precision: str, device: str, has_eval: bool
) -> dict[str, Any]:
    """Keyword arguments shared by `TrainingArguments` and TRL's configs (`cfg` resolved by the pre-flight check)."""
    t = cfg.train
    left = t.auto_fields()
    if left:
        raise RuntimeError(f"train settings {left} are still auto: resolve the config with estimate.fit first")
    # load_best_model_at_end needs checkpoints on evaluation steps: round save_steps up to a multiple.
    save_steps = math.ceil(t.save_steps / t.eval_steps) * t.eval_steps if has_eval else t.save_steps
    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=t.micro_batch_size,
        per_device_eval_batch_size=t.micro_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=learning_rate(t),
        lr_scheduler_type=t.lr_scheduler,
        # transformers 5 has no warmup_ratio: a fractional warmup_steps is read as a ratio of the total.
        warmup_steps=t.warmup_ratio,
        num_train_epochs=t.num_epochs,
        max_steps=t.max_steps or -1,
        logging_steps=t.logging_steps,
        # Off: with the filter on, a diverged run whose weights are NaN logs a loss of 0.0, silently.
        logging_nan_inf_filter=False,
        save_strategy="steps",
        save_steps=save_steps,
        # at least 2: the Trainer deletes old checkpoints before tunesmith marks the new one complete,
        # so with 1 a kill at that moment would leave no complete checkpoint to resume from
        save_total_limit=max(2, t.save_total_limit),
        eval_strategy="steps" if has_eval else "no",
        eval_steps=t.eval_steps if has_eval else None,
        eval_on_start=has_eval,  # the base model's validation loss: the point every curve starts from
        load_best_model_at_end=has_eval,
        metric_for_best_model={"loss": "eval_loss", "task": "eval_task_metric"}[t.early_stopping_metric]
        if has_eval
        else None,
        greater_is_better=t.early_stopping_metric == "task" if has_eval else None,
        prediction_loss_only=True,
        bf16=precision == "bf16",  # set explicitly: TRL's configs default it to on
        fp16=precision == "fp16",  # with loss scaling (older GPUs)
        use_cpu=device == "cpu",
        # torch's fused AdamW (one kernel per step for all parameters) on CUDA and CPU alike; set
        # explicitly so a transformers release with another default does not change training here
        optim="adamw_torch_fused",
        seed=cfg.seed,
        data_seed=cfg.seed,
        # metrics go to CSV and MLflow through tunesmith's own callback; wandb through transformers' own
        # (tensorboard too, but its writer is placed by train/stage.py, which transformers 5 leaves to the cwd)
        report_to=[name for name in t.report_to if name not in ("tensorboard", "mlflow")] or "none",
        disable_tqdm=True,  # the Rich progress bar replaces tqdm
        remove_unused_columns=False,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
    )
    return kwargs
