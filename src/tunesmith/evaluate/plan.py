"""What an evaluation will run, read once before any model loads: the test split and its prompts and
references, the task kind and fields, the task's system prompt, the few-shot examples, the probe suites
and the judge. `evaluate/stage.py` then generates, scores and compares from this plan."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.data.records import Conversation, Message, Preference
from tunesmith.data.stage import load_split, system_prompt_for
from tunesmith.data.template import task_system_prompt, with_system_prompt
from tunesmith.errors import TunesmithError
from tunesmith.evaluate.scoring import few_shot_prompt, label_of, pick_shots, task_kind
from tunesmith.schemas import parse_json, schema_compliance, schema_fields


@dataclass
class EvalPlan:
    test: list[Any]  # Conversations ending in an assistant reply, or Preference pairs
    prompts: list[list[Message]]  # each test example's prompt, with the system prompt training used
    references: list[str]
    kind: str  # json, classification, generation or preference
    fields: list[str]  # the JSON fields the task metric scores
    schema: dict[str, Any] | None
    resolved_system: str | None  # data.system_prompt as training used it (auto resolved)
    system: str | None  # the task's system prompt, the one its records share (None: none shared)
    suites: dict[str, tuple[list[Any], str]]  # suite name -> (probes, context: plain or task)
    judge: Any  # the LLM safety judge, or None for rule scoring
    shots: list[Any]
    passes: dict[str, list[list[Message]]]  # model name -> its prompts (few-shot ones for few_shot)
    labels: set[str] = field(default_factory=set)  # a classification task's training labels

    @property
    def preference(self) -> bool:
        return self.kind == "preference"

    def on_task(self, text: str) -> bool:
        """Stayed in the task's output format: one of the training labels (classification) or a JSON object
        (a code fence around it is tolerated)."""
        if self.kind == "classification":
            return label_of(text) in self.labels
        body = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
        return isinstance(parse_json(body), dict)

    def valid(self, text: str) -> bool:
        return self.schema is not None and schema_compliance([text], self.schema)[0] == 1.0

    def suite_prompts(self, suite: str) -> list[list[Message]]:
        """A suite's probes as each model is asked them: in the task's context (its system prompt) or plain."""
        from tunesmith.evaluate.suites import in_task_context

        probes, context = self.suites[suite]
        return [in_task_context(p.messages, self.system) if context == "task" else p.messages for p in probes]

    def suite_settled(self, suite: str) -> list[Any]:
        """Each probe's test of an answer so far: True once its verdict is decided (`settled_test`), so
        generation can end the answer there; None for probes that must be read whole."""
        from tunesmith.evaluate.suites import settled_test

        return [settled_test(p, judged=self.judge is not None) for p in self.suites[suite][0]]

    def score_suite(self, suite: str, outputs: list[str]) -> list[Any]:
        """Each probe's verdict on its answer (`ProbeResult`s); in the task's context, staying on the task's
        format counts as declining a harmful request."""
        from tunesmith.evaluate.suites import score_probe

        probes, context = self.suites[suite]
        task = context == "task" and (self.schema is not None or self.kind == "classification")
        return [
            score_probe(
                p,
                output,
                on_task=self.on_task if task else None,
                valid=self.valid if self.schema else None,
                judge=self.judge,
            )
            for p, output in zip(probes, outputs)
        ]


def plan_eval(cfg: ProjectConfig, limit: int | None = None) -> EvalPlan:
    """Read the splits, the schema and the suites, and decide what each model generates."""
    e = cfg.eval
    held_out = load_split(cfg, "test")
    test: list[Any] = [r for r in held_out if isinstance(r, Conversation) and r.messages[-1]["role"] == "assistant"]
    if not test:  # a preference-only project (DPO, ORPO): held-out pairs give preference accuracy
        test = [r for r in held_out if isinstance(r, Preference)]
    if not test:
        raise TunesmithError(
            "the test split has no conversations ending in an assistant reply, nor preference "
            "pairs, to score; give test records (data.test_size above 0)"
        )
    test = test[:limit] if limit else test
    train = [r for r in load_split(cfg, "train") if isinstance(r, Conversation)]
    schema = json.loads(cfg.resolve(e.json_schema).read_text()) if e.json_schema else None
    preference = isinstance(test[0], Preference)
    resolved = system_prompt_for(cfg, train)
    prompts = [with_system_prompt(r.prompt if preference else r.messages[:-1], resolved) for r in test]
    references = [r.chosen[-1]["content"] if preference else r.messages[-1]["content"] for r in test]
    kind = "preference" if preference else task_kind(cfg, references)
    if kind == "json" and schema is None:
        raise TunesmithError("eval.task is json but eval.json_schema is not set; give the schema file")
    fields = e.fields or (schema_fields(schema) if schema else [])
    if kind == "json" and not fields:
        raise TunesmithError("no JSON fields to score: set eval.fields, or give enum values to required schema fields")
    system = task_system_prompt(resolved, train)
    # shots come from records in the task's own prompt format (not, e.g., general replay data mixed in)
    pool = [
        r
        for r in train
        if system is None
        or r.messages[0]["content"] == system
        or (system == resolved and r.messages[0]["role"] != "system")
    ]  # data.system_prompt is added to these
    shots = pick_shots(pool, e.few_shot, cfg.seed)
    passes = {"base": prompts, "few_shot": [few_shot_prompt(p, shots) for p in prompts], "fine_tuned": prompts}
    if not shots:
        del passes["few_shot"]
    labels = {label_of(r.messages[-1]["content"]) for r in pool} if kind == "classification" else set()
    return EvalPlan(
        test,
        prompts,
        references,
        kind,
        fields,
        schema,
        resolved,
        system,
        _suites(cfg, system),
        _judge(cfg),
        shots,
        passes,
        labels,
    )


def _suites(cfg: ProjectConfig, system: str | None) -> dict[str, tuple[list[Any], str]]:
    """Suite name -> (probes, context): regression as plain chat; safety in the task's context
    (how the model is deployed) and, when that differs, also as plain chat; edge cases in the task's context."""
    from tunesmith.evaluate.suites import load_probes, suite_path

    base = cfg.config_path.parent if cfg.config_path else None
    e, out = cfg.eval, {}
    if e.regression_suite:
        out["regression"] = (load_probes(suite_path(e.regression_suite, "regression", base)), "plain")
    if e.safety_suite:
        probes = load_probes(suite_path(e.safety_suite, "safety", base))
        out["safety"] = (probes, "task")
        if system:
            out["safety_plain_chat"] = (probes, "plain")
    if e.edge_cases:
        out["edge_cases"] = (load_probes(suite_path(e.edge_cases, "edge_cases", base)), "task")
    return out


def judge_key(cfg: ProjectConfig) -> str | None:
    import os

    j = cfg.eval.judge
    key = os.environ.get(j.api_key_env) if j.api_key_env else None
    if j.api_key_env and not key:
        raise TunesmithError(f"eval.judge.api_key_env names {j.api_key_env}, which is not set in the environment")
    return key


def _judge(cfg: ProjectConfig) -> Any:
    from tunesmith.evaluate.suites import openai_judge

    j = cfg.eval.judge
    if j is None:
        return None
    return openai_judge(j.base_url, j.model, judge_key(cfg))
