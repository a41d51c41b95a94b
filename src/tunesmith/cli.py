"""The `tunesmith` command line: one command group per stage, thin, calling the stage functions.

Heavy libraries (torch, transformers, datasets) are imported inside the commands that
need them, so `--help`, `init` and `config` answer at once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from typer.core import TyperGroup

from tunesmith import __version__
from tunesmith.console import err, out
from tunesmith.errors import TunesmithError

app = typer.Typer(help="Fine-tune language models end to end: data → train → evaluate → register → serve.",
                  no_args_is_help=True, rich_markup_mode="rich", pretty_exceptions_enable=False)
data_app = typer.Typer(help="Check, split, preview and prepare training data.", no_args_is_help=True)
app.add_typer(data_app, name="data")

OverridesArg = typer.Argument(None, help="Dotted overrides, e.g. data.max_length=1024 train.learning_rate=1e-4")


def _version(value: bool) -> None:
    if value:
        out.print(f"tunesmith {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Show the version and exit.")) -> None:
    """tunesmith: fine-tune language models end to end."""


def _is_config(path: str) -> bool:
    return path.lower().endswith((".yaml", ".yml"))


def _load(config: str, overrides: list[str] | None) -> Any:
    from tunesmith.config import load_config

    return load_config(config, overrides or [])


def _tokenizer_or_none(base_model: str, trust_remote_code: bool) -> Any:
    from tunesmith.models import load_tokenizer

    try:
        return load_tokenizer(base_model, trust_remote_code=trust_remote_code)
    except TunesmithError as exc:
        err.print(f"[yellow]warning:[/] token lengths not measured: {exc}")
        return None


@app.command()
def init(directory: Path = typer.Argument(..., help="Folder for the new project (created if missing).")) -> None:
    """Write a commented example project: tunesmith.yaml and a small data file."""
    from tunesmith.project import write_example_project

    for path in write_example_project(directory):
        out.print(f"[green]wrote[/] {path}")
    out.print(f"Next: [bold]tunesmith data check {directory / 'tunesmith.yaml'}[/]")


@app.command("config")
def show_config(config: str = typer.Argument(..., help="tunesmith.yaml"), overrides: Optional[list[str]] = OverridesArg
                ) -> None:
    """Validate a config and print it fully resolved (defaults filled in, overrides applied)."""
    from tunesmith.config import dump_config

    out.print(dump_config(_load(config, overrides)), highlight=False, markup=False)


@data_app.command("check")
def data_check(
    inputs: list[str] = typer.Argument(..., help="Data files or folders, or a tunesmith.yaml followed by overrides."),
    format: str = typer.Option("auto", "--format", "-f", help="Record format of the files (default: detected per file)."),
    label_field: Optional[str] = typer.Option(None, help="Field holding a label/category, for the balance report."),
    base_model: str = typer.Option("smollm2-135m-instruct", help="Tokenizer and chat template for token lengths."),
    max_length: int = typer.Option(2048, help="Report records longer than this many tokens."),
    no_lengths: bool = typer.Option(False, "--no-lengths", help="Skip token lengths (no tokenizer is loaded)."),
    redact_pii: bool = typer.Option(False, "--redact-pii", help="Also write a copy with PII replaced by placeholders."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Folder for the report and rejects file."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole report as JSON on stdout."),
) -> None:
    """Validate every record; report problems at file:line, write rejects, measure quality.

    Exit status: 0 when every record is valid, 1 when any was rejected, 2 on a usage error.
    """
    from tunesmith.config import FORMATS
    from tunesmith.data.check import sources_from_paths
    from tunesmith.data.stage import check_config, run_check

    if _is_config(inputs[0]):
        cfg = _load(inputs[0], inputs[1:])
        tokenizer = None if no_lengths else _tokenizer_or_none(cfg.base_model, cfg.trust_remote_code)
        outcome = check_config(cfg, tokenizer=tokenizer, show_progress=not as_json)
    else:
        if format not in FORMATS:
            raise TunesmithError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
        tokenizer = None if no_lengths else _tokenizer_or_none(base_model, False)
        outcome = run_check(sources_from_paths(inputs, format), out_dir or Path("tunesmith-check"),
                            tokenizer=tokenizer, max_length=max_length, label_field=label_field,
                            redact_pii=redact_pii, show_progress=not as_json)
    report = outcome.report
    if as_json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        from tunesmith.views import print_check

        print_check(report, outcome.out_dir)
    raise typer.Exit(1 if report["records"]["rejected"] else 0)


@data_app.command("split")
def data_split(config: str = typer.Argument(..., help="tunesmith.yaml"), overrides: Optional[list[str]] = OverridesArg,
               no_lengths: bool = typer.Option(False, "--no-lengths", help="Skip token lengths in the check report.")
               ) -> None:
    """Check the data, then write seeded, stratified train/validation/test splits."""
    from tunesmith.views import print_split

    cfg = _load(config, overrides)
    summary, outcome = _check_and_split(cfg, no_lengths)
    print_split(summary, outcome.out_dir)


def _check_and_split(cfg: Any, no_lengths: bool = False) -> tuple[dict, Any]:
    from tunesmith.data.stage import check_config, save_resolved_config, split_outcome

    tokenizer = None if no_lengths else _tokenizer_or_none(cfg.base_model, cfg.trust_remote_code)
    outcome = check_config(cfg, tokenizer=tokenizer, keep_records=True)
    if outcome.result.valid == 0:
        raise TunesmithError(f"no valid records to split; see {outcome.out_dir / 'report.md'}")
    save_resolved_config(cfg)
    return split_outcome(cfg, outcome), outcome


@data_app.command("synth")
def data_synth(seeds: list[Path] = typer.Argument(..., help="Seed data files (any format data check reads)."),
               base_url: str = typer.Option(..., help="Teacher endpoint, e.g. http://127.0.0.1:8000/v1 (tunesmith serve)."),
               model: str = typer.Option(..., help="Teacher model name at that endpoint."),
               out_file: Path = typer.Option(..., "--out", help="JSONL of the kept synthetic records."),
               per_seed: int = typer.Option(3, min=1, help="Candidates asked for per seed."),
               max_share: float = typer.Option(0.5, help="Cap on the synthetic share of seeds + synthetic."),
               existing: Optional[list[Path]] = typer.Option(None, help="More data the new records must not repeat."),
               api_key_env: Optional[str] = typer.Option(None, help="Environment variable holding the API key."),
               seed: int = typer.Option(0, help="Seed for the teacher's sampling.")) -> None:
    """Grow a seed set with a teacher model: validated, de-duplicated, tagged with provenance, capped."""
    import os

    from tunesmith.data.check import sources_from_paths, valid_records
    from tunesmith.data.records import Conversation
    from tunesmith.data.synth import synthesize, write_synthetic

    seed_records = [r for r in valid_records(sources_from_paths([str(p) for p in seeds])) if isinstance(r, Conversation)]
    if not seed_records:
        raise TunesmithError("no valid conversations in the seed files; run `tunesmith data check` on them")
    more = [r for r in valid_records(sources_from_paths([str(p) for p in existing]))
            if isinstance(r, Conversation)] if existing else []
    key = os.environ.get(api_key_env) if api_key_env else None
    kept, stats = synthesize(seed_records, seed_records + more, base_url=base_url, model=model, api_key=key,
                             per_seed=per_seed, max_share=max_share, seed=seed)
    write_synthetic(out_file, kept)
    out.print(f"asked {stats['asked']}, kept [bold]{stats['kept']}[/] → {out_file} "
              f"(synthetic share {stats['synthetic_share']:.0%})")
    for reason, n in stats["rejected"].items():
        out.print(f"  rejected {n}: {reason}", highlight=False)


@data_app.command("preview")
def data_preview(
    inputs: list[str] = typer.Argument(..., help="Data files, or a tunesmith.yaml followed by overrides."),
    count: int = typer.Option(3, "-n", help="How many records to show."),
    base_model: str = typer.Option("smollm2-135m-instruct", help="Tokenizer and chat template (for files)."),
    train_on_prompt: Optional[bool] = typer.Option(None, "--train-on-prompt/--assistant-only",
                                                   help="Override data.train_on_prompt."),
) -> None:
    """Show records after the chat template, marking the tokens the loss is computed on."""
    from itertools import islice

    from tunesmith.data.check import sources_from_paths, valid_records
    from tunesmith.data.preview import preview_panel
    from tunesmith.data.stage import config_sources
    from tunesmith.models import load_tokenizer

    system_prompt = None
    if _is_config(inputs[0]):
        cfg = _load(inputs[0], inputs[1:])
        sources, model, trust = config_sources(cfg), cfg.base_model, cfg.trust_remote_code
        on_prompt = cfg.data.train_on_prompt if train_on_prompt is None else train_on_prompt
        system_prompt = cfg.data.system_prompt
    else:
        sources, model, trust = sources_from_paths(inputs), base_model, False
        on_prompt = bool(train_on_prompt)
    tokenizer = load_tokenizer(model, trust_remote_code=trust)
    shown = 0
    for record in islice(valid_records(sources), count):
        out.print(preview_panel(record, tokenizer, train_on_prompt=on_prompt, system_prompt=system_prompt))
        shown += 1
    if not shown:
        raise TunesmithError("no valid records to preview; run `tunesmith data check` to see why")


@data_app.command("prepare")
def data_prepare(config: str = typer.Argument(..., help="tunesmith.yaml"),
                 overrides: Optional[list[str]] = OverridesArg) -> None:
    """Tokenise, mask and pack the train and validation splits for training."""
    from tunesmith.data.stage import prepare_splits
    from tunesmith.models import load_tokenizer
    from tunesmith.views import print_prepare

    cfg = _load(config, overrides)
    tokenizer = load_tokenizer(cfg.base_model, trust_remote_code=cfg.trust_remote_code)
    print_prepare(prepare_splits(cfg, tokenizer))


@app.command()
def advise(problem: Optional[str] = typer.Option(None, help="What is wrong today: format, knowledge, style, task or behavior."),
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
           config: Optional[str] = typer.Option(None, "--config", help="tunesmith.yaml: estimate memory, time and "
                                                "cost of training it on its data (full, LoRA, QLoRA)."),
           gpus: Optional[Path] = typer.Option(None, help="GPU table (YAML: name, memory_gb, bf16_tflops, "
                                               "usd_per_hour) instead of the packaged one."),
           tokens_per_s: Optional[float] = typer.Option(None, help="Training throughput here, if known."),
           as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON.")) -> None:
    """Prompting, RAG, LoRA, QLoRA, full fine-tuning or DPO? The guides' decision matrix with reasons; with
    --config, what training it costs in memory, time and money."""
    from tunesmith.advise import ask_usecase, recommend, usecase_from_mapping

    flags = {"problem": problem, "examples": examples, "changes": changes, "facts_change": facts_change,
             "budget_usd": budget, "accuracy_target": accuracy, "preference_pairs": preference_pairs,
             "gpu_memory_gb": gpu_memory, "params_b": params}
    given: dict[str, Any] = {}
    if from_file is not None:
        import yaml

        if not from_file.exists():
            raise TunesmithError(f"{from_file}: no such file")
        try:
            given = yaml.safe_load(from_file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise TunesmithError(f"{from_file}: not valid YAML: {exc}") from None
        if not isinstance(given, dict):
            raise TunesmithError(f"{from_file}: expected a mapping of use-case fields")
    given.update({k: v for k, v in flags.items() if v is not None})
    where = str(from_file) if from_file else "flags"
    if interactive:
        usecase = ask_usecase(lambda q, d: typer.prompt(q, default=d, show_default=bool(d)),
                              lambda m: err.print(f"[yellow]{m}[/]", highlight=False), given)
    elif given or config is None:
        if not given:
            raise TunesmithError("describe the use case (--problem and --examples, --from FILE or --interactive), "
                                 "or pass --config tunesmith.yaml for the estimate")
        usecase = usecase_from_mapping(given, where)
    else:
        usecase = None
    answer: dict[str, Any] = {}
    if usecase is not None:
        advice = recommend(usecase)
        answer["advice"] = {"recommendation": advice.recommendation, "reasons": advice.reasons, "also": advice.also}
    plan = None
    if config is not None:
        from tunesmith.estimate.plan import plan_for_config

        plan = plan_for_config(_load(config, None), gpus_path=gpus, tokens_per_s=tokens_per_s)
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
        from tunesmith.views import print_plan

        print_plan(plan)


@app.command()
def train(config: str = typer.Argument(..., help="tunesmith.yaml"), overrides: Optional[list[str]] = OverridesArg,
          resume: bool = typer.Option(False, "--resume", help="Continue from the last complete checkpoint."),
          nproc: int = typer.Option(1, "--nproc", min=1, help="Data-parallel processes (torchrun; gloo on CPU).")
          ) -> None:
    """Fine-tune the base model on the prepared data (SFT or DPO; LoRA, DoRA, IA3, prefix or full)."""
    if nproc > 1:
        from tunesmith.train.launch import launch

        from tunesmith.views import print_fit

        raise typer.Exit(launch(config, overrides or [], nproc, resume, on_fit=print_fit))
    from tunesmith.train.stage import run_train
    from tunesmith.views import print_fit, print_train

    cfg = _load(config, overrides)
    print_train(run_train(cfg, resume=resume, on_fit=print_fit))


class _DefaultRun(TyperGroup):
    """`tunesmith eval CONFIG` runs the evaluation; `tunesmith eval human ...` is a subcommand."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args.insert(0, "run")
        return super().resolve_command(ctx, args)


