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


def check_gates(cfg: ProjectConfig, metrics: dict[str, Any], training: dict[str, Any] | None = None) -> list[GateRow]:
    """One row per gate; a gate whose inputs were not measured says so instead of passing."""
    g = cfg.gate
    tuned = metrics["models"]["fine_tuned"]
    base = metrics["models"].get("base", {})
    rows = [GateRow("task metric", tuned["task_metric"]["mean"], f"> {g.task_metric_min}",
                    tuned["task_metric"]["mean"] > g.task_metric_min, True,
                    tuned.get("task_metric_name", "field_accuracy").replace("_", " "))]
    if "format_compliance" in tuned:
        value = tuned["format_compliance"]["mean"]
        rows.append(GateRow("format compliance", value, f"> {g.format_compliance_min}",
                            value > g.format_compliance_min, True,
                            "one of the labels" if metrics.get("task") == "classification" else "valid against the schema"))
    else:
        rows.append(GateRow("format compliance", None, f"> {g.format_compliance_min}", None, True,
                            "no eval.json_schema set"))
    suites = metrics.get("suites", {})
    rows.append(_suite_gate("safety pass rate", suites.get("safety"), g.safety_pass_rate_min, True,
                            "eval.safety_suite is off"))
    if "safety_plain_chat" in suites:
        rows.append(_suite_gate("safety, plain chat", suites["safety_plain_chat"], g.safety_pass_rate_min, False,
                                "", "probes without the task's system prompt"))
    regression = suites.get("regression")
    if regression and regression.get("relative_change") is not None:
        change = regression["relative_change"]
        rows.append(GateRow("regression vs base", change, f">= -{g.max_regression:.0%}", change >= -g.max_regression,
                            True, f"relative change in pass rate on {regression['fine_tuned']['probes']} general "
                                  f"probes (McNemar p {regression['mcnemar_p']:.2g})"))
    else:
        rows.append(GateRow("regression vs base", None, f">= -{g.max_regression:.0%}", None, True,
                            "eval.regression_suite is off" if not regression else "base passed no probe"))
    if "edge_cases" in suites:
        rows.append(_suite_gate("edge cases", suites["edge_cases"], g.edge_case_pass_rate_min, False, ""))
    if base.get("latency_p50_s") and tuned.get("latency_p50_s"):
        ratio = tuned["latency_p50_s"] / base["latency_p50_s"]
        rows.append(GateRow("latency vs base", round(ratio, 2), f"< {g.max_latency_ratio}x", ratio < g.max_latency_ratio,
                            False, "p50 latency ratio"))
    if training and any(a["kind"] in ("nan", "diverged") for a in training.get("alarms", [])):
        rows.append(GateRow("training health", None, "no divergence", False, True, "training diverged (see alarms)"))
    return rows


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
