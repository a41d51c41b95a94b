"""What a job's files say, for the worker to report: metrics.csv's rows by step, OpenAI's checkpoint
metrics, the tokens trained, and the run's last error line."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


def merged_rows(path: Path) -> dict[int, dict[str, float | None]]:
    """metrics.csv's training and validation rows merged by step, as numbers."""
    rows: dict[int, dict[str, float | None]] = {}
    try:
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                step = int(row["step"])
                merged = rows.setdefault(step, {})
                for key, value in row.items():
                    if key not in ("step", "time") and value not in (None, ""):
                        merged[key] = float(value)
    except (OSError, ValueError, KeyError):
        return rows
    return rows


def checkpoint_metrics(rows: dict[int, dict[str, float | None]], step: int) -> dict[str, float | None]:
    """OpenAI's checkpoint metrics from the last logged values at or before `step`. The validation
    set is evaluated whole at every evaluation, so valid_* and full_valid_* are the same numbers."""

    def last(key: str) -> float | None:
        values = [r[key] for s, r in sorted(rows.items()) if s <= step and r.get(key) is not None]
        return values[-1] if values else None

    valid, valid_acc = last("eval_loss"), last("eval_mean_token_accuracy")
    return {
        "train_loss": last("loss"),
        "train_mean_token_accuracy": last("mean_token_accuracy"),
        "valid_loss": valid,
        "valid_mean_token_accuracy": valid_acc,
        "full_valid_loss": valid,
        "full_valid_mean_token_accuracy": valid_acc,
    }


def trained_tokens(out: Path) -> int | None:
    """Tokens of the prepared training windows times the epochs trained (what OpenAI bills as trained)."""
    prepare = read_json(out / "data" / "prepare.json") or {}
    meta = read_json(out / "train" / "metadata.json") or {}
    tokens = (prepare.get("train") or {}).get("tokens")
    return round(tokens * (meta.get("epochs") or 1)) if tokens else None


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def last_error(path: Path, folder: Path) -> str:
    """The run's own last error line (tunesmith prints "error: ..." for a user mistake), without the job's
    folder in it; a crash shows only its exception line, never the traceback."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log was written"
    errors = [line for line in lines if line.lower().startswith("error")] or lines[-1:] or ["no output"]
    return errors[-1].replace(str(folder.resolve()) + "/", "").replace(str(folder) + "/", "")[:500]
