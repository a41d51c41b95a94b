"""The registry, on MLflow's model registry: versions with lineage, gate status and a model card;
rollout by aliases (production, canary, shadow) with a kept history of every move.

MLflow keeps only where an alias points now, not where it pointed before, so each move is
also written as a registered-model tag `alias_history.<time_ns>-<random>` (JSON). The history lives in
the same store as the models, so a shared MLflow server shares it too.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.errors import TunesmithError
from tunesmith.evaluate.result import EvalResult
from tunesmith.faults import fault_point
from tunesmith.files import write_atomic, write_json
from tunesmith.tracking import model_name, tracking_uri, use_experiment

ALIASES = ("production", "canary", "shadow")
_HISTORY = "alias_history."
_held = threading.local()  # the project whose alias lock this thread holds


def client(cfg: ProjectConfig) -> Any:
    from mlflow import MlflowClient

    use_experiment(cfg)
    return MlflowClient(tracking_uri(cfg))


@dataclass
class RegisterResult:
    """A registered version: its name and number, its gates, its model card, and where MLflow keeps it."""

    name: str
    version: int
    gates_passed: bool
    failed_gates: list[str]
    card: Path | None  # the model card written beside the outputs (None: registered by an earlier run)
    run_id: str | None = None
    source: str | None = None


def _lineage(cfg: ProjectConfig, result: EvalResult, gates_ok: bool, forced: bool) -> dict[str, str]:
    from tunesmith.files import sha256_file
    from tunesmith.paths import data_dir, parent_info, train_dir

    tuned, suites = result.fine_tuned, result.suites
    tags = {
        "base_model": cfg.base_model,
        "method": cfg.train.method,
        "adapter": cfg.train.adapter,
        "gates": "passed" if gates_ok else "failed",
        "forced": str(forced).lower(),
        "task_metric": str(tuned.task_metric.mean if tuned.task_metric else None),
        "task_metric_name": tuned.task_metric_name,
        "test_examples": str(result.test_examples),
    }
    parent = parent_info(cfg)
    if parent:
        tags.update({"parent": f"{parent['name']} v{parent['version']}", "root_base_model": parent["base_model"]})
    if tuned.format_compliance is not None:
        tags["format_compliance"] = str(tuned.format_compliance.mean)
    if "safety" in suites and "fine_tuned" in suites["safety"].runs:
        tags["safety_pass_rate"] = str(suites["safety"].runs["fine_tuned"].pass_rate.mean)
    if "regression" in suites and suites["regression"].relative_change is not None:
        tags["regression_change"] = str(suites["regression"].relative_change)
    split = data_dir(cfg) / "split.json"
    if split.exists():
        for name, entry in json.loads(split.read_text())["splits"].items():
            tags[f"data.{name}.sha256"] = entry["sha256"]
            tags[f"data.{name}.records"] = str(entry["records"])
    from tunesmith.data.stage import system_prompt_for

    system = system_prompt_for(cfg)
    if system and len(system) <= 4000:  # the server adds it to requests that bring none (serve/models.py)
        tags["system_prompt"] = system
    resolved = train_dir(cfg) / "config.yaml"
    if resolved.exists():
        tags["config_sha256"] = sha256_file(resolved)
    for source in cfg.data.datasets:
        path = cfg.resolve(source.path)
        if path.is_file():
            tags[f"source.{path.name}.sha256"] = sha256_file(path)
    return tags


def add_version(cfg: ProjectConfig, *, force: bool = False) -> RegisterResult:
    """Register the project's trained and evaluated model as a new version (refused if a gate failed, unless forced)."""
    import mlflow

    from tunesmith.evaluate.gate import GateResult, check_gates
    from tunesmith.evaluate.result import read_eval
    from tunesmith.paths import data_dir, eval_dir, train_dir
    from tunesmith.registry.card import model_card

    run_dir = train_dir(cfg)
    model_dir = run_dir / "model"
    if not model_dir.exists():
        raise TunesmithError(f"no trained model in {model_dir}; run `tunesmith train` first")
    evaluated = read_eval(cfg)
    meta_path = run_dir / "metadata.json"
    training = json.loads(meta_path.read_text()) if meta_path.exists() else None
    gates = check_gates(cfg, evaluated, training)
    verdict = GateResult(gates)
    ok, failed = verdict.passed, verdict.failed
    if not ok and not force:
        advice = "".join(f"\n  {g.name}: {g.advice}" for g in gates if g.passed is False and g.blocking and g.advice)
        raise TunesmithError(
            f"not registered: blocking gate(s) failed: {', '.join(failed)}. Fix the model, or pass "
            "--force to register it marked gates=failed (it cannot be promoted without --force)"
            + (f"\nWhat to change:{advice}" if advice else "")
        )
    c = client(cfg)
    name = model_name(cfg)
    with _locked(cfg, ".add.lock"):
        pending = _pending_add(c, cfg, name)
        id_file = run_dir / "mlflow_run_id"
        run_id = pending.get("run_id") or (id_file.read_text().strip() if id_file.exists() else None)
        with mlflow.start_run(run_id=run_id, run_name=None if run_id else "register") as run:
            mlflow.log_artifacts(str(model_dir), "model")  # overwrites the same files on a redo
            mlflow.log_artifact(str(eval_dir(cfg) / "metrics.json"), "eval")
            predictions = eval_dir(cfg) / "predictions_fine_tuned.jsonl"
            if predictions.exists():  # so two versions can be compared on the same examples later (web pages)
                mlflow.log_artifact(str(predictions), "eval")
            for split in ("train", "test"):  # a later version trained from this one replays and re-scores them
                if (data_dir(cfg) / f"{split}.jsonl").exists():
                    mlflow.log_artifact(str(data_dir(cfg) / f"{split}.jsonl"), "data")
            run_id = run.info.run_id
            artifact_uri = run.info.artifact_uri
        write_json(_add_journal(cfg), {**pending, "run_id": run_id})
        fault_point("registry_add", "artifacts")
        if not c.search_registered_models(filter_string=f"name='{name}'"):
            c.create_registered_model(name, description=f"Fine-tunes of {cfg.base_model} registered by tunesmith.")
        tags = _lineage(cfg, evaluated, ok, force)
        version = _registered(c, name, run_id, pending["token"]) or c.create_model_version(
            name, source=f"{artifact_uri}/model", run_id=run_id, tags={**tags, "registration": pending["token"]}
        )
        fault_point("registry_add", "version")
        card = model_card(cfg, version.version, evaluated, gates, training, tags)
        c.update_model_version(name, version.version, description=card)
        fault_point("registry_add", "card")
        out = write_atomic(cfg.output_path / "registry" / f"{name}-v{version.version}.md", card)
        with mlflow.start_run(run_id=run_id):
            mlflow.log_text(card, f"model_card_v{version.version}.md")
        _add_journal(cfg).unlink()
    return RegisterResult(name, int(version.version), ok, failed, out, run_id, version.source)


