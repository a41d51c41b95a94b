"""`tunesmith monitor drift` and `tunesmith monitor report`, from the server's request log.

    <output_dir>/monitor/drift.json    input drift and output-quality drift
    <output_dir>/monitor/report.md     traffic, latency, errors, feedback per version over time, drift, events
    <output_dir>/monitor/report.html   the same, self-contained
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.errors import TunesmithError
from tunesmith.files import write_atomic, write_json
from tunesmith.monitor.feedback import _messages, request_log_path
from tunesmith.paths import monitor_dir


def _user_text(messages: list[dict[str, Any]]) -> str:
    users = [m["content"] for m in messages if m.get("role") == "user"]
    return users[-1] if users else ""


def _served_rows(cfg: ProjectConfig) -> list[dict[str, Any]]:
    from tunesmith.serve.requestlog import RequestLog

    log = RequestLog(request_log_path(cfg))
    rows = log.rows(1_000_000)
    events = log.events()
    feedback = log.feedback()
    log.close()
    return sorted(rows, key=lambda r: r["time"]), events, feedback


def run_drift(cfg: ProjectConfig, last: int = 500) -> dict[str, Any]:
    """Recent production prompts vs the training split (calibrated on the validation split)."""
    from tunesmith.data.records import Conversation
    from tunesmith.data.stage import load_split
    from tunesmith.evaluate.metrics import schema_compliance
    from tunesmith.evaluate.suites import is_refusal
    from tunesmith.models import load_tokenizer
    from tunesmith.monitor.drift import detect_drift

    rows, _, _ = _served_rows(cfg)
    served = [r for r in rows if not r["shadow"] and r["status"] == 200 and r["prompt"]][-last:]
    if len(served) < 2:
        raise TunesmithError("fewer than 2 logged prompts: drift needs serve.log_texts: true and some traffic")
    recent = [_user_text(_messages(r["prompt"])) for r in served]

    def texts(split: str) -> list[str]:
        return [_user_text(r.messages) for r in load_split(cfg, split) if isinstance(r, Conversation)]

    reference, calibration = texts("train"), texts("validation")
    if len(calibration) < 2:
        cut = max(2, len(reference) // 5)
        reference, calibration = reference[:-cut], reference[-cut:]
    tokenizer = load_tokenizer(cfg.base_model, trust_remote_code=cfg.trust_remote_code)
    result = detect_drift(reference, calibration, recent, tokenizer=tokenizer)
    schema = json.loads(cfg.resolve(cfg.eval.json_schema).read_text()) if cfg.eval.json_schema else None
    buckets: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"format_fail": [], "refused": []})
    import time as _time

    for r in served:
        if r["completion"] is None:
            continue
        hour = _time.strftime("%Y-%m-%d %H:00", _time.localtime(r["time"]))
        if schema is not None:
            buckets[hour]["format_fail"].append(1.0 - schema_compliance([r["completion"]], schema)[0])
        buckets[hour]["refused"].append(float(is_refusal(r["completion"])))
    result["output_quality"] = {h: {k: round(sum(v) / len(v), 4) if v else None for k, v in b.items()}
                                for h, b in sorted(buckets.items())}
    write_json(monitor_dir(cfg) / "drift.json", result)
    return result


def _bucket(span: float) -> tuple[float, str]:
    return (60.0, "%H:%M") if span < 2 * 3600 else (3600.0, "%m-%d %H:00")


def production_cost(cfg: ProjectConfig, rows: list[dict[str, Any]]) -> float:
    """USD per 1,000 answered requests of a version, from the request log's latencies (estimate/cost.py)."""
    from tunesmith.estimate.cost import per_1k_local

    answered = [r["latency_ms"] / 1000 for r in rows if r["status"] == 200]
    return per_1k_local(cfg.cost.serving_usd_per_hour, statistics.mean(answered)) if answered else 0.0


