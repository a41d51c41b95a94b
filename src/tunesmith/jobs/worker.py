"""The fine-tuning jobs worker: takes queued jobs and runs the pipeline on each, outside the web process.

Each job is a project folder (`<output_dir>/jobs/runs/<job id>/`: its files, its tunesmith.yaml,
its outputs) trained by a child process running `tunesmith.pipeline.run_pipeline` (jobs/child.py), so a
job gets exactly the pipeline a user gets: data check, train, evaluate, gate, register. The worker follows the child through
the files training writes (progress.json, metrics.csv, checkpoints marked complete, the
evaluation's metrics) and turns them into the job's events, checkpoints and estimated finish.

Nothing is lost when a worker dies: it holds each job by a heartbeat in the database; a worker
that starts (or another one) takes over any running job whose heartbeat stopped and runs the
pipeline again in the same folder, which skips the finished stages and resumes training
from the last complete checkpoint. Events and checkpoints have unique keys, so a job's history
is listed once. The child dies with the worker (Linux: PR_SET_PDEATHSIG), and a stale child
still found alive is killed before the job restarts. Pausing stops the child; resuming
continues from the last complete checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunesmith.config import ProjectConfig
from tunesmith.console import err
from tunesmith.evaluate.gate import failed_gates_text, read_gates
from tunesmith.evaluate.result import read_eval
from tunesmith.jobs.api import jobs_root
from tunesmith.jobs.progress import checkpoint_metrics, last_error, merged_rows, read_json, trained_tokens
from tunesmith.jobs.spec import fine_tuned_name, job_config
from tunesmith.jobs.store import JobStore, pid_alive
from tunesmith.processes import dies_with_parent

STALE_S = 15.0  # a job whose worker has not beaten for this long is taken over


class JobError(Exception):
    """A job that cannot run, for a reason its owner can act on (the message says which)."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


@dataclass
class Running:
    job: dict[str, Any]
    proc: subprocess.Popen
    folder: Path
    log: Any
    seen_rows: set = field(default_factory=set)


