"""Quality gates: the measured numbers against the configured thresholds, blocking or warning."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.evaluate.result import EvalResult, SuiteScores


@dataclass
class GateRow:
    name: str
    measured: float | None
    threshold: str
    passed: bool | None  # None: not measured
    blocking: bool
    note: str = ""
    advice: str = ""  # what to change when it fails


def check_gates(cfg: ProjectConfig, result: EvalResult, training: dict[str, Any] | None = None) -> list[GateRow]:
    """One row per gate; a gate whose inputs were not measured says so instead of passing."""
    rows = _task_gates(cfg, result, training)
    rows += safety_gates(cfg, result.suites, training)
    rows.append(_regression_gate(cfg, result.suites.get("regression"), training))
    if result.previous_task and "change" in result.previous_task:
        rows.append(_previous_task_gate(cfg, result.previous_task, training))
    rows += _harness_gates(cfg, result.lm_eval)
    if "edge_cases" in result.suites:
        rows.append(_suite_gate("edge cases", result.suites["edge_cases"], cfg.gate.edge_case_pass_rate_min, False, ""))
    rows += _latency_gate(cfg, result)
    if training and any(a["kind"] in ("nan", "diverged") for a in training.get("alarms", [])):
        rows.append(GateRow("training health", None, "no divergence", False, True, "training diverged (see alarms)"))
    return rows


def _task_gates(cfg: ProjectConfig, result: EvalResult, training: dict[str, Any] | None) -> list[GateRow]:
    """The task metric (overall and per task) and format compliance."""
    g, tuned = cfg.gate, result.fine_tuned
    value = tuned.task_metric.mean if tuned.task_metric else None
    task_ok = value is not None and value > g.task_metric_min
    rows = [
        GateRow(
            "task metric",
            value,
            f"> {g.task_metric_min}",
            task_ok if value is not None else None,
            True,
            tuned.task_metric_name.replace("_", " "),
            "" if task_ok else _learning_advice(cfg, training),
        )
    ]
    for task, entry in tuned.by_task.items():
        minimum = g.task_metric_min_by_task.get(task, g.task_metric_min)
        rows.append(
            GateRow(
                f"task metric: {task}",
                entry["mean"],
                f"> {minimum}",
                entry["mean"] > minimum,
                True,
                f"{entry['examples']} test examples of task {task}",
            )
        )
    if tuned.format_compliance is None:
        rows.append(
            GateRow("format compliance", None, f"> {g.format_compliance_min}", None, True, "no eval.json_schema set")
        )
        return rows
    compliance = tuned.format_compliance.mean
    rows.append(
        GateRow(
            "format compliance",
            compliance,
            f"> {g.format_compliance_min}",
            compliance > g.format_compliance_min,
            True,
            "one of the labels" if result.task == "classification" else "valid against the schema",
        )
    )
    return rows


def _regression_gate(cfg: ProjectConfig, regression: SuiteScores | None, training: dict[str, Any] | None) -> GateRow:
    """The general probes: the fine-tune's pass rate may fall at most gate.max_regression (one-sided bound)."""
    g = cfg.gate
    threshold = f">= -{g.max_regression:.0%}"
    if regression is None or regression.relative_change is None or "fine_tuned" not in regression.runs:
        note = "eval.regression_suite is off" if regression is None else "base passed no probe"
        return GateRow("regression vs base", None, threshold, None, True, note)
    change = regression.relative_change
    upper = change if regression.relative_change_upper is None else regression.relative_change_upper
    passed = upper >= -g.max_regression
    return GateRow(
        "regression vs base",
        change,
        threshold,
        passed,
        True,
        f"relative change in pass rate on the {_count(regression.base_passed)} of "
        f"{regression.runs['fine_tuned'].probes} general probes the base model passes "
        f"(lost {_count(regression.lost)}, gained {_count(regression.gained)}); "
        f"one-sided {g.confidence:.0%} bound {upper:+.1%}",
        "" if passed else _forgetting_advice(cfg, training),
    )


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)


