"""PEFT adapters for `train.adapter`: LoRA, QLoRA, DoRA, IA3, prefix tuning, or none (full)."""

from __future__ import annotations

from functools import partial
from typing import Any

from tunesmith.config import TrainConfig
from tunesmith.errors import TunesmithError
from tunesmith.estimate.fit import DEFAULT_LR


def learning_rate(cfg: TrainConfig) -> float:
    """The configured learning rate, or the practitioners' default for the adapter (the pre-flight
    check resolves it by model size first: `estimate.fit.default_learning_rate`)."""
    return cfg.learning_rate if cfg.learning_rate is not None else DEFAULT_LR[cfg.adapter]


def check_hardware(cfg: TrainConfig, device: str = "auto") -> None:
    """Fail before loading anything when the device or the adapter cannot run on this machine."""
    from tunesmith.hardware import pick_device, resolve_precision

    resolve_precision(cfg.precision, pick_device(device))  # fails for device=cuda without a GPU, fp16 on a CPU
    if cfg.adapter != "qlora":
        return
    if pick_device(device) != "cuda":
        raise TunesmithError(
            "train.adapter=qlora needs a CUDA GPU (bitsandbytes 4-bit NF4 kernels); this machine has none. "
            "Use train.adapter=lora here (the base weights are frozen in bf16 where the CPU supports it), "
            "or run on a GPU machine"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise TunesmithError("train.adapter=qlora needs bitsandbytes: pip install bitsandbytes") from None


def peft_config(cfg: TrainConfig, model: Any) -> Any:
    """The peft config for `cfg.adapter` (None for full fine-tuning)."""
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, TaskType

    targets = cfg.lora_target_modules
    if cfg.adapter in ("lora", "qlora", "dora"):
        return LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=targets,
            use_dora=cfg.adapter == "dora",
        )
    if cfg.adapter == "ia3":
        names = ["k_proj", "v_proj", "down_proj"] if targets == "all-linear" or not targets else targets
        return IA3Config(
            task_type=TaskType.CAUSAL_LM,
            target_modules=names,
            feedforward_modules=[n for n in names if n in ("down_proj", "up_proj", "gate_proj")],
        )
    if cfg.adapter == "prefix":
        return PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=cfg.prefix_tokens)
    return None


def attention_kernel(setting: str) -> str:
    """`train.attn_implementation` resolved, and tunesmith's own kernel registered with transformers when
    chosen. On CPUs, eager_varlen (models/attention.py: eager maths within each packed record) measured
    faster than eager over the whole window, which measured ~20% faster than sdpa with packed masks."""
    import torch

    from tunesmith.models.attention import VARLEN, register

    if setting == "auto":
        setting = "sdpa" if torch.cuda.is_available() else VARLEN
    if setting == VARLEN:
        register()
    return setting


def load_for_training(base_model: str, cfg: TrainConfig, *, precision: str, trust_remote_code: bool = False) -> Any:
    """The base model with its adapter attached; frozen base weights in bf16 when training in bf16, else
    fp32 (full fine-tuning keeps fp32 master weights). The Trainer moves it to its device."""
    import torch

    from tunesmith.hardware import dtype_of
    from tunesmith.models import load_model
    from tunesmith.models.loading import quiet_renamed_names

    full = cfg.adapter == "none"
    bf16 = precision == "bf16"
    if cfg.adapter == "qlora":
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig

        from tunesmith.models import contiguous_lm_head, resolve_model

        quant = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if bf16 else torch.float16,
        )
        # bitsandbytes quantises while loading, onto the GPU
        quant_kwargs = {"device_map": {"": torch.cuda.current_device()}}
        quiet_renamed_names()
        model = AutoModelForCausalLM.from_pretrained(
            resolve_model(base_model),
            quantization_config=quant,
            trust_remote_code=trust_remote_code,
            use_safetensors=True,
            **quant_kwargs,
        )
        contiguous_lm_head(model)
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing is True)
    else:
        # Full fine-tuning keeps fp32 master weights (bf16 autocast does the maths); adapters freeze
        # the base, so it can live in bf16 outright, which roughly doubles CPU throughput here.
        dtype = torch.float32 if full or precision == "fp16" else dtype_of(precision)
        model = load_model(base_model, dtype=dtype, trust_remote_code=trust_remote_code)
    model.set_attn_implementation(attention_kernel(cfg.attn_implementation))
    model.config.use_cache = False  # training; also lets transformers read packed boundaries from position ids
    if cfg.gradient_checkpointing is True:  # auto is resolved by the pre-flight check before training
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if not full:
            model.enable_input_require_grads()
    config = peft_config(cfg, model)
    if config is None:
        return compile_layers(model) if cfg.compile is True else model
    from peft import get_peft_model
    from peft.tuners.tuners_utils import BaseTunerLayer

    model = get_peft_model(model, config)
    if bf16:
        # peft casts every input to the adapter's fp32 dtype, then bf16 autocast casts it back for the
        # matmul: two copies of each activation per adapted layer, and the dropout mask drawn in fp32.
        # Under autocast (always on when training in bf16) the cast changes nothing but the cost.
        for module in model.modules():
            if isinstance(module, BaseTunerLayer):
                module.cast_input_dtype_enabled = False
    return compile_layers(model) if cfg.compile is True else model  # auto is resolved by the pre-flight check


def compile_layers(model: Any) -> Any:
    """Regional compilation (pytorch.org/tutorials/recipes/regional_compilation.html): each block of the
    model's repeated decoder layers compiled in place, with dynamic shapes (packed windows vary in length).
    The layers share one compiled graph, so the compile costs one layer's, not the model's; in place,
    parameter names, peft's adapter saving and the Trainer see the model unchanged. tunesmith's
    per-record attention is excluded from the graph (models/attention.py) and runs as it is. Training steps
    only: the validation pass (no gradients, eval mode) would need a graph of its own, which cost more to
    compile on a cold cache (~80 s) than the few validation passes of a run gain from it."""
    import torch

    layers = decoder_layers(model)
    for layer in layers or []:
        eager, compiled = layer.forward, torch.compile(layer.forward, dynamic=True)
        layer.forward = partial(compiled_in_training, layer, compiled, eager)
    return model


def decoder_layers(model: Any) -> Any:
    """The model's repeated decoder layers: the ModuleList of the class transformers names in
    `_no_split_modules` (LlamaDecoderLayer, ...), else the first ModuleList of two or more modules of
    one class; None when there is neither."""
    import torch

    named = {n for m in model.modules() for n in (getattr(m, "_no_split_modules", None) or [])}
    lists = [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.ModuleList) and len(m) > 1 and len({type(x) for x in m}) == 1
    ]
    return next((m for m in lists if type(m[0]).__name__ in named), lists[0] if lists else None)


def compiled_in_training(layer: Any, compiled: Any, eager: Any, *args: Any, **kwargs: Any) -> Any:
    return compiled(*args, **kwargs) if layer.training else eager(*args, **kwargs)