def _add_journal(cfg: ProjectConfig) -> Path:
    return cfg.output_path / "registry" / "add.json"


def _pending_add(c: Any, cfg: ProjectConfig, name: str) -> dict[str, Any]:
    """The registration to carry out: one a crash interrupted for this same evaluation is finished
    under its own token (so a rerun never makes a second version of one model), otherwise a new one.
    MLflow cannot log artifacts, create a version and write its card in one transaction, hence the
    journal. An interrupted registration of an earlier evaluation is left as it is, marked."""
    import secrets

    from tunesmith.files import sha256_file
    from tunesmith.paths import eval_dir

    journal = _add_journal(cfg)
    digest = sha256_file(eval_dir(cfg) / "metrics.json")
    pending = json.loads(journal.read_text()) if journal.exists() else {}
    if pending and pending["metrics_sha256"] != digest:
        stale = _registered(c, name, pending.get("run_id"), pending["token"])
        if stale is not None and not stale.description:
            c.set_model_version_tag(name, stale.version, "registration", "interrupted")
        pending = {}
    pending = pending or {"token": secrets.token_hex(8), "metrics_sha256": digest}
    write_json(journal, pending)
    return pending


def _registered(c: Any, name: str, run_id: str | None, token: str) -> Any:
    """The version a registration already created, if it got that far."""
    if run_id is None or not c.search_registered_models(filter_string=f"name='{name}'"):
        return None
    return next(
        (
            v
            for v in c.search_model_versions(f"name='{name}' and run_id='{run_id}'")
            if v.tags.get("registration") == token
        ),
        None,
    )


