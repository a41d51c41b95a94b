"""`tunesmith run`: the pipeline, skipping stages whose inputs have not changed."""

from __future__ import annotations

import time
from typing import Optional

import typer

from tunesmith.cli.common import OverridesArg, load
from tunesmith.cli.data import check_and_split
from tunesmith.cli.evaluate import gate_rows, gates_ok
from tunesmith.console import out
from tunesmith.errors import TunesmithError


def run(config: str = typer.Argument(..., help="tunesmith.yaml"), overrides: Optional[list[str]] = OverridesArg,
        force: Optional[list[str]] = typer.Option(None, "--force",
                                                  help="Redo this stage and those after it: data, train, eval, "
                                                       "register (repeatable).")) -> None:
    """Run the pipeline: data (check → split → prepare) → train → eval → gate → register.

    A stage whose inputs have not changed since it last completed is skipped; an interrupted
    training run resumes from its last complete checkpoint."""
    from tunesmith import pipeline
    from tunesmith.train.adapters import check_hardware

    cfg = load(config, overrides)
    bad = [s for s in force or [] if s not in pipeline.STAGES]
    if bad:
        raise TunesmithError(f"--force {bad[0]}: not a stage; choose from {', '.join(pipeline.STAGES)}")
    check_hardware(cfg.train, cfg.device)  # a QLoRA config on a machine without a GPU fails here, not after the data stage
    fps, todo = pipeline.fingerprints(cfg), pipeline.plan(cfg, force or [])
    last = [time.perf_counter()]

    def took() -> float:
        """Seconds since the previous stage ended: kept with each stage, shown in the summary."""
        now = time.perf_counter()
        seconds, last[0] = now - last[0], now
        return round(seconds, 1)

    out.rule(f"[bold]tunesmith run[/] {cfg.config_path}")
    skipped = [s for s, what in todo.items() if what == "skip"]
    if skipped:
        out.print(f"unchanged since they last completed, skipped: [bold]{', '.join(skipped)}[/] "
                  "(--force STAGE redoes one)")
    if todo["data"] == "run":
        from tunesmith.cli.data_views import print_check, print_prepare, print_split
        from tunesmith.data.stage import prepare_splits
        from tunesmith.models import load_tokenizer

        tokenizer = load_tokenizer(cfg.base_model, trust_remote_code=cfg.trust_remote_code)
        summary, outcome = check_and_split(cfg)
        print_check(outcome.report, outcome.out_dir, brief=True)
        if outcome.result.rejected:
            out.print(f"[yellow]{outcome.result.rejected} records rejected and left out; "
                      f"see {outcome.out_dir / 'report.md'}[/]")
        print_split(summary, outcome.out_dir)
        if cfg.train.method == "sft":
            print_prepare(prepare_splits(cfg, tokenizer))
        pipeline.mark(cfg, "data", fps["data"], seconds=took())
    if todo["train"] != "skip":
        from tunesmith.cli.views import print_fit, print_train
        from tunesmith.train.stage import run_train

        out.rule("[bold]train" + (" (resuming)" if todo["train"] == "resume" else ""))
        pipeline.mark(cfg, "train_started", fps["train"])
        took()  # the data stage was skipped or is marked: training's clock starts here
        print_train(run_train(cfg, resume=todo["train"] == "resume", on_fit=print_fit))
        pipeline.mark(cfg, "train", fps["train"], seconds=took())
    from tunesmith.cli.views import print_eval
    from tunesmith.paths import eval_dir

    if todo["eval"] == "run":
        from tunesmith.evaluate.stage import run_eval

        out.rule("[bold]evaluate")
        print_eval(run_eval(cfg), eval_dir(cfg))
        pipeline.mark(cfg, "eval", fps["eval"], seconds=took())
    else:
        from tunesmith.evaluate.gate import load_metrics

        print_eval(load_metrics(cfg), eval_dir(cfg))
    out.rule("[bold]gate")
    rows = gate_rows(cfg)
    passed = gates_ok(rows)
    from tunesmith.cli.views import print_run_summary

    if not passed:
        print_run_summary(cfg, rows, None)
        out.print("[bold red]A blocking gate failed;[/] the model is not registered. See the gates above and "
                  f"{eval_dir(cfg) / 'report.html'}.")
        raise typer.Exit(1)
    if todo["register"] == "skip":
        version = pipeline.load_state(cfg)["register"].get("version")
        out.print(f"[bold green]Gates passed.[/] Already registered as v{version} (unchanged).")
        from tunesmith.tracking import model_name

        print_run_summary(cfg, rows, (model_name(cfg), version, None))
        return
    out.rule("[bold]register")
    from tunesmith.registry.store import add_version

    result = add_version(cfg)
    pipeline.mark(cfg, "register", fps["register"], version=result["version"], seconds=took())
    out.print(f"[bold green]Gates passed.[/] Registered [bold]{result['name']} v{result['version']}[/]; "
              f"model card: {result['card']}")
    print_run_summary(cfg, rows, (result["name"], result["version"], result["card"]))
