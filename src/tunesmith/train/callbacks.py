"""Trainer callbacks: a Rich progress bar, metric logs (CSV, MLflow), alarms, complete-checkpoint markers."""

from __future__ import annotations

import csv
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from tunesmith.console import err
from tunesmith.faults import fault_point

COMPLETE = "tunesmith-complete.json"


class RichProgress(TrainerCallback):
    """Step, loss, learning rate, real tokens/s and ETA, on one live line."""

    def __init__(self, collator: Any = None):
        self.collator = collator
        self.progress = None
        self._start_tokens = 0
        self._start = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        if not state.is_world_process_zero:
            return
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=err,
        )
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, stats="")
        self.progress.start()
        self._start = time.perf_counter()
        self._start_tokens = self.collator.real_tokens if self.collator else 0

    def tokens_per_second(self) -> float | None:
        if not self.collator:
            return None
        elapsed = time.perf_counter() - self._start
        return (self.collator.real_tokens - self._start_tokens) / elapsed if elapsed > 0 else None

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not self.progress or not logs:
            return
        parts = []
        if "loss" in logs:
            parts.append(f"loss {logs['loss']:.4f}")
        if "eval_loss" in logs:
            parts.append(f"val {logs['eval_loss']:.4f}")
        if logs.get("eval_task_metric") is not None:
            parts.append(f"val task {logs['eval_task_metric']:.3f}")
        if "learning_rate" in logs:
            parts.append(f"lr {logs['learning_rate']:.2e}")
        tps = self.tokens_per_second()
        if tps:
            parts.append(f"{tps:,.0f} tok/s")
        if parts:
            self.progress.update(self.task, stats=" · ".join(parts))

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress:
            self.progress.stop()


class MetricsLog(TrainerCallback):
    """Every logged value to metrics.csv, and to MLflow when a run is active."""

    FIELDS = [
        "step",
        "epoch",
        "loss",
        "eval_loss",
        "learning_rate",
        "grad_norm",
        "tokens_per_second",
        "time",
        "mean_token_accuracy",
        "eval_mean_token_accuracy",
        "eval_task_metric",
    ]

    def __init__(self, path: Path, progress: RichProgress | None = None, mlflow_run: str | None = None):
        self.path = path
        self.progress = progress
        self.mlflow_run = mlflow_run
        self.rows: list[dict[str, Any]] = []
        if path.exists():  # a resumed run continues its log
            with open(path, newline="") as fh:
                self.rows = list(csv.DictReader(fh))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"step": state.global_step, "epoch": round(state.epoch or 0, 4), "time": round(time.time(), 3)}
        for key in (
            "loss",
            "eval_loss",
            "learning_rate",
            "grad_norm",
            "mean_token_accuracy",
            "eval_mean_token_accuracy",
            "eval_task_metric",
        ):
            if key in logs:
                row[key] = logs[key]
        if self.progress and "loss" in logs and (tps := self.progress.tokens_per_second()):
            row["tokens_per_second"] = round(tps, 1)
        if not any(k in row for k in ("loss", "eval_loss")):
            return
        # a resumed run may repeat steps after its last checkpoint: the new values replace the old
        self.rows = [r for r in self.rows if not (int(r["step"]) >= row["step"] and _same_kind(r, row))] + [row]
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.FIELDS)
            writer.writeheader()
            writer.writerows(
                sorted(self.rows, key=lambda r: (int(r["step"]), "eval_loss" in r and bool(r["eval_loss"])))
            )
        tmp.replace(self.path)
        if self.mlflow_run:
            import mlflow

            # by run id: with train.report_to [mlflow], transformers' nested run is the active one meanwhile
            mlflow.log_metrics(
                {k: float(v) for k, v in row.items() if k not in ("step", "time")},
                step=state.global_step,
                run_id=self.mlflow_run,
            )


def _same_kind(a: dict, b: dict) -> bool:
    return bool(a.get("eval_loss") not in (None, "")) == ("eval_loss" in b)


SPIKE = 3.0  # a loss this many times the recent median
SPIKE_STEPS = 10  # steps (in 2 logs at least) a spike lasts before it is an alarm below the starting loss