def write_monitor_report(cfg: ProjectConfig) -> tuple[Path, Path]:
    import time as _time

    from tunesmith.evaluate.metrics import p95
    from tunesmith.plots import pyplot
    from tunesmith.reports import Block, to_html, to_markdown
    from tunesmith.serve.engine import BASE

    rows, events, feedback = _served_rows(cfg)
    if not rows:
        raise TunesmithError("the request log is empty; nothing to report yet")
    out = monitor_dir(cfg)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    size, fmt = _bucket(rows[-1]["time"] - rows[0]["time"])
    series: dict[str, dict[float, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        # the engine's internal "__base__" would also be hidden by matplotlib's legend (leading "_")
        target = "base" if r["target"] in (None, "", BASE) else r["target"]
        key = target + (" (shadow)" if r["shadow"] else "")
        series[key][r["time"] // size * size].append(r)
    score_of = {f["request_id"]: f["score"] for f in feedback if f["score"] is not None}

    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.5), dpi=100, sharex=True)
    for version, by_time in sorted(series.items()):
        times = sorted(by_time)
        labels = [_time.strftime(fmt, _time.localtime(t)) for t in times]
        count = [len(by_time[t]) for t in times]
        errors = [sum(r["status"] >= 400 for r in by_time[t]) / len(by_time[t]) for t in times]
        ok = [[r["latency_ms"] / 1000 for r in by_time[t] if r["status"] == 200] for t in times]
        p95s = [p95(v) if v else float("nan") for v in ok]
        fb = [[score_of[r["id"]] for r in by_time[t] if r["id"] in score_of] for t in times]
        axes[0][0].plot(labels, count, "o-", label=version)
        axes[0][1].plot(labels, p95s, "o-", label=version)
        axes[1][0].plot(labels, errors, "o-", label=version)
        axes[1][1].plot(labels, [sum(v) / len(v) if v else float("nan") for v in fb], "o-", label=version)
    for ax, title in zip(axes.flat, ("requests", "latency p95 (s)", "error rate", "feedback score (0-1)")):
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.tick_params(axis="x", rotation=30, labelsize=7)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(plots / "traffic.png")
    plt.close(fig)

    table = []
    for version, by_time in sorted(series.items()):
        all_rows = [r for group in by_time.values() for r in group]
        lat = sorted(r["latency_ms"] / 1000 for r in all_rows if r["status"] == 200)
        scores = [score_of[r["id"]] for r in all_rows if r["id"] in score_of]
        table.append([version, len(all_rows), f"{sum(r['status'] >= 400 for r in all_rows) / len(all_rows):.1%}",
                      f"{statistics.median(lat):.3f}" if lat else "-",
                      f"{p95(lat):.3f}" if lat else "-",
                      f"{sum(scores) / len(scores):.2f} ({len(scores)})" if scores else "-",
                      f"${production_cost(cfg, all_rows):.4f}" if lat else "-"])
    blocks = [Block(f"Traffic per version ({len(rows)} requests)", ["version", "requests", "errors", "p50 s", "p95 s",
                                                                   "feedback (n)", "USD / 1K requests"],
                    table, plots / "traffic.png",
                    text=f"USD / 1K requests: the mean latency of the answered requests × the serving machine's "
                         f"${cfg.cost.serving_usd_per_hour}/h (`cost.serving_usd_per_hour`), one request at a time; "
                         "requests served together share the machine, so this is the upper bound (docs/cost.md).")]
    drift_path = out / "drift.json"
    if drift_path.exists():
        d = json.loads(drift_path.read_text())
        drows = [[k, d[k]["calibration_median"], d[k]["recent_median"], d[k]["ks_statistic"], f"{d[k]['p_value']:.2g}",
                  d[k]["psi"], "DRIFT" if d[k]["drift"] else "ok"] for k in ("similarity", "length") if k in d]
        blocks.append(Block(f"Input drift ({d['recent']} recent prompts)", ["feature", "calibration median",
                                                                           "recent median", "KS", "p", "PSI", ""],
                            drows, text="Least like the training data: " + "; ".join(
                                f"{x['prompt'][:80]!r} ({x['similarity']})" for x in d["least_like_training"][:3])))
    if events:
        blocks.append(Block("Events", ["time", "model", "event", "detail"],
                            [[_time.strftime("%Y-%m-%d %H:%M:%S", _time.localtime(e["time"])), e["model"], e["kind"],
                              e["detail"]] for e in events]))
    title = f"Production: {cfg.registry.name or cfg.root.name}"
    return (write_atomic(out / "report.md", to_markdown(title, blocks, out)),
            write_atomic(out / "report.html", to_html(title, blocks)))
