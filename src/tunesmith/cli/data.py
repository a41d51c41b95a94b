"""`tunesmith data ...`: check, split, synth, preview and prepare."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from tunesmith.cli.common import OverridesArg, is_config, load, tokenizer_or_none
from tunesmith.console import out
from tunesmith.errors import TunesmithError

data_app = typer.Typer(help="Check, split, preview and prepare training data.", no_args_is_help=True)


@data_app.command("check")
def data_check(
    inputs: list[str] = typer.Argument(..., help="Data files or folders, or a tunesmith.yaml followed by overrides."),
    format: str = typer.Option(
        "auto", "--format", "-f", help="Record format of the files (default: detected per file)."
    ),
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

    if is_config(inputs[0]):
        cfg = load(inputs[0], inputs[1:])
        tokenizer = None if no_lengths else tokenizer_or_none(cfg.base_model, cfg.trust_remote_code)
        outcome = check_config(cfg, tokenizer=tokenizer, show_progress=not as_json)
    else:
        if format not in FORMATS:
            raise TunesmithError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
        tokenizer = None if no_lengths else tokenizer_or_none(base_model, False)
        outcome = run_check(
            sources_from_paths(inputs, format),
            out_dir or Path("tunesmith-check"),
            tokenizer=tokenizer,
            max_length=max_length,
            label_field=label_field,
            redact_pii=redact_pii,
            show_progress=not as_json,
        )
    report = outcome.report
    if as_json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        from tunesmith.cli.data_views import print_check

        print_check(report, outcome.out_dir)
    raise typer.Exit(1 if report["records"]["rejected"] else 0)


@data_app.command("split")
def data_split(
    config: str = typer.Argument(..., help="tunesmith.yaml"),
    overrides: Optional[list[str]] = OverridesArg,
    no_lengths: bool = typer.Option(False, "--no-lengths", help="Skip token lengths in the check report."),
) -> None:
    """Check the data, then write seeded, stratified train/validation/test splits."""
    from tunesmith.cli.data_views import print_split

    cfg = load(config, overrides)
    from tunesmith.data.stage import check_and_split

    summary, outcome = check_and_split(cfg, no_lengths)
    print_split(summary, outcome.out_dir)


@data_app.command("synth")
def data_synth(
    seeds: list[Path] = typer.Argument(..., help="Seed data files (any format data check reads)."),
    base_url: str = typer.Option(..., help="Teacher endpoint, e.g. http://127.0.0.1:8000/v1 (tunesmith serve)."),
    model: str = typer.Option(..., help="Teacher model name at that endpoint."),
    out_file: Path = typer.Option(..., "--out", help="JSONL of the kept synthetic records."),
    per_seed: int = typer.Option(3, min=1, help="Candidates asked for per seed."),
    max_share: float = typer.Option(0.5, help="Cap on the synthetic share of seeds + synthetic."),
    existing: Optional[list[Path]] = typer.Option(None, help="More data the new records must not repeat."),
    api_key_env: Optional[str] = typer.Option(None, help="Environment variable holding the API key."),
    seed: int = typer.Option(0, help="Seed for the teacher's sampling."),
) -> None:
    """Grow a seed set with a teacher model: validated, de-duplicated, tagged with provenance, capped."""
    import os

    from tunesmith.data.check import sources_from_paths, valid_records
    from tunesmith.data.records import Conversation
    from tunesmith.data.synth import synthesize, write_synthetic

    seed_records = [
        r for r in valid_records(sources_from_paths([str(p) for p in seeds])) if isinstance(r, Conversation)
    ]
    if not seed_records:
        raise TunesmithError("no valid conversations in the seed files; run `tunesmith data check` on them")
    more = (
        [r for r in valid_records(sources_from_paths([str(p) for p in existing])) if isinstance(r, Conversation)]
        if existing
        else []
    )
    key = os.environ.get(api_key_env) if api_key_env else None
    kept, stats = synthesize(
        seed_records,
        seed_records + more,
        base_url=base_url,
        model=model,
        api_key=key,
        per_seed=per_seed,
        max_share=max_share,
        seed=seed,
    )
    write_synthetic(out_file, kept)
    out.print(
        f"asked {stats['asked']}, kept [bold]{stats['kept']}[/] → {out_file} "
        f"(synthetic share {stats['synthetic_share']:.0%})"
    )
    for reason, n in stats["rejected"].items():
        out.print(f"  rejected {n}: {reason}", highlight=False)


@data_app.command("preview")
def data_preview(
    inputs: list[str] = typer.Argument(..., help="Data files, or a tunesmith.yaml followed by overrides."),
    count: int = typer.Option(3, "-n", help="How many records to show."),
    base_model: str = typer.Option("smollm2-135m-instruct", help="Tokenizer and chat template (for files)."),
    train_on_prompt: Optional[bool] = typer.Option(
        None, "--train-on-prompt/--assistant-only", help="Override data.train_on_prompt."
    ),
) -> None:
    """Show records after the chat template, marking the tokens the loss is computed on."""
    from itertools import islice

    from tunesmith.data.check import sources_from_paths, valid_records
    from tunesmith.data.preview import preview_panel
    from tunesmith.data.stage import config_sources
    from tunesmith.models import load_tokenizer

    system_prompt = None
    if is_config(inputs[0]):
        cfg = load(inputs[0], inputs[1:])
        sources, model, trust = config_sources(cfg), cfg.base_model, cfg.trust_remote_code
        on_prompt = cfg.data.train_on_prompt if train_on_prompt is None else train_on_prompt
        from tunesmith.data.stage import system_prompt_for

        system_prompt = system_prompt_for(cfg, list(valid_records(sources)))
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
def data_prepare(
    config: str = typer.Argument(..., help="tunesmith.yaml"), overrides: Optional[list[str]] = OverridesArg
) -> None:
    """Tokenise, mask and pack the train and validation splits for training (SFT); for preference
    training, measure the training pairs' lengths for the pre-flight check."""
    from tunesmith.cli.data_views import print_prepare
    from tunesmith.data.pairs import pair_lengths
    from tunesmith.data.stage import prepare_splits
    from tunesmith.models import load_tokenizer

    cfg = load(config, overrides)
    tokenizer = load_tokenizer(cfg.base_model, trust_remote_code=cfg.trust_remote_code)
    if cfg.train.method == "sft":
        print_prepare(prepare_splits(cfg, tokenizer))
        return
    pairs = pair_lengths(cfg, tokenizer)
    out.print(
        f"{pairs['train']['pairs']} training pairs, {pairs['train']['tokens']:,} tokens, longest "
        f"{pairs['train']['longest']} (window {pairs['max_length']}: {pairs['max_length_reason']}); "
        f"{pairs['train']['left_out']} longer than the window left out",
        highlight=False,
    )


