"""`tunesmith advise`: the "should I fine-tune, and how?" decision matrix of practitioners' guides, as rules.

The rules are checked in order; the first that applies decides, and every rule that
applies adds its reason, so the answer says why. The thresholds are the guides' rules of
thumb (under ~100 examples prompting wins; facts that change need retrieval; requirements
that change weekly make retraining too costly; under ~$1K of compute use adapters;
full fine-tuning only with plenty of data and budget). No library encodes these, so they
are written here. The memory/time/cost estimator beside them is `tunesmith.estimate`.

The use case comes from flags, a YAML file (`usecase_from_mapping`) or questions
(`ask_usecase`); all three end in the same `UseCase`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

from tunesmith.errors import TunesmithError

Problem = Literal["format", "knowledge", "style", "task", "behavior"]
Cadence = Literal["rarely", "monthly", "weekly", "daily"]


@dataclass
class UseCase:
    problem: Problem
    """What is wrong today: output format, missing domain knowledge, style / voice, a new task, or behaviour."""
    examples: int
    """Labelled examples available (input -> desired output)."""
    changes: Cadence = "rarely"
    """How often the requirements (instructions, labels, format) change."""
    facts_change: bool = False
    """Whether the facts the model must know change often (prices, products, policies)."""
    budget_usd: float | None = None
    """Compute budget for training."""
    accuracy_target: float | None = None
    """Required share of correct / compliant outputs, e.g. 0.99 for strict JSON."""
    preference_pairs: bool = False
    """Whether chosen/rejected pairs exist (or can be collected)."""
    gpu_memory_gb: float | None = None
    """Memory of the training GPU."""
    params_b: float | None = None
    """Base model size in billions of parameters."""


@dataclass
class Advice:
    recommendation: str
    reasons: list[str] = field(default_factory=list)
    also: list[str] = field(default_factory=list)


def recommend(u: UseCase) -> Advice:
    reasons: list[str] = []
    also: list[str] = []
    if u.problem == "knowledge" or u.facts_change:
        reasons.append(
            "facts that are missing or change often belong in retrieval: a fine-tune freezes them at "
            "training time and retraining for every change is slow and costly"
        )
        if u.problem in ("format", "style") and u.examples >= 100:
            also.append("LoRA for the output format or voice, on top of RAG for the facts")
        return Advice("rag", reasons, also)
    if u.examples < 100:
        reasons.append(
            f"{u.examples} examples are too few: under ~100, a few-shot prompt usually matches a "
            "fine-tune; measure that baseline first (`tunesmith eval` reports it)"
        )
        also.append("grow the data (`tunesmith data synth` with a teacher model) and revisit at 100-500 examples")
        return Advice("prompt_engineering", reasons, also)
    if u.changes in ("weekly", "daily"):
        reasons.append(
            f"requirements that change {u.changes} would need a retrain each time; prompts change in minutes"
        )
        return Advice("prompt_engineering", reasons, also)
    if u.preference_pairs and u.problem in ("style", "behavior"):
        reasons.append("preference pairs teach what to prefer (tone, refusals, helpfulness) directly: DPO")
        also.append("run SFT first if the base model does not do the task at all")
        return Advice("dpo", reasons, _adapter_note(u, also))
    if u.problem == "task" and u.examples >= 10_000 and (u.budget_usd or 0) >= 10_000:
        reasons.append(
            f"a new task with {u.examples:,} examples and a budget of ${u.budget_usd:,.0f} can afford "
            "full fine-tuning, which fits large data best"
        )
        return Advice("full", reasons, also)
    if u.problem == "format":
        target = f" at {u.accuracy_target:.0%}" if u.accuracy_target else ""
        reasons.append(
            f"a strict output format{target} is where fine-tuning beats prompting most reliably: "
            "prompted models plateau below that compliance; gate it with format_compliance"
        )
    elif u.problem == "style":
        reasons.append(
            f"a consistent voice is learned from examples ({u.examples:,}) better than described in a prompt"
        )
    else:
        reasons.append(f"{u.examples:,} examples are enough to teach the {u.problem} with an adapter")
    choice = "lora"
    if u.budget_usd is not None and u.budget_usd < 1_000:
        reasons.append(
            f"a budget under $1K (${u.budget_usd:,.0f}) rules out full fine-tuning; adapters train a "
            "few percent of the parameters"
        )
    if u.gpu_memory_gb is not None and u.params_b is not None and u.params_b * 2 * 1.3 > u.gpu_memory_gb:
        reasons.append(
            f"a {u.params_b:g}B model in 16-bit needs about {u.params_b * 2 * 1.3:.0f} GB with LoRA; "
            f"{u.gpu_memory_gb:g} GB calls for 4-bit weights: QLoRA"
        )
        choice = "qlora"
    return Advice(choice, reasons, _adapter_note(u, also))


def _adapter_note(u: UseCase, also: list[str]) -> list[str]:
    if u.accuracy_target and u.accuracy_target >= 0.95:
        also.append(
            f"set gate.task_metric_min / format_compliance_min to {u.accuracy_target} so a weaker model "
            "is never registered"
        )
    return also


PROBLEMS = get_args(Problem)
CADENCES = get_args(Cadence)
QUESTIONS = {
    "problem": "What is wrong today: format (output shape), knowledge (missing facts), style (voice), task "
    "(a new task) or behavior?",
    "examples": "How many labelled examples (input -> desired output) do you have?",
    "changes": "How often do the requirements change: rarely, monthly, weekly or daily?",
    "facts_change": "Do the facts it must know (prices, products, policies) change often?",
    "budget_usd": "Training budget in USD (empty: unknown)?",
    "accuracy_target": "Required share of correct outputs, e.g. 0.99 (empty: none)?",
    "preference_pairs": "Do you have (or can you collect) chosen/rejected answer pairs?",
    "gpu_memory_gb": "Memory of the training GPU in GB (empty: unknown)?",
    "params_b": "Base model size in billions of parameters (empty: unknown)?",
}


def usecase_from_mapping(raw: Any, where: str = "use case") -> UseCase:
    """A `UseCase` from a YAML/JSON mapping; a wrong field names the field and what it accepts."""
    if not isinstance(raw, dict):
        raise TunesmithError(f"{where}: expected a mapping of fields ({', '.join(QUESTIONS)})")
    known = {f.name for f in fields(UseCase)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise TunesmithError(f"{where}: unknown field {unknown[0]!r}; fields are {', '.join(QUESTIONS)}")
    for name in ("problem", "examples"):
        if raw.get(name) is None:
            raise TunesmithError(f"{where}: {name} is required ({QUESTIONS[name]})")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        values[name] = _parse(name, value, where)
    return UseCase(**values)


def _parse(name: str, value: Any, where: str) -> Any:
    if value is None or value == "":
        return None
    try:
        if name == "problem":
            if str(value) not in PROBLEMS:
                raise ValueError(f"choose {', '.join(PROBLEMS)}")
            return str(value)
        if name == "changes":
            if str(value) not in CADENCES:
                raise ValueError(f"choose {', '.join(CADENCES)}")
            return str(value)
        if name == "examples":
            try:
                n = int(str(value).replace(",", "").replace("_", ""))
            except ValueError:
                raise ValueError("a whole number, e.g. 1000") from None
            if n < 0:
                raise ValueError("must be 0 or more")
            return n
        if name in ("facts_change", "preference_pairs"):
            if isinstance(value, bool):
                return value
            if str(value).strip().lower() in ("y", "yes", "true", "1"):
                return True
            if str(value).strip().lower() in ("n", "no", "false", "0"):
                return False
            raise ValueError("answer yes or no")
        try:
            number = float(str(value).replace(",", "").lstrip("$"))
        except ValueError:
            raise ValueError("a number") from None
        if number < 0 or (name == "accuracy_target" and number > 1):
            raise ValueError("a share between 0 and 1" if name == "accuracy_target" else "must be positive")
        return number
    except ValueError as exc:
        raise TunesmithError(f"{where}: {name}={value!r}: {exc}") from None


def ask_usecase(
    ask: Callable[[str, str], str], say: Callable[[str], None], given: dict[str, Any] | None = None
) -> UseCase:
    """Ask for each field not in `given`; `ask(question, default)` returns the answer text, `say` reports a
    wrong answer, after which the question is asked again."""
    defaults = {"changes": "rarely", "facts_change": "no", "preference_pairs": "no"}
    answers = {k: v for k, v in (given or {}).items() if v is not None}
    for name, question in QUESTIONS.items():
        while name not in answers:
            text = ask(question, defaults.get(name, "")).strip()
            if not text and name in ("problem", "examples"):
                say(f"{name} is required")
                continue
            try:
                _parse(name, text, "answer")
            except TunesmithError as exc:
                say(str(exc).removeprefix("answer: "))
                continue
            answers[name] = text
    return usecase_from_mapping(answers, "answers")