class Alarms(TrainerCallback):
    """Say so, loudly, when training goes wrong: NaN or spiking loss, overfitting, a loss that does not move."""

    def __init__(self, path: Path):
        self.path = path
        self.losses: list[float] = []
        self.evals: list[tuple[int, float]] = []
        self.train_at_eval: list[float] = []
        self.raised: list[dict[str, Any]] = []
        self._flat_warned = False
        self.high: list[float] = []  # the logs in a row above SPIKE x the median before the first of them
        self.high_median = 0.0
        self.high_alarmed = False

    def _alarm(self, state, kind: str, message: str) -> None:
        entry = {"step": state.global_step, "kind": kind, "message": message}
        self.raised.append(entry)
        if state.is_world_process_zero:
            err.print(f"[bold yellow]alarm[/] step {state.global_step}: {message}")
            with open(self.path, "a") as fh:
                fh.write(json.dumps(entry) + "\n")

    def _spike(self, args, state, loss: float) -> None:
        """A loss above SPIKE x the median of the last 10 logs is worth an alarm when it is above where
        training started or lasts SPIKE_STEPS steps; one alarm for each such stretch. One step's loss moves
        with its windows' content: in the demo, logged every step, windows of replayed general answers read
        3-4x the ticket windows' loss for up to 3 steps in a row in the second epoch, while the validation
        loss kept falling."""
        lasting = max(2, math.ceil(SPIKE_STEPS / args.logging_steps))  # logs
        recent = self.losses[-10:]
        if not self.high and len(recent) >= 3:
            self.high_median = statistics.median(recent)  # held while a stretch lasts
        if not self.high_median or loss <= SPIKE * self.high_median:
            self.high, self.high_alarmed = [], False
            return
        self.high.append(loss)
        start = statistics.median(self.losses[:3])
        if (loss > start or len(self.high) >= lasting) and not self.high_alarmed:
            self.high_alarmed = True
            steps = len(self.high) * args.logging_steps
            where = f"above where training started ({start:.4f})" if loss > start else f"for {steps} steps"
            self._alarm(
                state,
                "spike",
                f"loss spiked to {', '.join(f'{x:.4f}' for x in self.high)} from a recent median of "
                f"{self.high_median:.4f}, {where}: lower the learning rate"
                + (" if it persists" if len(self.high) < lasting else ""),
            )

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs:
            return
        if "loss" in logs:
            loss = float(logs["loss"])
            grad_norm = float(logs.get("grad_norm", 0.0) or 0.0)
            if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                what = f"training loss is {loss}" if not math.isfinite(loss) else f"gradient norm is {grad_norm}"
                self._alarm(
                    state,
                    "nan",
                    f"{what}: the learning rate is probably too high ({args.learning_rate:g}); training stopped",
                )
                control.should_training_stop = True
                return
            if grad_norm == 0.0 and state.global_step > 1 and "grad_norm" in logs:
                self._alarm(
                    state,
                    "diverged",
                    "gradient norm is 0: the model has collapsed (the learning rate is "
                    f"probably too high, {args.learning_rate:g}) or nothing is trained; "
                    "training stopped",
                )
                control.should_training_stop = True
                return
            self._spike(args, state, loss)
            self.losses.append(loss)
            if len(self.losses) >= 8 and not self._flat_warned:
                low, high = min(self.losses), max(self.losses)
                if high - low < 0.01 * abs(statistics.mean(self.losses)):
                    self._flat_warned = True
                    self._alarm(
                        state,
                        "flat",
                        f"loss has stayed within {low:.4f}–{high:.4f} for {len(self.losses)} logs: "
                        "the learning rate may be too low, or the labels masked out — check "
                        "`tunesmith data preview`",
                    )
        if "eval_loss" in logs:
            self.evals.append((state.global_step, float(logs["eval_loss"])))
            self.train_at_eval.append(self.losses[-1] if self.losses else float("nan"))
            if len(self.evals) >= 3:
                (_, v1), (_, v2), (_, v3) = self.evals[-3:]
                t1, _, t3 = self.train_at_eval[-3:]
                if v1 < v2 < v3 and t3 < t1:
                    self._alarm(
                        state,
                        "overfitting",
                        f"validation loss rose twice ({v1:.4f} → {v3:.4f}) while training "
                        f"loss fell ({t1:.4f} → {t3:.4f}): the model is overfitting; "
                        "fewer epochs or more data",
                    )


class MarkComplete(TrainerCallback):
    """Mark a checkpoint complete once everything in it is written; resume trusts only marked ones."""

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        fault_point("before_mark", state.global_step)
        if folder.is_dir():
            tmp = folder / (COMPLETE + ".tmp")
            tmp.write_text(json.dumps({"step": state.global_step, "best": state.best_model_checkpoint}))
            tmp.replace(folder / COMPLETE)


class ProgressFile(TrainerCallback):
    """`progress.json` after every optimizer step: step, max_steps, when this process started
    training and at which step, so another process (the fine-tuning jobs worker) can follow the
    run and estimate its end without parsing its output."""

    def __init__(self, path: Path):
        self.path = path
        self.began: tuple[float, int] | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.began = (time.time(), state.global_step)
        self._write(state)

    def on_step_end(self, args, state, control, **kwargs):
        self._write(state)

    def _write(self, state) -> None:
        if not state.is_world_process_zero or self.began is None:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "step": state.global_step,
                    "max_steps": state.max_steps,
                    "started": self.began[0],
                    "started_step": self.began[1],
                    "updated": time.time(),
                }
            )
        )
        tmp.replace(self.path)


class StopAtStep(TrainerCallback):
    """Stop after a given optimizer step (simulates a run that is killed; used in tests)."""

    def __init__(self, step: int):
        self.step = step
        self.fired = False

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True
            self.fired = True


def task_early_stopping(patience: int) -> Any:
    """transformers' early stopping on `eval_task_metric`, counting evaluations only once the metric has
    risen above its value before training: a task metric often stays at the untrained model's 0.0 for the
    first evaluations while the loss falls, and patience spent there would stop a run that is learning."""
    from transformers import EarlyStoppingCallback

    class TaskEarlyStopping(EarlyStoppingCallback):
        def on_evaluate(self, args, state, control, metrics, **kwargs):
            seen = [h["eval_task_metric"] for h in state.log_history if h.get("eval_task_metric") is not None]
            if seen and max(seen) <= seen[0]:  # read from the log, so a resumed run counts the same
                return
            super().on_evaluate(args, state, control, metrics, **kwargs)

    return TaskEarlyStopping(early_stopping_patience=patience)
