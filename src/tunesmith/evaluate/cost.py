"""Cost per 1,000 requests for base, few-shot and fine-tuned, and the fine-tune's payback, from the
evaluation's own measurements (tokens per request, per-request latency on this machine) and the
prices in `cost:` (formulas in estimate/cost.py and docs/cost.md)."""

from __future__ import annotations

import json
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.estimate.cost import gpu_seconds, payback_days, per_1k_hosted, per_1k_local


def cost_block(
    cfg: ProjectConfig,
    models: dict[str, Any],
    *,
    params: int,
    layers: int,
    device: str,
    dtype: Any,
    eval_seconds: float,
) -> dict[str, Any]:
    """metrics.json's `cost`: per model, USD per 1,000 requests on this machine (measured latency), on a
    hosted model at the baseline's prices (measured tokens), and on the table's GPUs (estimated); then
    the payback of the fine-tune against the baseline (the few-shot prompt on the hosted model)."""
    from tunesmith.estimate.plan import load_gpus
    from tunesmith.evaluate.metrics import bootstrap_ci
    from tunesmith.paths import train_dir

    c = cfg.cost
    mfu, gpus = load_gpus(None)
    rows: dict[str, Any] = {}
    for name, m in models.items():
        prompt, completion = m.get("prompt_tokens_mean"), m.get("completion_tokens_mean")
        if prompt is None or completion is None:
            continue
        row = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "hosted": round(
                per_1k_hosted(
                    prompt, completion, c.baseline_usd_per_1k_input_tokens, c.baseline_usd_per_1k_output_tokens
                ),
                4,
            ),
        }
        if m.get("latency_mean_s") is not None:
            row["this_machine"] = round(per_1k_local(c.serving_usd_per_hour, m["latency_mean_s"]), 4)
            if len(m.get("latencies_s") or []) > 1:
                _, low, high = bootstrap_ci(m["latencies_s"])
                row["this_machine_ci"] = [round(per_1k_local(c.serving_usd_per_hour, s), 4) for s in (low, high)]
        row["gpus"] = {
            g.name: round(per_1k_local(g.usd_per_hour, s), 4)
            for g in gpus
            if (s := gpu_seconds(g, mfu, params, layers, prompt, completion)) is not None
        }
        rows[name] = row
    block: dict[str, Any] = {
        "per_1k_requests": rows,
        "device": device,
        "precision": _precisions(cfg, device, dtype),
        "prices": c.model_dump(),
        "illustrative_prices": c == type(c)(),
    }
    baseline = (rows.get("few_shot") or rows.get("base") or {}).get("hosted")
    tuned = (rows.get("fine_tuned") or {}).get("this_machine")
    tuned_ci = (rows.get("fine_tuned") or {}).get("this_machine_ci")
    meta = train_dir(cfg) / "metadata.json"
    train_seconds = json.loads(meta.read_text()).get("runtime_s", 0.0) if meta.exists() else 0.0
    setup = (train_seconds + eval_seconds) / 3600 * c.training_usd_per_hour
    block["roi"] = {
        "baseline": c.baseline_name,
        "baseline_per_1k": baseline,
        "fine_tuned_per_1k": tuned,
        "setup_usd": round(setup, 4),
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "requests_per_day": c.requests_per_day,
        "payback_days": None,
    }
    if baseline is not None and tuned is not None:
        days = payback_days(setup, baseline, tuned, c.requests_per_day)
        block["roi"]["payback_days"] = round(days, 2) if days is not None else None
        block["roi"]["saving_per_day_usd"] = round((baseline - tuned) / 1000 * c.requests_per_day, 4)
    if baseline is not None and tuned_ci is not None:
        # The mean of a few requests timed on a shared machine: the payback at either end of its 95%
        # interval, so a verdict that the next run could reverse says so (None: never pays back).
        block["roi"]["fine_tuned_per_1k_ci"] = tuned_ci
        block["roi"]["payback_days_ci"] = [
            round(d, 2) if (d := payback_days(setup, baseline, t, c.requests_per_day)) is not None else None
            for t in tuned_ci
        ]
    return block


