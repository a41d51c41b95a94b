"""Quality gates: the measured numbers against the configured thresholds, blocking or warning."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.errors import TunesmithError


@dataclass
class GateRow:
    name: str
    measured: float | None
    threshold: str
    passed: bool | None  # None: not measured
    blocking: bool
    note: str = ""
    advice: str = ""  # what to change when it fails


def check_gates(cfg: ProjectConfig, metrics: dict[str, Any], training: dict[str, Any] | None = None) -> list[GateRow]:
    """One row per gate; a gate whose inputs were not measured says so instead of passing."""
    g = cfg.gate
    tuned = metrics["models"]["fine_tuned"]
    base = metrics["models"].get("base", {})
    task_ok = tuned["task_metric"]["mean"] > g.task_metric_min
    rows = [GateRow("task metric", tuned["task_metric"]["mean"], f"> {g.task_metric_min}", task_ok, True,
                    tuned.get("task_metric_name", "field_accuracy").replace("_", " "),
                    "" if task_ok else _learning_advice(cfg, training))]
    for task, entry in tuned.get("by_task", {}).items():
        minimum = g.task_metric_min_by_task.get(task, g.task_metric_min)
        rows.append(GateRow(f"task metric: {task}", entry["mean"], f"> {minimum}", entry["mean"] > minimum, True,
                            f"{entry['examples']} test examples of task {task}"))
    if "format_compliance" in tuned:
        value = tuned["format_compliance"]["mean"]
        rows.append(GateRow("format compliance", value, f"> {g.format_compliance_min}",
                            value > g.format_compliance_min, True,
                            "one of the labels" if metrics.get("task") == "classification" else "valid against the schema"))
    else:
        rows.append(GateRow("format compliance", None, f"> {g.format_compliance_min}", None, True,
                            "no eval.json_schema set"))
    suites = metrics.get("suites", {})
    rows.append(_safety_gate(cfg, suites.get("safety"), training))
    if "safety_plain_chat" in suites:
        rows.append(_suite_gate("safety, plain chat", suites["safety_plain_chat"], g.safety_pass_rate_min, False,
                                "", "probes without the task's system prompt"))
    regression = suites.get("regression")
    if regression and regression.get("relative_change") is not None:
        change, upper = regression["relative_change"], regression.get("relative_change_upper", regression["relative_change"])
        passed = upper >= -g.max_regression
        rows.append(GateRow("regression vs base", change, f">= -{g.max_regression:.0%}", passed, True,
                            f"relative change in pass rate on the {regression.get('base_passed', '?')} of "
                            f"{regression['fine_tuned']['probes']} general probes the base model passes "
                            f"(lost {regression.get('lost', '?')}, gained {regression.get('gained', '?')}); "
                            f"one-sided {g.confidence:.0%} bound {upper:+.1%}",
                            "" if passed else _forgetting_advice(cfg, training)))
    else:
        rows.append(GateRow("regression vs base", None, f">= -{g.max_regression:.0%}", None, True,
                            "eval.regression_suite is off" if not regression else "base passed no probe"))
    prev = metrics.get("previous_task")
    if prev and "change" in prev:
        drop = prev["change"]["mean"]
        passed = drop >= -g.max_previous_task_drop
        rows.append(GateRow("previous version's task", drop, f">= -{g.max_previous_task_drop:g}", passed, True,
                            f"change in {prev['fine_tuned']['task_metric_name'].replace('_', ' ')} on {prev['examples']} "
                            f"test examples of {prev['version']} (it {prev['base']['task_metric']['mean']:.3f}, "
                            f"this {prev['fine_tuned']['task_metric']['mean']:.3f})",
                            "" if passed else "raise data.replay.previous (now "
                            f"{cfg.data.replay.previous if cfg.data.replay else 0:g}) to replay more of its training "
                            "records; " + _forgetting_advice(cfg, training)))
    if "edge_cases" in suites:
        rows.append(_suite_gate("edge cases", suites["edge_cases"], g.edge_case_pass_rate_min, False, ""))
    if base.get("latency_p50_s") and tuned.get("latency_p50_s"):
        ratio = tuned["latency_p50_s"] / base["latency_p50_s"]
        rows.append(GateRow("latency vs base", round(ratio, 2), f"< {g.max_latency_ratio}x", ratio < g.max_latency_ratio,
                            False, "p50 latency ratio"))
    if training and any(a["kind"] in ("nan", "diverged") for a in training.get("alarms", [])):
        rows.append(GateRow("training health", None, "no divergence", False, True, "training diverged (see alarms)"))
    return rows


def _safety_gate(cfg: ProjectConfig, entry: dict[str, Any] | None, training: dict[str, Any] | None) -> GateRow:
    """Above the floor, or (when the base model is itself below the floor) not significantly less safe than it."""
    g = cfg.gate
    row = _suite_gate("safety pass rate", entry, g.safety_pass_rate_min, True, "eval.safety_suite is off")
    if row.passed is not False or not entry or "base" not in entry:
        return row
    base = entry["base"]["pass_rate"]["mean"]
    upper = entry.get("relative_change_upper")
    if base <= g.safety_pass_rate_min and upper is not None and upper >= -g.max_safety_regression:
        row.passed = True
        row.threshold = f"> {g.safety_pass_rate_min}, or the base's"
        row.note += (f"; under the floor, as the base model is ({base:.3f}), and not less safe than it (one-sided "
                     f"{g.confidence:.0%} bound {upper:+.1%}); a safer base model or refusal examples in the data "
                     "raise it")
        return row
    row.advice = ("add refusal examples for harmful requests to the training data; "
                  + _forgetting_advice(cfg, training, safety=True))
    return row


def _learning_advice(cfg: ProjectConfig, training: dict[str, Any] | None) -> str:
    """What makes a fine-tune learn its task better, with this run's values."""
    from tunesmith.train.adapters import learning_rate

    t = cfg.train
    epochs = (training or {}).get("epochs") or t.num_epochs
    lr = _chosen(training).get("train.learning_rate") or learning_rate(t)
    return (f"train longer (train.num_epochs, now {epochs:g})" if isinstance(epochs, (int, float))
            else "train longer (train.num_epochs)") + (
        f"; raise train.learning_rate (now {lr:g}; try {lr * 2:g}); add training records where the per-label or "
        "per-field report is weakest; compare with the few-shot baseline: if it is close, the data may not "
        "define the task")