def _previous_task_gate(cfg: ProjectConfig, prev: dict[str, Any], training: dict[str, Any] | None) -> GateRow:
    """Continual learning: the previous version's task may drop at most gate.max_previous_task_drop."""
    g = cfg.gate
    drop = prev["change"]["mean"]
    passed = drop >= -g.max_previous_task_drop
    return GateRow(
        "previous version's task",
        drop,
        f">= -{g.max_previous_task_drop:g}",
        passed,
        True,
        f"change in {prev['fine_tuned']['task_metric_name'].replace('_', ' ')} on {prev['examples']} "
        f"test examples of {prev['version']} (it {prev['base']['task_metric']['mean']:.3f}, "
        f"this {prev['fine_tuned']['task_metric']['mean']:.3f})",
        ""
        if passed
        else "raise data.replay.previous (now "
        f"{cfg.data.replay.previous if cfg.data.replay else 0:g}) to replay more of its training "
        "records; " + _forgetting_advice(cfg, training),
    )


def _latency_gate(cfg: ProjectConfig, result: EvalResult) -> list[GateRow]:
    """Per-request latency (batch 1) of the fine-tune against the base model's (a warning)."""
    tuned, base = result.fine_tuned, result.base
    if not (base and base.latency_p50_s and tuned.latency_p50_s):
        return []
    ratio = tuned.latency_p50_s / base.latency_p50_s
    return [
        GateRow(
            "latency vs base",
            round(ratio, 2),
            f"< {cfg.gate.max_latency_ratio}x",
            ratio < cfg.gate.max_latency_ratio,
            False,
            f"p50 of {_count(tuned.latency_requests)} requests one at a time: "
            f"{tuned.latency_p50_s:.2f} s against the base model's {base.latency_p50_s:.2f} s",
        )
    ]


SAFETY_CONTEXTS = (("safety", ""), ("safety_plain_chat", ", plain chat"))
"""The safety suite's results: in the task's context (its system prompt) and, when it has one, in plain chat."""


def safety_gates(cfg: ProjectConfig, suites: dict[str, SuiteScores], training: dict[str, Any] | None) -> list[GateRow]:
    """Two gates per context the safety suite ran in. "safety vs base" (blocking): the fine-tune is not less
    safe than its base model, by a one-sided paired test as for regression. "safety floor": the pass rate is
    above `gate.safety_pass_rate_min`, blocking when the base model met the floor (so the fine-tune lost it)
    and a warning naming the base model when it did not (no fine-tune of it can be held to the floor)."""
    g = cfg.gate
    if not suites.get("safety"):
        return [
            GateRow("safety vs base", None, _at_least(-g.max_safety_regression), None, True, "eval.safety_suite is off")
        ]
    rows = []
    for key, label in SAFETY_CONTEXTS:
        suite = suites.get(key)
        if suite is None or "fine_tuned" not in suite.runs:
            continue
        run = suite.runs["fine_tuned"]
        tuned = run.pass_rate.mean
        base = suite.runs["base"].pass_rate.mean if "base" in suite.runs else None
        counts = f"{run.passed}/{run.probes} probes"
        change, upper = suite.relative_change, suite.relative_change_upper
        if change is None or upper is None:
            rows.append(
                GateRow(
                    f"safety vs base{label}",
                    None,
                    _at_least(-g.max_safety_regression),
                    None,
                    True,
                    f"the base model handled none of the probes: nothing to keep ({counts} now)",
                )
            )
        else:
            passed = upper >= -g.max_safety_regression
            rows.append(
                GateRow(
                    f"safety vs base{label}",
                    change,
                    _at_least(-g.max_safety_regression),
                    passed,
                    True,
                    f"pass rate {tuned:.3f} against the base model's {base:.3f}; of the {suite.base_passed} probes "
                    f"the base handles safely it lost {suite.lost}, and it gained {suite.gained}; one-sided "
                    f"{g.confidence:.0%} bound {upper:+.1%}",
                    "" if passed else _safety_advice(cfg, training),
                )
            )
        rows.append(_safety_floor(cfg, label, tuned, base, counts, training))
    return rows


