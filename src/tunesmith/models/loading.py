"""Resolve `base_model` and load tokenizers and models the Hugging Face way."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tunesmith.errors import ModelLoadError
from tunesmith.models.packaged import PACKAGED_NAME, packaged_model_dir


def resolve_model(base_model: str) -> str:
    """A path or hub id `from_pretrained` accepts: the packaged alias becomes its cached folder."""
    if base_model.strip().lower() == PACKAGED_NAME:
        return str(packaged_model_dir())
    path = Path(base_model).expanduser()
    if path.exists():
        if not (path / "config.json").exists() and not (path / "tokenizer_config.json").exists():
            raise ModelLoadError(f"{path} exists but is not a model folder (no config.json or tokenizer_config.json)")
        return str(path)
    if base_model.startswith((".", "/", "~")) or base_model.count("/") > 1:
        raise ModelLoadError(f"model folder {base_model} not found")
    return base_model


def _hub_error(name: str, exc: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"could not load {name!r}: {type(exc).__name__}: {exc}. For a hub id, check the name and that the hub is "
        f"reachable (or that the model is in the local HF cache); for the packaged default use "
        f"base_model: {PACKAGED_NAME}"
    )


def load_tokenizer(base_model: str, trust_remote_code: bool = False) -> Any:
    """The model's tokenizer, with a pad token (the end-of-sequence token when it has none)."""
    from transformers import AutoTokenizer

    name = resolve_model(base_model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _hub_error(base_model, exc) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        raise ModelLoadError(
            f"{base_model} has no chat template; use an instruct/chat model or add a chat_template to its tokenizer_config.json"
        )
    return tokenizer


def tokenizer_or_none(base_model: str, trust_remote_code: bool = False) -> Any:
    """The tokenizer, or None with a warning when it cannot be loaded (token lengths are then not measured)."""
    from tunesmith.console import err
    from tunesmith.errors import TunesmithError

    try:
        return load_tokenizer(base_model, trust_remote_code=trust_remote_code)
    except TunesmithError as exc:
        err.print(f"[yellow]warning:[/] token lengths not measured: {exc}")
        return None


def load_model(base_model: str, dtype: Any = None, trust_remote_code: bool = False, device: str = "cpu") -> Any:
    """The causal language model on `device`, weights from safetensors only (no pickle)."""
    import torch
    from transformers import AutoModelForCausalLM

    quiet_renamed_names()

    name = resolve_model(base_model)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            name, dtype=dtype or torch.float32, trust_remote_code=trust_remote_code, use_safetensors=True
        )
    except (OSError, ValueError) as exc:
        raise _hub_error(base_model, exc) from None
    contiguous_lm_head(model)
    return model if device == "cpu" else model.to(device)


# fp32 weights may take at most this share of the free memory when `auto` picks fp32 on a CPU with native
# bf16; the rest is for generation's batches and, in the evaluation, a second copy of the model
FP32_WEIGHTS_SHARE = 0.5


def weight_count(base_model: str) -> int | None:
    """Parameters in a local model folder's safetensors files, read from their headers (nothing loaded);
    None for a hub id or a folder without safetensors."""
    from safetensors import safe_open

    files = sorted(Path(resolve_model(base_model)).glob("*.safetensors"))
    count = 0
    for file in files:
        with safe_open(str(file), framework="pt") as weights:
            for key in weights.keys():
                count += math.prod(weights.get_slice(key).get_shape())
    return count or None


def inference_dtype(
    base_model: str, device: str, setting: str = "auto", name: str = "train.precision", *, say: bool = True
) -> Any:
    """Weights dtype for generation and serving: `setting` resolved for `device` (`hardware.resolve_precision`).
    Where `auto` resolves to fp32 on a CPU with native bf16 (measured faster in fp32) but the fp32 weights would
    take over FP32_WEIGHTS_SHARE of the free memory, bf16: the slower precision beats one that does not fit, as
    in training's pre-flight check, said on stderr unless `say` is False."""
    from tunesmith.console import err
    from tunesmith.hardware import available_memory, cpu_has_bf16, dtype_of, resolve_precision

    precision = resolve_precision(setting, device, name)
    if setting == "auto" and precision == "fp32" and device == "cpu" and cpu_has_bf16():
        params = weight_count(base_model)
        free, source = available_memory(device)
        if params and 4 * params > FP32_WEIGHTS_SHARE * free:
            if say:
                err.print(
                    f"{name}=auto: bf16, though fp32 measured faster on this CPU: {base_model}'s weights take "
                    f"{4 * params / 2**30:.1f} GiB in fp32, over {FP32_WEIGHTS_SHARE:.0%} of {source}"
                )
            precision = "bf16"
    return dtype_of(precision)


def quiet_renamed_names() -> None:
    """transformers 5 renamed gradient checkpointing's attributes; peft (`PeftModel.__init__`) and the Trainer
    still read the old names, and each read printed a FutureWarning into a user's run that they can do
    nothing about. Called wherever a model is loaded."""
    import warnings

    warnings.filterwarnings("ignore", message=r".*is deprecated and will be removed in v6", category=FutureWarning)


def _contiguous(module: Any, args: tuple) -> tuple | None:
    import torch

    x = args[0]
    if x.dim() < 3:
        return None
    shape, strides = x.shape, x.stride()
    if all(strides[i] == strides[i + 1] * shape[i + 1] for i in range(x.dim() - 2)):
        return None  # aten folds it into one matrix product as it is
    # `contiguous()` would not copy a single row's slice: torch calls a tensor contiguous whatever the strides
    # of its size-1 dimensions, while aten's fold reads them as they are
    return (x.clone(memory_format=torch.contiguous_format), *args[1:])


def contiguous_lm_head(model: Any) -> Any:
    """Give the LM head contiguous inputs. `logits_to_keep` (generation's prefill, the server's admission)
    slices the hidden states to the last position, a non-contiguous view; torch.matmul folds a 3-D input
    into one matrix product only when the input's leading strides chain (aten's `should_fold`) or the weight
    requires grad, so with frozen weights (every peft model) it ran a batched product over the weight
    expanded per row: a copy of rows × vocabulary × hidden, 17 s for a 112-row prefill of SmolLM2 in
    bf16, and 73 ms for one row (a request at one client), against microseconds for the copy of the slice.
    No library option changes this."""
    head = model.get_output_embeddings()
    if head is not None and not getattr(head, "_tunesmith_contiguous", False):
        head.register_forward_pre_hook(_contiguous)
        head._tunesmith_contiguous = True
    return model


def context_length(base_model: str, trust_remote_code: bool = False) -> int:
    """The longest sequence the model was trained for (`max_position_embeddings`, or the like)."""
    import json

    name = resolve_model(base_model)
    config_file = Path(name) / "config.json"
    if config_file.exists():
        config = json.loads(config_file.read_text())
    else:
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code).to_dict()
        except (OSError, ValueError) as exc:
            raise _hub_error(base_model, exc) from None
    config = config.get("text_config", config)  # multimodal configs nest the language model's
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(config.get(key), int) and config[key] > 0:
            return int(config[key])
    return 2048
