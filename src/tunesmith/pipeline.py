"""`tunesmith run` as a build system: a stage whose inputs have not changed is skipped.

Each stage has a fingerprint — a SHA-256 over what it reads: the data files' contents and
the `data` section for the data stage; the data fingerprint, `base_model`, `seed` and the
`train` section for training; the training fingerprint and the `eval` section (with the
suite files) for evaluation. The fingerprints chain, so a change anywhere redoes that stage
and everything after it. They are kept in `<output_dir>/run_state.json` once a stage
completes; a training run that started with the same fingerprint but did not finish is
resumed from its last complete checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.files import write_json

STAGES = ("data", "train", "eval", "register")


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def fingerprints(cfg: ProjectConfig) -> dict[str, str]:
    """Stage -> fingerprint of its inputs (reads the data files; imports nothing heavy)."""
    from tunesmith.evaluate.suites import suite_path

    files = {d.path: _file_hash(cfg.resolve(d.path)) if cfg.resolve(d.path).exists() else None
             for d in cfg.data.datasets}
    data = _digest({"files": files, "data": cfg.data.model_dump(mode="json"), "seed": cfg.seed,
                    "base_model": cfg.base_model})
    train = _digest({"data": data, "train": cfg.train.model_dump(mode="json"), "base_model": cfg.base_model,
                     "seed": cfg.seed, "trust_remote_code": cfg.trust_remote_code})
    base = cfg.config_path.parent if cfg.config_path else None
    extra = {}
    for key, kind in (("regression_suite", "regression"), ("safety_suite", "safety"), ("edge_cases", "edge_cases"),
                      ("json_schema", None)):
        value = getattr(cfg.eval, key)
        if value:
            path = cfg.resolve(value) if kind is None else suite_path(value, kind, base)
            extra[key] = _file_hash(path) if path.exists() else None
    evaluation = _digest({"train": train, "eval": cfg.eval.model_dump(mode="json"), "files": extra})
    register = _digest({"eval": evaluation, "gate": cfg.gate.model_dump(mode="json"),
                        "registry": cfg.registry.model_dump(mode="json")})
    return {"data": data, "train": train, "eval": evaluation, "register": register}


def state_path(cfg: ProjectConfig) -> Path:
    return cfg.output_path / "run_state.json"


def load_state(cfg: ProjectConfig) -> dict[str, Any]:
    path = state_path(cfg)
    return json.loads(path.read_text()) if path.exists() else {}


def mark(cfg: ProjectConfig, stage: str, fingerprint: str, **extra: Any) -> None:
    state = load_state(cfg)
    state[stage] = {"fingerprint": fingerprint, **extra}
    write_json(state_path(cfg), state)


def plan(cfg: ProjectConfig, force: list[str]) -> dict[str, str]:
    """Stage -> "run" | "skip" | "resume": forced stages and everything after them run again."""
    fps, state = fingerprints(cfg), load_state(cfg)
    first_forced = min((STAGES.index(s) for s in force), default=len(STAGES))
    out = {}
    for i, stage in enumerate(STAGES):
        done = state.get(stage, {}).get("fingerprint") == fps[stage]
        if i >= first_forced or not done:
            started = state.get("train_started", {}).get("fingerprint") == fps["train"]
            checkpoints = cfg.output_path / "train" / "checkpoints"
            out[stage] = ("resume" if stage == "train" and i < first_forced and started and checkpoints.exists()
                          and any(checkpoints.glob("checkpoint-*")) else "run")
        else:
            out[stage] = "skip"
    for i, stage in enumerate(STAGES):  # anything after a stage that runs runs too
        if out[stage] != "skip":
            for later in STAGES[i + 1:]:
                out[later] = out[later] if out[later] != "skip" else "run"
            break
    return out
