"""Rich terminal views of stage results (kept out of the stages so they stay printable-free)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from tunesmith.console import err, out
from tunesmith.evaluate.result import EvalResult, Interval


def print_train(result: Any) -> None:
    m = result.metadata
    table = Table(title=f"Training ({m['method']}, {m['adapter']})", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("steps", f"{m['steps']} of {m['max_steps']}" + (" (stopped early)" if m["stopped_early"] else ""))
    if m["train_loss_first"] is not None:
        table.add_row("training loss", f"{m['train_loss_first']:.4f} → {m['train_loss_last']:.4f}")
    if m["eval_loss_first"] is not None:
        table.add_row("validation loss (before → kept)", f"{m['eval_loss_first']:.4f} → {m['eval_loss_best']:.4f}")
    if m.get("eval_task_metric_best") is not None:
        table.add_row(
            "validation task metric (before → kept)",
            f"{m['eval_task_metric_first']:.3f} → {m['eval_task_metric_best']:.3f}",
        )
    table.add_row("time", f"{m['train_runtime_s']:.0f} s")
    table.add_row("alarms", str(len(m["alarms"])))
    out.print(table)
    out.print(f"model: {result.model_dir}   curves: {result.run_dir / 'loss.png'}")
    for name, where in (m.get("report_to") or {}).items():
        out.print(
            f"{name}: {where}" + ("  (tensorboard --logdir " + where + ")" if name == "tensorboard" else ""),
            highlight=False,
        )


NAMES = {"base": "base", "few_shot": "few-shot", "fine_tuned": "fine-tuned"}


def ci_text(entry: Interval | dict[str, Any] | None) -> str:
    entry = Interval.of(entry) if isinstance(entry, dict) else entry
    if entry is None:
        return "-"
    return f"{entry.mean:.3f} [{entry.low:.2f}, {entry.high:.2f}]"


def print_eval(result: EvalResult, out_dir: Path, *, payback: bool = True) -> None:
    """The before/after table, the paired comparisons, the suites, the cost (with the payback unless the
    caller's summary says it) and the previous task."""
    out.print(_models_table(result))
    for name, comp in result.data.get("comparisons", {}).items():
        diff = Interval.of(comp.get("task_metric_diff"))
        extra = f"; task metric {diff.mean:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}]" if diff else ""
        out.print(f"{name.replace('_', ' ')}: McNemar p = {comp['mcnemar_p']:.2g} on {comp['metric']}{extra}")
    if result.suites:
        suites = Table(title="Suites: pass rate (mean [95% CI])", header_style="bold")
        for col in ("suite", "context", "base", "fine-tuned", "relative change", "one-sided bound", "lost / gained"):
            suites.add_column(col, justify="left" if col in ("suite", "context") else "right")
        for suite in result.suites.values():
            suites.add_row(*suite.cells(ci_text))
        out.print(suites)
    if result.cost:
        from tunesmith.evaluate.cost import COST_HEADER, cost_rows, roi_lines

        costs = Table(title="Cost per 1,000 requests (docs/cost.md)", header_style="bold")
        for col in COST_HEADER:
            costs.add_column(col, justify="left" if col == "model" else "right")
        for row in cost_rows(result.cost):
            costs.add_row(*row)
        out.print(costs)
        if payback:
            out.print(" ".join(roi_lines(result.cost)), highlight=False)
    prev = result.previous_task
    if prev and "fine_tuned" in prev:
        name = prev["fine_tuned"]["task_metric_name"].replace("_", " ")
        out.print(
            f"previous version's task ({prev['version']}, {prev['examples']} test examples): {name} "
            f"{ci_text(prev['base']['task_metric'])} → {ci_text(prev['fine_tuned']['task_metric'])}",
            highlight=False,
        )
    out.print(f"report: {out_dir / 'report.html'}   per-example outputs: {out_dir}")


def _models_table(result: EvalResult) -> Table:
    models, first = list(result.models.values()), result.fine_tuned
    table = Table(
        title=f"Before / after on {result.test_examples} test examples (mean [95% CI]); "
        f"task metric = {first.task_metric_name}",
        header_style="bold",
    )
    table.add_column("metric")
    for m in models:
        table.add_column(NAMES.get(m.name, m.name), justify="right")
    for key in [k for k in first.values if first.interval(k) is not None]:
        table.add_row(key.replace("field:", "field "), *[ci_text(m.interval(key)) for m in models])
    for key in ("bleu", "latency_p50_s", "time_to_first_token_p50_s", "tokens_per_s", "stopped_by_end_token"):
        table.add_row(key, *[str(m.values.get(key)) for m in models])
    for task in first.by_task:
        table.add_row(f"task metric: {task}", *[ci_text(m.by_task.get(task)) for m in models])
    for task, entry in result.lm_eval.get("tasks", {}).items():
        cells = [
            f"{entry[m.name]['value']:.3f} ± {entry[m.name]['stderr'] or 0:.3f}" if m.name in entry else "-"
            for m in models
        ]
        table.add_row(f"lm-eval {task} ({entry['metric']})", *cells)
    if "win_rate_vs_base" in first.values:
        w = first.values["win_rate_vs_base"]
        table.add_row(
            "win rate vs base (judge)",
            *["-" for m in models if m.name != "fine_tuned"],
            f"{ci_text(w)} ({w['wins']}/{w['ties']}/{w['losses']})",
        )
    if "heldout" in first.values:
        table.add_row(
            "held-out loss / ppl",
            *[
                f"{m.values['heldout']['loss']:.3f} / {m.values['heldout']['perplexity']:.2f}"
                if "heldout" in m.values
                else "-"
                for m in models
            ],
        )
    return table


def print_gates(rows: list[Any]) -> None:
    table = Table(title="Quality gates", header_style="bold")
    for col in ("gate", "measured", "threshold", "result", "note"):
        table.add_column(col, no_wrap=col != "note")
    for r in rows:
        result = {
            True: "[green]pass[/]",
            False: "[red]FAIL[/]" if r.blocking else "[yellow]warn[/]",
            None: "[dim]not measured[/]",
        }[r.passed]
        table.add_row(
            r.name,
            "-" if r.measured is None else f"{r.measured:.3f}",
            r.threshold,
            result,
            r.note + ("" if r.blocking else " (warning only)"),
        )
    out.print(table)
    for r in rows:
        if r.passed is False and r.advice:
            out.print(f"[bold]{r.name}[/] failed; to fix it: {r.advice}", highlight=False)


def print_human(results: dict[str, Any], folder: Path) -> None:
    a, b = results["models"]
    w = results["win_rate"]
    out.print(
        f"{len(results['raters'])} raters, {results['items_judged']}/{results['items']} items judged; "
        f"votes: {a} {results['votes'][a]}, {b} {results['votes'][b]}, tie {results['votes']['tie']}"
    )
    out.print(
        f"[bold]{NAMES.get(a, a)} win rate vs {NAMES.get(b, b)}: {w['mean']:.3f} "
        f"[{w['ci95'][0]:.2f}, {w['ci95'][1]:.2f}][/] (ties count half)"
    )
    table = Table(title="Rubric means (1-5, 95% CI)", header_style="bold")
    table.add_column("criterion")
    for model in (a, b):
        table.add_column(NAMES.get(model, model), justify="right")
    for c in results["rubric"][a]:
        table.add_row(c, *[ci_text(results["rubric"][model][c]) for model in (a, b)])
    out.print(table)
    if results["agreement"]:
        agree = Table(title="Inter-rater agreement", header_style="bold")
        for col in ("rating", "Cohen's kappa", "Fleiss' kappa", "Krippendorff's alpha"):
            agree.add_column(col, justify="right" if col != "rating" else "left")
        for what, stats in results["agreement"].items():
            agree.add_row(
                what, *[str(stats.get(k, "-")) for k in ("cohen_kappa", "fleiss_kappa", "krippendorff_alpha")]
            )
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
        table.add_row(
            f"v{r['version']}",
            r["created"],
            ", ".join(r["aliases"]) or "-",
            gates,
            r["task_metric"] or "-",
            r["adapter"] or "-",
        )
    out.print(table if rows else "no versions registered yet; run `tunesmith registry add CONFIG`")


def print_history(events: list[dict[str, Any]]) -> None:
    table = Table(title="Alias history", header_style="bold")
    for col in ("#", "time", "action", "alias", "from", "to", "user", "reason"):
        table.add_column(col)
    for e in events:
        table.add_row(
            str(e["seq"]),
            e["time"],
            e["action"],
            e["alias"],
            f"v{e['previous']}" if e["previous"] else "-",
            f"v{e['version']}" if e["version"] else "-",
            e.get("user", ""),
            e.get("reason", ""),
        )
    out.print(table)


def print_drift(result: dict[str, Any], path: Path) -> None:
    table = Table(
        title=f"Input drift: {result['recent']} recent prompts vs training "
        f"(calibrated on {result['calibration']} held-out)",
        header_style="bold",
    )
    for col in ("feature", "held-out median", "recent median", "KS p", "PSI", "verdict"):
        table.add_column(col, justify="left" if col == "feature" else "right")
    for key, label in (("similarity", "similarity to training"), ("length", "length (tokens)")):
        if key in result:
            d = result[key]
            table.add_row(
                label,
                str(d["calibration_median"]),
                str(d["recent_median"]),
                f"{d['p_value']:.2g}",
                str(d["psi"]),
                "[red]DRIFT[/]" if d["drift"] else "[green]ok[/]",
            )
    out.print(table)
    for x in result["least_like_training"][:3]:
        out.print(f"  least like training ({x['similarity']:.2f}): {x['prompt'][:100]!r}", highlight=False)
    for hour, q in list(result.get("output_quality", {}).items())[-5:]:
        out.print(f"  {hour}: format failures {q['format_fail']}, refusals {q['refused']}", highlight=False)
    out.print(f"details: {path}")


def _duration(hours: float | None) -> str:
    if hours is None:
        return "?"
    if hours < 1 / 3600:
        return "< 1 s"
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    return f"{hours * 60:.1f} min" if hours < 1 else f"{hours:.1f} h"


def print_fit(fit: dict[str, Any], title: str = "Pre-flight: settings chosen") -> None:
    """The settings the pre-flight check chose (those left to auto), with why, and the memory plan."""
    table = Table(
        title=f"{title} · {fit['estimate_gb']:.1f} GB estimated of {fit['budget_gb']:.1f} GB "
        f"({fit['budget_source']}) · {fit['total_steps']} optimizer steps",
        title_justify="left",
        header_style="bold",
    )
    table.add_column("setting")
    table.add_column("value", justify="right")
    table.add_column("why")
    for choice in fit["choices"]:
        table.add_row(choice["setting"], str(choice["value"]), choice["why"])
    out.print(table)
    for warning in fit.get("warnings", []):
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)


