"""Plots shared by every report: matplotlib without a display, and the loss curve of a run."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_curve(metrics_csv: Path, out: Path, title: str = "Training") -> Path | None:
    """Training and validation loss against optimizer steps, from a run's metrics.csv, as a PNG, with the
    validation task metric on a second axis when it was logged."""
    if not metrics_csv.exists():
        return None
    plt = pyplot()

    with open(metrics_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    train = [(int(r["step"]), float(r["loss"])) for r in rows if r.get("loss")]
    val = [(int(r["step"]), float(r["eval_loss"])) for r in rows if r.get("eval_loss")]
    if not train and not val:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.8), dpi=110)
    if train:
        ax.plot(*zip(*train), label="training loss", color="#4C72B0")
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss", color="#C44E52")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (assistant tokens)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    task = [(int(r["step"]), float(r["eval_task_metric"])) for r in rows if r.get("eval_task_metric")]
    if task:
        right = ax.twinx()
        right.plot(*zip(*task), "s--", label="validation task metric", color="#55A868")
        right.set_ylim(0, 1.02)
        right.set_ylabel("task metric (teacher-forced)")
        more = right.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.legend(handles, labels, loc="center right")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