class Worker:
    def __init__(self, cfg: ProjectConfig, *, poll_s: float = 1.0, stale_s: float = STALE_S):
        self.cfg = cfg
        self.store = JobStore(jobs_root(cfg))
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.poll_s, self.stale_s = poll_s, stale_s
        self.running: dict[str, Running] = {}
        self._stop = False

    def stop(self, *_: Any) -> None:
        self._stop = True

    def run_forever(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        err.print(f"jobs worker {self.name}: watching {self.store.root}")
        try:
            while not self._stop:
                self.step()
                time.sleep(self.poll_s)
        finally:
            for r in list(self.running.values()):  # leave them running? no: a stopped worker stops its jobs,
                self._kill(r)  # and the next worker resumes them from their checkpoints
            self.store.close()

    def step(self) -> None:
        for job_id, r in list(self.running.items()):
            try:
                self._tend(job_id, r)
            except Exception as exc:  # one job's fault fails that job, never the worker and the other jobs
                self._kill(r)
                self.running.pop(job_id, None)
                self._fail(job_id, exc)
        if len(self.running) < self.cfg.serve.jobs.max_parallel and self._room():
            self.store.release_dead(socket.gethostname())
            job = self.store.claim(self.name, self.stale_s)
            if job is not None:
                try:
                    self._start(job)
                except Exception as exc:
                    self._fail(job["id"], exc)

    def _tend(self, job_id: str, r: Running) -> None:
        self._follow(r)
        status = self.store.beat(job_id, self.name)
        if status != "running":  # cancelled, paused, or taken over
            self._kill(r)
            self._follow(r)
            del self.running[job_id]
            return
        code = r.proc.poll()
        if code is not None:
            self._follow(r)
            self._finish(r, code)
            del self.running[job_id]

    def _fail(self, job_id: str, exc: Exception) -> None:
        """Mark one job failed with what went wrong, in words and without paths; the worker goes on."""
        if isinstance(exc, JobError):
            code, message = exc.code, str(exc)
        else:
            code, message = (
                "server_error",
                (f"the job could not be run ({type(exc).__name__}); the server's log has the details"),
            )
            err.print(f"jobs worker: job {job_id} failed: {type(exc).__name__}: {exc}")
        if self.store.move(
            job_id,
            ("running", "queued"),
            "failed",
            error={"code": code, "param": None, "message": message},
            finished_at=int(time.time()),
            estimated_finish=None,
        ):
            self.store.event(job_id, "failed", message, level="error")

    def _room(self) -> bool:
        """Another job fits: the memory the running ones planned (their fit.json), plus as much again
        for the new one (same base model), is within what is available now."""
        if not self.running:
            return True
        from tunesmith.hardware import available_memory

        planned = []
        for r in self.running.values():
            fit = r.folder / "outputs" / "train" / "fit.json"
            if not fit.exists():
                return False  # its pre-flight estimate is not known yet: wait for it
            planned.append(float(json.loads(fit.read_text()).get("estimate_gb") or 0))
        return max(planned) * 1.1 <= available_memory("cpu") / 1e9

    # a job's life
    def _start(self, job: dict[str, Any]) -> None:
        folder = Path(job["folder"])
        config = folder / "tunesmith.yaml"
        restart = config.exists()
        if job.get("pid") and pid_alive(job["pid"]) and _is_job_child(job["pid"], folder):
            os.killpg(job["pid"], signal.SIGKILL)  # a child of a dead worker that outlived it
        if not restart:
            self._write_project(job, folder)
        log = open(folder / "run.log", "a", encoding="utf-8")
        env = {**os.environ, "TUNESMITH_JOB": job["id"], "PYTHONUNBUFFERED": "1", "COLUMNS": "100"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "tunesmith.jobs.child", str(config)],
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=dies_with_parent(own_group=True),  # stopping the job stops all it started
        )
        self.store.update(job["id"], pid=proc.pid)
        n = (
            sum(1 for line in (folder / "starts.log").read_text().splitlines())
            if (folder / "starts.log").exists()
            else 0
        )
        with open(folder / "starts.log", "a") as fh:
            fh.write(f"{time.time()} {self.name}\n")
        if n == 0:
            self.store.event(job["id"], "started", "Fine-tuning job started")
        else:
            self.store.event(
                job["id"],
                f"restarted-{n}",
                f"Fine-tuning job continued from its last complete checkpoint by worker {self.name}",
            )
        self.running[job["id"]] = Running(job, proc, folder, log)

    def _write_project(self, job: dict[str, Any], folder: Path) -> None:
        from tunesmith.config import TrainConfig
        from tunesmith.estimate.fit import default_learning_rate
        from tunesmith.estimate.plan import model_arch

        folder.mkdir(parents=True, exist_ok=True)
        files = {}
        for key in ("training_file", "validation_file"):
            if job[key]:
                row = self.store.file(job["org"], job[key])
                if row is None or not Path(row["path"]).exists():
                    raise JobError(
                        f"{key} {job[key]} was deleted before the job could start; upload it again and "
                        "create a new job",
                        f"invalid_{key}",
                    )
                dest = folder / "data" / f"{key.split('_')[0]}.jsonl"
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(row["path"], dest)  # the job keeps its own copy
                files[key] = dest.relative_to(folder)
        job = {**job, "fine_tuned_name": fine_tuned_name(job["model"], job["org"], job["suffix"], job["id"])}
        adapter = self.cfg.serve.jobs.project.get("train", {}).get("adapter", "lora")

        def default_lr(method: str) -> float:  # what `auto` would be: the multiplier scales it
            return default_learning_rate(TrainConfig(adapter=adapter, method=method), model_arch(self.cfg).params)[0]

        cfg = job_config(
            self.cfg.serve.jobs.project,
            job,
            files["training_file"],
            files.get("validation_file"),
            self.cfg.base_model,
            default_lr,
        )
        from tunesmith.files import write_atomic

        write_atomic(folder / "tunesmith.yaml", yaml.safe_dump(cfg, sort_keys=False))

    def _kill(self, r: Running) -> None:
        if r.proc.poll() is None:
            try:
                os.killpg(r.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            r.proc.wait()
        r.log.close()

    def _finish(self, r: Running, code: int) -> None:
        job_id, out = r.job["id"], r.folder / "outputs"
        r.log.close()
        now = int(time.time())
        if code == 0:
            state = json.loads((out / "run_state.json").read_text())
            version = state.get("register", {}).get("version")
            name = fine_tuned_name(r.job["model"], r.job["org"], r.job["suffix"], job_id)
            results = self._result_file(r)
            tokens = trained_tokens(out)
            if self.store.move(
                job_id,
                ("running",),
                "succeeded",
                fine_tuned_model=name,
                adapter_path=str(out / "train" / "model"),
                finished_at=now,
                trained_tokens=tokens,
                result_files=[results] if results else [],
                estimated_finish=None,
            ):
                self._gate_event(job_id, out)
                self.store.event(
                    job_id, "registered", f"Gates passed; registered as version {version}", data={"version": version}
                )
                self.store.event(job_id, "model", f"New fine-tuned model created: {name}")
                self.store.event(job_id, "succeeded", "The job has successfully completed")
            return
        verdicts = read_gates(out / "eval")
        if verdicts is not None and not verdicts.passed:
            self._gate_event(job_id, out)
            error = {
                "code": "quality_gate_failed",
                "param": None,
                "message": "A blocking quality gate failed; the model was not registered. "
                + failed_gates_text(verdicts.gates),
            }
        else:
            error = {
                "code": "training_failed",
                "param": None,
                "message": f"The fine-tuning run stopped with exit code {code}: "
                + last_error(r.folder / "run.log", r.folder),
            }
        if self.store.move(job_id, ("running",), "failed", error=error, finished_at=now, estimated_finish=None):
            self.store.event(job_id, "failed", error["message"], level="error")

    def _gate_event(self, job_id: str, out: Path) -> None:
        """Every gate's verdict, as one event the client can read (`data.gates`)."""
        verdicts = read_gates(out / "eval")
        if verdicts is None:
            return
        word = {True: "pass", False: "FAIL", None: "not measured"}
        parts = [
            f"{g.name} {'-' if g.measured is None else format(g.measured, '.3f')} "
            f"({g.threshold}): {word[g.passed] if g.blocking or g.passed is not False else 'warn'}"
            for g in verdicts.gates
        ]
        self.store.event(
            job_id,
            "gates",
            "Quality gates: " + "; ".join(parts),
            data={"passed": verdicts.passed, "gates": [asdict(g) for g in verdicts.gates]},
        )

    def _result_file(self, r: Running) -> str | None:
        """The step metrics as OpenAI's result file (CSV: step, train_loss, train_accuracy, valid_loss,
        valid_mean_token_accuracy), stored as a file with purpose fine-tune-results."""
        metrics = r.folder / "outputs" / "train" / "metrics.csv"
        if not metrics.exists():
            return None
        rows = merged_rows(metrics)
        lines = ["step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"]
        for step, row in sorted(rows.items()):
            lines.append(
                ",".join(
                    str(x if x is not None else "")
                    for x in (
                        step,
                        row.get("loss"),
                        row.get("mean_token_accuracy"),
                        row.get("eval_loss"),
                        row.get("eval_mean_token_accuracy"),
                    )
                )
            )
        stored = self.store.add_file(
            r.job["org"], "step_metrics.csv", "fine-tune-results", ("\n".join(lines) + "\n").encode(), "processed", None
        )
        return stored["id"]

    def _follow(self, r: Running) -> None:
        """Turn what the run has written so far into events, checkpoints and an estimated finish."""
        job_id, train = r.job["id"], r.folder / "outputs" / "train"
        progress = read_json(train / "progress.json")
        total = progress.get("max_steps") if progress else None
        metrics = train / "metrics.csv"
        rows = merged_rows(metrics) if metrics.exists() else {}
        for step, row in sorted(rows.items()):
            for kind, key, label in (("train", "loss", "training loss"), ("valid", "eval_loss", "validation loss")):
                if row.get(key) is None or (step, kind) in r.seen_rows:
                    continue
                r.seen_rows.add((step, kind))
                accuracy = row.get("mean_token_accuracy" if kind == "train" else "eval_mean_token_accuracy")
                message = f"Step {step}" + (f"/{total}" if total else "") + f": {label}={row[key]:.4f}"
                if accuracy is not None:
                    message += f", {'' if kind == 'train' else 'validation '}token accuracy={accuracy:.4f}"
                self.store.event(
                    job_id,
                    f"step-{step}-{kind}",
                    message,
                    type="metrics",
                    data={"step": step, key: row[key], "total_steps": total},
                )
        checkpoints = train / "checkpoints"
        if checkpoints.exists():
            for mark in sorted(checkpoints.glob("checkpoint-*/tunesmith-complete.json")):
                step = json.loads(mark.read_text())["step"]
                if self.store.checkpoint(job_id, step, checkpoint_metrics(rows, step)):
                    self.store.event(job_id, f"checkpoint-{step}", f"Checkpoint saved at step {step}")
        if progress and total and progress["step"] > progress["started_step"]:
            per_step = (progress["updated"] - progress["started"]) / (progress["step"] - progress["started_step"])
            self.store.update(job_id, estimated_finish=int(time.time() + per_step * (total - progress["step"])))
        metrics_json = r.folder / "outputs" / "eval" / "metrics.json"
        if metrics_json.exists():
            try:
                evaluated = read_eval(metrics_json)
            except (OSError, ValueError):  # written atomically; unreadable means not there yet
                return
            tuned, base = evaluated.models.get("fine_tuned"), evaluated.base
            if tuned and tuned.task_metric:
                name = tuned.task_metric_name.replace("_", " ")
                before = base.task_metric if base and base.task_metric else None
                self.store.event(
                    job_id,
                    "evaluated",
                    f"Evaluated on {evaluated.test_examples} test examples: {name} "
                    f"{tuned.task_metric.mean:.3f} (base model {before.mean if before else float('nan'):.3f})",
                    data={
                        "fine_tuned": tuned.values["task_metric"],
                        "base": base.values.get("task_metric") if base else None,
                    },
                )


def _is_job_child(pid: int, folder: Path) -> bool:
    try:
        return str(folder) in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