@data_app.command("suggest")
def data_suggest(
    config: str = typer.Argument(..., help="tunesmith.yaml of a trained project"),
    out_file: Path = typer.Option(Path("suggested.jsonl"), "--out", help="JSONL to write, for labelling."),
    inputs: Optional[Path] = typer.Option(
        None, "--inputs", help="Unlabelled prompts to rank (any format `data check` reads: messages or a prompt field)."
    ),
    requests: bool = typer.Option(
        False, "--requests", help="Rank the production request log's prompts (needs serve.log_texts: true)."
    ),
    top: int = typer.Option(20, "--top", min=1, help="Entries in each list."),
    overrides: Optional[list[str]] = OverridesArg,
) -> None:
    """Which examples to label or fix next: training records the fine-tuned model finds hardest, and inputs
    where it is least certain (deduplicated). docs/data.md#which-examples-next."""
    from tunesmith.monitor.suggest import logged_prompts, read_prompts, suggest

    cfg = load(config, overrides)
    if inputs and requests:
        raise typer.BadParameter("give --inputs or --requests, not both")
    prompts = read_prompts(inputs) if inputs else logged_prompts(cfg) if requests else None
    result = suggest(cfg, out_file, prompts=prompts, top=top)
    out.print(
        f"hardest training records: {len(result['hard_training_records'])}; least certain inputs: "
        f"{len(result['uncertain_inputs'])}"
    )
    for r in result["hard_training_records"][:5]:
        m = r["meta"]
        out.print(f"  loss {m['loss']:.3f}  {m['file']}:{m['line']}", highlight=False)
    out.print(f"written: {result['out']} (for labelling) and {result['report']}")
