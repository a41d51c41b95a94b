"""What the pages show, read from the artefacts each stage already writes (nothing is duplicated).

Runs: the project's own run (`<output_dir>/`) and every fine-tuning job's (`jobs/runs/<id>/outputs/`).
Evaluation: `eval/metrics.json` and the per-example predictions. Registry: MLflow. Human
evaluation: the exported blind sheet (`eval human export`), each rater's answers saved as a
sheet of their own that `eval human import` reads.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig

FILTERS = {
    "wrong": "wrong answer",
    "format": "failed format",
    "regression": "regression probe lost",
    "unsafe": "unsafe answer",
}


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def metrics_rows(path: Path) -> list[dict[str, float | None]]:
    """metrics.csv merged by step."""
    rows: dict[int, dict[str, Any]] = {}
    try:
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                merged = rows.setdefault(int(row["step"]), {"step": int(row["step"])})
                merged.update({k: float(v) for k, v in row.items() if k != "step" and v not in (None, "")})
    except (OSError, ValueError, KeyError):
        return []
    return [rows[s] for s in sorted(rows)]


def runs(cfg: ProjectConfig, store: Any, org: str | None = None) -> list[dict[str, Any]]:
    """The project's run and the fine-tuning jobs' runs, newest job first; with `org`, that organisation's
    jobs only (and not the project's run)."""
    out = [] if org else [run_summary("project", cfg.output_path, str(cfg.config_path or ""), None)]
    if store is not None:
        for job in reversed(store.all_jobs()):
            if org and job["org"] != org:
                continue
            out.append(
                run_summary(job["id"], Path(job["folder"]) / "outputs", job["fine_tuned_model"] or "", job["status"])
            )
    return out


def run_summary(run_id: str, output: Path, label: str, status: str | None) -> dict[str, Any]:
    train = output / "train"
    meta = read_json(train / "metadata.json") or {}
    progress = read_json(train / "progress.json") or {}
    if status is None:
        status = "trained" if meta.get("completed") else "running" if progress else "not trained"
        state = read_json(output / "run_state.json") or {}
        if state.get("register", {}).get("version"):
            status = f"registered v{state['register']['version']}"
        elif "eval" in state:
            status = "evaluated"
    return {
        "id": run_id,
        "label": label,
        "status": status,
        "output": output,
        "steps": meta.get("steps") or progress.get("step"),
        "max_steps": meta.get("max_steps") or progress.get("max_steps"),
        "eval_loss": meta.get("eval_loss_best"),
        "method": meta.get("method"),
        "adapter": meta.get("adapter"),
    }


def loss_svg(rows: list[dict[str, Any]], width: int = 640, height: int = 240) -> str:
    """Training and validation loss as an inline SVG (no JavaScript, no image file)."""
    series = {
        "train": [(r["step"], r["loss"]) for r in rows if "loss" in r],
        "validation": [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r],
    }
    points = [p for s in series.values() for p in s]
    if not points:
        return "<p>No losses logged yet.</p>"
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points) or 1
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    pad = 36

    def xy(step: float, loss: float) -> str:
        x = pad + (step - x0) / ((x1 - x0) or 1) * (width - 2 * pad)
        y = height - pad - (loss - y0) / ((y1 - y0) or 1) * (height - 2 * pad)
        return f"{x:.1f},{y:.1f}"

    colours = {"train": "#2563eb", "validation": "#dc2626"}
    lines = [
        f'<polyline fill="none" stroke="{colours[name]}" stroke-width="2" points="{" ".join(xy(*p) for p in pts)}">'
        f"<title>{name} loss</title></polyline>"
        for name, pts in series.items()
        if pts
    ]
    dots = [
        f'<circle cx="{xy(*p).split(",")[0]}" cy="{xy(*p).split(",")[1]}" r="3" fill="{colours["validation"]}"/>'
        for p in series["validation"]
    ]
    axes = (
        f'<text x="{pad}" y="{height - 8}" font-size="11">step {x0:g}</text>'
        f'<text x="{width - pad - 60}" y="{height - 8}" font-size="11">step {x1:g}</text>'
        f'<text x="2" y="{pad - 8}" font-size="11">{y1:.3f}</text>'
        f'<text x="2" y="{height - pad}" font-size="11">{y0:.3f}</text>'
    )
    legend = "".join(
        f'<text x="{width - 150}" y="{16 + 14 * i}" font-size="12" fill="{colours[n]}">{n} loss</text>'
        for i, n in enumerate(series)
        if series[n]
    )
    return (
        f'<svg role="img" aria-label="loss curves" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f'<rect width="{width}" height="{height}" fill="#fafafa" stroke="#ddd"/>{"".join(lines)}{"".join(dots)}'
        f"{axes}{legend}</svg>"
    )


