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
from tunesmith.evaluate.result import EvalResult, Interval
from tunesmith.files import write_atomic
from tunesmith.paths import eval_dir, train_dir
from tunesmith.plots import loss_curve, pyplot
from tunesmith.reports import Block, to_html, to_markdown

NAMES = {"base": "base", "few_shot": "few-shot", "fine_tuned": "fine-tuned"}
COLORS = {"base": "#8C8C8C", "few_shot": "#DD8452", "fine_tuned": "#4C72B0"}


def _ci(entry: Interval | dict[str, Any] | None) -> str:
    entry = Interval.of(entry) if isinstance(entry, dict) else entry
    if entry is None:
        return "-"
    return f"{entry.mean:.3f} [{entry.low:.3f}, {entry.high:.3f}]"


def headline_keys(result: EvalResult) -> list[str]:
    keys = ["task_metric", "format_compliance", "json_valid", "accuracy", "semantic_similarity", "rouge_l"]
    return [k for k in keys if result.fine_tuned.interval(k) is not None]


def metric_bars(result: EvalResult, out: Path) -> Path:
    """Grouped bars per metric and model with 95% interval whiskers, suite pass rates included."""
    plt = pyplot()
    models = list(result.models)
    rows = [(k, {n: m.interval(k) for n, m in result.models.items()}) for k in headline_keys(result)]
    for name, suite in result.suites.items():
        rows.append((f"{name} pass rate", {n: run.pass_rate for n, run in suite.runs.items() if n in models}))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(rows) + 2), 4), dpi=110)
    width = 0.8 / len(models)
    for j, name in enumerate(models):
        xs, means, errs = [], [], [[], []]
        for i, (_, values) in enumerate(rows):
            v = values.get(name)
            if v is not None:
                xs.append(i + (j - (len(models) - 1) / 2) * width)
                means.append(v.mean)
                errs[0].append(max(0.0, v.mean - v.low))
                errs[1].append(max(0.0, v.high - v.mean))
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


def build_blocks(cfg: ProjectConfig, result: EvalResult, plots: Path) -> list[Block]:
    """The report's sections: the test set, paired comparisons, cost, suites, classification, curves."""
    blocks = [_test_block(result, plots), _comparisons_block(result)]
    blocks += _cost_blocks(result.cost) if result.cost else []
    blocks += [_suites_block(cfg, result)] if result.suites else []
    blocks += _classification_blocks(result, plots)
    loss = loss_curve(train_dir(cfg) / "metrics.csv", plots / "loss.png", title="Training run")
    if loss:
        blocks.append(Block("Training curves", image=loss))
    latencies = {}
    for n in result.models:
        path = plots.parent / f"predictions_{n}.jsonl"
        if path.exists():
            rows_n = [json.loads(line) for line in path.read_text().splitlines() if line]
            if rows_n and "latency_s" in rows_n[0]:  # preference pairs are scored, not generated
                latencies[n] = [r["latency_s"] for r in rows_n]
    if latencies:
        blocks.append(Block("Latency", image=latency_plot(latencies, plots / "latency.png")))
    seconds = result.data.get("seconds") or {}
    if seconds:
        total = sum(seconds.values())
        rows = [[step, f"{s:.1f}", f"{s / total:.0%}"] for step, s in sorted(seconds.items(), key=lambda kv: -kv[1])]
        blocks.append(
            Block(f"Where the time went: {total:.0f} s over the steps timed", ["step", "seconds", "share"], rows)
        )
    return blocks


PLAIN_FIGURES = (
    "bleu",
    "latency_p50_s",
    "latency_p95_s",
    "time_to_first_token_p50_s",
    "batch_latency_p50_s",
    "tokens_per_s",
    "stopped_by_end_token",
)


def _test_block(result: EvalResult, plots: Path) -> Block:
    models = list(result.models.values())
    first = result.fine_tuned
    rows = [
        [k.replace("field:", "field "), *[_ci(m.interval(k)) for m in models]]
        for k in first.values
        if first.interval(k) is not None
    ]
    for task in first.by_task:
        rows.append([f"task metric: {task}", *[_ci(m.by_task.get(task)) for m in models]])
    for k in PLAIN_FIGURES:
        rows.append([k, *[str(m.values.get(k, "-")) for m in models]])
    for k in ("loss", "perplexity"):
        rows.append([f"held-out {k}", *[str(m.values.get("heldout", {}).get(k, "-")) for m in models]])
    return Block(
        f"Test set: {result.test_examples} examples, task {result.task}, "
        f"headline {first.task_metric_name} (mean [95% CI])",
        ["metric", *[NAMES.get(m.name, m.name) for m in models]],
        rows,
        metric_bars(result, plots / "metrics.png"),
    )


def _comparisons_block(result: EvalResult) -> Block:
    comp = [
        [name.replace("_", " "), c["metric"], f"{c['mcnemar_p']:.2g}", _ci(c.get("task_metric_diff"))]
        for name, c in result.data.get("comparisons", {}).items()
    ]
    return Block("Paired comparisons", ["comparison", "McNemar on", "p", "task metric difference [95% CI]"], comp)


def _cost_blocks(cost: dict[str, Any]) -> list[Block]:
    from tunesmith.evaluate.cost import COST_HEADER, cost_rows, gpu_rows, roi_lines

    blocks = [
        Block(
            "Cost per 1,000 requests",
            COST_HEADER,
            cost_rows(cost),
            text=" ".join(roi_lines(cost)) + " This machine: measured per-request latency "
            "× its price, one request at a time; hosted: measured tokens × the baseline's prices; GPUs: "
            "estimated from the table's bandwidth and peak (docs/cost.md).",
        )
    ]
    heads, grows = gpu_rows(cost)
    if grows:
        blocks.append(Block("Cost per 1,000 requests on the GPU table (estimated)", heads, grows))
    return blocks


def _suites_block(cfg: ProjectConfig, result: EvalResult) -> Block:
    srows = [
        [*suite.cells(_ci), f"{1 if suite.mcnemar_p is None else suite.mcnemar_p:.2g}"]
        for suite in result.suites.values()
    ]
    return Block(
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


def _classification_blocks(result: EvalResult, plots: Path) -> list[Block]:
    blocks = []
    for name, entry in result.fine_tuned.values.get("classification", {}).items():
        image = confusion_plot(entry, f"fine-tuned: {name}", plots / f"confusion_{name}.png")
        crow = [
            [
                NAMES.get(m.name, m.name),
                *[
                    f"{m.values['classification'][name][k]:.3f}"
                    for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1")
                ],
            ]
            for m in result.models.values()
            if name in m.values.get("classification", {})
        ]
        blocks.append(
            Block(f"Classification: {name}", ["model", "accuracy", "macro P", "macro R", "macro F1"], crow, image)
        )
    return blocks


def write_reports(cfg: ProjectConfig, result: EvalResult) -> tuple[Path, Path]:
    out = eval_dir(cfg)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    blocks = build_blocks(cfg, result, plots)
    title = f"Evaluation: {cfg.registry.name or cfg.output_path.parent.name}"
    return (
        write_atomic(out / "report.md", to_markdown(title, blocks, out)),
        write_atomic(out / "report.html", to_html(title, blocks)),
    )
