"""What an OpenAI fine-tuning request means here: checked files, hyperparameters → a tunesmith config.

OpenAI's request: `model`, `training_file`, `validation_file`, `suffix`, `seed`, `metadata`, and
`method: {type: supervised | dpo, <type>: {hyperparameters: {n_epochs, batch_size,
learning_rate_multiplier, beta}}}` (or the legacy top-level `hyperparameters`). "auto" leaves a
value to tunesmith's pre-flight check, as OpenAI leaves it to its own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

METHODS = {"supervised": "sft", "dpo": "dpo"}
# Bounds on a job's hyperparameters: one job holds the worker while it trains, so none may ask for ever
MAX_EPOCHS, MAX_BATCH, MAX_LR_MULTIPLIER, MAX_BETA = 50, 256, 100.0, 10.0
HYPER = {
    "supervised": ("n_epochs", "batch_size", "learning_rate_multiplier"),
    "dpo": ("n_epochs", "batch_size", "learning_rate_multiplier", "beta"),
}


class SpecError(ValueError):
    """A request OpenAI would answer 400: message and the offending parameter."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param, self.code = param, code


def check_file(path: Path, method: str = "supervised") -> tuple[int, list[str]]:
    """Run the data stage's record checks on an uploaded file: (valid records, problems as
    "line N: field: what to do"), the first 20 problems. The records are checked once per file (the result is
    kept beside it, `.check/check.json`); each job only applies its method's rule to that result."""
    import json

    cached = path.parent / ".check" / "check.json"
    try:
        found = json.loads(cached.read_text())
    except (OSError, ValueError):
        found = _check_records(path)
        from tunesmith.files import write_json

        write_json(cached, found)
    valid, problems, formats = found["valid"], list(found["problems"]), set(found["formats"])
    if method == "dpo" and valid and not formats & {"openai_dpo", "preference"}:
        problems.append(
            f"{path.name}: a dpo job needs preference records (input, preferred_output, "
            "non_preferred_output), not conversations"
        )
    if method == "supervised" and valid and formats & {"openai_dpo", "preference"}:
        problems.append(f"{path.name}: holds preference records; create the job with method type dpo")
    return valid, problems


def _check_records(path: Path) -> dict[str, Any]:
    from tunesmith.data.check import Source, check_sources
    from tunesmith.errors import TunesmithError

    try:  # the rejects go beside the file under a name no upload can take (an upload is one name in its folder)
        result = check_sources([Source(path)], rejects_path=path.parent / ".check" / "rejects.jsonl")
    except (TunesmithError, UnicodeError, ValueError, OSError) as exc:
        reason = "not UTF-8 text" if isinstance(exc, UnicodeError) else str(exc).replace(str(path.parent) + "/", "")
        return {
            "valid": 0,
            "formats": [],
            "problems": [f"{path.name}: cannot be read as JSONL, JSON, CSV or Parquet ({reason[:300]})"],
        }
    problems = []
    for p in result.errors[:20]:
        where = f"line {p.line}" if p.line is not None else path.name
        problems.append(f"{where}: {p.field + ': ' if p.field else ''}{p.message}")
    if result.valid == 0 and not problems:
        problems.append(
            f"{path.name}: no records found; each line must be one JSON object with a messages list "
            "(supervised) or input / preferred_output / non_preferred_output (dpo)"
        )
    return {
        "valid": result.valid,
        "formats": sorted({str(f.get("format")) for f in result.files}),
        "problems": problems,
    }


