"""Continual learning: `base_model: registry:NAME@ALIAS` (or `@VERSION`) starts from a registered version.

The version's adapter is merged into the base model it was trained on (exact, in fp32) and the
merged folder, cached under `$TUNESMITH_CACHE/parents/`, becomes this project's base model: the
new adapter stacks on everything the previous version learned, and "base" in the evaluation is the
previous version, so every before/after comparison and gate is against it. The previous version's
own base model stays recorded for lineage. Its training and test splits (logged with it when it was
registered) are written to `<output_dir>/parent/`: training replays its training records at
`data.replay.previous` and evaluation re-scores its test set, gated by `gate.max_previous_task_drop`.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from tunesmith.config import ProjectConfig
from tunesmith.errors import TunesmithError
from tunesmith.evaluate.result import EvalResult
from tunesmith.files import write_json
from tunesmith.paths import parent_dir

PREFIX = "registry:"


def parse_ref(base_model: str) -> tuple[str, str] | None:
    """("NAME", "production" | "3") for `registry:NAME@REF`; None for any other base model."""
    if not base_model.startswith(PREFIX):
        return None
    name, _, ref = base_model[len(PREFIX) :].partition("@")
    if not name or not ref:
        raise TunesmithError(
            f"base_model {base_model!r}: write registry:NAME@ALIAS or registry:NAME@VERSION, "
            "e.g. registry:support-tickets-json@production"
        )
    return name, ref


def resolve_parent(cfg: ProjectConfig) -> ProjectConfig:
    """The config with a `registry:` base model replaced by the merged folder of that version (made once);
    the version's lineage and splits go to `<output_dir>/parent/`. Other configs come back unchanged."""
    parsed = parse_ref(cfg.base_model)
    if parsed is None:
        return cfg
    import mlflow

    from tunesmith.files import cache_root
    from tunesmith.registry.store import _version, client
    from tunesmith.tracking import tracking_uri

    name, ref = parsed
    version = _version(client(cfg), name, ref)
    root = version.tags.get("base_model")
    if not root:
        raise TunesmithError(f"{name} v{version.version} has no base_model tag; it was not registered by tunesmith")
    store = hashlib.sha256(f"{tracking_uri(cfg)}|{version.source}".encode()).hexdigest()[:10]
    folder = cache_root() / "parents" / f"{name}-v{version.version}-{store}"
    merged = folder / "merged"
    if not (merged / "config.json").exists():
        tmp = folder / ".download"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        model = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(tmp)))
        if (model / "adapter_config.json").exists():
            from tunesmith.models.merge import merge_adapter

            merge_adapter(model, root, merged, trust_remote_code=cfg.trust_remote_code, device=cfg.device)
        else:
            from tunesmith.files import replace_dir

            replace_dir(model, merged)
        shutil.rmtree(tmp, ignore_errors=True)
    out = parent_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split in ("train", "test"):
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=version.run_id,
                artifact_path=f"data/{split}.jsonl",
                dst_path=str(out),
                tracking_uri=tracking_uri(cfg),
            )
            splits[split] = str(Path(path))
        except Exception:  # noqa: BLE001 - versions registered before splits were logged: no replay, no re-scoring
            splits[split] = None
    metrics = _parent_metrics(version.run_id, out, tracking_uri(cfg))
    write_json(
        out / "parent.json",
        {
            "ref": cfg.base_model,
            "name": name,
            "version": int(version.version),
            "base_model": root,
            "merged": str(merged),
            "splits": splits,
            "task": metrics.task if metrics else None,
            "fields": metrics.fields if metrics else [],
            "task_metric": metrics.fine_tuned.task_metric.mean
            if metrics and "fine_tuned" in metrics.models and metrics.fine_tuned.task_metric
            else None,
        },
    )
    return cfg.model_copy(update={"base_model": str(merged)})


def _parent_metrics(run_id: str, out: Path, uri: str) -> EvalResult | None:
    """The registered version's evaluation (logged with it), or None when the artifact cannot be read."""
    import mlflow

    from tunesmith.evaluate.result import read_eval

    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="eval/metrics.json", dst_path=str(out), tracking_uri=uri
        )
        return read_eval(Path(path))
    except Exception:  # noqa: BLE001 - a version without its evaluation logged: no task to carry over
        return None
