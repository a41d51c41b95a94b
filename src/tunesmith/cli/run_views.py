"""The panel that ends `tunesmith run`: data, the training curve, before/after, gates, what to do next."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.cli.views import NAMES, ci_text
from tunesmith.console import out

_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    """The values as a row of block characters, lowest ▁, highest █."""
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(_BARS[min(len(_BARS) - 1, int((v - low) / span * (len(_BARS) - 1) + 0.5))] for v in values)


def _eval_losses(path: Path) -> list[float]:
    import csv

    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return [float(r["eval_loss"]) for r in csv.DictReader(fh) if r.get("eval_loss")]


def _minutes(seconds: float) -> str:
    whole = round(seconds)  # rounded once: 839.8 s is 14 min 0 s, not 13 min 60 s
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60} s"


def print_run_summary(cfg: Any, gates: list[Any], registered: tuple[str, Any, Any] | None) -> None:
    """One panel at the end of `tunesmith run`: data, training curve, before/after, gates, what to do next.
    `registered`: (name, version, model card path or None) of the version registered; None when nothing was."""
    from rich.panel import Panel

    from tunesmith.evaluate.gate import GateResult
    from tunesmith.paths import eval_dir

    lines = _data_lines(cfg) + _training_lines(cfg) + _evaluation_lines(cfg)
    failed = GateResult(gates).failed
    warned = [g.name for g in gates if not g.blocking and g.passed is False]
    passed = sum(1 for g in gates if g.passed)
    gate_line = f"{passed} passed" + (f", [red]failed: {', '.join(failed)}[/]" if failed else "")
    gate_line += f", [yellow]warnings: {', '.join(warned)}[/]" if warned else ""
    lines.append(f"[bold]gates[/]       {gate_line}  ({eval_dir(cfg) / 'report.html'})")
    from tunesmith.pipeline import STAGES, load_state

    state = load_state(cfg)
    times = [f"{stage} {_minutes(state[stage]['seconds'])}" for stage in STAGES if "seconds" in state.get(stage, {})]
    if times:
        lines.append("[bold]time[/]        " + " · ".join(times) + "  (the last run of each stage)")
    config = cfg.config_path or "tunesmith.yaml"
    if registered:
        name, version, card = registered
        lines.append(f"[bold]registered[/]  {name} v{version}" + (f"  (model card: {card})" if card else ""))
        lines.append(
            f"[bold]serve it[/]    tunesmith registry promote {config} {version} --to production && "
            f"tunesmith serve {config}"
        )
    elif failed:
        lines.append("[bold]registered[/]  nothing: a blocking gate failed")
    out.print(
        Panel("\n".join(lines), title="tunesmith run: summary", title_align="left", expand=False), highlight=False
    )


def _data_lines(cfg: Any) -> list[str]:
    import json

    from tunesmith.paths import data_dir

    check, split = data_dir(cfg) / "check.json", data_dir(cfg) / "split.json"
    if not (check.exists() and split.exists()):
        return []
    c, s = json.loads(check.read_text()), json.loads(split.read_text())
    q = c.get("quality", {})
    sizes = " / ".join(f"{v['records']} {k}" for k, v in s["splits"].items())
    pii = sum((q.get("pii_counts") or {}).values())
    notes = [f"{q.get('exact_duplicates', 0)} exact and {q.get('near_duplicates', 0)} near duplicates"]
    if pii:
        notes.append(f"{pii} PII findings ({', '.join(sorted(q['pii_counts']))})")
    if s.get("leaking_pairs"):
        notes.append(f"[yellow]{s['leaking_pairs']} near-duplicate pairs across splits[/]")
    return [
        f"[bold]data[/]        {c['records']['valid']} valid, {c['records']['rejected']} rejected; {sizes}; "
        + "; ".join(notes)
        + f"  ({data_dir(cfg) / 'report.md'})"
    ]


def _training_lines(cfg: Any) -> list[str]:
    import json

    from tunesmith.paths import train_dir

    meta_path = train_dir(cfg) / "metadata.json"
    if not meta_path.exists():
        return []
    m = json.loads(meta_path.read_text())
    losses = _eval_losses(train_dir(cfg) / "metrics.csv")
    curve = f"  {sparkline(losses)}" if len(losses) > 1 else ""
    val = (
        f"; validation loss {m['eval_loss_first']:.3f} → {m['eval_loss_best']:.3f}{curve}"
        if m.get("eval_loss_first") is not None and m.get("eval_loss_best") is not None
        else ""
    )
    if m.get("eval_task_metric_best") is not None:
        val += f"; validation task metric {m['eval_task_metric_first']:.3f} → {m['eval_task_metric_best']:.3f}"
    lines = [
        f"[bold]training[/]    {m['method']} {m['adapter']}, {m['steps']} steps in "
        f"{_minutes(m.get('train_runtime_s') or 0)}{val}  ({train_dir(cfg) / 'loss.png'})"
    ]
    fit = m.get("fit") or {}
    if fit.get("choices"):
        chosen = ", ".join(f"{c['setting'].split('.')[-1]} {c['value']}" for c in fit["choices"])
        lines.append(
            f"[bold]chosen[/]      {chosen}; {fit['estimate_gb']:.1f} of {fit['budget_gb']:.1f} GB "
            f"planned  ({train_dir(cfg) / 'fit.json'})"
        )
    return lines


def _evaluation_lines(cfg: Any) -> list[str]:
    from tunesmith.evaluate.result import metrics_path, read_eval

    if not metrics_path(cfg).exists():
        return []
    r = read_eval(cfg)
    cells = [f"{NAMES.get(m.name, m.name)} {ci_text(m.task_metric)}" for m in r.models.values()]
    lines = [
        f"[bold]{r.fine_tuned.task_metric_name.replace('_', ' ')}[/]  "
        + " · ".join(cells)
        + f"  ({r.test_examples} test examples)"
    ]
    if r.task == "classification":
        f1 = [
            f"{NAMES.get(m.name, m.name)} {m.values['classification']['label']['macro_f1']:.3f}"
            for m in r.models.values()
            if "classification" in m.values
        ]
        lines.append("[bold]macro-F1[/]    " + " · ".join(f1))
    if r.cost:
        from tunesmith.evaluate.cost import roi_lines

        lines.append("[bold]cost[/]        " + " ".join(roi_lines(r.cost)))
    return lines
