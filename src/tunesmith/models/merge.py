"""A trained adapter on its base model, and the adapter folded into the base weights (peft), for
evaluation, export, serving and continual training; `tunesmith merge RUN` (train/merge.py) calls it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError


def load_trained(
    model_dir: Path, base_model: str, *, dtype: Any = None, trust_remote_code: bool = False, device: str = "cpu"
) -> Any:
    """A trained result on `device`: an adapter on its base model, or a full model folder."""
    from tunesmith.models import load_model

    if (model_dir / "adapter_config.json").exists():
        from peft import PeftModel

        base = load_model(base_model, dtype=dtype, trust_remote_code=trust_remote_code, device=device)
        return PeftModel.from_pretrained(base, str(model_dir))
    return load_model(str(model_dir), dtype=dtype, trust_remote_code=trust_remote_code, device=device)


def merge_adapter(
    model_dir: Path, base_model: str, out_dir: Path, *, trust_remote_code: bool = False, device: str = "auto"
) -> Path:
    """Merge the adapter in `model_dir` into `base_model`; written atomically to `out_dir`."""
    from transformers import AutoTokenizer, GenerationConfig

    adapter = json.loads((model_dir / "adapter_config.json").read_text())
    if adapter.get("peft_type") not in ("LORA", "IA3"):
        raise TunesmithError(
            f"a {adapter.get('peft_type')} adapter cannot be merged into the weights; serve it as an adapter instead"
        )
    from tunesmith.hardware import pick_device

    # merged in fp32 (exact), on the GPU when there is one; saved from wherever it is
    model = load_trained(model_dir, base_model, trust_remote_code=trust_remote_code, device=pick_device(device))
    merged = model.merge_and_unload()
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(str(tmp), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(model_dir)).save_pretrained(str(tmp))
    if (model_dir / "generation_config.json").exists():  # the trained run's; else the base's, saved with the model
        GenerationConfig.from_pretrained(str(model_dir)).save_pretrained(str(tmp))
    from tunesmith.files import replace_dir

    replace_dir(tmp, out_dir)
    return out_dir
