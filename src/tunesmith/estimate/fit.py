"""The pre-flight check: settings left to `auto` are chosen to fit memory and the data's size.

Before a model is loaded, the memory estimate (`estimate.memory`) is computed from the real
prepared windows and the resolved config, and compared with the memory available here (free
RAM under any cgroup limit, or free GPU memory; `train.max_memory_gb` overrides). Settings the
user set are kept; when they cannot fit, training stops with an error that names a fix.

The schedule follows the field's practice for small sets:
- epochs: OpenAI's fine-tuning rule — 3, raised so that at least 100 records are seen in all
  (at most 25 epochs), lowered so that at most 25,000 are (at least 1);
- effective batch: sized for about 100 optimizer steps in all (between 1 and 64 sequences a step);
- warm-up: 3% of the steps, but at least 10 steps or a tenth of the run, whichever is fewer;
- validation about ten times a run, with a checkpoint at each (early stopping keeps the best).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tunesmith.config import ProjectConfig, TrainConfig
from tunesmith.errors import ConfigError, TunesmithError
from tunesmith.estimate.memory import GB, Arch, MemoryEstimate, estimate_memory
from tunesmith.estimate.plan import DataStats, data_stats, method_of, model_arch, setup_for

DEFAULT_LR = {"lora": 2e-4, "qlora": 2e-4, "dora": 2e-4, "ia3": 3e-3, "prefix": 3e-3, "none": 2e-5}
LOW_RANK = ("lora", "qlora", "dora")
TOKENS_PER_MICRO_BATCH = {"cpu": 2048, "mps": 4096, "cuda": 8192}
TARGET_STEPS = 100
MIN_STEPS = 30
MAX_EFFECTIVE_BATCH = 64
COMPILE_PAYS_AFTER = 100_000 * 135e6  # trained tokens x parameters: 100k tokens of SmolLM2-135M
# In fp32 the matmuls already run near the CPU's fp32 peak and compile saves little: 1.11x a step on a 2-core AMX
# CPU, 1.00x on AVX512-BF16 without AMX (benchmarks/train_throughput.py, 2026-12-04), against ~35-75 s of compile
COMPILE_PAYS_AFTER_FP32 = 160_000 * 135e6
SAFETY = 0.85  # the estimate is within about ±20% of measured peaks (benchmarks/memory_estimate.py, defaults_fit.py)


@dataclass
class Fit:
    """What the pre-flight check chose, why, and the memory it expects."""

    cfg: ProjectConfig
    device: str
    precision: str
    estimate: MemoryEstimate
    budget_bytes: float
    budget_source: str
    total_steps: int
    data: DataStats
    choices: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        t = self.cfg.train
        return {
            "device": self.device,
            "precision": self.precision,
            "estimate_gb": round(self.estimate.total / GB, 3),
            "budget_gb": round(self.budget_bytes / GB, 3),
            "budget_source": self.budget_source,
            "total_steps": self.total_steps,
            "max_length": self.cfg.data.max_length,
            "micro_batch_size": t.micro_batch_size,
            "gradient_accumulation_steps": t.gradient_accumulation_steps,
            "num_epochs": t.num_epochs,
            "attn_implementation": t.attn_implementation,
            "gradient_checkpointing": t.gradient_checkpointing,
            "compile": t.compile,
            "sequences_per_epoch": self.data.sequences,
            "records": self.data.records,
            "choices": self.choices,
            "warnings": self.warnings,
            "estimate": self.estimate.to_dict(),
        }


def openai_epochs(records: int) -> int:
    """Epochs by OpenAI's fine-tuning rule for `records` training examples."""
    if records * 3 < 100:
        return min(25, math.ceil(100 / max(1, records)))
    if records * 3 > 25_000:
        return max(1, 25_000 // records)
    return 3


def steps_per_epoch(sequences: int, micro: int, accumulation: int, nproc: int) -> int:
    """Optimizer steps per epoch as transformers' Trainer counts them (a partial last step counts)."""
    batches = math.ceil(sequences / (micro * nproc))
    return max(1, math.ceil(batches / accumulation))


def _attention_options(setting: str, device: str, shared_prefix: bool = False) -> list[str]:
    if shared_prefix:  # only eager_varlen lets a record see the prefix it shares (data/packing.py)
        if setting not in ("auto", "eager_varlen"):
            raise ConfigError(
                f"train.attn_implementation is {setting}, but the prepared windows share prompt "
                "prefixes, which only eager_varlen reads. Set data.share_prefix: false and rerun "
                "`tunesmith data prepare`, or train.attn_implementation: auto"
            )
        return ["eager_varlen"]
    if setting != "auto":
        return [setting]
    if device == "cuda":
        return ["flash_attention_2" if importlib.util.find_spec("flash_attn") else "sdpa"]
    # eager maths within each packed record measured fastest on CPUs (models/attention.py); sdpa keeps far less
    return ["eager_varlen", "sdpa"]


def _micro_options(setting: Any, seq_len: int, device: str, cap: int) -> list[int]:
    if setting != "auto":
        return [int(setting)]
    start = max(1, min(TOKENS_PER_MICRO_BATCH.get(device, 2048) // max(1, seq_len), cap))
    options = [start]
    while options[-1] > 1:
        options.append(options[-1] // 2)
    return options


def memory_budget(cfg: ProjectConfig, device: str, nproc: int) -> tuple[float, str]:
    """Bytes one training process may use, and where the figure comes from."""
    from tunesmith.hardware import available_memory

    if cfg.train.max_memory_gb:
        total, source = cfg.train.max_memory_gb * GB, f"train.max_memory_gb = {cfg.train.max_memory_gb:g}"
    else:
        total, source = available_memory(device)
    if nproc > 1 and device == "cpu":  # every process holds its own copy of the model on one machine
        return total / nproc, f"{source}, shared by {nproc} processes"
    return total, source


def _estimate(
    arch: Arch,
    cfg: ProjectConfig,
    data: DataStats,
    device: str,
    precision: str,
    micro: int,
    attention: str,
    checkpointing: bool,
) -> MemoryEstimate:
    probe = cfg.model_copy(deep=True)
    probe.train.micro_batch_size = micro
    probe.train.attn_implementation = attention  # type: ignore[assignment]
    probe.train.gradient_checkpointing = checkpointing
    setup = setup_for(probe, data, device="cuda" if device == "cuda" else "cpu", bf16=precision != "fp32")
    return estimate_memory(arch, method_of(cfg.train.adapter), setup)


def _fixes(arch: Arch, cfg: ProjectConfig, data: DataStats, device: str, precision: str, usable: float) -> list[str]:
    """Changes that would fit, each alone with the other settings as they are (settings left to auto
    at their leanest); failing that, all of them together."""
    t = cfg.train
    now = {
        "micro": t.micro_batch_size if isinstance(t.micro_batch_size, int) else 1,
        "attention": "sdpa" if t.attn_implementation == "auto" else t.attn_implementation,
        "checkpointing": t.gradient_checkpointing is not False,
        "seq_len": data.seq_len,
    }

    def fits(**change: Any) -> bool:
        s = {**now, **change}
        stats = DataStats(
            data.tokens_per_epoch, data.sequences, s["seq_len"], data.keep_share, data.source, data.records
        )
        return (
            _estimate(arch, cfg, stats, device, precision, s["micro"], s["attention"], s["checkpointing"]).total
            <= usable
        )

    candidates = []
    if now["micro"] > 1:
        candidates.append(("train.micro_batch_size=1", {"micro": 1}))
    if now["attention"] in ("eager", "eager_varlen"):
        candidates.append(("train.attn_implementation=sdpa", {"attention": "sdpa"}))
    if not now["checkpointing"]:
        candidates.append(("train.gradient_checkpointing=true", {"checkpointing": True}))
    fixes = [text for text, change in candidates if fits(**change)]
    if cfg.data.max_length != "auto":
        length = (data.seq_len - 1) // 64 * 64
        while length >= 64 and not fits(seq_len=length):
            length -= 64
        if length >= 64:
            fixes.append(
                f"data.max_length={length} (records longer than that are dropped or cut; see `tunesmith data check`)"
            )
    if not fixes and candidates and fits(**{k: v for _, change in candidates for k, v in change.items()}):
        fixes.append(" and ".join(text for text, _ in candidates))
    if cfg.train.adapter == "none":
        fixes.append("train.adapter=lora")
    return fixes or ["a machine (or GPU) with more memory free"]


def default_learning_rate(cfg: TrainConfig, params: int) -> tuple[float, str]:
    """The default peak learning rate for a model of `params` parameters, and why.

    Low-rank adapters for SFT scale with the model: 2e-4 is the guides' value for 7B-13B models
    (the QLoRA paper's), 1e-4 past 30B (its 33B and 65B runs); under 1B parameters 2e-4 underfits:
    on SmolLM2-135M (docs/forgetting.md) a new user's 96 steps at 2e-4 reached 0.76 accuracy on the
    topic data, the topic example's recipe at 1e-3 reached 0.88, and the new user's defaults at 1e-3
    0.915. Preference methods and other adapters keep the adapter's value."""
    base = DEFAULT_LR[cfg.adapter]
    if cfg.adapter not in LOW_RANK or cfg.method != "sft":
        return base, f"the usual value for {cfg.adapter} with {cfg.method}"
    billions = params / 1e9
    if billions < 1:
        return 1e-3, f"{billions * 1000:.0f}M parameters: small models need more than 2e-4 to learn in ~100 steps"
    if billions >= 30:
        return 1e-4, f"{billions:.0f}B parameters: the QLoRA paper's value for 33B and 65B models"
    return base, f"{billions:.1f}B parameters: the guides' value for LoRA on 1B-30B models"


def compile_choice(t: TrainConfig, device: str, tokens: int, params: int) -> tuple[bool, str]:
    """`train.compile: auto` resolved for a run training `tokens` tokens through a model of `params`
    parameters, and why. On 2 CPU cores SmolLM2-135M's compile took ~90 s at the first step with a cold
    inductor cache (~15 s warm; ~2 min cold in fp32), then saved ~0.9 ms per trained token in bf16 (1.29x
    a demo step) and ~0.7 ms in fp32 (1.13x a 4-window step): paid back after about 100k tokens in bf16,
    ~160k in fp32 on a cold cache, ~20k once cached (docs/benchmarks.md); on a CPU with AVX512-BF16 and
    no AMX it saved nothing in fp32. The saving grows with the model's compute per token, the compile time
    hardly does, so the rule is on tokens x parameters, with its own threshold in fp32 (`t.precision`
    resolved)."""
    import os
    import shutil

    if os.environ.get("TORCHDYNAMO_DISABLE", "") in ("1", "true", "True"):
        return False, "TORCHDYNAMO_DISABLE is set"
    if device != "cpu" or t.method != "sft":
        return False, "measured to pay for SFT on CPUs only"
    if t.gradient_checkpointing is True:
        return False, "not measured with gradient checkpointing"
    compiler = os.environ.get("CXX") or "g++"
    if not shutil.which(compiler):
        return False, f"no C++ compiler ({compiler}) for inductor's CPU kernels; install g++ to enable"
    fp32 = t.precision == "fp32"
    if tokens * params < (COMPILE_PAYS_AFTER_FP32 if fp32 else COMPILE_PAYS_AFTER):
        return False, (
            f"{tokens:,} tokens through {params / 1e6:,.0f}M parameters: too little work to pay back "
            "the one-off compile" + (" in fp32, where it saves little a step" if fp32 else "")
        )
    return True, (
        f"{tokens:,} tokens through {params / 1e6:,.0f}M parameters: fusing each layer's elementwise "
        "work (1.1-1.3x a step) pays back the one-off compile at the first step"
    )


def _too_big(
    arch: Arch,
    cfg: ProjectConfig,
    data: DataStats,
    device: str,
    precision: str,
    smallest: MemoryEstimate,
    budget: float,
    source: str,
) -> str:
    """Why nothing fits, with the settings that would."""
    t = cfg.train
    fixes = _fixes(arch, cfg, data, device, precision, budget * SAFETY)
    what = ", ".join(
        f"{k}={v}"
        for k, v in (
            ("data.max_length", data.seq_len),
            ("train.micro_batch_size", t.micro_batch_size),
            ("train.adapter", t.adapter),
        )
    )
    return (
        f"training would need about {smallest.total / GB:.1f} GB ({what}), more than the "
        f"{budget / GB:.1f} GB available here ({source}; {SAFETY:.0%} of it is planned for: the estimate is "
        f"within about ±20%). It fits with: {'; or '.join(fixes)}. Nothing was "
        f"loaded; set it in the config or as an override, e.g. `tunesmith train CONFIG {fixes[0].split()[0]}`"
    )


def _schedule(t: Any, total: int, choose: Callable[[str, Any, str], None]) -> None:
    """Warm-up, validation and checkpoint intervals for a run of `total` optimizer steps."""
    if t.warmup_ratio == "auto":
        warmup = max(math.ceil(0.03 * total), min(10, math.ceil(0.1 * total)))
        t.warmup_ratio = round(min(warmup / total, 0.5), 4)
        choose("train.warmup_ratio", t.warmup_ratio, f"{warmup} warm-up steps of {total}")
    if t.eval_steps == "auto":
        t.eval_steps = max(1, round(total / 10))
        choose("train.eval_steps", t.eval_steps, "validation about ten times a run")
    if t.save_steps == "auto":
        t.save_steps = t.eval_steps
        choose("train.save_steps", t.save_steps, "a checkpoint at every validation (the best one is kept)")


def precision_reason(device: str, precision: str) -> str:
    """Why `auto` gave `precision` on `device`, for the fit's table of choices."""
    from tunesmith.hardware import BF16_MIN_SPEEDUP, cpu_bf16_speedup

    speedup = cpu_bf16_speedup() if device == "cpu" else None
    if speedup is not None:  # AVX512-BF16 without AMX: measured
        return (
            f"bf16 matmuls measured {speedup:.2f}x fp32's on this CPU (AVX512-BF16, no AMX); bf16 is taken "
            f"at {BF16_MIN_SPEEDUP}x or more"
        )
    if precision == "fp32":
        return f"native on this {device.upper()} (no native bf16 here; emulated bf16 is slower than fp32)"
    return f"native on this {device.upper()}"


def fit_training(cfg: ProjectConfig, *, nproc: int = 1, data: DataStats | None = None, strict: bool = True) -> Fit:
    """Resolve every `auto` training setting and check that the run fits; raises a `TunesmithError`
    naming a fix when settings the user chose cannot fit (strict=False: the leanest settings tried,
    with the error as a warning, for estimates). One function on purpose: each choice reads the ones
    before it (window → learning rate → epochs → target batch → the search over micro-batch, attention
    and checkpointing → accumulation → steps → compile → schedule)."""
    from tunesmith.hardware import cpu_has_bf16, pick_device, resolve_precision

    resolved = cfg.model_copy(deep=True)
    t = resolved.train
    device = pick_device(cfg.device)
    precision = resolve_precision(t.precision, device)
    data = data or data_stats(cfg)
    arch = model_arch(cfg)
    choices: list[dict[str, Any]] = []

    def choose(setting: str, value: Any, why: str) -> None:
        choices.append({"setting": setting, "value": value, "why": why})

    if cfg.data.max_length == "auto":
        resolved.data.max_length = data.seq_len
        choose("data.max_length", data.seq_len, data.window_reason or "from the training records' token lengths")
    if t.learning_rate is None:
        t.learning_rate, why = default_learning_rate(t, arch.params)
        choose("train.learning_rate", t.learning_rate, why)
    precisions = [precision]
    if t.precision == "auto" and precision == "fp32" and device == "cpu" and cpu_has_bf16():
        precisions.append("bf16")  # native, measured slower (precision_reason), but half the frozen weights

    epochs = t.num_epochs
    if epochs == "auto":
        epochs = openai_epochs(data.records)
        choose(
            "train.num_epochs",
            epochs,
            f"{data.records} training records: OpenAI's rule (3; at least 100 and at most 25,000 records seen in all)",
        )
        t.num_epochs = float(epochs)
    target = max(1, min(MAX_EFFECTIVE_BATCH, round(data.sequences * float(epochs) / TARGET_STEPS)))
    if t.micro_batch_size != "auto" and t.gradient_accumulation_steps != "auto":
        target = int(t.micro_batch_size) * int(t.gradient_accumulation_steps) * nproc

    budget, source = memory_budget(cfg, device, nproc)
    usable = budget * SAFETY
    chosen: tuple[int, str, bool, MemoryEstimate] | None = None
    smallest: MemoryEstimate | None = None
    for precision in precisions:
        for checkpointing in [False, True] if t.gradient_checkpointing == "auto" else [bool(t.gradient_checkpointing)]:
            for attention in _attention_options(t.attn_implementation, device, data.shared_prefix):
                for micro in _micro_options(t.micro_batch_size, data.seq_len, device, math.ceil(target / nproc)):
                    est = _estimate(arch, resolved, data, device, precision, micro, attention, checkpointing)
                    smallest = est if smallest is None or est.total < smallest.total else smallest
                    if est.total <= usable and chosen is None:
                        chosen = (micro, attention, checkpointing, est)
        if chosen is not None:
            break
    if t.precision == "auto":
        why = precision_reason(device, precision)
        choose("train.precision", precision, why + ("; fp32 does not fit" if precision != precisions[0] else ""))
    t.precision = precision  # type: ignore[assignment]
    problem = None
    if chosen is None:
        assert smallest is not None
        problem = _too_big(arch, resolved, data, device, precision, smallest, budget, source)
        if strict:
            raise TunesmithError(problem)
        lean_micro = t.micro_batch_size if isinstance(t.micro_batch_size, int) else 1
        lean_attention = _attention_options(t.attn_implementation, device, data.shared_prefix)[-1]
        chosen = (lean_micro, lean_attention, t.gradient_checkpointing is not False, smallest)
    micro, attention, checkpointing, est = chosen
    if t.micro_batch_size == "auto" and t.gradient_accumulation_steps == "auto":
        # the fewest accumulation steps that reach the target, then the micro-batch that splits it evenly
        # (a smaller micro-batch than the largest that fits: it fits too)
        micro = math.ceil(target / (math.ceil(target / (micro * nproc)) * nproc))
        est = _estimate(arch, resolved, data, device, precision, micro, attention, checkpointing)
    memory_note = f"{est.total / GB:.1f} GB estimated of {budget / GB:.1f} GB ({source})"
    if t.micro_batch_size == "auto":
        choose("train.micro_batch_size", micro, f"{micro} × {data.seq_len} tokens per forward pass; {memory_note}")
        t.micro_batch_size = micro
    if t.attn_implementation == "auto":
        why = (
            "fastest on this CPU"
            if attention in ("eager", "eager_varlen")
            else ("eager attention does not fit; sdpa keeps no attention matrix" if device != "cuda" else "GPU kernel")
        )
        choose("train.attn_implementation", attention, why)
        t.attn_implementation = attention  # type: ignore[assignment]
    if t.gradient_checkpointing == "auto":
        choose(
            "train.gradient_checkpointing",
            checkpointing,
            "needed to fit" if checkpointing else "not needed: fits without recomputing activations",
        )
        t.gradient_checkpointing = checkpointing
    if t.gradient_accumulation_steps == "auto":
        accumulation = max(1, math.ceil(target / (micro * nproc)))
        choose(
            "train.gradient_accumulation_steps",
            accumulation,
            f"effective batch {micro * accumulation * nproc} sequences of {data.sequences} per epoch: "
            f"about {TARGET_STEPS} optimizer steps in all",
        )
        t.gradient_accumulation_steps = accumulation
    per_epoch = steps_per_epoch(data.sequences, micro, int(t.gradient_accumulation_steps), nproc)
    total = t.max_steps or max(1, math.ceil(per_epoch * float(t.num_epochs)))
    if t.compile == "auto":
        t.compile, why = compile_choice(t, device, round(data.tokens_per_epoch / per_epoch * total), arch.params)
        choose("train.compile", t.compile, why)
    _schedule(t, total, choose)
    warnings = [problem] if problem else []
    if total < MIN_STEPS:
        warnings.append(
            f"only {total} optimizer steps: too few to learn most tasks. Lower the effective batch "
            "(train.gradient_accumulation_steps, train.micro_batch_size) or raise train.num_epochs"
        )
    return Fit(resolved, device, precision, est, budget, source, total, data, choices, warnings)
