"""What the server serves: the base model with every adapter loaded, and the names clients use.

Names: `base` (the base model alone); for the registry model N, `N` (its production
version), `N@production` / `N@canary` / `N@shadow` and `N@v<version>` for every version an
alias points at; extra adapters from `serve.adapters` by their own names; and models
routed to an upstream OpenAI-compatible server (`serve.upstreams`, e.g. vLLM).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig, UpstreamConfig
from tunesmith.errors import TunesmithError
from tunesmith.serve.engine import BASE


@dataclass
class Target:
    name: str
    kind: str = "local"  # local | upstream
    adapter: str = BASE
    version: str = ""
    upstream: UpstreamConfig | None = None
    router: str | None = None  # a registry name whose traffic is split by the rollout router
    system_prompt: str | None = None  # the prompt it was trained with, added to chat requests that bring none


def registry_adapters(cfg: ProjectConfig) -> tuple[dict[str, Path], dict[str, Target]]:
    """Adapter folders of the registry versions that an alias points at, downloaded once under output_dir."""
    if not cfg.registry.tracking_uri and not (cfg.output_path / "mlflow.db").exists():
        return {}, {}  # no registry: the server starts without importing mlflow (a second or two)
    from mlflow.exceptions import MlflowException

    from tunesmith.registry.store import client
    from tunesmith.tracking import model_name

    c = client(cfg)
    name = model_name(cfg)
    try:
        aliases = c.get_registered_model(name).aliases
    except MlflowException:
        return {}, {}
    folders: dict[str, Path] = {}
    targets: dict[str, Target] = {}
    for alias, version in sorted(aliases.items()):
        adapter = f"v{version}"
        found = c.get_model_version(name, str(version))
        if adapter not in folders:
            folders[adapter] = _download(cfg, found)
        system = (found.tags or {}).get("system_prompt") or None
        targets[f"{name}@{alias}"] = Target(
            f"{name}@{alias}", adapter=adapter, version=str(version), system_prompt=system
        )
        targets[f"{name}@v{version}"] = Target(
            f"{name}@v{version}", adapter=adapter, version=str(version), system_prompt=system
        )
        if alias == "production":
            targets[name] = Target(name, adapter=adapter, version=str(version), router=name, system_prompt=system)
    return folders, targets


def _download(cfg: ProjectConfig, version: Any) -> Path:
    """A registry version's adapter folder under output_dir (downloaded once), after checking its base model."""
    import mlflow

    if version.tags.get("base_model") not in (None, cfg.base_model):
        raise TunesmithError(
            f"{version.name} v{version.version} was trained on {version.tags['base_model']}, but this "
            f"server's base_model is {cfg.base_model}; serve it from a project with that base model"
        )
    import shutil

    from tunesmith.files import replace_dir

    dest = cfg.output_path / "serve" / "adapters" / f"v{version.version}"
    if not (dest / "model" / "adapter_config.json").exists():
        # downloaded beside it and renamed in whole: a crash mid-download never leaves a folder
        # that looks complete and is reused forever
        tmp = dest.with_name(f".{dest.name}.download")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(tmp))
        if not (tmp / "model" / "adapter_config.json").exists():
            raise TunesmithError(
                f"{version.name} v{version.version}: the download from {version.source} has no "
                "model/adapter_config.json"
            )
        replace_dir(tmp, dest)
    return dest / "model"


def version_adapter(cfg: ProjectConfig, version: str) -> tuple[str, Path]:
    """Download one registry version's adapter (for loading while serving): (adapter name, folder)."""
    from tunesmith.registry.store import client
    from tunesmith.tracking import model_name

    return f"v{version}", _download(cfg, client(cfg).get_model_version(model_name(cfg), str(version)))


def check_adapter(folder: Path) -> None:
    """Refuse an adapter the engines cannot serve as trained: anything but plain LoRA (models/multilora.py)."""
    from tunesmith.models.multilora import unsupported

    path = folder / "adapter_config.json"
    if not path.exists():
        raise TunesmithError(f"{folder} is not an adapter folder (no adapter_config.json)")
    why = unsupported(json.loads(path.read_text()))
    if why:
        raise TunesmithError(
            f"{folder}: only plain LoRA adapters share batches, and this is {why}; merge it with "
            "`tunesmith merge` and serve the merged model as base_model"
        )


def served_targets(cfg: ProjectConfig) -> tuple[dict[str, Path], dict[str, Target], dict[str, Any]]:
    """(adapter folders by name, name -> target, registry name -> rollout router), whatever the engine."""
    from tunesmith.serve.rollout import Router

    folders, targets = registry_adapters(cfg)
    for name, folder in cfg.serve.adapters.items():
        folders[name] = cfg.resolve(folder)
        targets[name] = Target(name, adapter=name)
    targets["base"] = Target("base")
    for name, upstream in cfg.serve.upstreams.items():
        targets[name] = Target(name, kind="upstream", upstream=upstream)
    routers = {}
    for t in targets.values():
        if t.router:
            alias = {
                a: targets[f"{t.router}@{a}"].adapter for a in ("canary", "shadow") if f"{t.router}@{a}" in targets
            }
            routers[t.router] = Router(t.router, cfg.serve.rollout, t.adapter, alias.get("canary"), alias.get("shadow"))
    return folders, targets, routers


def load_served(cfg: ProjectConfig) -> tuple[Any, Any, dict[str, Target], dict[str, Any]]:
    """(model with adapters, tokenizer, name -> target, registry name -> rollout router)."""

    from tunesmith.hardware import pick_device
    from tunesmith.models import inference_dtype, load_model, load_tokenizer

    folders, targets, routers = served_targets(cfg)
    for folder in folders.values():
        check_adapter(folder)
    device = pick_device(cfg.device)
    model = load_model(
        cfg.base_model,
        dtype=inference_dtype(cfg.base_model, device, *cfg.served_precision),
        trust_remote_code=cfg.trust_remote_code,
        device=device,
    )
    # the trained model's tokenizer folder carries its chat template and stop token
    tokenizer = load_tokenizer(
        str(next(iter(folders.values()))) if folders else cfg.base_model, trust_remote_code=cfg.trust_remote_code
    )
    if folders:
        from peft import PeftModel

        items = list(folders.items())
        model = PeftModel.from_pretrained(model, str(items[0][1]), adapter_name=items[0][0])
        for name, folder in items[1:]:
            model.load_adapter(str(folder), adapter_name=name)
    from tunesmith.models.prepack import install

    install(model)  # decoding steps on prepacked bf16 weights (models/prepack.py); the server merges nothing
    return model.eval(), tokenizer, targets, routers
