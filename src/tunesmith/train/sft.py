"""Supervised fine-tuning on prepared (tokenised, masked, packed) windows with transformers' Trainer.

The Trainer is used as it is: tunesmith supplies the data, the collator and callbacks.
With gradient accumulation the Trainer divides the summed token losses by the number of
trained tokens across all micro-batches (`num_items_in_batch`), so 1 × 8 accumulation
gives the same loss and gradients as a batch of 8.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.train.arguments import training_kwargs
from tunesmith.train.collate import PackedCollator


def load_prepared(path: Path) -> Any:
    """A prepared split as an in-memory `datasets.Dataset` (no copy in the HF cache)."""
    import pyarrow.parquet as pq
    from datasets import Dataset

    return Dataset(pq.read_table(path))


def build_sft_trainer(cfg: ProjectConfig, model: Any, tokenizer: Any, train_path: Path, eval_path: Path | None,
                      output_dir: Path, *, bf16: bool, callbacks: list[Any]) -> tuple[Any, PackedCollator]:
    from transformers import Trainer, TrainingArguments

    train_ds = load_prepared(train_path)
    eval_ds = load_prepared(eval_path) if eval_path is not None and eval_path.exists() else None
    if eval_ds is not None and len(eval_ds) == 0:
        eval_ds = None
    collator = PackedCollator(tokenizer.pad_token_id)
    args = TrainingArguments(**training_kwargs(cfg, output_dir, bf16=bf16, has_eval=eval_ds is not None))
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, data_collator=collator,
                      processing_class=tokenizer, callbacks=callbacks)
    return trainer, collator
