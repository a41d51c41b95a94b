"""Folders and launch commands for vLLM and Text Generation Inference (TGI).

Both serve one base model with many LoRA adapters on a GPU. The export holds the base (the
Hub id, or a copy of a local or packaged base, which no other machine has), one adapter
folder per served version (every version an alias points at, or the one asked for), and the
exact command, written as `serve.sh` and returned. Each served name is `ft:<model>:v<N>`,
the name tunesmith's own server gives the version, so clients need no change.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.export.gguf_file import ExportError

TGI_IMAGE = "ghcr.io/huggingface/text-generation-inference:latest"
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM's --max-lora-rank accepts


def lora_rank(rank: int) -> int:
    """The smallest --max-lora-rank vLLM accepts that holds `rank`."""
    return next((r for r in LORA_RANKS if r >= rank), rank)


def _served(cfg: ProjectConfig, ref: str) -> list[dict[str, Any]]:
    """The versions to serve: those the aliases point at when `ref` is `aliases`, else the one named."""
    from tunesmith.registry.store import versions

    rows = versions(cfg)
    if ref == "aliases":
        chosen = sorted((r for r in rows if r["aliases"]), key=lambda r: r["version"])
        if not chosen:
            raise ExportError("no alias points at a version yet; promote one, or export a version number")
        return chosen
    for r in rows:
        if str(r["version"]) == str(ref) or ref in r["aliases"]:
            return [r]
    raise ExportError(f"no version or alias {ref!r}; `tunesmith registry list CONFIG` shows them")


def _base(cfg: ProjectConfig, base_model: str, out: Path) -> str:
    """What the engine loads as the base: a Hub id as it is, a local or packaged base copied into `out/base`."""
    from tunesmith.models.loading import resolve_model

    path = Path(resolve_model(base_model))
    if not path.exists():
        return base_model
    target = out / "base"
    if not target.exists():
        shutil.copytree(path, target, ignore=shutil.ignore_patterns("tunesmith-source.json"))
    return "base"


def _check_adapter(folder: Path, engine: str, version: int) -> dict[str, Any]:
    config = json.loads((folder / "adapter_config.json").read_text())
    if config.get("peft_type") != "LORA":
        raise ExportError(
            f"version {version} is a {config.get('peft_type')} adapter; {engine} serves LoRA adapters "
            "only: export --merged, or serve it with tunesmith's engine"
        )
    if config.get("use_dora"):
        raise ExportError(
            f"version {version} is a DoRA adapter, which {engine} does not load; export with --merged "
            "(the adapter folded into a standalone model)"
        )
    return config


def export_engine(cfg: ProjectConfig, ref: str, out: Path, *, engine: str, merged: bool = False) -> dict[str, Any]:
    from tunesmith.export.formats import fetch_version, merged_folder
    from tunesmith.tracking import model_name

    out.mkdir(parents=True, exist_ok=True)
    name = model_name(cfg)
    modules: dict[str, str] = {}
    ranks, base = [], None
    served_rows = _served(cfg, ref)
    for row in served_rows:
        served = f"ft:{name}:v{row['version']}"
        staging = out / f".v{row['version']}"
        info, folder = fetch_version(cfg, str(row["version"]), staging)
        if merged or folder.name == "model":
            if len(served_rows) > 1:
                raise ExportError("a merged or full model is one engine per version; export one version at a time")
            shutil.rmtree(out / "model", ignore_errors=True)
            if folder.name == "model":
                folder.rename(out / "model")
            else:
                merged_folder(cfg, info, folder, out / "model")
            shutil.rmtree(staging, ignore_errors=True)
            return _write(engine, out, {"model": "model", "served": served, "version": row["version"]})
        config = _check_adapter(folder, engine, row["version"])
        ranks.append(int(config.get("r", 8)))
        version_base = info["tags"].get("base_model", cfg.base_model)
        if base is not None and version_base != base:
            raise ExportError(
                f"the served versions have different bases ({base}, {version_base}); "
                "one engine serves one base: export them separately"
            )
        base = version_base
        target = out / "adapters" / f"v{row['version']}"
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        folder.rename(target)
        shutil.rmtree(staging, ignore_errors=True)
        modules[served] = f"adapters/v{row['version']}"
    assert base is not None
    return _write(engine, out, {"model": _base(cfg, base, out), "adapters": modules, "max_rank": max(ranks)})


def command(engine: str, plan: dict[str, Any]) -> list[str]:
    """The launch command, run from the export folder (TGI's in Docker, with the folder mounted at /data)."""
    adapters = plan.get("adapters") or {}
    if engine == "vllm":
        cmd = ["vllm", "serve", plan["model"], "--host", "127.0.0.1", "--port", "8000"]
        if "served" in plan:
            cmd += ["--served-model-name", plan["served"]]
        if adapters:
            cmd += [
                "--enable-lora",
                "--max-lora-rank",
                str(lora_rank(plan["max_rank"])),
                "--max-loras",
                str(len(adapters)),
                "--lora-modules",
                *[f"{k}={v}" for k, v in adapters.items()],
            ]
        return cmd
    model = (
        plan["model"]
        if "/" in plan["model"] and not plan["model"].startswith(("base", "model"))
        else f"/data/{plan['model']}"
    )
    cmd = [
        "docker",
        "run",
        "--gpus",
        "all",
        "--shm-size",
        "1g",
        "-p",
        "127.0.0.1:8080:80",
        "-v",
        "$PWD:/data",
        TGI_IMAGE,
        "--model-id",
        model,
    ]
    if adapters:
        cmd += ["--lora-adapters", ",".join(f"{k}=/data/{v}" for k, v in adapters.items())]
    return cmd


def _write(engine: str, out: Path, plan: dict[str, Any]) -> dict[str, Any]:
    cmd = command(engine, plan)
    text = " ".join('"$PWD":/data' if c == "$PWD:/data" else shlex.quote(c) for c in cmd)
    (out / "serve.sh").write_text(
        f'#!/bin/sh\n# {engine}: run from this folder on a GPU machine\ncd "$(dirname "$0")"\nexec {text}\n',
        encoding="utf-8",
    )
    (out / "serve.sh").chmod(0o755)
    return {"format": engine, "folder": str(out), "command": text, **plan}