eval_app = typer.Typer(cls=_DefaultRun, no_args_is_help=True,
                       help="Evaluate: `tunesmith eval CONFIG` compares base, few-shot and fine-tuned models; "
                            "`tunesmith eval human export|import` runs a blind human comparison.")
human_app = typer.Typer(help="Blind A/B human evaluation: export sheets, import the filled ones.",
                        no_args_is_help=True)
app.add_typer(eval_app, name="eval")
eval_app.add_typer(human_app, name="human")


@eval_app.command("run")
def evaluate(config: str = typer.Argument(..., help="tunesmith.yaml"), overrides: Optional[list[str]] = OverridesArg,
             limit: Optional[int] = typer.Option(None, help="Score only the first N test examples.")) -> None:
    """Compare the fine-tuned model with the base model and a few-shot prompt on the test split and the suites."""
    from tunesmith.evaluate.stage import eval_dir, run_eval
    from tunesmith.views import print_eval

    cfg = _load(config, overrides)
    print_eval(run_eval(cfg, limit=limit), eval_dir(cfg))


@human_app.command("export")
def human_export(config: str = typer.Argument(..., help="tunesmith.yaml"),
                 n: Optional[int] = typer.Option(None, "--n", min=1, help="Pairs to rate (default: all test examples)."),
                 a: str = typer.Option("fine_tuned", help="First model (base, few_shot or fine_tuned)."),
                 b: str = typer.Option("base", help="Second model.")) -> None:
    """Write blind A/B sheets (CSV and a standalone HTML form) from the last evaluation."""
    from tunesmith.evaluate.human import export_sheets

    folder = export_sheets(_load(config, None), a, b, n)
    out.print(f"[green]wrote[/] {folder / 'sheet.csv'} and {folder / 'form.html'} for the raters; "
              f"keep {folder / 'key.json'} from them")
    out.print(f"Then: [bold]tunesmith eval human import {config} RATER1.csv RATER2.csv ...[/]")