def print_plan(plan: Any) -> None:
    """`tunesmith advise --config`: memory here per method, then time and cost on the GPU table."""
    from tunesmith.estimate.memory import GB

    d, m = plan.data, plan.machine
    out.print(
        f"\n[bold]Estimate[/] for {plan.model} ({plan.arch.params / 1e6:,.0f}M parameters), "
        f"configured: {plan.configured}",
        highlight=False,
    )
    out.print(
        f"  data: {d.tokens_per_epoch:,} tokens per epoch in {d.sequences:,} sequences of up to {d.seq_len} "
        f"tokens; LM head at {d.keep_share:.0%} of positions ({d.source}); {plan.epochs:g} epochs",
        highlight=False,
    )
    table = Table(title=f"Peak memory here ({m.description})", title_justify="left")
    names = ["runtime", "weights", "gradients", "optimizer", "bf16_weight_copies", "activations", "logits"]
    table.add_column("method")
    for n in names:
        table.add_column(n.replace("_", " "), justify="right")
    table.add_column("total", justify="right")
    table.add_column("fits", justify="center")
    for method, est in plan.here.items():
        label = method + (" (configured)" if method == plan.configured else "")
        if est is None:
            table.add_row(label, *[""] * len(names), "—", "[dim]needs a CUDA GPU[/]")
            continue
        total = est.total / GB
        fits = "[green]yes[/]" if total <= m.memory_gb else "[red]no[/]"
        table.add_row(
            label,
            *[f"{est.parts[n] / GB:.2f}" if n in est.parts else "" for n in names],
            f"[bold]{total:.2f} GB[/]",
            fits,
        )
    out.print(table)
    if plan.fit.get("choices"):
        print_fit(plan.fit, title="Settings `tunesmith train` would choose here")
    out.print(
        f"  time here: {_duration(plan.hours_here())} at {plan.tokens_per_s or 0:,.0f} tokens/s "
        f"({plan.throughput_source})",
        highlight=False,
    )
    for caveat in plan.caveats:
        out.print(f"  [dim]note: {caveat}[/]", highlight=False)
    gpus = Table(title=f"On GPUs (memory · time · cost; at {plan.gpu_mfu:.0%} of the bf16 peak)", title_justify="left")
    gpus.add_column("GPU")
    for method in ("full", "lora", "qlora"):
        gpus.add_column(method + (" ←" if method == plan.configured else ""), justify="right")
    rows: dict[str, dict[str, Any]] = {}
    for row in plan.gpu_rows:
        rows.setdefault(row["gpu"], {})[row["method"]] = row
    for name, by_method in rows.items():
        cells = []
        for method in ("full", "lora", "qlora"):
            r = by_method[method]
            cost = f"${r['usd']:,.2f}" if r["usd"] >= 0.01 else "< $0.01"
            text = f"{r['memory_gb']:.1f} GB · {_duration(r['hours'])} · {cost}"
            cells.append(text if r["fits"] else f"[red]{r['memory_gb']:.1f} GB: does not fit[/]")
        gpus.add_row(name, *cells)
    out.print(gpus)
    out.print("[dim]memory model and its check against measured peaks: docs/estimate.md[/]")
