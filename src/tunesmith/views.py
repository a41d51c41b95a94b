"""Rich terminal views of stage results (kept out of the stages so they stay printable-free)."""

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
        table.add_row(f["file"], f["format"] or "[red]unknown[/]", f["split"], str(f["records"]), str(f["valid"]),
                      f"[red]{f['rejected']}[/]" if f["rejected"] else "0")
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
    quality.add_row("leakage between splits",
                    str(q["leakage"]["pairs"]) if q["leakage"]["checked"] else "n/a (one split)")
    pii = ", ".join(f"{k} {v}" for k, v in sorted(q["pii_counts"].items())) or "none"
    quality.add_row("PII", pii)
    length = q.get("length")
    if length and length.get("measured"):
        quality.add_row("tokens p50 / p95 / max", f"{length['p50']} / {length['p95']} / {length['max']}")
        quality.add_row(f"over max_length ({length['max_length']})", str(length["over_max_length"]))
    labels = q.get("labels")
    if labels and labels.get("counts"):
        quality.add_row(f"classes of {labels['field']} (most/least)", f"{labels['classes']} ({labels['imbalance_ratio']}×)")
    out.print(quality)
    if report["warnings"] and not brief:
        kinds = Counter(_kind(w["message"]) for w in report["warnings"])
        out.print(f"[yellow]{len(report['warnings']) + report['warnings_omitted']} warnings:[/] "
                  + ", ".join(f"{k} ×{v}" for k, v in kinds.most_common()))
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
    out.print(f"dropped exact duplicates: {summary['dropped_exact_duplicates']}; "
              f"pairs leaking across splits: {summary['leaking_pairs']}. Files in {out_dir}")


