"""`train:` — objective, adapter, schedule, batch and memory (auto settings chosen by the pre-flight check)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, model_validator

from tunesmith.config.section import Auto, PositiveInt, Section


class TrainConfig(Section):
    method: Literal["sft", "dpo", "orpo"] = "sft"
    """Training objective: sft (supervised), or a preference method on prompt/chosen/rejected
    records: dpo, or orpo (no reference model)."""

    adapter: Literal["lora", "qlora", "dora", "prefix", "ia3", "none"] = "lora"
    """Parameter-efficient method; none = full fine-tuning. qlora needs a CUDA GPU."""

    learning_rate: float | None = Field(None, gt=0)
    """Peak learning rate. None: chosen by the pre-flight check from the model's size: for SFT with
    LoRA/QLoRA/DoRA 1e-3 under 1B parameters, 2e-4 up to 30B, 1e-4 above; 2e-4 for DPO/ORPO with
    those adapters; 3e-3 for IA3 and prefix tuning; 2e-5 for full fine-tuning."""

    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    """Learning-rate schedule after warm-up."""

    warmup_ratio: Union[Annotated[float, Field(ge=0.0, lt=1.0)], Auto] = "auto"
    """Share of the total steps spent warming the learning rate up from zero. auto: 3%, but
    at least 10 steps or a tenth of the run, whichever is fewer."""

    num_epochs: Union[Annotated[float, Field(gt=0)], Auto] = "auto"
    """Passes over the training split. auto: 3, more for small sets so that at least 100
    records are seen in all (at most 25 epochs), fewer past 25,000 (OpenAI's rule)."""

    max_steps: int | None = Field(None, gt=0)
    """Stop after this many optimizer steps (overrides num_epochs)."""

    micro_batch_size: Union[PositiveInt, Auto] = "auto"
    """Sequences (or packed windows) per forward pass on each process. auto: as many as fill
    about 2,048 tokens on a CPU (8,192 on a GPU) and fit in memory."""

    gradient_accumulation_steps: Union[PositiveInt, Auto] = "auto"
    """Micro-batches accumulated per optimizer step. auto: enough for the effective batch the
    data size calls for (about 100 optimizer steps in all, at most 64 sequences a step)."""

    lora_r: int = Field(16, ge=1)
    """LoRA rank."""

    lora_alpha: int = Field(32, ge=1)
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_r)."""

    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout on the LoRA branch's input. 0 by default: with dropout, peft copies every adapted
    layer's input, which cost about 25% of a training step on a CPU (docs/benchmarks.md), and
    replay and early stopping already guard against overfitting; 0.05-0.1 is the LoRA paper's."""

    lora_target_modules: list[str] | Literal["all-linear"] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    """Modules that get adapters: names, or all-linear."""

    prefix_tokens: int = Field(20, ge=1)
    """Virtual tokens learnt by prefix tuning (adapter: prefix)."""

    attn_implementation: Literal["auto", "eager_varlen", "eager", "sdpa", "flash_attention_2"] = "auto"
    """Attention kernel. auto: eager_varlen on CPUs (tunesmith's eager attention within each packed
    record, skipping the masked blocks of the window; the fastest measured here) unless it does not
    fit in memory, then sdpa; sdpa on GPUs (flash_attention_2 when installed)."""

    gradient_checkpointing: Union[bool, Auto] = "auto"
    """Recompute activations in the backward pass to save memory. auto: only when nothing
    else makes training fit."""

    compile: Union[bool, Auto] = "auto"
    """torch.compile each decoder layer's training steps (regional compilation, shapes dynamic;
    tunesmith's per-record attention and the validation passes stay eager), fusing the elementwise
    work between the matmuls: 1.1-1.3x a step on a CPU, after a compile at the first step (~90 s on
    2 cores with a cold cache, ~15 s once inductor has cached it). auto: on for SFT on a CPU with a C++
    compiler (inductor builds its CPU kernels with one), without gradient checkpointing, when the run is
    long enough to pay the compile back (tokens x parameters at least 100k tokens of a 135M model in bf16,
    160k in fp32, where it saves little a step);
    off on GPUs (not measured here).
    TORCHDYNAMO_DISABLE=1 turns it off everywhere."""

    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    """Training precision. auto: bf16 where the hardware runs it natively and fast (CPUs with AMX; CPUs
    with AVX512-BF16 but no AMX where a bf16 matmul measures 1.2x fp32's or more, measured once per CPU
    and cached, or where only bf16 fits in memory; CUDA compute capability 8.0+), fp16 with loss scaling on
    older GPUs, else fp32."""

    max_memory_gb: float | None = Field(None, gt=0)
    """Memory training may use, in GB. None: what this machine has available now (free RAM
    under any cgroup limit, or free GPU memory). The pre-flight check fits the run into it."""

    logging_steps: int = Field(5, ge=1)
    """Log training loss every N optimizer steps."""

    eval_steps: Union[PositiveInt, Auto] = "auto"
    """Compute validation loss every N optimizer steps. auto: about ten times per run."""

    save_steps: Union[PositiveInt, Auto] = "auto"
    """Write a checkpoint every N optimizer steps. auto: at every evaluation."""

    early_stopping_patience: int | None = Field(3, ge=1)
    """Stop after this many evaluations without a better `early_stopping_metric` (None: never)."""

    early_stopping_metric: Literal["loss", "task"] = "loss"
    """What early stopping and the best checkpoint (the model kept) follow: the validation loss, or the
    validation task metric, `eval_task_metric` (SFT only): the accuracy of eval.fields (or of the
    JSON schema's required closed-set fields) in each validation answer, else the share of answers
    right as a whole, read off the validation-loss pass by teacher forcing (train/task_metric.py). It
    is logged at every evaluation either way. Ties keep the earlier checkpoint, as transformers does."""

    save_total_limit: int = Field(3, ge=1)
    """Checkpoints kept on disk (the best one, by early_stopping_metric, is always kept); at least 2 are
    kept whatever is set, so a kill while the newest is being written still leaves a complete one."""

    mlflow: bool = True
    """Log parameters, metrics and the loss curve to MLflow (registry.tracking_uri, or a
    SQLite store under output_dir)."""

    report_to: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(default_factory=list)
    """Experiment trackers that also get the Trainer's logs, through transformers' integrations:
    tensorboard (event files in <output_dir>/train/tensorboard; `tensorboard --logdir` shows them),
    wandb (Weights & Biases: `pip install wandb`; offline, into <output_dir>/train/wandb, unless
    WANDB_API_KEY is set), mlflow (transformers' MLflowCallback: every TrainingArguments field and the
    model config as parameters, each logged step as metrics, in a run nested under tunesmith's own run,
    on the server that registry.tracking_uri names). Empty by default: tunesmith's own MLflow run keeps
    every metric."""

    dpo_beta: float = Field(0.1, gt=0)
    """beta of DPO / ORPO: how strongly the preference term pulls (for DPO, how far the model
    may move from the reference)."""

    @model_validator(mode="before")
    @classmethod
    def _bf16_is_precision(cls, data: Any) -> Any:
        """`bf16: true|false|auto` (the older setting) still works: it becomes `precision`."""
        if isinstance(data, dict) and "bf16" in data:
            data = dict(data)
            value = data.pop("bf16")
            if "precision" not in data:
                data["precision"] = {True: "bf16", False: "fp32"}.get(value, "auto")
        return data

    @model_validator(mode="after")
    def _task_metric_needs_sft(self) -> TrainConfig:
        if self.early_stopping_metric == "task" and self.method != "sft":
            raise ValueError(
                f"early_stopping_metric: task is measured for sft only, not {self.method}; use loss (the default)"
            )
        return self

    def auto_fields(self) -> list[str]:
        """Settings left to `auto`, which the pre-flight check chooses."""
        return [name for name in type(self).model_fields if getattr(self, name) == "auto"]