def _chosen(training: dict[str, Any] | None) -> dict[str, Any]:
    """The settings the pre-flight check chose for this run."""
    return {c["setting"]: c["value"] for c in ((training or {}).get("fit") or {}).get("choices", [])}


def _forgetting_advice(cfg: ProjectConfig, training: dict[str, Any] | None, safety: bool = False) -> str:
    """What moves a fine-tune less far from its base model, with this run's values."""
    from tunesmith.train.adapters import learning_rate

    t, replay = cfg.train, cfg.data.replay
    chosen = _chosen(training)
    epochs = training.get("epochs") if training and training.get("epochs") else chosen.get("train.num_epochs", t.num_epochs)
    lr = chosen.get("train.learning_rate") or learning_rate(t)
    steps = []
    if t.method != "sft":  # replay mixes SFT data; a preference method is held near its base by beta
        steps.append(f"raise train.dpo_beta (now {t.dpo_beta:g}; try {t.dpo_beta * 2:g}) to stay closer to the base model")
    elif replay is None or replay.ratio == 0:
        steps.append("turn replay on (data.replay: {ratio: 0.2}) to keep general examples in training")
    elif replay.ratio < 0.5:
        steps.append(f"raise data.replay.ratio (now {replay.ratio:g}; try {min(0.5, round(replay.ratio * 1.5, 2)):g})")
    steps.append(f"train fewer epochs (train.num_epochs, now {epochs:g})" if isinstance(epochs, (int, float))
                 else "train fewer epochs (train.num_epochs)")
    steps.append(f"lower train.learning_rate (now {lr:g}; try {lr / 2:g})")
    return "; ".join(steps) + ("" if safety else "; then `tunesmith run` again")


def _suite_gate(name: str, entry: dict[str, Any] | None, minimum: float, blocking: bool, off: str,
                note: str = "") -> GateRow:
    if not entry or "fine_tuned" not in entry:
        return GateRow(name, None, f"> {minimum}", None, blocking, off)
    tuned, base = entry["fine_tuned"], entry.get("base")
    value = tuned["pass_rate"]["mean"]
    detail = f"{tuned['passed']}/{tuned['probes']} probes" + (f"; base {base['pass_rate']['mean']:.3f}" if base else "")
    return GateRow(name, value, f"> {minimum}", value > minimum, blocking, f"{detail}{'; ' + note if note else ''}")


def gates_passed(rows: list[GateRow]) -> bool:
    """No blocking gate failed (gates that were not measured do not block)."""
    return not any(r.blocking and r.passed is False for r in rows)


def load_metrics(cfg: ProjectConfig) -> dict[str, Any]:
    from tunesmith.paths import eval_dir

    path = eval_dir(cfg) / "metrics.json"
    if not path.exists():
        raise TunesmithError(f"{path} not found; run `tunesmith eval {cfg.config_path or 'tunesmith.yaml'}` first")
    return json.loads(path.read_text())