def print_prepare(summary: dict[str, Any]) -> None:
    table = Table(title=f"Prepared for training (max_length {summary['max_length']}, "
                        f"packing {'on' if summary['packing'] else 'off'})", header_style="bold")
    for col in ("split", "records", "dropped (too long)", "sequences", "tokens", "trained tokens", "windows",
                "packing efficiency"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for name in ("train", "validation"):
        s = summary[name]
        eff = f"{s['packing_efficiency']:.1%}" if s["packing_efficiency"] is not None else "-"
        table.add_row(name, str(s["records"]), str(s["dropped_too_long"]), str(s["sequences"]), str(s["tokens"]),
                      str(s["trained_tokens"]), str(s["windows"]), eff)
    out.print(table)


def print_train(result: Any) -> None:
    m = result.metadata
    table = Table(title=f"Training ({m['method']}, {m['adapter']})", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("steps", f"{m['steps']} of {m['max_steps']}" + (" (stopped early)" if m["stopped_early"] else ""))
    if m["train_loss_first"] is not None:
        table.add_row("training loss", f"{m['train_loss_first']:.4f} → {m['train_loss_last']:.4f}")
    if m["eval_loss_first"] is not None:
        table.add_row("validation loss (before → best)", f"{m['eval_loss_first']:.4f} → {m['eval_loss_best']:.4f}")
    table.add_row("time", f"{m['train_runtime_s']:.0f} s")
    table.add_row("alarms", str(len(m["alarms"])))
    out.print(table)
    out.print(f"model: {result.model_dir}   curves: {result.run_dir / 'loss.png'}")


_NAMES = {"base": "base", "few_shot": "few-shot", "fine_tuned": "fine-tuned"}


def _ci(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "-"
    low, high = entry["ci95"]
    return f"{entry['mean']:.3f} [{low:.2f}, {high:.2f}]"


def print_eval(results: dict[str, Any], out_dir: Path) -> None:
    models = results["models"]
    first = models["fine_tuned"]
    table = Table(title=f"Before / after on {results['test_examples']} test examples (mean [95% CI]); "
                        f"task metric = {first.get('task_metric_name', 'task_metric')}", header_style="bold")
    table.add_column("metric")
    for name in models:
        table.add_column(_NAMES.get(name, name), justify="right")
    for key in [k for k in first if isinstance(first[k], dict) and "mean" in first[k]]:
        table.add_row(key.replace("field:", "field "), *[_ci(models[n].get(key)) for n in models])
    for key in ("bleu", "latency_p50_s", "tokens_per_s", "stopped_by_end_token"):
        table.add_row(key, *[str(models[n].get(key)) for n in models])
    if "heldout" in first:
        table.add_row("held-out loss / ppl", *[f"{models[n]['heldout']['loss']:.3f} / {models[n]['heldout']['perplexity']:.2f}"
                                              if "heldout" in models[n] else "-" for n in models])
    out.print(table)
    for name, comp in results.get("comparisons", {}).items():
        diff = comp.get("task_metric_diff")
        extra = f"; task metric {diff['mean']:+.3f} [{diff['ci95'][0]:+.3f}, {diff['ci95'][1]:+.3f}]" if diff else ""
        out.print(f"{name.replace('_', ' ')}: McNemar p = {comp['mcnemar_p']:.2g} on {comp['metric']}{extra}")
    if results.get("suites"):
        suites = Table(title="Suites: pass rate (mean [95% CI])", header_style="bold")
        for col in ("suite", "context", "base", "fine-tuned", "relative change"):
            suites.add_column(col, justify="left" if col in ("suite", "context") else "right")
        for suite, entry in results["suites"].items():
            change = entry.get("relative_change")
            suites.add_row(suite.replace("_", " "), entry["context"],
                           *[_ci(entry.get(n, {}).get("pass_rate")) for n in ("base", "fine_tuned")],
                           "-" if change is None else f"{change:+.1%}")
        out.print(suites)
    out.print(f"report: {out_dir / 'report.html'}   per-example outputs: {out_dir}")


def print_gates(rows: list[Any]) -> None:
    table = Table(title="Quality gates", header_style="bold")
    for col in ("gate", "measured", "threshold", "result", "note"):
        table.add_column(col, no_wrap=col != "note")
    for r in rows:
        result = {True: "[green]pass[/]", False: "[red]FAIL[/]" if r.blocking else "[yellow]warn[/]",
                  None: "[dim]not measured[/]"}[r.passed]
        table.add_row(r.name, "-" if r.measured is None else f"{r.measured:.3f}", r.threshold, result,
                      r.note + ("" if r.blocking else " (warning only)"))
    out.print(table)


def print_human(results: dict[str, Any], folder: Path) -> None:
    a, b = results["models"]
    w = results["win_rate"]
    out.print(f"{len(results['raters'])} raters, {results['items_judged']}/{results['items']} items judged; "
              f"votes: {a} {results['votes'][a]}, {b} {results['votes'][b]}, tie {results['votes']['tie']}")
    out.print(f"[bold]{_NAMES.get(a, a)} win rate vs {_NAMES.get(b, b)}: {w['mean']:.3f} "
              f"[{w['ci95'][0]:.2f}, {w['ci95'][1]:.2f}][/] (ties count half)")
    table = Table(title="Rubric means (1-5, 95% CI)", header_style="bold")
    table.add_column("criterion")
    for model in (a, b):
        table.add_column(_NAMES.get(model, model), justify="right")
    for c in results["rubric"][a]:
        table.add_row(c, *[_ci(results["rubric"][model][c]) for model in (a, b)])
    out.print(table)
    if results["agreement"]:
        agree = Table(title="Inter-rater agreement", header_style="bold")
        for col in ("rating", "Cohen's kappa", "Fleiss' kappa", "Krippendorff's alpha"):
            agree.add_column(col, justify="right" if col != "rating" else "left")
        for what, stats in results["agreement"].items():
            agree.add_row(what, *[str(stats.get(k, "-")) for k in ("cohen_kappa", "fleiss_kappa", "krippendorff_alpha")])
        out.print(agree)
    for warning in results["warnings"]:
        out.print(f"[yellow]warning:[/] {warning}")
    out.print(f"results: {folder / 'results.json'}")


def print_versions(rows: list[dict[str, Any]]) -> None:
    table = Table(title="Registered versions", header_style="bold")
    for col in ("version", "created", "aliases", "gates", "task metric", "adapter"):
        table.add_column(col)
    for r in rows:
        gates = "[green]passed[/]" if r["gates"] == "passed" else f"[red]{r['gates']}[/]"
        table.add_row(f"v{r['version']}", r["created"], ", ".join(r["aliases"]) or "-", gates,
                      r["task_metric"] or "-", r["adapter"] or "-")
    out.print(table if rows else "no versions registered yet; run `tunesmith registry add CONFIG`")


def print_history(events: list[dict[str, Any]]) -> None:
    table = Table(title="Alias history", header_style="bold")
    for col in ("#", "time", "action", "alias", "from", "to", "user", "reason"):
        table.add_column(col)
    for e in events:
        table.add_row(str(e["seq"]), e["time"], e["action"], e["alias"], f"v{e['previous']}" if e["previous"] else "-",
                      f"v{e['version']}" if e["version"] else "-", e.get("user", ""), e.get("reason", ""))
    out.print(table)


def print_drift(result: dict[str, Any], path: Path) -> None:
    table = Table(title=f"Input drift: {result['recent']} recent prompts vs training "
                        f"(calibrated on {result['calibration']} held-out)", header_style="bold")
    for col in ("feature", "held-out median", "recent median", "KS p", "PSI", "verdict"):
        table.add_column(col, justify="left" if col == "feature" else "right")
    for key, label in (("similarity", "similarity to training"), ("length", "length (tokens)")):
        if key in result:
            d = result[key]
            table.add_row(label, str(d["calibration_median"]), str(d["recent_median"]), f"{d['p_value']:.2g}",
                          str(d["psi"]), "[red]DRIFT[/]" if d["drift"] else "[green]ok[/]")
    out.print(table)
    for x in result["least_like_training"][:3]:
        out.print(f"  least like training ({x['similarity']:.2f}): {x['prompt'][:100]!r}", highlight=False)
    for hour, q in list(result.get("output_quality", {}).items())[-5:]:
        out.print(f"  {hour}: format failures {q['format_fail']}, refusals {q['refused']}", highlight=False)
    out.print(f"details: {path}")