@human_app.command("import")
def human_import(config: str = typer.Argument(..., help="tunesmith.yaml"),
                 sheets: list[Path] = typer.Argument(..., help="Filled sheets, one per rater (named after the rater).")
                 ) -> None:
    """Unblind filled sheets: win rates with intervals, rubric means, inter-rater agreement."""
    from tunesmith.evaluate.human import human_dir, import_sheets
    from tunesmith.views import print_human

    cfg = _load(config, None)
    print_human(import_sheets(cfg, sheets), human_dir(cfg))


@app.command()
def gate(config: str = typer.Argument(..., help="tunesmith.yaml"), overrides: Optional[list[str]] = OverridesArg
         ) -> None:
    """Check the evaluation against the quality gates; exit status 1 when a blocking gate fails."""
    raise typer.Exit(0 if _gate(_load(config, overrides)) else 1)


def _gate_rows(cfg: Any) -> list[Any]:
    """Check and print the gates; the rows say what passed."""
    from tunesmith.evaluate.gate import check_gates, load_metrics
    from tunesmith.train.stage import train_dir
    from tunesmith.views import print_gates

    meta_path = train_dir(cfg) / "metadata.json"
    training = json.loads(meta_path.read_text()) if meta_path.exists() else None
    rows = check_gates(cfg, load_metrics(cfg), training)
    print_gates(rows)
    return rows


