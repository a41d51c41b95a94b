"""`tunesmith registry export --format ...`: a registered version in the form each engine loads.

adapter  the adapter (or full model) folder for transformers/peft, as registered
merged   a standalone folder: the adapter folded into its base (safetensors, tokenizer, generation config)
gguf     one GGUF file (f16 or q8_0) for llama.cpp, with an Ollama Modelfile beside it
hf       a Hub-ready merged folder with a README.md model card whose metadata the Hub accepts
hf-adapter  the same card beside the adapter alone, for `PeftModel.from_pretrained` and the Hub
vllm, tgi  the base model and one adapter folder per served version, with the exact launch command
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.export.gguf_file import ExportError

FORMATS = ("adapter", "merged", "gguf", "hf", "hf-adapter", "vllm", "tgi")


def fetch_version(cfg: ProjectConfig, ref: str, out: Path) -> tuple[dict[str, Any], Path]:
    """The version's registry entry and its adapter/model folder, downloaded under `out`."""
    import mlflow

    from tunesmith.registry.store import show

    info = show(cfg, ref)
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=info["source"], dst_path=str(out)))
    target = out / ("adapter" if (folder / "adapter_config.json").exists() else "model")
    if folder != target:
        shutil.rmtree(target, ignore_errors=True)
        folder.rename(target)
    return info, target


def merged_folder(cfg: ProjectConfig, info: dict[str, Any], folder: Path, out: Path) -> Path:
    """A standalone folder: a full fine-tune as it is, an adapter merged into its base."""
    if folder.name == "model":
        return folder
    adapter = json.loads((folder / "adapter_config.json").read_text())
    if adapter.get("peft_type") not in ("LORA", "IA3"):
        raise ExportError(
            f"version {info['version']} is a {adapter.get('peft_type')} adapter, which cannot be merged "
            "into the weights that GGUF, Hub and merged exports need; export --format adapter and "
            "serve it with tunesmith's engine, or train with train.adapter: lora"
        )
    from tunesmith.models.merge import merge_adapter

    return merge_adapter(
        folder,
        info["tags"].get("base_model", cfg.base_model),
        out,
        trust_remote_code=cfg.trust_remote_code,
        device=cfg.device,
    )


def export_version(
    cfg: ProjectConfig,
    ref: str,
    out: Path,
    *,
    fmt: str = "adapter",
    quant: str = "f16",
    merged: bool = False,
    check: bool = False,
) -> dict[str, Any]:
    """Write version `ref` to `out` in `fmt`; returns what was written (paths, commands, checks)."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r} is not offered; choose one of {', '.join(FORMATS)}")
    if fmt in ("vllm", "tgi"):
        from tunesmith.export.engines import export_engine

        return export_engine(cfg, ref, out, engine=fmt, merged=merged)
    info, folder = fetch_version(cfg, ref, out)
    (out / "MODEL_CARD.md").write_text(info["card"], encoding="utf-8")
    written: dict[str, Any] = {"version": info["version"], "folder": str(out), "format": fmt}
    if fmt == "adapter":
        written["model"] = str(folder)
        if merged:
            written["merged"] = str(merged_folder(cfg, info, folder, out / "merged"))
        return written
    if fmt == "hf-adapter":
        if folder.name != "adapter":
            raise ExportError(f"version {info['version']} is a full fine-tune; export it with --format hf")
        from tunesmith.export.hub import write_hub_card

        written["card"] = str(write_hub_card(cfg, info, folder))
        written["model"] = str(folder)
        return written
    if fmt == "merged" or fmt == "hf":
        target = merged_folder(cfg, info, folder, out / "merged")
        if fmt == "hf":
            from tunesmith.export.hub import write_hub_card

            written["card"] = str(write_hub_card(cfg, info, target))
        written["model"] = str(target)
        return written
    return _gguf(cfg, info, folder, out, quant, written, check)


def gguf_name(cfg: ProjectConfig, version: int, quant: str) -> str:
    from tunesmith.tracking import model_name

    return f"{model_name(cfg)}-v{version}-{quant}.gguf"


def _gguf(
    cfg: ProjectConfig, info: dict[str, Any], folder: Path, out: Path, quant: str, written: dict[str, Any], check: bool
) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from tunesmith.console import status
    from tunesmith.export.gguf_file import write_gguf
    from tunesmith.export.ollama import write_modelfile

    name = gguf_name(cfg, info["version"], quant)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    with tempfile.TemporaryDirectory(prefix=".merged-", dir=out) as tmp:
        with status(f"Merging version {info['version']} for GGUF"):
            merged = merged_folder(cfg, info, folder, Path(tmp) / "merged")
        with status(f"Writing {name} ({quant})"):
            path = write_gguf(merged, out / name, quant=quant, name=f"{info['version']}")
        if check:
            from tunesmith.export.agreement import check_gguf

            with status(f"Answering the test split in llama.cpp and transformers ({name})"):
                written["agreement"] = check_gguf(cfg, path, merged)
    system = info["tags"].get("system_prompt")
    modelfile = write_modelfile(out, name, tokenizer, system=system)
    written.update(
        {
            "gguf": str(path),
            "quant": quant,
            "modelfile": str(modelfile),
            "bytes": path.stat().st_size,
            "system_prompt": bool(system),
        }
    )
    _card_section(out / "MODEL_CARD.md", name, quant, system, written.get("agreement"))
    return written


def _card_section(card: Path, name: str, quant: str, system: str | None, agreement: dict[str, Any] | None) -> None:
    paragraphs = [
        f"`{name}`: the merged model in GGUF, {'16-bit floats' if quant == 'f16' else '8-bit (Q8_0)'}"
        " weights, with the tokenizer, the chat template and the end-of-turn token in the file. "
        "`ollama create NAME -f Modelfile` registers it with Ollama; "
        f"`llama-cli -m {name} -cnv` or `llama-server -m {name}` runs it in llama.cpp."
    ]
    if agreement:
        paragraphs.append(
            f"Checked in llama.cpp on the {agreement['examples']} evaluated test prompts (greedy): "
            f"{agreement['identical']:.1%} of the answers identical to the merged model's in "
            f"transformers; {agreement['task_metric_name']} {agreement['metric_llama_cpp']:.3f} "
            f"(transformers {agreement['metric_transformers']:.3f}); {agreement['stopped']:.1%} "
            "stopped at the end-of-turn token."
        )
    if system:
        paragraphs.append(
            "The version answers with the system prompt it was trained with; the Modelfile's SYSTEM "
            "sets it, and other clients must send it as the first message."
        )
    text = card.read_text(encoding="utf-8").rstrip("\n")
    card.write_text(text + "\n\n## GGUF (llama.cpp, Ollama)\n\n" + "\n\n".join(paragraphs) + "\n", encoding="utf-8")
