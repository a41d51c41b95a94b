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
    from tunesmith.evaluate.suites import is_refusal
    from tunesmith.models import load_tokenizer
    from tunesmith.monitor.drift import detect_drift
    from tunesmith.schemas import schema_compliance

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
    result["output_quality"] = {
        h: {k: round(sum(v) / len(v), 4) if v else None for k, v in b.items()} for h, b in sorted(buckets.items())
    }
    write_json(monitor_dir(cfg) / "drift.json", result)
    return result


def production_cost(cfg: ProjectConfig, rows: list[dict[str, Any]]) -> float:
    """USD per 1,000 answered requests of a version, from the request log's latencies (estimate/cost.py)."""
    from tunesmith.estimate.cost import per_1k_local

    answered = [r["latency_ms"] / 1000 for r in rows if r["status"] == 200]
    return per_1k_local(cfg.cost.serving_usd_per_hour, statistics.mean(answered)) if answered else 0.0


def _drift_block(d: dict[str, Any]) -> Any:
    """The last drift test (drift.json): each feature's medians, KS test and PSI, and the least familiar prompts."""
    from tunesmith.reports import Block

    drows = [
        [
            k,
            d[k]["calibration_median"],
            d[k]["recent_median"],
            d[k]["ks_statistic"],
            f"{d[k]['p_value']:.2g}",
            d[k]["psi"],
            "DRIFT" if d[k]["drift"] else "ok",
        ]
        for k in ("similarity", "length")
        if k in d
    ]
    return Block(
        f"Input drift ({d['recent']} recent prompts)",
        ["feature", "calibration median", "recent median", "KS", "p", "PSI", ""],
        drows,
        text="Least like the training data: "
        + "; ".join(f"{x['prompt'][:80]!r} ({x['similarity']})" for x in d["least_like_training"][:3]),
    )


def write_monitor_report(cfg: ProjectConfig) -> tuple[Path, Path]:
    import time as _time

    from tunesmith.reports import Block, to_html, to_markdown
    from tunesmith.stats import p95

    rows, events, feedback = _served_rows(cfg)
    if not rows:
        raise TunesmithError("the request log is empty; nothing to report yet")
    out = monitor_dir(cfg)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    from tunesmith.monitor.charts import series, traffic_chart

    grouped, _ = series(rows)
    score_of = {f["request_id"]: f["score"] for f in feedback if f["score"] is not None}
    traffic_chart(rows, feedback, cfg.cost.serving_usd_per_hour, plots / "traffic.png")

    table = []
    for version, by_time in sorted(grouped.items()):
        all_rows = [r for group in by_time.values() for r in group]
        lat = sorted(r["latency_ms"] / 1000 for r in all_rows if r["status"] == 200)
        scores = [score_of[r["id"]] for r in all_rows if r["id"] in score_of]
        table.append(
            [
                version,
                len(all_rows),
                f"{sum(r['status'] >= 400 for r in all_rows) / len(all_rows):.1%}",
                f"{statistics.median(lat):.3f}" if lat else "-",
                f"{p95(lat):.3f}" if lat else "-",
                f"{sum(scores) / len(scores):.2f} ({len(scores)})" if scores else "-",
                f"${production_cost(cfg, all_rows):.4f}" if lat else "-",
            ]
        )
    blocks = [
        Block(
            f"Traffic per version ({len(rows)} requests)",
            ["version", "requests", "errors", "p50 s", "p95 s", "feedback (n)", "USD / 1K requests"],
            table,
            plots / "traffic.png",
            text=f"USD / 1K requests: the mean latency of the answered requests × the serving machine's "
            f"${cfg.cost.serving_usd_per_hour}/h (`cost.serving_usd_per_hour`), one request at a time; "
            "requests served together share the machine, so this is the upper bound (docs/cost.md).",
        )
    ]
    drift_path = out / "drift.json"
    if drift_path.exists():
        blocks.append(_drift_block(json.loads(drift_path.read_text())))
    if events:
        blocks.append(
            Block(
                "Events",
                ["time", "model", "event", "detail"],
                [
                    [
                        _time.strftime("%Y-%m-%d %H:%M:%S", _time.localtime(e["time"])),
                        e["model"],
                        e["kind"],
                        e["detail"],
                    ]
                    for e in events
                ],
            )
        )
    title = f"Production: {cfg.registry.name or cfg.root.name}"
    return (
        write_atomic(out / "report.md", to_markdown(title, blocks, out)),
        write_atomic(out / "report.html", to_html(title, blocks)),
    )
