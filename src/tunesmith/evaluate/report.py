"""The evaluation report: Markdown and a self-contained HTML page (plots inlined), from metrics.json.

<output_dir>/eval/report.md     tables, plots referenced from plots/
<output_dir>/eval/report.html   the same, one file (plots as data URIs), to send around
<output_dir>/eval/plots/        metrics.png, confusion_<field>.png, loss.png, latency.png
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.files import write_atomic
from tunesmith.paths import eval_dir, train_dir
from tunesmith.plots import loss_curve, pyplot
from tunesmith.reports import Block, to_html, to_markdown

NAMES = {"base": "base", "few_shot": "few-shot", "fine_tuned": "fine-tuned"}
COLORS = {"base": "#8C8C8C", "few_shot": "#DD8452", "fine_tuned": "#4C72B0"}


def _ci(entry: Any) -> str:
    if not isinstance(entry, dict) or "mean" not in entry:
        return "-"
    low, high = entry["ci95"]
    return f"{entry['mean']:.3f} [{low:.3f}, {high:.3f}]"


def headline_keys(results: dict[str, Any]) -> list[str]:
    first = results["models"]["fine_tuned"]
    keys = ["task_metric", "format_compliance", "json_valid", "accuracy", "semantic_similarity", "rouge_l"]
    return [k for k in keys if isinstance(first.get(k), dict)]


def metric_bars(results: dict[str, Any], out: Path) -> Path:
    """Grouped bars per metric and model with 95% interval whiskers, suite pass rates included."""
    plt = pyplot()
    models = list(results["models"])
    rows = [(k, {n: results["models"][n].get(k) for n in models}) for k in headline_keys(results)]
    for suite, entry in results.get("suites", {}).items():
        rows.append((f"{suite} pass rate", {n: entry.get(n, {}).get("pass_rate") for n in models}))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(rows) + 2), 4), dpi=110)
    width = 0.8 / len(models)
    for j, name in enumerate(models):
        xs, means, errs = [], [], [[], []]
        for i, (_, values) in enumerate(rows):
            v = values.get(name)
            if isinstance(v, dict):
                xs.append(i + (j - (len(models) - 1) / 2) * width)
                means.append(v["mean"])
                errs[0].append(max(0.0, v["mean"] - v["ci95"][0]))
                errs[1].append(max(0.0, v["ci95"][1] - v["mean"]))
        ax.bar(xs, means, width, yerr=errs, capsize=3, label=NAMES.get(name, name), color=COLORS.get(name))
    ax.set_xticks(range(len(rows)), [r[0].replace("_", " ") for r in rows], rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean (95% bootstrap CI)")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def confusion_plot(entry: dict[str, Any], title: str, out: Path) -> Path:
    plt = pyplot()
    labels, matrix = entry["labels"], entry["confusion_matrix"]
    size = max(4.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.85), dpi=110)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    peak = max((max(r) for r in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color="white" if v > peak / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("expected")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def latency_plot(latencies: dict[str, list[float]], out: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    for name, values in latencies.items():
        ax.hist(values, bins=20, alpha=0.6, label=NAMES.get(name, name), color=COLORS.get(name))
    ax.set_xlabel("seconds per example (batched)")
    ax.set_ylabel("examples")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def build_blocks(cfg: ProjectConfig, results: dict[str, Any], plots: Path) -> list[Block]:
    models = list(results["models"])
    heads = ["metric", *[NAMES.get(n, n) for n in models]]
    first = results["models"]["fine_tuned"]
    rows = [
        [k.replace("field:", "field "), *[_ci(results["models"][n].get(k)) for n in models]]
        for k in first
        if isinstance(first[k], dict) and "mean" in first[k]
    ]
    for task in first.get("by_task", {}):
        rows.append([f"task metric: {task}", *[_ci(results["models"][n].get("by_task", {}).get(task)) for n in models]])
    for k in (
        "bleu",
        "latency_p50_s",
        "latency_p95_s",
        "time_to_first_token_p50_s",
        "batch_latency_p50_s",
        "tokens_per_s",
        "stopped_by_end_token",
    ):
        rows.append([k, *[str(results["models"][n].get(k, "-")) for n in models]])
    for k in ("loss", "perplexity"):
        rows.append([f"held-out {k}", *[str(results["models"][n].get("heldout", {}).get(k, "-")) for n in models]])
    blocks = [
        Block(
            f"Test set: {results['test_examples']} examples, task {results['task']}, "
            f"headline {first.get('task_metric_name', 'task_metric')} (mean [95% CI])",
            heads,
            rows,
            metric_bars(results, plots / "metrics.png"),
        )
    ]
    comp = [
        [name.replace("_", " "), c["metric"], f"{c['mcnemar_p']:.2g}", _ci(c.get("task_metric_diff"))]
        for name, c in results.get("comparisons", {}).items()
    ]
    blocks.append(
        Block("Paired comparisons", ["comparison", "McNemar on", "p", "task metric difference [95% CI]"], comp)
    )
    if results.get("cost"):
        from tunesmith.evaluate.cost import COST_HEADER, cost_rows, gpu_rows, roi_lines

        blocks.append(
            Block(
                "Cost per 1,000 requests",
                COST_HEADER,
                cost_rows(results["cost"]),
                text=" ".join(roi_lines(results["cost"])) + " This machine: measured per-request latency "
                "× its price, one request at a time; hosted: measured tokens × the baseline's prices; GPUs: "
                "estimated from the table's bandwidth and peak (docs/cost.md).",
            )
        )
        heads, grows = gpu_rows(results["cost"])
        if grows:
            blocks.append(Block("Cost per 1,000 requests on the GPU table (estimated)", heads, grows))
    suites = results.get("suites", {})
    if suites:
        srows = []
        for suite, entry in suites.items():
            change, upper = entry.get("relative_change"), entry.get("relative_change_upper")
            srows.append(
                [
                    suite.replace("_", " "),
                    entry["context"],
                    *[_ci(entry.get(n, {}).get("pass_rate")) for n in ("base", "fine_tuned")],
                    "-" if change is None else f"{change:+.1%}",
                    "-" if upper is None else f"{upper:+.1%}",
                    f"{entry.get('lost', '-')} / {entry.get('gained', '-')}",
                    f"{entry.get('mcnemar_p', 1):.2g}",
                ]
            )
        blocks.append(
            Block(
                "Suites (pass rate)",
                [
                    "suite",
                    "context",
                    "base",
                    "fine-tuned",
                    "relative change",
                    f"one-sided {cfg.gate.confidence:.0%} bound",
                    "lost / gained",
                    "McNemar p",
                ],
                srows,
                text="Relative change: (fine-tuned − base) / base over the same probes; the gates use its "
                "one-sided upper bound (paired bootstrap over probes). Per-probe outputs and verdicts: "
                "suite_<name>_<model>.jsonl.",
            )
        )
    for name, entry in first.get("classification", {}).items():
        image = confusion_plot(entry, f"fine-tuned: {name}", plots / f"confusion_{name}.png")
        crow = [
            [
                NAMES.get(n, n),
                *[
                    f"{results['models'][n]['classification'][name][k]:.3f}"
                    for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1")
                ],
            ]
            for n in models
            if name in results["models"][n].get("classification", {})
        ]
        blocks.append(
            Block(f"Classification: {name}", ["model", "accuracy", "macro P", "macro R", "macro F1"], crow, image)
        )
    loss = loss_curve(train_dir(cfg) / "metrics.csv", plots / "loss.png", title="Training run")
    if loss:
        blocks.append(Block("Training curves", image=loss))
    latencies = {}
    for n in models:
        path = plots.parent / f"predictions_{n}.jsonl"
        if path.exists():
            rows_n = [json.loads(line) for line in path.read_text().splitlines() if line]
            if rows_n and "latency_s" in rows_n[0]:  # preference pairs are scored, not generated
                latencies[n] = [r["latency_s"] for r in rows_n]
    if latencies:
        blocks.append(Block("Latency", image=latency_plot(latencies, plots / "latency.png")))
    return blocks


def write_reports(cfg: ProjectConfig, results: dict[str, Any]) -> tuple[Path, Path]:
    out = eval_dir(cfg)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    blocks = build_blocks(cfg, results, plots)
    title = f"Evaluation: {cfg.registry.name or cfg.output_path.parent.name}"
    return (
        write_atomic(out / "report.md", to_markdown(title, blocks, out)),
        write_atomic(out / "report.html", to_html(title, blocks)),
    )