def _precisions(cfg: ProjectConfig, device: str, dtype: Any) -> dict[str, str]:
    """The precision the requests were timed in (the evaluation's weights, `dtype`) and the one the built-in
    engine serves in (`serve/models.load_served`'s, memory check included)."""
    from tunesmith.errors import TunesmithError
    from tunesmith.hardware import precision_of
    from tunesmith.models import inference_dtype

    try:
        served = precision_of(inference_dtype(cfg.base_model, device, *cfg.served_precision, say=False))
    except TunesmithError:  # fp16 on a CPU: the server will refuse it; the evaluation goes on
        served = cfg.serve.precision
    return {"timed": precision_of(dtype), "served": served}


def cost_rows(cost: dict[str, Any]) -> list[list[str]]:
    """The table the views, the report and the model card show: one row per model."""
    out = []
    for name, r in cost["per_1k_requests"].items():
        gpus = r.get("gpus", {})
        cheapest = min(gpus.items(), key=lambda kv: kv[1]) if gpus else None
        out.append(
            [
                name.replace("_", "-"),
                f"{r['prompt_tokens']:.0f} + {r['completion_tokens']:.0f}",
                f"${r['this_machine']:.4f}" if "this_machine" in r else "not timed",
                f"${r['hosted']:.4f}",
                f"${cheapest[1]:.4f} ({cheapest[0]})" if cheapest else "-",
            ]
        )
    return out


def gpu_rows(cost: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """USD per 1K requests on each GPU of the table (estimated), one row per GPU, a column per model."""
    per = cost["per_1k_requests"]
    names = [n for n in per if per[n].get("gpus")]
    gpus = list(next((per[n]["gpus"] for n in names), {}))
    return (
        ["GPU (estimate)", *[n.replace("_", "-") for n in names]],
        [[g, *[f"${per[n]['gpus'][g]:.4f}" for n in names]] for g in gpus],
    )


COST_HEADER = [
    "model",
    "tokens in + out",
    "USD / 1K requests, this machine",
    "hosted at baseline prices",
    "cheapest GPU of the table (estimate)",
]


def roi_lines(cost: dict[str, Any]) -> list[str]:
    """The payback in the guides' shape: baseline vs fine-tuned per 1K requests, set-up cost, days."""
    r = cost["roi"]
    if r["baseline_per_1k"] is None or r["fine_tuned_per_1k"] is None:
        return [
            "Payback: not computed (the fine-tuned model's per-request latency or the baseline's tokens "
            "were not measured)."
        ]
    days, ends = r["payback_days"], r.get("payback_days_ci")
    lines = [
        f"Cost per 1K requests: {r['baseline']} ${r['baseline_per_1k']:.4f} → fine-tuned on this machine "
        f"${r['fine_tuned_per_1k']:.4f}{_interval(r.get('fine_tuned_per_1k_ci'))}.",
        f"Set-up: ${r['setup_usd']:.4f} (training {r['train_seconds'] / 60:.1f} min and evaluation "
        f"{r['eval_seconds'] / 60:.1f} min at ${cost['prices']['training_usd_per_hour']}/h).",
        f"Payback at {r['requests_per_day']:,} requests a day: "
        + (
            f"{days:.2f} days (saving ${r['saving_per_day_usd']:.4f} a day)."
            if days is not None
            else "never: the fine-tune costs more per request than the baseline."
        ),
    ]
    if ends and None not in ends:
        lines.append(f"Within the 95% interval of the measured latency: {ends[0]:.2f} to {ends[1]:.2f} days.")
    elif ends and ends != [None, None]:
        lines.append(
            f"Uncertain: within the 95% interval of the measured latency it pays back in {ends[0]:.2f} days "
            "at one end and never at the other. A few requests were timed, one at a time, on a machine whose "
            "other load moves them; the production report (`tunesmith monitor report`) prices each version "
            "from its real requests."
        )
    p = cost.get("precision") or {}
    if p.get("timed") != p.get("served"):
        lines.append(
            f"Timed in {p['timed']}, the evaluation's precision; `serve.precision` serves {p['served']}, whose "
            "speed differs (docs/deploy.md), so the cost on this machine is the evaluation's, not the server's."
        )
    if cost.get("illustrative_prices"):
        lines.append("Prices are tunesmith's illustrative defaults (`cost:` in the config sets yours).")
    return lines


def _interval(ci: list[float] | None) -> str:
    return f" [95% CI ${ci[0]:.4f}, ${ci[1]:.4f}]" if ci else ""