def _safety_floor(
    cfg: ProjectConfig, label: str, tuned: float, base: float | None, counts: str, training: dict[str, Any] | None
) -> GateRow:
    floor = cfg.gate.safety_pass_rate_min
    base_below = base is not None and base <= floor
    note = f"{counts}" + (f"; base {base:.3f}" if base is not None else "")
    if base_below and tuned <= floor:
        note += (
            "; the base model is below the floor too, so the base is the cause, not the fine-tune: a "
            "safer base model meets it (or set gate.safety_pass_rate_min)"
        )
    return GateRow(
        f"safety floor{label}",
        tuned,
        f"> {floor}",
        tuned > floor,
        not base_below,
        note,
        "" if tuned > floor or base_below else _safety_advice(cfg, training),
    )


def _harness_gates(cfg: ProjectConfig, harness: dict[str, Any]) -> list[GateRow]:
    """One blocking gate per lm-eval task named in gate.lm_eval: its metric may drop at most that much."""
    rows = []
    for task, max_drop in cfg.gate.lm_eval.items():
        entry = harness.get("tasks", {}).get(task)
        if not entry or "change" not in entry:
            rows.append(
                GateRow(
                    f"lm-eval: {task}",
                    None,
                    f">= -{max_drop:g}",
                    None,
                    True,
                    "not measured: add the task to eval.lm_eval.tasks",
                )
            )
            continue
        passed = entry["change"] >= -max_drop
        base, tuned = entry["base"], entry["fine_tuned"]
        note = f"{entry['metric']} {tuned['value']:.3f} against the base model's {base['value']:.3f}" + (
            f" (standard error {tuned['stderr']:.3f})" if tuned.get("stderr") is not None else ""
        )
        rows.append(
            GateRow(
                f"lm-eval: {task}",
                entry["change"],
                f">= -{max_drop:g}",
                passed,
                True,
                note,
                "" if passed else f"a drop on {task}: {_forgetting_advice(cfg, None)}",
            )
        )
    return rows


def _at_least(change: float) -> str:
    return f">= {change:.0%}" if change else ">= 0%"


def _refusal_replay(cfg: ProjectConfig) -> dict[str, Any] | None:
    """What refusal replay put into this run's training data (data/prepare.json), if anything."""
    from tunesmith.paths import data_dir

    path = data_dir(cfg) / "prepare.json"
    try:
        return (json.loads(path.read_text()).get("replay") or {}).get("refusals")
    except (OSError, ValueError):
        return None


def _safety_advice(cfg: ProjectConfig, training: dict[str, Any] | None) -> str:
    """What keeps a fine-tune as safe as its base, with this run's values."""
    replay = cfg.data.replay
    if cfg.train.method != "sft":
        first = ""
    elif replay is None:
        first = "turn replay back on (data.replay: {refusals: 0.1}): this run trained on no refusals; "
    elif not replay.refusals:
        first = "turn refusal replay on (data.replay.refusals: 0.1): this run trained on no refusals; "
    else:
        used = _refusal_replay(cfg) or {}
        share = min(0.3, round(replay.refusals * 2, 2))
        first = (
            f"raise data.replay.refusals (now {replay.refusals:g}: {used.get('records', '?')} refusal "
            f"conversations, {used.get('ratio', replay.refusals):.1%} of this run's training tokens; "
            f"try {share:g}); "
        )
    return first + _forgetting_advice(cfg, training, safety=True)


def _learning_advice(cfg: ProjectConfig, training: dict[str, Any] | None) -> str:
    """What makes a fine-tune learn its task better, with this run's values."""
    from tunesmith.train.adapters import learning_rate

    t = cfg.train
    epochs = (training or {}).get("epochs") or t.num_epochs
    lr = _chosen(training).get("train.learning_rate") or learning_rate(t)
    return (
        f"train longer (train.num_epochs, now {epochs:g})"
        if isinstance(epochs, (int, float))
        else "train longer (train.num_epochs)"
    ) + (
        f"; raise train.learning_rate (now {lr:g}; try {lr * 2:g}); add training records where the per-label or "
        "per-field report is weakest; compare with the few-shot baseline: if it is close, the data may not "
        "define the task"
    )


def _chosen(training: dict[str, Any] | None) -> dict[str, Any]:
    """The settings the pre-flight check chose for this run."""
    return {c["setting"]: c["value"] for c in ((training or {}).get("fit") or {}).get("choices", [])}


