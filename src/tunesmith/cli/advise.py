"""`tunesmith advise`: the decision matrix, and with --config the memory, time and cost estimate."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from tunesmith.cli.common import load
from tunesmith.console import err, out
from tunesmith.errors import TunesmithError


def advise(
    problem: Optional[str] = typer.Option(
        None, help="What is wrong today: format, knowledge, style, task or behavior."
    ),
    examples: Optional[int] = typer.Option(None, min=0, help="Labelled examples available."),
    changes: Optional[str] = typer.Option(None, help="How often requirements change: rarely, monthly, weekly, daily."),
    facts_change: Optional[bool] = typer.Option(None, "--facts-change", help="The facts it must know change often."),
    budget: Optional[float] = typer.Option(None, help="Training budget in USD."),
    accuracy: Optional[float] = typer.Option(None, help="Required share of correct outputs, e.g. 0.99."),
    preference_pairs: Optional[bool] = typer.Option(None, "--preference-pairs", help="Chosen/rejected pairs exist."),
    gpu_memory: Optional[float] = typer.Option(None, help="Training GPU memory in GB."),
    params: Optional[float] = typer.Option(None, help="Base model size in billions of parameters."),
    from_file: Optional[Path] = typer.Option(None, "--from", help="A YAML file with the use case's fields."),
    interactive: bool = typer.Option(False, "--interactive", "-i", help="Ask for what flags and --from left out."),
    config: Optional[str] = typer.Option(
        None,
        "--config",
        help="tunesmith.yaml: estimate memory, time and cost of training it on its data (full, LoRA, QLoRA).",
    ),
    gpus: Optional[Path] = typer.Option(
        None, help="GPU table (YAML: name, memory_gb, bf16_tflops, usd_per_hour) instead of the packaged one."
    ),
    tokens_per_s: Optional[float] = typer.Option(None, help="Training throughput here, if known."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON."),
) -> None:
    """Prompting, RAG, LoRA, QLoRA, full fine-tuning or DPO? The guides' decision matrix with reasons; with
    --config, what training it costs in memory, time and money."""
    from tunesmith.advise import ask_usecase, recommend, usecase_from_mapping

    flags = {
        "problem": problem,
        "examples": examples,
        "changes": changes,
        "facts_change": facts_change,
        "budget_usd": budget,
        "accuracy_target": accuracy,
        "preference_pairs": preference_pairs,
        "gpu_memory_gb": gpu_memory,
        "params_b": params,
    }
    given = _usecase_file(from_file) if from_file is not None else {}
    given.update({k: v for k, v in flags.items() if v is not None})
    where = str(from_file) if from_file else "flags"
    if interactive:
        usecase = ask_usecase(
            lambda q, d: typer.prompt(q, default=d, show_default=bool(d)),
            lambda m: err.print(f"[yellow]{m}[/]", highlight=False),
            given,
        )
    elif given or config is None:
        if not given:
            raise TunesmithError(
                "describe the use case (--problem and --examples, --from FILE or --interactive), "
                "or pass --config tunesmith.yaml for the estimate"
            )
        usecase = usecase_from_mapping(given, where)
    else:
        usecase = None
    answer: dict[str, Any] = {}
    if usecase is not None:
        advice = recommend(usecase)
        answer["advice"] = {"recommendation": advice.recommendation, "reasons": advice.reasons, "also": advice.also}
    plan = None
    if config is not None:
        from tunesmith.estimate.advice import plan_for_config

        plan = plan_for_config(load(config, None), gpus_path=gpus, tokens_per_s=tokens_per_s)
        answer["estimate"] = plan.to_dict()
    if as_json:
        out.print_json(data=answer)
        return
    if usecase is not None:
        out.print(f"[bold]Recommendation: {advice.recommendation.replace('_', ' ')}[/]")
        for reason in advice.reasons:
            out.print(f"  • {reason}", highlight=False)
        for note in advice.also:
            out.print(f"  [dim]also:[/] {note}", highlight=False)
    if plan is not None:
        from tunesmith.cli.views import print_plan

        print_plan(plan)


def _usecase_file(path: Path) -> dict[str, Any]:
    """The use case's fields from a YAML file, with a clear error for a missing or malformed one."""
    import yaml

    if not path.exists():
        raise TunesmithError(f"{path}: no such file")
    try:
        given = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise TunesmithError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(given, dict):
        raise TunesmithError(f"{path}: expected a mapping of use-case fields")
    return given