def normalise(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(OpenAI method type, its hyperparameters) from `method` or the legacy `hyperparameters`."""
    method = _object(body.get("method"), "method")
    kind = method.get("type") or "supervised"
    if not isinstance(kind, str) or kind not in METHODS:
        raise SpecError(f"method.type {kind!r} is not supported here; use supervised or dpo", "method.type")
    inner = _object(method.get(kind), f"method.{kind}")
    hyper = dict(
        _object(inner.get("hyperparameters"), f"method.{kind}.hyperparameters")
        or _object(body.get("hyperparameters"), "hyperparameters")
    )
    for key in hyper:
        if key not in HYPER[kind]:
            raise SpecError(
                f"unknown hyperparameter {key!r} for {kind}; known: {', '.join(HYPER[kind])}",
                f"method.{kind}.hyperparameters.{key}",
            )
    for key in HYPER[kind]:
        hyper.setdefault(key, "auto")
    for key, top in (("n_epochs", MAX_EPOCHS), ("batch_size", MAX_BATCH)):
        value = hyper[key]
        if value != "auto" and (not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top):
            raise SpecError(
                f'{key} must be an integer from 1 to {top}, or "auto"', f"method.{kind}.hyperparameters.{key}"
            )
    for key, top in (("learning_rate_multiplier", MAX_LR_MULTIPLIER), ("beta", MAX_BETA)):
        value = hyper.get(key, "auto")
        if value != "auto" and (
            not isinstance(value, (int, float))
            or isinstance(value, bool)
            or not math.isfinite(value)
            or not 0 < value <= top
        ):
            raise SpecError(
                f'{key} must be a number above 0 and at most {top:g}, or "auto"', f"method.{kind}.hyperparameters.{key}"
            )
    return kind, hyper


def _object(value: Any, param: str) -> dict[str, Any]:
    """A JSON object the request may leave out (None: empty); anything else is the client's mistake."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{param} must be a JSON object", param)
    return value


def check_suffix(suffix: str | None) -> None:
    if suffix is not None and (not isinstance(suffix, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", suffix)):
        raise SpecError("suffix must be 1 to 64 letters, digits, '-', '_' or '.'", "suffix")


def model_short(model: str) -> str:
    """The base model's name as it appears in `ft:` names (a folder's last part)."""
    return Path(model).name if ("/" in model or "\\" in model) else model


def fine_tuned_name(model: str, org: str, suffix: str | None, job_id: str) -> str:
    """OpenAI's shape, ft:<base>:<org>[:<suffix>]:<id>, with the job id's tail as the id."""
    parts = ["ft", model_short(model), org]
    if suffix:
        parts.append(suffix)
    parts.append(job_id.removeprefix("ftjob-")[:8])
    return ":".join(parts)


def job_config(
    base: dict[str, Any],
    job: dict[str, Any],
    training: Path,
    validation: Path | None,
    base_model: str,
    default_lr: Callable[[str], float],
) -> dict[str, Any]:
    """The job's tunesmith.yaml: the server's `serve.jobs.project` settings, then the job's own."""
    import copy
    import json

    cfg = copy.deepcopy(base)
    kind = json.loads(job["method"])["type"]
    hyper = json.loads(job["hyperparameters"])
    data = cfg.setdefault("data", {})
    data["datasets"] = [{"path": str(training), "split": "auto"}]
    if validation is not None:
        data["datasets"].append({"path": str(validation), "split": "validation"})
    train = cfg.setdefault("train", {})
    train["method"] = METHODS[kind]
    if hyper.get("n_epochs", "auto") != "auto":
        train["num_epochs"] = hyper["n_epochs"]
    if hyper.get("batch_size", "auto") != "auto":  # records per optimizer step: packed windows here
        train["micro_batch_size"] = hyper["batch_size"]
        train["gradient_accumulation_steps"] = 1
    if hyper.get("learning_rate_multiplier", "auto") != "auto":
        train["learning_rate"] = (
            float(train.get("learning_rate") or default_lr(train["method"])) * hyper["learning_rate_multiplier"]
        )
    if kind == "dpo" and hyper.get("beta", "auto") != "auto":
        train["dpo_beta"] = hyper["beta"]
    cfg["base_model"] = base_model
    cfg["seed"] = job["seed"]
    cfg["output_dir"] = "outputs"
    cfg.setdefault("registry", {})["name"] = job["fine_tuned_name"].replace(":", "-")
    return cfg
