"""What evaluation measured, typed. `EvalResult` is `eval/metrics.json`: `run_eval` returns one,
`write_eval` writes it and `read_eval` reads it back (the only two functions that touch the file). The
gates, the model card, the registry's tags, the views, the web pages and the jobs worker read its
fields; the task-specific metrics (BLEU, ROUGE-L, each JSON field, each label) stay in
`ModelScores.values`, since which ones exist depends on the task.

The file's layout is unchanged, so results written by any version read back the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.errors import TunesmithError
from tunesmith.files import write_json


@dataclass(frozen=True)
class Interval:
    """A mean with its 95% bootstrap interval (as `{"mean": m, "ci95": [low, high]}` on disk)."""

    mean: float
    low: float
    high: float

    @classmethod
    def of(cls, value: Any) -> Interval | None:
        if not isinstance(value, dict) or "mean" not in value:
            return None
        low, high = value.get("ci95") or (value["mean"], value["mean"])
        return cls(float(value["mean"]), float(low), float(high))


@dataclass
class ModelScores:
    """One model's pass over the test split (base, few_shot, fine_tuned)."""

    name: str
    task_metric: Interval | None
    task_metric_name: str
    format_compliance: Interval | None  # valid JSON against the schema, or one of the labels; None when unchecked
    latency_p50_s: float | None  # one request at a time (batch 1): what the latency gate compares
    latency_p95_s: float | None
    time_to_first_token_p50_s: float | None
    latency_requests: int | None
    tokens_per_s: float | None  # batched throughput
    by_task: dict[str, dict[str, Any]]  # task -> {"mean", "ci95", "examples"} for multi-task data
    values: dict[str, Any]  # everything measured, as written

    @classmethod
    def of(cls, name: str, values: dict[str, Any]) -> ModelScores:
        return cls(
            name=name,
            task_metric=Interval.of(values.get("task_metric")),
            task_metric_name=values.get("task_metric_name", "task_metric"),
            format_compliance=Interval.of(values.get("format_compliance")),
            latency_p50_s=values.get("latency_p50_s"),
            latency_p95_s=values.get("latency_p95_s"),
            time_to_first_token_p50_s=values.get("time_to_first_token_p50_s"),
            latency_requests=values.get("latency_requests"),
            tokens_per_s=values.get("tokens_per_s"),
            by_task=values.get("by_task", {}),
            values=values,
        )

    def interval(self, metric: str) -> Interval | None:
        """A metric written as mean and interval (`rouge_l`, `field:priority`, ...), or None."""
        return Interval.of(self.values.get(metric))


@dataclass
class SuiteRun:
    """One model on one probe suite."""

    pass_rate: Interval
    probes: int
    passed: int
    by_category: dict[str, float]

    @classmethod
    def of(cls, value: dict[str, Any]) -> SuiteRun:
        return cls(Interval.of(value["pass_rate"]), value["probes"], value["passed"], value.get("by_category", {}))


@dataclass
class SuiteScores:
    """A probe suite (regression, safety, safety_plain_chat, edge_cases): each model's run and, with both
    the base and the fine-tune, the paired relative change and the counts behind it."""

    name: str
    context: str  # "task" (the task's system prompt) or "plain" (plain chat)
    runs: dict[str, SuiteRun]
    relative_change: float | None = None
    relative_change_upper: float | None = None  # one-sided bound at `confidence`
    base_passed: int | None = None
    lost: int | None = None
    gained: int | None = None
    mcnemar_p: float | None = None

    def cells(self, interval: Callable[[Interval | None], str]) -> list[str]:
        """The suite as a table row: name, context, base and fine-tuned pass rates (`interval` formats them),
        relative change, its one-sided bound, lost / gained."""
        change, upper = self.relative_change, self.relative_change_upper
        runs = [interval(self.runs[n].pass_rate if n in self.runs else None) for n in ("base", "fine_tuned")]
        return [
            self.name.replace("_", " "),
            self.context,
            *runs,
            "-" if change is None else f"{change:+.1%}",
            "-" if upper is None else f"{upper:+.1%}",
            f"{'-' if self.lost is None else self.lost} / {'-' if self.gained is None else self.gained}",
        ]

    @classmethod
    def of(cls, name: str, value: dict[str, Any]) -> SuiteScores:
        return cls(
            name=name,
            context=value.get("context", "plain"),
            runs={k: SuiteRun.of(v) for k, v in value.items() if isinstance(v, dict) and "pass_rate" in v},
            relative_change=value.get("relative_change"),
            relative_change_upper=value.get("relative_change_upper", value.get("relative_change")),
            base_passed=value.get("base_passed"),
            lost=value.get("lost"),
            gained=value.get("gained"),
            mcnemar_p=value.get("mcnemar_p"),
        )


@dataclass
class EvalResult:
    """Everything `tunesmith eval` measured; `data` is the file as written (for the report, the pages and
    the MLflow artifact)."""

    task: str
    fields: list[str]
    test_examples: int
    models: dict[str, ModelScores]
    suites: dict[str, SuiteScores]
    previous_task: dict[str, Any] | None
    lm_eval: dict[str, Any]
    cost: dict[str, Any] | None
    max_new_tokens: int | None
    data: dict[str, Any] = field(repr=False)

    @classmethod
    def of(cls, data: dict[str, Any]) -> EvalResult:
        return cls(
            task=data.get("task", "text"),
            fields=list(data.get("fields") or []),
            test_examples=data.get("test_examples", 0),
            models={name: ModelScores.of(name, v) for name, v in data.get("models", {}).items()},
            suites={name: SuiteScores.of(name, v) for name, v in data.get("suites", {}).items()},
            previous_task=data.get("previous_task"),
            lm_eval=data.get("lm_eval") or {},
            cost=data.get("cost"),
            max_new_tokens=(data.get("decoding") or {}).get("max_new_tokens"),
            data=data,
        )

    @property
    def fine_tuned(self) -> ModelScores:
        if "fine_tuned" not in self.models:
            raise TunesmithError("the evaluation has no fine-tuned model's results; run `tunesmith eval` again")
        return self.models["fine_tuned"]

    @property
    def base(self) -> ModelScores | None:
        return self.models.get("base")


def metrics_path(cfg: ProjectConfig) -> Path:
    from tunesmith.paths import eval_dir

    return eval_dir(cfg) / "metrics.json"


def write_eval(cfg: ProjectConfig, data: dict[str, Any]) -> EvalResult:
    """Write `eval/metrics.json` (atomically) and return it typed."""
    write_json(metrics_path(cfg), data)
    return EvalResult.of(data)


def read_eval(cfg: ProjectConfig | Path) -> EvalResult:
    """`eval/metrics.json` of a project (or that file's path), typed; a missing file says what to run."""
    path = cfg if isinstance(cfg, Path) else metrics_path(cfg)
    if not path.exists():
        name = "tunesmith.yaml" if isinstance(cfg, Path) else cfg.config_path or "tunesmith.yaml"
        raise TunesmithError(f"{path} not found; run `tunesmith eval {name}` first")
    return EvalResult.of(json.loads(path.read_text()))