def examples(output: Path, which: str = "fine_tuned", flt: str | None = None) -> list[dict[str, Any]]:
    """Per-example outputs, filtered: wrong answers, failed format, lost regression probes, unsafe answers."""
    evald = output / "eval"
    if flt in ("regression", "unsafe"):
        suite = "regression" if flt == "regression" else "safety"
        base = {r.get("id"): r for r in read_jsonl(evald / f"suite_{suite}_base.jsonl")}
        rows = read_jsonl(evald / f"suite_{suite}_{which}.jsonl")
        if flt == "regression":
            return [r for r in rows if not r.get("passed") and base.get(r.get("id"), {}).get("passed")]
        return [r for r in rows if not r.get("passed")]
    rows = read_jsonl(evald / f"predictions_{which}.jsonl")
    if flt == "wrong":
        return [r for r in rows if r.get("task_metric", 1.0) < 1.0]
    if flt == "format":
        return [r for r in rows if r.get("format_compliance", 1.0) < 1.0]
    return rows


def prompt_text(row: dict[str, Any]) -> str:
    prompt = row.get("prompt")
    if isinstance(prompt, list):
        users = [t.get("content", "") for t in prompt if t.get("role") == "user"]
        return users[-1] if users else ""
    return str(prompt or "")


def sheet_rows(sheet: Path) -> list[dict[str, str]]:
    with open(sheet, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def save_rating(folder: Path, rater: str, rows: list[dict[str, str]], item: int, answer: dict[str, str]) -> Path:
    """A rater's answers as a sheet of their own (the exported sheet's columns), rewritten atomically."""
    from tunesmith.evaluate.human import COLUMNS
    from tunesmith.files import write_atomic

    path = folder / f"{rater}.csv"
    filled = {int(r["item"]): r for r in sheet_rows(path)} if path.exists() else {}
    base = next(r for r in rows if int(r["item"]) == item)
    filled[item] = {**{c: base.get(c, "") for c in COLUMNS}, **answer}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(filled[i] for i in sorted(filled))
    return write_atomic(path, buffer.getvalue())


MAX_RATERS = 50  # raters one project keeps: each is a file and a lock
_OWNERS_LOCK = threading.Lock()  # the owners file, shared by every request


def claim_rater(folder: Path, rater: str, key_digest: str | None) -> str | None:
    """Whether this caller may rate as `rater`: None when it may, else why not. A rater name belongs to the
    first key that rated under it (with keys configured), and a project keeps at most MAX_RATERS of them."""
    from tunesmith.files import write_json

    with _OWNERS_LOCK:
        owners_path = folder / ".owners.json"
        owners = json.loads(owners_path.read_text()) if owners_path.exists() else {}
        known = {p.stem for p in folder.glob("*.csv")} | set(owners)
        if rater not in known and len(known) >= MAX_RATERS:
            return f"this project already has {MAX_RATERS} raters; rate under one of their names"
        if key_digest is not None:
            if owners.get(rater, key_digest) != key_digest:
                return f"the rater name {rater!r} belongs to another key; choose another name"
            if rater not in owners:
                owners[rater] = key_digest
                write_json(owners_path, owners)
    return None
