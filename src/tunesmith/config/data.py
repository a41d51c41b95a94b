"""`data:` — inputs, checks, split and preparation."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from tunesmith.config.section import Auto, Section

FORMATS = ("auto", "messages", "alpaca", "prompt_completion", "preference", "openai_dpo", "sharegpt")
SPLITS = ("train", "validation", "test")


class DatasetSource(Section):
    path: str
    """A JSONL, JSON, CSV or Parquet file, a folder of such files, or a folder written by
    `datasets.save_to_disk`. Relative paths are relative to the config file."""

    format: Literal[FORMATS] = "auto"  # type: ignore[valid-type]
    """Record format: auto (detected per file), messages (OpenAI/ChatML), alpaca
    (instruction/input/output), prompt_completion, preference (prompt/chosen/rejected),
    openai_dpo (input/preferred_output/non_preferred_output) or sharegpt (conversations)."""

    task: str | None = None
    """Task name of these records, for multi-task training: training samples tasks by
    `data.task_sampling`, and evaluation reports and gates each task apart."""

    split: Literal["auto", "train", "validation", "test"] = "auto"
    """Which split these records belong to. auto: taken from the file name (train, valid,
    validation, dev, test), otherwise pooled and split by `data.val_size`/`test_size`."""


class ReplayConfig(Section):
    source: str = "self"
    """self: the base model's own answers to tunesmith's packaged general prompts (generated once
    per base model and cached; self-distillation). Otherwise a file of general conversations
    (any supported format), relative to the config file."""

    ratio: float = Field(0.2, ge=0.0, lt=1.0)
    """Share of the training tokens that are replay (0.2: one token in five), and, with
    balance_loss, the share of the training loss they carry."""

    balance_loss: bool = True
    """Weight the loss so replay carries `ratio` of it (and the previous version's records
    `previous`), whatever the answer lengths. Without it a task with one-word answers (a label)
    trains mostly on replay: its long answers hold most of the trained tokens."""

    max_new_tokens: int = Field(128, ge=8)
    """Longest self-distilled answer; answers the base model does not finish within it are left out."""

    refusals: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of the training tokens (and, with balance_loss, of the loss) that are refusals of harmful
    requests from tunesmith's packaged set, half in the task's own prompt and half in plain chat, so the
    fine-tune keeps the base model's refusals (fine-tuning on benign data wears them down). `false` or 0
    turns it off; docs/safety.md has the measurements behind the default."""

    previous: float = Field(0.2, ge=0.0, lt=1.0)
    """Continual learning (base_model: registry:NAME@REF): share of the training tokens taken from
    the previous version's own training records, so it keeps its task."""

    @field_validator("refusals", mode="before")
    @classmethod
    def _refusals_switch(cls, value: object) -> object:
        if value is False or value is None:
            return 0.0
        return 0.1 if value is True else value

    @model_validator(mode="after")
    def _room_for_the_task(self) -> ReplayConfig:
        used = self.ratio + self.refusals + self.previous
        if used >= 1.0:
            raise ValueError(
                f"ratio + refusals + previous = {used:g} leaves no room for the task's own records; keep it below 1"
            )
        return self


class DataConfig(Section):
    datasets: list[DatasetSource] = Field(default_factory=list)
    """Input files. Each entry: {path, format, split}."""

    max_length: Union[Annotated[int, Field(ge=8)], Auto] = "auto"
    """Longest sequence in tokens (chat template included); longer records are reported
    by `data check` and handled by `truncation` when preparing. auto: the shortest multiple
    of 64 that holds at least 99% of the records, at most the model's context."""

    truncation: Literal["drop", "truncate"] = "drop"
    """What to do with records longer than max_length: drop them (default; a cut-off
    answer teaches the model to stop mid-sentence) or truncate them from the right."""

    train_on_prompt: bool = False
    """Compute the loss on prompt tokens too. Off: only assistant turns are trained on."""

    packing: bool = True
    """Pack short records into windows of max_length, position ids reset per record so
    no token attends across records (padding-free)."""

    share_prefix: Union[bool, Auto] = "auto"
    """With packing, records whose untrained openings agree (a common system prompt) share one copy
    of it in their window: the same loss and gradients for a third less work on the bundled
    example. Needs eager_varlen attention. auto: on when training will use it (SFT on a CPU or MPS
    with train.attn_implementation auto or eager_varlen); off on CUDA GPUs."""

    system_prompt: str | None = "auto"
    """System message added to conversations that have none, in training, evaluation and serving (the
    server adds it to requests without one). None: leave them as they are. auto: none, unless no training
    record has a system prompt and the answers are a small set of short word labels; then a classifier prompt
    naming the labels, so the fine-tune can tell the task's messages from plain chat (without one, a
    classifier of questions answers every general question with a label)."""

    label_field: str | None = None
    """Record field holding a label or category, used for stratified splits and the
    balance report (looked up at the top level of the record, then in `meta`)."""

    task_sampling: Literal["size", "equal", "temperature"] = "size"
    """How training draws from several tasks (datasets with a `task` name): size (each task as
    many times as it has records), equal (every task the same share), or temperature (the
    T5/mT5 rule: a task's share ∝ its size^(1/T), between the two)."""

    task_temperature: float = Field(2.0, ge=1.0)
    """T of the temperature rule (1: by size; larger: closer to equal; mT5 used about 3.3)."""

    replay: ReplayConfig | None = Field(default_factory=ReplayConfig)
    """General examples mixed into SFT training to keep the base model's general ability
    (the remedy for catastrophic forgetting). On by default; `replay: false` (or null) turns it
    off. Only the prepared training windows get them; the splits stay your own records."""

    val_size: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of the pooled records held out for validation."""

    test_size: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of the pooled records held out for the final test set."""

    dedup: Literal["none", "exact"] = "exact"
    """Drop exact duplicates when splitting (the first occurrence is kept). Near-duplicates
    are always kept together in one split so they cannot leak."""

    near_dup_threshold: float = Field(0.8, gt=0.0, le=1.0)
    """Estimated Jaccard similarity of word 3-grams above which two records are near-duplicates."""

    redact_pii: bool = False
    """Replace detected PII (emails, phones, card numbers, IBANs, SSNs, IPs, secrets) with
    placeholders like [EMAIL] in the prepared splits and write a redacted copy."""

    @field_validator("replay", mode="before")
    @classmethod
    def _replay_switch(cls, value: object) -> object:
        if value is False:
            return None
        return {} if value is True else value

    @model_validator(mode="after")
    def _sizes_leave_training_data(self) -> DataConfig:
        if self.val_size + self.test_size >= 1.0:
            raise ValueError(
                f"val_size + test_size = {self.val_size + self.test_size:g} leaves nothing to train on; keep it below 1"
            )
        return self
