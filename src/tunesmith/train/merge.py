"""`tunesmith merge RUN`: fold a training run's LoRA-style adapter into its base model, as a standalone folder."""

from __future__ import annotations

from pathlib import Path

from tunesmith.errors import TunesmithError
from tunesmith.models.merge import merge_adapter


def merge_run(run_dir: Path, out_dir: Path | None = None, device: str | None = None) -> Path:
    """Write `<run>/merged/` (or `out_dir`): base + adapter merged, safetensors, tokenizer, generation config."""
    import yaml

    model_dir = run_dir / "model"
    if not (model_dir / "adapter_config.json").exists():
        if (model_dir / "config.json").exists():
            raise TunesmithError(f"{model_dir} is a full fine-tune, already standalone; nothing to merge")
        raise TunesmithError(f"{run_dir} holds no trained model; give the run folder (<output_dir>/train)")
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    return merge_adapter(
        model_dir,
        cfg["base_model"],
        out_dir or run_dir / "merged",
        trust_remote_code=cfg.get("trust_remote_code", False),
        device=device or cfg.get("device", "auto"),
    )
