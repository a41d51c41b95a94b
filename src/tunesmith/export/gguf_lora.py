"""A PEFT LoRA adapter as a GGUF LoRA file, for llama.cpp to apply at load time over the base GGUF
(`Llama(model_path=base.gguf, lora_path=adapter.gguf)`), instead of one merged GGUF per version.

The layout is llama.cpp's (`convert_lora_to_gguf.py`, `src/llama-adapter.cpp`): file type `adapter`,
`adapter.type` `lora`, `adapter.lora.alpha`, and per adapted weight two tensors named after the base
tensor, `<name>.weight.lora_a` (r × in) and `.lora_b` (out × r); llama.cpp scales their product by
alpha / r, as peft does. q and k projections get the same row permutation as the base weights
(gguf_file.permute), applied to B, whose rows are the output features. Written here because the
converter ships with llama.cpp's sources, not with the `gguf` package or llama-cpp-python.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunesmith.export.gguf_file import ExportError, _hparams, finish, permute


def write_lora_gguf(adapter: Path, base_config: dict, out_file: Path) -> Path:
    """Write the LoRA adapter in `adapter` (adapter_config.json, adapter_model.safetensors) for a base
    whose config.json is `base_config`, as f16 tensors, atomically."""
    import gguf
    import numpy as np
    from safetensors import safe_open

    config = json.loads((adapter / "adapter_config.json").read_text())
    if config.get("peft_type") != "LORA" or config.get("use_dora") or config.get("use_rslora"):
        raise ExportError(f"{adapter}: llama.cpp applies plain LoRA adapters; merge this one (--format gguf)")
    hp = _hparams(base_config)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, hp["n_layer"])
    halves: dict[str, dict[str, np.ndarray]] = {}
    with safe_open(str(adapter / "adapter_model.safetensors"), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
            side = "a" if ".lora_A." in key else "b" if ".lora_B." in key else None
            if side is None:
                raise ExportError(f"{adapter}: {key} is not a LoRA A or B weight; merge this adapter instead")
            module = key.split(".lora_")[0].removeprefix("base_model.model.")
            target = names.get_name(module + ".weight", try_suffixes=(".weight",))
            if target is None:
                raise ExportError(f"{adapter}: {module} has no GGUF name in a llama model")
            data = f.get_tensor(key).float().numpy()
            if side == "b" and module.endswith("q_proj"):
                data = permute(data, hp["n_head"])
            elif side == "b" and module.endswith("k_proj"):
                data = permute(data, hp["n_kv"])
            halves.setdefault(target, {})[side] = data.astype(np.float16)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.name}.tmp")
    writer = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config.get("lora_alpha", config.get("r", 8))))
    for target, pair in sorted(halves.items()):
        if set(pair) != {"a", "b"}:
            raise ExportError(f"{adapter}: {target} has only one half of its LoRA pair")
        writer.add_tensor(f"{target}.lora_a", pair["a"])
        writer.add_tensor(f"{target}.lora_b", pair["b"])
    return finish(writer, tmp, out_file)
