"""Standard benchmarks beside the task: lm-evaluation-harness tasks on the base and the fine-tuned model.

A number on a known task (ARC, HellaSwag, MMLU, IFEval, GSM8K) is what a reviewer trusts next to a custom
suite. lm-eval scores the model already in memory (its `HFLM` wrapper takes a loaded model; the fine-tuned
one with its adapter applied), so nothing is loaded twice. Each task's headline metric (its first: `acc`
for multiple choice, `exact_match` for generation) goes into metrics.json with its standard error, the
before/after table, the model card and, with `gate.lm_eval`, a blocking gate on its drop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SKIP = {"alias", "name", "sample_len", "samples"}


def harness_scores(model: Any, tokenizer: Any, settings: Any, base: Path | None) -> dict[str, dict[str, Any]]:
    """{task: {metric, value, stderr}} for `eval.lm_eval`'s tasks on this model."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from tunesmith.errors import TunesmithError

    include = None
    if settings.include_path:
        include = Path(settings.include_path)
        include = include if include.is_absolute() or base is None else base / include
        if not include.is_dir():
            raise TunesmithError(f"eval.lm_eval.include_path: {include} is not a folder of task YAMLs")
    manager = TaskManager(include_path=str(include) if include else None)
    unknown = [t for t in settings.tasks if t not in manager.all_tasks]
    if unknown:
        raise TunesmithError(
            f"eval.lm_eval.tasks: lm-eval knows no task {unknown[0]!r}; `lm-eval ls tasks` lists "
            "them, or put its YAML in eval.lm_eval.include_path"
        )
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=settings.batch_size)
    out = simple_evaluate(
        model=lm,
        tasks=list(settings.tasks),
        num_fewshot=settings.num_fewshot,
        limit=settings.limit,
        task_manager=manager,
        log_samples=False,
    )
    scores = {}
    for task, values in (out.get("results") or {}).items():
        keys = [k for k in values if k not in SKIP and "_stderr" not in k and isinstance(values[k], (int, float))]
        if not keys:
            continue
        key = keys[0]
        metric, _, flt = key.partition(",")
        stderr = values.get(f"{metric}_stderr,{flt}") if flt else values.get(f"{metric}_stderr")
        scores[task] = {
            "metric": metric,
            "value": round(float(values[key]), 4),
            "stderr": round(float(stderr), 4) if isinstance(stderr, (int, float)) else None,
            "examples": values.get("sample_len"),
        }
    return scores


def compare(per_model: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """metrics.json's `lm_eval`: per task its metric for base and fine-tuned, and the change."""
    tasks: dict[str, Any] = {}
    for name, scores in per_model.items():
        for task, entry in scores.items():
            tasks.setdefault(task, {"metric": entry["metric"], "examples": entry.get("examples")})[name] = {
                "value": entry["value"],
                "stderr": entry["stderr"],
            }
    for entry in tasks.values():
        if "base" in entry and "fine_tuned" in entry:
            entry["change"] = round(entry["fine_tuned"]["value"] - entry["base"]["value"], 4)
    return {"tasks": tasks}