def gates_ok(rows: list[Any]) -> bool:
    from tunesmith.evaluate.gate import gates_passed

    return gates_passed(rows)


def _gate(cfg: Any) -> bool:
    return gates_ok(_gate_rows(cfg))


def _registry_name(cfg: Any) -> str:
    from tunesmith.registry.tracking import model_name

    return model_name(cfg)


registry_app = typer.Typer(help="Versioned models in MLflow's registry: add, list, show, promote, rollback, export.",
                           no_args_is_help=True)
app.add_typer(registry_app, name="registry")
ConfigArg = typer.Argument(..., help="tunesmith.yaml (names the model and the MLflow store)")


@registry_app.command("add")
def registry_add(config: str = ConfigArg,
                 force: bool = typer.Option(False, "--force", help="Register even though a blocking gate failed.")
                 ) -> None:
    """Register the trained, evaluated model as a new version with lineage, gate result and model card."""
    from tunesmith.registry.store import add_version

    result = add_version(_load(config, None), force=force)
    state = "[green]gates passed[/]" if result["gates_passed"] else "[red]gates FAILED (forced)[/]"
    out.print(f"registered [bold]{result['name']} v{result['version']}[/] ({state}); model card: {result['card']}")
    out.print(f"Next: [bold]tunesmith registry promote {config} {result['version']} --to production[/] then "
              f"[bold]tunesmith serve {config}[/]")


