"""Continual learning: the previous version's own test set, re-scored for it and for its successor.

When the base model is a registered version (`base_model: registry:NAME@production`), "base" in the
evaluation *is* that version, so the regression and safety suites already compare against it. Its task
is checked here: its test split (logged with it at registration) is generated for both models with the
same greedy decoding and scored as that version was scored (its task kind and fields), and the gate
`gate.max_previous_task_drop` bounds how much of it the new version may lose.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.data.records import Conversation, record_from_dict


class PreviousTask:
    def __init__(self, cfg: ProjectConfig, parent: dict[str, Any], schema: dict[str, Any] | None) -> None:
        path = Path(parent["splits"]["test"])
        rows = [record_from_dict(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]
        self.test = [r for r in rows if isinstance(r, Conversation) and r.messages[-1]["role"] == "assistant"]
        self.cfg, self.parent = cfg, parent
        self.kind = parent.get("task") or "generation"
        self.fields = parent.get("fields") or []
        self.schema = schema if self.kind == "json" else None
        if self.kind == "json" and (self.schema is None or not self.fields):
            self.kind = "generation"  # without the schema it was scored by, compare the text
        self.references = [r.messages[-1]["content"] for r in self.test]
        self.per: dict[str, list[float]] = {}

    @property
    def header(self) -> dict[str, Any]:
        return {
            "version": f"{self.parent['name']} v{self.parent['version']}",
            "examples": len(self.test),
            "task": self.kind,
            "registered_task_metric": self.parent.get("task_metric"),
        }

    def score(self, model: Any, tokenizer: Any, name: str, max_new_tokens: int) -> dict[str, Any]:
        from tunesmith.console import err
        from tunesmith.evaluate.scoring import score
        from tunesmith.models.generate import generate

        e = self.cfg.eval
        err.print(f"generating: {name} on the previous version's test set ({len(self.test)} examples)")
        outs = generate(
            model,
            tokenizer,
            [r.messages[:-1] for r in self.test],
            max_new_tokens=max_new_tokens,
            batch_size=e.rows_per_batch,
        )
        labels = {x.strip().lower() for x in self.references} if self.kind == "classification" else None
        summary, per = score(
            [o["output"] for o in outs],
            self.references,
            self.schema,
            self.fields,
            self.kind,
            "auto",
            e.semantic_similarity,
            labels,
        )
        self.per[name] = per["task_metric"]
        return {"task_metric_name": summary["task_metric_name"], "task_metric": summary["task_metric"]}


def previous_task(cfg: ProjectConfig, schema: dict[str, Any] | None) -> PreviousTask | None:
    """The previous version's test set, when this project trains from a registered version that logged one."""
    from tunesmith.paths import parent_info

    parent = parent_info(cfg)
    if not parent or not parent["splits"].get("test") or not Path(parent["splits"]["test"]).exists():
        return None
    task = PreviousTask(cfg, parent, schema)
    return task if task.test else None
