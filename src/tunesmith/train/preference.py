"""Preference training with TRL: DPO and ORPO on the canonical preference records.

Both read prompt / chosen / rejected as they are. ORPO needs no reference model; DPO uses
the base model with the adapter switched off as its reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.data.records import Preference
from tunesmith.errors import DataError
from tunesmith.train.arguments import training_kwargs


def preference_dataset(records: list[Any], system_prompt: str | None = None) -> Any:
    """TRL's conversational preference format: prompt / chosen / rejected message lists."""
    from datasets import Dataset

    from tunesmith.data.template import with_system_prompt

    rows = [
        {"prompt": with_system_prompt(r.prompt, system_prompt), "chosen": r.chosen, "rejected": r.rejected}
        for r in records
        if isinstance(r, Preference)
    ]
    return Dataset.from_list(
        [{k: [{"role": m["role"], "content": m["content"]} for m in v] for k, v in row.items()} for row in rows]
    )


def _objective(method: str) -> tuple[Any, Any]:
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOConfig, DPOTrainer
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer  # moved to experimental in TRL 1.x

    return ORPOConfig, ORPOTrainer


def build_preference_trainer(
    cfg: ProjectConfig,
    model: Any,
    tokenizer: Any,
    train_records: list[Any],
    eval_records: list[Any],
    output_dir: Path,
    *,
    precision: str,
    device: str,
    callbacks: list[Any],
) -> Any:
    method = cfg.train.method
    from tunesmith.data.stage import system_prompt_for

    system = system_prompt_for(cfg)
    train_ds = preference_dataset(train_records, system)
    if len(train_ds) == 0:
        raise DataError(
            f"train.method={method} needs preference records (prompt/chosen/rejected); the train split has none"
        )
    eval_ds = preference_dataset(eval_records, system)
    has_eval = len(eval_ds) > 0
    config_class, trainer_class = _objective(method)
    args = config_class(
        **training_kwargs(cfg, output_dir, precision=precision, device=device, has_eval=has_eval),
        beta=cfg.train.dpo_beta,
        max_length=cfg.data.max_length,
    )
    return trainer_class(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds if has_eval else None,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