@registry_app.command("list")
def registry_list(config: str = ConfigArg) -> None:
    """Every version, newest first, with aliases and gate status."""
    from tunesmith.registry.store import versions
    from tunesmith.views import print_versions

    print_versions(versions(_load(config, None)))


@registry_app.command("show")
def registry_show(config: str = ConfigArg, ref: str = typer.Argument(..., help="Version number or alias.")) -> None:
    """A version's lineage tags and model card."""
    from rich.markdown import Markdown

    from tunesmith.registry.store import show

    info = show(_load(config, None), ref)
    for key, value in sorted(info["tags"].items()):
        out.print(f"[dim]{key}[/] {value}", highlight=False)
    out.print(f"[dim]source[/] {info['source']}")
    out.print(Markdown(info["card"]))


@registry_app.command("promote")
def registry_promote(config: str = ConfigArg, ref: str = typer.Argument(..., help="Version number or alias."),
                     to: str = typer.Option(..., "--to", help="Alias: production, canary or shadow."),
                     force: bool = typer.Option(False, "--force", help="Allow a version whose gates failed."),
                     reason: str = typer.Option("", help="Why, kept in the history.")) -> None:
    """Point an alias at a version (the move is recorded in the history)."""
    from tunesmith.registry.store import promote

    event = promote(_load(config, None), ref, to, force=force, reason=reason)
    out.print(f"{event['alias']}: v{event['previous'] or '-'} → [bold]v{event['version']}[/]")


@registry_app.command("rollback")
def registry_rollback(config: str = ConfigArg,
                      alias: str = typer.Option("production", help="Alias to move back."),
                      reason: str = typer.Option("", help="Why, kept in the history.")) -> None:
    """Move an alias back to the version that held it before."""
    from tunesmith.registry.store import rollback

    event = rollback(_load(config, None), alias, reason)
    out.print(f"{event['alias']}: v{event['previous']} → [bold]v{event['version']}[/] (rolled back)")


@registry_app.command("history")
def registry_history(config: str = ConfigArg) -> None:
    """Every alias move, oldest first."""
    from tunesmith.registry.store import history
    from tunesmith.views import print_history

    print_history(history(_load(config, None)))


@registry_app.command("export")
def registry_export(config: str = ConfigArg, ref: str = typer.Argument(..., help="Version number or alias."),
                    out_dir: Path = typer.Option(..., "--out", help="Folder to write."),
                    merged: bool = typer.Option(False, "--merged", help="Also write the merged standalone model.")
                    ) -> None:
    """Write a version's adapter (and optionally the merged model) for plain transformers/peft."""
    from tunesmith.registry.store import export

    folder = export(_load(config, None), ref, out_dir, merged=merged)
    out.print(f"[green]exported to[/] {folder}")


@app.command("serve")
def serve_cmd(config: str = typer.Argument(..., help="tunesmith.yaml"), overrides: Optional[list[str]] = OverridesArg,
              host: Optional[str] = typer.Option(None, help="Address to bind (default serve.host, 127.0.0.1)."),
              port: Optional[int] = typer.Option(None, help="TCP port (default serve.port).")) -> None:
    """Serve the registry's versions and extra adapters behind an OpenAI-compatible API."""
    from tunesmith.serve.stage import serve

    serve(_load(config, overrides), host, port)