def _version(c: Any, name: str, ref: str) -> Any:
    """A model version by number or alias."""
    from mlflow.exceptions import MlflowException

    try:
        if ref.isdigit():
            return c.get_model_version(name, ref)
        return c.get_model_version_by_alias(name, ref)
    except MlflowException:
        raise TunesmithError(f"{name} has no version or alias {ref!r}; see `tunesmith registry list`") from None


def history(cfg: ProjectConfig) -> list[dict[str, Any]]:
    """Every alias move, oldest first."""
    from mlflow.exceptions import MlflowException

    if _journal(cfg).exists():
        with _moving(cfg):  # a move a crash interrupted is finished before anyone reads the history
            pass
    try:
        model = client(cfg).get_registered_model(model_name(cfg))
    except MlflowException:
        return []
    events = [json.loads(v) for k, v in sorted(model.tags.items()) if k.startswith(_HISTORY)]
    for seq, event in enumerate(events, 1):
        event["seq"] = seq  # numbered on reading: writers never compete for a number
    return events


@contextmanager
def _moving(cfg: ProjectConfig) -> Iterator[None]:
    """Alias moves one at a time on this machine (the command line, a server's automatic rollback,
    the web pages), each one finished first if a crash interrupted it. A file lock, because MLflow's
    own alias write is check-then-insert and two writers at once fail with an integrity error."""
    if getattr(_held, "cfg", None) is not None:
        yield
        return
    with _locked(cfg, ".aliases.lock"):
        _held.cfg = cfg
        try:
            _redo(cfg)
            yield
        finally:
            _held.cfg = None


@contextmanager
def _locked(cfg: ProjectConfig, name: str) -> Iterator[None]:
    """An exclusive file lock in the project's registry folder, released when the file closes, also
    when the process dies."""
    folder = cfg.output_path / "registry"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / name, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _journal(cfg: ProjectConfig) -> Path:
    return cfg.output_path / "registry" / "alias-move.json"


def _apply(c: Any, move: dict[str, Any]) -> None:
    """The two store writes of a move; both idempotent, so a redo after a crash is safe."""
    from mlflow.exceptions import MlflowException

    fault_point("alias_move", "before")
    if move["version"] is None:
        try:
            c.delete_registered_model_alias(move["name"], move["alias"])
        except MlflowException:
            pass  # already gone: the first try got this far
    else:
        c.set_registered_model_alias(move["name"], move["alias"], str(move["version"]))
    fault_point("alias_move", "between")
    c.set_registered_model_tag(move["name"], move["key"], json.dumps(move["event"]))


def _redo(cfg: ProjectConfig) -> None:
    journal = _journal(cfg)
    if journal.exists():
        _apply(client(cfg), json.loads(journal.read_text()))
        journal.unlink()


def _move(c: Any, cfg: ProjectConfig, alias: str, version: int | None, event: dict[str, Any]) -> dict[str, Any]:
    """Move (version) or clear (None) an alias and add its history entry. MLflow cannot do both in
    one transaction, so the move is journalled first (a write-ahead log of one entry): a crash
    between the writes leaves the journal, and the next registry operation finishes the move. The
    history entry has its own key (nanosecond time and a random tail), so writers on other machines
    sharing one MLflow server never overwrite each other's entries."""
    import secrets

    key = f"{_HISTORY}{time.time_ns():020d}-{secrets.token_hex(4)}"
    event = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "user": getpass.getuser(),
        "alias": alias,
        "version": version,
        **event,
    }
    move = {"name": model_name(cfg), "alias": alias, "version": version, "key": key, "event": event}
    write_json(_journal(cfg), move)
    _apply(c, move)
    _journal(cfg).unlink()
    return {"seq": len(history(cfg)), **event}


