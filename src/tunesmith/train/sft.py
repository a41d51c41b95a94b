"""Supervised fine-tuning on prepared (tokenised, masked, packed) windows with transformers' Trainer.

The Trainer is used as it is: tunesmith supplies the data, the collator and callbacks.
With gradient accumulation the Trainer divides the summed token losses by the number of
trained tokens across all micro-batches (`num_items_in_batch`), so 1 × 8 accumulation
gives the same loss and gradients as a batch of 8.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.schemas import schema_fields
from tunesmith.train.arguments import training_kwargs
from tunesmith.train.collate import PackedCollator
from tunesmith.train.task_metric import TeacherForcedScore


def load_prepared(path: Path) -> Any:
    """A prepared split as an in-memory `datasets.Dataset` (no copy in the HF cache)."""
    import pyarrow.parquet as pq
    from datasets import Dataset

    return Dataset(pq.read_table(path))


def trained_positions_loss(
    model: Any,
    inputs: dict[str, Any],
    num_items_in_batch: Any = None,
    accuracy: dict[str, int] | None = None,
    answers: Any = None,
) -> tuple[Any, Any]:
    """Causal-LM loss computing logits only where a trained token is predicted.

    Typically under a third of the tokens of a chat record are trained (assistant turns);
    the LM head and the softmax over the vocabulary (49k entries for SmolLM2) are skipped
    for the rest. transformers' `logits_to_keep` takes positions shared by every row, so in a
    batch of packed windows it keeps every position that any row trains (27.4% of the demo's
    positions with four windows, against 20.7% trained); a pre-hook on the LM head then keeps, of those, only each row's own
    trained positions (`_rows_only`), so the head and the softmax see trained tokens alone.
    Summed and divided by `num_items_in_batch` exactly as transformers' own loss does; with
    `loss_weights` in the batch (replay balanced against the task) each token's loss is weighted
    first (the weights average 1 over the training set, so the scale is kept). With `accuracy`,
    adds the trained tokens predicted right (argmax) and counted to its "correct" and "total"; with
    `answers` (a `TeacherForcedScore`), scores each answer the batch holds.
    """
    import torch
    import torch.nn.functional as F

    from tunesmith.data.template import IGNORE_INDEX

    inputs = dict(inputs)
    labels = inputs.pop("labels")
    weights = inputs.pop("loss_weights", None)
    targets = labels[:, 1:]
    keep = (targets != IGNORE_INDEX).any(dim=0).nonzero().squeeze(-1)  # positions t predicting label t+1
    rows = targets[:, keep] != IGNORE_INDEX  # [B, K]: which kept positions each row trains
    with _rows_only(model, rows) as hooked:
        outputs = model(**inputs, logits_to_keep=keep, use_cache=False)
    logits = outputs.logits.float().reshape(-1, outputs.logits.shape[-1])
    if not hooked:  # [B*K, V]: the trained rows of it
        logits = logits[rows.reshape(-1)]
    picked = targets[:, keep]
    flat = picked[rows]  # [N]: the token each trained position predicts
    if weights is None:
        loss = F.cross_entropy(logits, flat, reduction="sum")
    else:  # replay balanced against the task: each trained token's loss times its source's weight
        token_loss = F.cross_entropy(logits, flat, reduction="none")
        loss = (token_loss * weights[:, 1:][:, keep][rows].to(token_loss.dtype)).sum()
    if accuracy is not None or answers is not None:
        with torch.no_grad():
            predicted = torch.full_like(picked, IGNORE_INDEX)
            predicted[rows] = logits.argmax(-1)
            if accuracy is not None:
                mask = picked != IGNORE_INDEX
                accuracy["correct"] += int(((predicted == picked) & mask).sum())
                accuracy["total"] += int(mask.sum())
            if answers is not None:
                answers.add(keep, picked, predicted, IGNORE_INDEX)
    if num_items_in_batch is None:
        num_items_in_batch = rows.sum()
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(loss.device)
    return loss / num_items_in_batch, outputs


@contextmanager
def _rows_only(model: Any, rows: Any):
    """While the model runs, its LM head sees only each row's trained positions: the hidden states
    [B, K, H] at the kept positions become [1, N, H], N = rows.sum(). Yields False, changing nothing,
    for a model without an output-embeddings module."""
    inner = getattr(model, "module", model)  # under DDP
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    if head is None:
        yield False
        return
    handle = head.register_forward_pre_hook(lambda _m, args: (args[0][rows].unsqueeze(0), *args[1:]))
    try:
        yield True
    finally:
        handle.remove()


def sft_trainer_class() -> type:
    from transformers import Trainer

    class TrainedTokensTrainer(Trainer):
        """transformers' Trainer with `trained_positions_loss`, logging the mean token accuracy of
        training and validation (as TRL's SFTTrainer does) beside the losses, and with `task_score`
        (a `TeacherForcedScore`) the validation task metric as `eval_task_metric`."""

        def __init__(self, *args, task_score: Any = None, **kwargs):
            super().__init__(*args, **kwargs)
            self._accuracy = {"train": {"correct": 0, "total": 0}, "eval": {"correct": 0, "total": 0}}
            self._task_score = task_score

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            counts = self._accuracy["train" if model.training else "eval"]
            answers = None if model.training else self._task_score
            loss, outputs = trained_positions_loss(model, inputs, num_items_in_batch, counts, answers)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # as Trainer.compute_loss does: DDP averages gradients
            return (loss, outputs) if return_outputs else loss

        def log(self, logs, *args, **kwargs):
            for mode, key in (("train", "mean_token_accuracy"), ("eval", "eval_mean_token_accuracy")):
                counts = self._accuracy[mode]
                if ("loss" if mode == "train" else "eval_loss") in logs and counts["total"]:
                    logs[key] = round(counts["correct"] / counts["total"], 4)
                    counts["correct"] = counts["total"] = 0
            if "eval_loss" in logs and self._task_score is not None:
                acc = self.accelerator  # every process scores its shard of the validation split
                value = self._task_score.pop(
                    (lambda t: acc.reduce(t.to(acc.device), reduction="sum").cpu()) if acc.num_processes > 1 else None
                )
                if value is not None:
                    logs["eval_task_metric"] = value
            return super().log(logs, *args, **kwargs)

    return TrainedTokensTrainer


def build_sft_trainer(
    cfg: ProjectConfig,
    model: Any,
    tokenizer: Any,
    train_path: Path,
    eval_path: Path | None,
    output_dir: Path,
    *,
    precision: str,
    device: str,
    callbacks: list[Any],
) -> tuple[Any, PackedCollator]:
    from transformers import TrainingArguments

    train_ds = load_prepared(train_path)
    eval_ds = load_prepared(eval_path) if eval_path is not None and eval_path.exists() else None
    if eval_ds is not None and len(eval_ds) == 0:
        eval_ds = None
    collator = PackedCollator(tokenizer.pad_token_id)
    args = TrainingArguments(
        **training_kwargs(cfg, output_dir, precision=precision, device=device, has_eval=eval_ds is not None)
    )
    task_score = TeacherForcedScore(tokenizer, scored_fields(cfg)) if eval_ds is not None else None
    trainer = sft_trainer_class()(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=callbacks,
        task_score=task_score,
    )
    return trainer, collator


def scored_fields(cfg: ProjectConfig) -> list[str]:
    """The JSON fields the validation task metric scores: eval.fields, or the schema's required
    closed-set fields, as evaluation scores them; none (answers scored whole) without either."""
    import json

    if cfg.eval.fields:
        return list(cfg.eval.fields)
    if cfg.eval.json_schema:
        return schema_fields(json.loads(cfg.resolve(cfg.eval.json_schema).read_text()))
    return []