@app.command("rollout")
def rollout_cmd(config: str = typer.Argument(..., help="tunesmith.yaml"),
                to: int = typer.Option(..., "--to", help="Registry version to roll out."),
                steps: str = typer.Option("", help="Percent per step, e.g. 5,25,50,100 (default serve.rollout.steps)."),
                url: Optional[str] = typer.Option(None, help="The running server (default http://serve.host:serve.port)."),
                step_timeout: float = typer.Option(600, help="Seconds a step may wait for canary traffic."),
                force: bool = typer.Option(False, "--force", help="Allow a version whose gates failed.")) -> None:
    """Gradual rollout on a running server: canary at each step, advancing while its metrics hold, else rolled back."""
    import os

    from tunesmith.serve.rollout import drive_rollout

    cfg = _load(config, None)
    plan = [float(x) for x in steps.split(",") if x.strip()] if steps else cfg.serve.rollout.steps
    ok = drive_rollout(cfg, to, plan, url or f"http://{cfg.serve.host}:{cfg.serve.port}",
                       os.environ.get("TUNESMITH_API_KEY"), step_timeout=step_timeout, force=force,
                       echo=lambda line: out.print(line, highlight=False))
    raise typer.Exit(0 if ok else 1)


feedback_app = typer.Typer(help="Production feedback into the next training set.", no_args_is_help=True)
monitor_app = typer.Typer(help="Production monitoring: input drift, one-page report.", no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")
app.add_typer(monitor_app, name="monitor")


@feedback_app.command("export")
def feedback_export(config: str = typer.Argument(..., help="tunesmith.yaml"),
                    out_file: Path = typer.Option(..., "--out", help="Chat-format JSONL to write."),
                    pairs: Optional[Path] = typer.Option(None, help="Also write preference pairs (JSONL) here.")
                    ) -> None:
    """Write production feedback as training data (corrections as targets; preference pairs)."""
    from tunesmith.monitor.feedback import export_feedback

    result = export_feedback(_load(config, None), out_file, pairs)
    out.print(f"{result['feedback']} feedback entries: {result['chat_records']} chat records → {result['out']}"
              + (f", {result['preference_pairs']} preference pairs → {result['pairs']}" if pairs else ""))
    for reason, n in result["skipped"].items():
        out.print(f"[yellow]skipped {n}:[/] {reason}")
    out.print(f"Check it: [bold]tunesmith data check {out_file}[/]")


@monitor_app.command("drift")
def monitor_drift(config: str = typer.Argument(..., help="tunesmith.yaml"),
                  last: int = typer.Option(500, help="Most recent production prompts to compare.")) -> None:
    """Have production prompts moved away from the training data? Exit 1 when drift is found."""
    from tunesmith.monitor.stage import monitor_dir, run_drift
    from tunesmith.views import print_drift

    cfg = _load(config, None)
    result = run_drift(cfg, last)
    print_drift(result, monitor_dir(cfg) / "drift.json")
    raise typer.Exit(1 if result["drift"] else 0)


@monitor_app.command("report")
def monitor_report(config: str = typer.Argument(..., help="tunesmith.yaml")) -> None:
    """One page (Markdown + HTML) of traffic, latency, errors, feedback and drift per version over time."""
    from tunesmith.monitor.stage import write_monitor_report

    md, html = write_monitor_report(_load(config, None))
    out.print(f"[green]wrote[/] {md} and {html}")


@app.command("api-key")
def api_key() -> None:
    """Make a new API key; put its SHA-256 in serve.api_key_sha256 and give the key to the client."""
    import secrets

    from tunesmith.serve.app import hash_key

    key = f"ts-{secrets.token_urlsafe(32)}"
    out.print(f"key (give it to the client, it is not stored): {key}", highlight=False)
    out.print(f"serve.api_key_sha256 entry: {hash_key(key)}", highlight=False)


@app.command()
def merge(run_dir: Path = typer.Argument(..., help="A training run folder (<output_dir>/train)."),
          out_dir: Optional[Path] = typer.Option(None, "--out", help="Where to write it (default RUN/merged).")
          ) -> None:
    """Merge a LoRA adapter into its base model: a standalone safetensors folder."""
    from tunesmith.train.merge import merge_run

    out.print(f"[green]merged model written to[/] {merge_run(run_dir, out_dir)}")


@app.command()
def run(config: str = typer.Argument(..., help="tunesmith.yaml"), overrides: Optional[list[str]] = OverridesArg,
        force: Optional[list[str]] = typer.Option(None, "--force",
                                                  help="Redo this stage and those after it: data, train, eval, "
                                                       "register (repeatable).")) -> None:
    """Run the pipeline: data (check → split → prepare) → train → eval → gate → register.

    A stage whose inputs have not changed since it last completed is skipped; an interrupted
    training run resumes from its last complete checkpoint."""
    from tunesmith import pipeline
    from tunesmith.train.adapters import check_hardware

    cfg = _load(config, overrides)
    bad = [s for s in force or [] if s not in pipeline.STAGES]
    if bad:
        raise TunesmithError(f"--force {bad[0]}: not a stage; choose from {', '.join(pipeline.STAGES)}")
    check_hardware(cfg.train, cfg.device)  # a QLoRA config on a machine without a GPU fails here, not after the data stage
    fps, todo = pipeline.fingerprints(cfg), pipeline.plan(cfg, force or [])
    out.rule(f"[bold]tunesmith run[/] {cfg.config_path}")
    skipped = [s for s, what in todo.items() if what == "skip"]
    if skipped:
        out.print(f"unchanged since they last completed, skipped: [bold]{', '.join(skipped)}[/] "
                  "(--force STAGE redoes one)")
    if todo["data"] == "run":
        from tunesmith.data.stage import prepare_splits
        from tunesmith.models import load_tokenizer
        from tunesmith.views import print_check, print_prepare, print_split

        tokenizer = load_tokenizer(cfg.base_model, trust_remote_code=cfg.trust_remote_code)
        summary, outcome = _check_and_split(cfg)
        print_check(outcome.report, outcome.out_dir, brief=True)
        if outcome.result.rejected:
            out.print(f"[yellow]{outcome.result.rejected} records rejected and left out; "
                      f"see {outcome.out_dir / 'report.md'}[/]")
        print_split(summary, outcome.out_dir)
        if cfg.train.method == "sft":
            print_prepare(prepare_splits(cfg, tokenizer))
        pipeline.mark(cfg, "data", fps["data"])
    if todo["train"] != "skip":
        from tunesmith.train.stage import run_train
        from tunesmith.views import print_fit, print_train

        out.rule("[bold]train" + (" (resuming)" if todo["train"] == "resume" else ""))
        pipeline.mark(cfg, "train_started", fps["train"])
        print_train(run_train(cfg, resume=todo["train"] == "resume", on_fit=print_fit))
        pipeline.mark(cfg, "train", fps["train"])
    from tunesmith.evaluate.stage import eval_dir
    from tunesmith.views import print_eval

    if todo["eval"] == "run":
        from tunesmith.evaluate.stage import run_eval

        out.rule("[bold]evaluate")
        print_eval(run_eval(cfg), eval_dir(cfg))
        pipeline.mark(cfg, "eval", fps["eval"])
    else:
        from tunesmith.evaluate.gate import load_metrics

        print_eval(load_metrics(cfg), eval_dir(cfg))
    out.rule("[bold]gate")
    rows = _gate_rows(cfg)
    passed = gates_ok(rows)
    from tunesmith.views import print_run_summary

    if not passed:
        print_run_summary(cfg, rows, None)
        out.print("[bold red]A blocking gate failed;[/] the model is not registered. See the gates above and "
                  f"{eval_dir(cfg) / 'report.html'}.")
        raise typer.Exit(1)
    if todo["register"] == "skip":
        version = pipeline.load_state(cfg)["register"].get("version")
        out.print(f"[bold green]Gates passed.[/] Already registered as v{version} (unchanged).")
        print_run_summary(cfg, rows, (_registry_name(cfg), version, None))
        return
    out.rule("[bold]register")
    from tunesmith.registry.store import add_version

    result = add_version(cfg)
    pipeline.mark(cfg, "register", fps["register"], version=result["version"])
    out.print(f"[bold green]Gates passed.[/] Registered [bold]{result['name']} v{result['version']}[/]; "
              f"model card: {result['card']}")
    print_run_summary(cfg, rows, (result["name"], result["version"], result["card"]))


def main() -> None:
    """Entry point: user mistakes become one clear message and exit status 2, not a traceback."""
    try:
        app()
    except TunesmithError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True, markup=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