def _forgetting_advice(cfg: ProjectConfig, training: dict[str, Any] | None, safety: bool = False) -> str:
    """What moves a fine-tune less far from its base model, with this run's values."""
    from tunesmith.train.adapters import learning_rate

    t, replay = cfg.train, cfg.data.replay
    chosen = _chosen(training)
    epochs = (
        training.get("epochs") if training and training.get("epochs") else chosen.get("train.num_epochs", t.num_epochs)
    )
    lr = chosen.get("train.learning_rate") or learning_rate(t)
    steps = []
    if t.method != "sft":  # replay mixes SFT data; a preference method is held near its base by beta
        steps.append(
            f"raise train.dpo_beta (now {t.dpo_beta:g}; try {t.dpo_beta * 2:g}) to stay closer to the base model"
        )
    elif replay is None or replay.ratio == 0:
        steps.append("turn replay on (data.replay: {ratio: 0.2}) to keep general examples in training")
    elif replay.ratio < 0.5:
        steps.append(f"raise data.replay.ratio (now {replay.ratio:g}; try {min(0.5, round(replay.ratio * 1.5, 2)):g})")
    steps.append(
        f"train fewer epochs (train.num_epochs, now {epochs:g})"
        if isinstance(epochs, (int, float))
        else "train fewer epochs (train.num_epochs)"
    )
    steps.append(f"lower train.learning_rate (now {lr:g}; try {lr / 2:g})")
    return "; ".join(steps) + ("" if safety else "; then `tunesmith run` again")


def _suite_gate(
    name: str, suite: SuiteScores | None, minimum: float, blocking: bool, off: str, note: str = ""
) -> GateRow:
    if suite is None or "fine_tuned" not in suite.runs:
        return GateRow(name, None, f"> {minimum}", None, blocking, off)
    tuned, base = suite.runs["fine_tuned"], suite.runs.get("base")
    value = tuned.pass_rate.mean
    detail = f"{tuned.passed}/{tuned.probes} probes" + (f"; base {base.pass_rate.mean:.3f}" if base else "")
    return GateRow(name, value, f"> {minimum}", value > minimum, blocking, f"{detail}{'; ' + note if note else ''}")


def gates_passed(rows: list[GateRow]) -> bool:
    """No blocking gate failed (gates that were not measured do not block)."""
    return not any(r.blocking and r.passed is False for r in rows)


@dataclass
class GateResult:
    """Every gate's verdict (`eval/gates.json`): `passed` when no blocking gate failed."""

    gates: list[GateRow]

    @property
    def passed(self) -> bool:
        return gates_passed(self.gates)

    @property
    def failed(self) -> list[str]:
        """The blocking gates that failed, by name."""
        return [g.name for g in self.gates if g.blocking and g.passed is False]


def write_gates(cfg: ProjectConfig, rows: list[GateRow], folder: Path | None = None) -> GateResult:
    """The verdicts as `eval/gates.json`, for the jobs API, the web pages and scripts."""
    from tunesmith.files import write_json
    from tunesmith.paths import eval_dir

    result = GateResult(rows)
    write_json((folder or eval_dir(cfg)) / "gates.json", {"passed": result.passed, "gates": [asdict(r) for r in rows]})
    return result


def read_gates(folder: Path) -> GateResult | None:
    """`gates.json` in an evaluation folder, or None when the gates were not checked (or it is unreadable)."""
    try:
        data = json.loads((folder / "gates.json").read_text())
        return GateResult([GateRow(**g) for g in data["gates"]])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def failed_gates_text(rows: list[GateRow]) -> str:
    """Each failed blocking gate in plain sentences (no paths, no markup): what it measured against what, and
    what to change."""
    parts = []
    for r in rows:
        if r.passed is False and r.blocking:
            measured = "-" if r.measured is None else f"{r.measured:.3f}"
            text = f"Gate '{r.name}' failed: measured {measured}, threshold {r.threshold}"
            text += f" ({r.note})." if r.note else "."
            parts.append(text + (f" To fix it: {r.advice}." if r.advice else ""))
    return " ".join(parts)