def promote(cfg: ProjectConfig, ref: str, alias: str, *, force: bool = False, reason: str = "") -> dict[str, Any]:
    """Point `alias` at a version; a version whose gates failed needs --force."""
    if alias not in ALIASES:
        raise TunesmithError(f"alias {alias!r} is not one of {', '.join(ALIASES)}")
    c = client(cfg)
    name = model_name(cfg)
    with _moving(cfg):
        version = _version(c, name, ref)
        if version.tags.get("gates") == "failed" and not force:
            raise TunesmithError(f"{name} v{version.version} failed its quality gates; promote it only with --force")
        previous = c.get_registered_model(name).aliases.get(alias)
        return _move(
            c,
            cfg,
            alias,
            int(version.version),
            {"action": "promote", "previous": int(previous) if previous else None, "forced": force, "reason": reason},
        )


def rollback(cfg: ProjectConfig, alias: str = "production", reason: str = "") -> dict[str, Any]:
    """Move `alias` back to the last version that held it before and was not itself rolled back."""
    c = client(cfg)
    name = model_name(cfg)
    with _moving(cfg):
        current = c.get_registered_model(name).aliases.get(alias)
        if current is None:
            raise TunesmithError(f"{name} has no {alias} version to roll back")
        events = [e for e in history(cfg) if e["alias"] == alias]
        bad = {e["previous"] for e in events if e["action"] == "rollback"} | {int(current)}
        target = next((e["version"] for e in reversed(events) if e.get("version") and e["version"] not in bad), None)
        if target is None:
            raise TunesmithError(
                f"no earlier {alias} version of {name} to go back to (history: {[e['version'] for e in events]})"
            )
        return _move(
            c,
            cfg,
            alias,
            int(target),
            {"action": "rollback", "previous": int(current), "forced": False, "reason": reason},
        )


def clear_alias(cfg: ProjectConfig, alias: str, reason: str = "") -> dict[str, Any]:
    """Remove an alias (end a canary or shadow)."""
    c = client(cfg)
    name = model_name(cfg)
    with _moving(cfg):
        current = c.get_registered_model(name).aliases.get(alias)
        if current is None:
            raise TunesmithError(f"{name} has no {alias} alias")
        return _move(
            c, cfg, alias, None, {"action": "clear", "previous": int(current), "forced": False, "reason": reason}
        )


def versions(cfg: ProjectConfig) -> list[dict[str, Any]]:
    """All versions, newest first, with the aliases that point at them."""
    c = client(cfg)
    name = model_name(cfg)
    if not c.search_registered_models(filter_string=f"name='{name}'"):
        return []
    aliases = c.get_registered_model(name).aliases
    rows = []
    for v in c.search_model_versions(f"name='{name}'"):
        rows.append(
            {
                "version": int(v.version),
                "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(v.creation_timestamp / 1000)),
                "aliases": sorted(a for a, n in aliases.items() if str(n) == str(v.version)),
                "gates": v.tags.get("gates", "?"),
                "task_metric": v.tags.get("task_metric"),
                "adapter": v.tags.get("adapter"),
                "run_id": v.run_id,
                "source": v.source,
                "base_model": v.tags.get("base_model"),
                "parent": v.tags.get("parent"),
            }
        )
    return sorted(rows, key=lambda r: -r["version"])


def show(cfg: ProjectConfig, ref: str) -> dict[str, Any]:
    c = client(cfg)
    v = _version(c, model_name(cfg), ref)
    return {
        "version": int(v.version),
        "tags": dict(v.tags),
        "source": v.source,
        "run_id": v.run_id,
        "card": v.description or "",
    }
