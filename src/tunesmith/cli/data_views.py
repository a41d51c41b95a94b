"""Rich terminal views of the data stage's results: check, split, prepare (replay and refusals)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from rich.table import Table

from tunesmith.console import out

SHOWN = 20


def print_check(report: dict[str, Any], out_dir: Path, brief: bool = False) -> None:
    rec, q = report["records"], report["quality"]
    table = Table(title="Data check", show_header=True, header_style="bold")
    for col in ("file", "format", "split", "records", "valid", "rejected"):
        table.add_column(col, justify="right" if col in ("records", "valid", "rejected") else "left")
    for f in report["files"]:
        table.add_row(
            f["file"],
            f["format"] or "[red]unknown[/]",
            f["split"],
            str(f["records"]),
            str(f["valid"]),
            f"[red]{f['rejected']}[/]" if f["rejected"] else "0",
        )
    out.print(table)
    if report["errors"] and not brief:
        out.print(f"[bold red]{rec['rejected']} rejected[/] (reasons below; records kept in {report['rejects_file']}):")
        for e in report["errors"][:SHOWN]:
            fld = f" [cyan]{e['field']}[/]" if e["field"] else ""
            out.print(f"  {e['file']}:{e['line']}{fld}: {e['message']}", highlight=False)
        if len(report["errors"]) > SHOWN:
            out.print(f"  ... {len(report['errors']) - SHOWN} more in {out_dir / 'check.json'}")
    quality = Table(title="Quality", show_header=False)
    quality.add_column("check")
    quality.add_column("result", justify="right")
    quality.add_row("exact duplicates", str(q["exact_duplicates"]))
    quality.add_row("near-duplicates", str(q["near_duplicates"]))
    quality.add_row(
        "leakage between splits", str(q["leakage"]["pairs"]) if q["leakage"]["checked"] else "n/a (one split)"
    )
    pii = ", ".join(f"{k} {v}" for k, v in sorted(q["pii_counts"].items())) or "none"
    quality.add_row("PII", pii)
    length = q.get("length")
    if length and length.get("measured"):
        quality.add_row("tokens p50 / p95 / max", f"{length['p50']} / {length['p95']} / {length['max']}")
        quality.add_row(f"over max_length ({length['max_length']})", str(length["over_max_length"]))
    labels = q.get("labels")
    if labels and labels.get("counts"):
        quality.add_row(
            f"classes of {labels['field']} (most/least)", f"{labels['classes']} ({labels['imbalance_ratio']}×)"
        )
    out.print(quality)
    if report["warnings"] and not brief:
        kinds = Counter(_kind(w["message"]) for w in report["warnings"])
        out.print(
            f"[yellow]{len(report['warnings']) + report['warnings_omitted']} warnings:[/] "
            + ", ".join(f"{k} ×{v}" for k, v in kinds.most_common())
        )
    verdict = "[green]all valid[/]" if not rec["rejected"] else f"[red]{rec['rejected']} rejected[/]"
    out.print(f"{rec['total']} records: {rec['valid']} valid, {verdict}. Report: {out_dir / 'report.md'}")


def _kind(message: str) -> str:
    for key in ("near-duplicate", "duplicate", "leakage", "contains", "max_length", "in a row", "no user turn"):
        if key in message:
            return {"contains": "PII", "max_length": "too long", "in a row": "repeated role"}.get(key, key)
    return "other"


def print_split(summary: dict[str, Any], out_dir: Path) -> None:
    table = Table(title=f"Split (seed {summary['seed']})", header_style="bold")
    table.add_column("split")
    table.add_column("records", justify="right")
    table.add_column("labels")
    for name, s in summary["splits"].items():
        labels = ", ".join(f"{k} {v}" for k, v in sorted(s["labels"].items())) if s["labels"] else ""
        table.add_row(name, str(s["records"]), labels)
    out.print(table)
    out.print(
        f"dropped exact duplicates: {summary['dropped_exact_duplicates']}; "
        f"pairs leaking across splits: {summary['leaking_pairs']}. Files in {out_dir}"
    )


def print_prepare(summary: dict[str, Any]) -> None:
    table = Table(
        title=f"Prepared for training (max_length {summary['max_length']}, "
        f"packing {'on' if summary['packing'] else 'off'})",
        header_style="bold",
    )
    for col in (
        "split",
        "records",
        "dropped (too long)",
        "sequences",
        "tokens",
        "trained tokens",
        "windows",
        "packing efficiency",
    ):
        table.add_column(col, justify="right" if col != "split" else "left")
    for name in ("train", "validation"):
        s = summary[name]
        eff = f"{s['packing_efficiency']:.1%}" if s["packing_efficiency"] is not None else "-"
        table.add_row(
            name,
            str(s["records"]),
            str(s["dropped_too_long"]),
            str(s["sequences"]),
            str(s["tokens"]),
            str(s["trained_tokens"]),
            str(s["windows"]),
            eff,
        )
    out.print(table)
    if summary.get("max_length_reason") and summary["max_length_reason"] != "set in the config":
        out.print(f"max_length {summary['max_length']} (auto): {summary['max_length_reason']}", highlight=False)
    if summary.get("system_prompt"):
        out.print(
            f"system prompt added to records without one (data.system_prompt): {summary['system_prompt']!r}",
            highlight=False,
        )
    replay = summary.get("replay")
    if replay:
        where = "the base model's own answers to general prompts" if replay["source"] == "self" else replay["source"]
        out.print(
            f"replay: {replay['records']} general conversations, {replay['tokens']} tokens "
            f"({replay['ratio']:.1%} of training tokens) from {where}; data.replay: false turns it off",
            highlight=False,
        )
        if replay.get("loss_weights"):
            w = replay["loss_weights"]
            out.print(
                f"replay: balanced to carry {replay['ratio_asked']:.0%} of the loss (weight per trained token: "
                f"task {w.get('task', 1):.2f}, replay {w.get('replay', 1):.2f}); "
                "data.replay.balance_loss: false trains on raw tokens",
                highlight=False,
            )
        if replay.get("short"):
            out.print(f"[yellow]replay: {replay['short']}[/]")
        if replay.get("refusals"):
            out.print(refusal_line(replay), highlight=False)
            if replay["refusals"].get("short"):
                out.print(f"[yellow]refusals: {replay['refusals']['short']}[/]")
        if replay.get("previous"):
            p = replay["previous"]
            out.print(
                f"replay: {p['records']} training conversations of {p['version']}, {p['tokens']} tokens "
                f"({p['ratio']:.1%} of training tokens; data.replay.previous)",
                highlight=False,
            )
    tasks = summary.get("tasks")
    if tasks:
        parts = ", ".join(f"{t} {v['records']} → {v['drawn']} ({v['share']:.0%})" for t, v in tasks["tasks"].items())
        out.print(f"tasks ({tasks['rule']}): {parts}", highlight=False)


def refusal_line(replay: dict[str, Any]) -> str:
    """What refusal replay added to training (data/refusals.py), in one line."""
    r = replay["refusals"]
    weight = (replay.get("loss_weights") or {}).get("refusal")
    loss = f", {r['ratio_asked']:.0%} of the loss" if weight else ""
    return (
        f"refusals: {r['records']} conversations ({r['in_task_context']} in the task's prompt, "
        f"{r['kinds'].get('comply', 0)} harmless ones answered), {r['tokens']} tokens ({r['ratio']:.1%} of "
        f"training tokens{loss}); data.replay.refusals: 0 turns them off"
    )
