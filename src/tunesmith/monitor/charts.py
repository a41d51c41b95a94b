"""Traffic per version over time as one figure (matplotlib): requests, p95 latency, error rate, feedback
and USD per 1,000 requests. The production report saves it; the rollout page serves it fresh."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import IO, Any

PANELS = ("requests", "latency p95 (s)", "error rate", "feedback score (0-1)", "USD / 1K requests")


def _bucket(span: float) -> tuple[float, str]:
    if span <= 3 * 3600:
        return 60.0, "%H:%M"
    return (3600.0, "%m-%d %H:00") if span <= 3 * 86400 else (86400.0, "%Y-%m-%d")


def series(rows: list[dict[str, Any]]) -> tuple[dict[str, dict[float, list[dict[str, Any]]]], str]:
    """Requests grouped by version (shadow answers apart) and time bucket, and the bucket's label format."""
    from tunesmith.serve.engine import BASE

    size, fmt = _bucket(rows[-1]["time"] - rows[0]["time"]) if rows else (60.0, "%H:%M")
    out: dict[str, dict[float, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        # the engine's internal "__base__" would also be hidden by matplotlib's legend (leading "_")
        target = "base" if r["target"] in (None, "", BASE) else r["target"]
        out[target + (" (shadow)" if r["shadow"] else "")][r["time"] // size * size].append(r)
    return out, fmt


def traffic_chart(
    rows: list[dict[str, Any]], feedback: list[dict[str, Any]], usd_per_hour: float, out: str | IO[bytes]
) -> None:
    """Write the five panels as PNG to `out` (a path or a binary file)."""
    from tunesmith.estimate.cost import per_1k_local
    from tunesmith.plots import pyplot
    from tunesmith.stats import p95

    grouped, fmt = series(rows)
    score_of = {f["request_id"]: f["score"] for f in feedback if f["score"] is not None}
    plt = pyplot()
    fig, axes = plt.subplots(3, 2, figsize=(11, 9), dpi=100, sharex=True)
    for version, by_time in sorted(grouped.items()):
        times = sorted(by_time)
        labels = [time.strftime(fmt, time.localtime(t)) for t in times]
        ok = [[r["latency_ms"] / 1000 for r in by_time[t] if r["status"] == 200] for t in times]
        fb = [[score_of[r["id"]] for r in by_time[t] if r["id"] in score_of] for t in times]
        nan = float("nan")
        values = (
            [len(by_time[t]) for t in times],
            [p95(v) if v else nan for v in ok],
            [sum(r["status"] >= 400 for r in by_time[t]) / len(by_time[t]) for t in times],
            [sum(v) / len(v) if v else nan for v in fb],
            [per_1k_local(usd_per_hour, sum(v) / len(v)) if v else nan for v in ok],
        )
        for ax, ys in zip(axes.flat, values):
            ax.plot(labels, ys, "o-", label=version)
    for ax, title in zip(axes.flat, PANELS):
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.tick_params(axis="x", rotation=30, labelsize=7)
    axes.flat[-1].axis("off")
    axes[1][1].xaxis.set_tick_params(labelbottom=True)  # the panel above the empty one shows its times
    if grouped:
        axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, format="png")
    plt.close(fig)
