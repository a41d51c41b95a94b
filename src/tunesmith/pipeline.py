"""The one pipeline: data → train → eval → gate → register, as a build system. The command line
(`tunesmith run`), the jobs worker and Python (`tunesmith.run(...)`) all call `run_pipeline`; each
renders its events its own way (a terminal view, a job's log, nothing).

Each stage has a fingerprint — a SHA-256 over what it reads: the data files' contents and
the `data` section for the data stage; the data fingerprint, `base_model`, `seed` and the
`train` section for training; the training fingerprint and the `eval` section (with the
suite files) for evaluation. The fingerprints chain, so a change anywhere redoes that stage
and everything after it. They are kept in `<output_dir>/run_state.json` once a stage
completes; a training run that started with the same fingerprint but did not finish is
resumed from its last complete checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.config import ProjectConfig
from tunesmith.errors import TunesmithError
from tunesmith.files import write_json

if TYPE_CHECKING:
    from tunesmith.data.stage import DataResult
    from tunesmith.evaluate.gate import GateRow
    from tunesmith.evaluate.result import EvalResult
    from tunesmith.registry.store import RegisterResult
    from tunesmith.train.stage import TrainResult

STAGES = ("data", "train", "eval", "register")


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def fingerprints(cfg: ProjectConfig) -> dict[str, str]:
    """Stage -> fingerprint of its inputs (reads the data files; imports nothing heavy)."""
    from tunesmith.evaluate.suites import suite_path

    files = {
        d.path: _file_hash(cfg.resolve(d.path)) if cfg.resolve(d.path).exists() else None for d in cfg.data.datasets
    }
    data = _digest(
        {"files": files, "data": cfg.data.model_dump(mode="json"), "seed": cfg.seed, "base_model": cfg.base_model}
    )
    train = _digest(
        {
            "data": data,
            "train": cfg.train.model_dump(mode="json"),
            "base_model": cfg.base_model,
            "seed": cfg.seed,
            "trust_remote_code": cfg.trust_remote_code,
        }
    )
    base = cfg.config_path.parent if cfg.config_path else None
    extra = {}
    for key, kind in (
        ("regression_suite", "regression"),
        ("safety_suite", "safety"),
        ("edge_cases", "edge_cases"),
        ("json_schema", None),
    ):
        value = getattr(cfg.eval, key)
        if value:
            path = cfg.resolve(value) if kind is None else suite_path(value, kind, base)
            extra[key] = _file_hash(path) if path.exists() else None
    if cfg.eval.lm_eval and cfg.eval.lm_eval.include_path:  # the user's own lm-eval task files
        folder = cfg.resolve(cfg.eval.lm_eval.include_path)
        extra["lm_eval"] = _file_hash(folder) if folder.exists() else None
    evaluation = _digest(
        {"train": train, "eval": cfg.eval.model_dump(mode="json", exclude={"fresh_process"}), "files": extra}
    )
    register = _digest(
        {"eval": evaluation, "gate": cfg.gate.model_dump(mode="json"), "registry": cfg.registry.model_dump(mode="json")}
    )
    return {"data": data, "train": train, "eval": evaluation, "register": register}


def state_path(cfg: ProjectConfig) -> Path:
    return cfg.output_path / "run_state.json"


def load_state(cfg: ProjectConfig) -> dict[str, Any]:
    path = state_path(cfg)
    return json.loads(path.read_text()) if path.exists() else {}


def mark(cfg: ProjectConfig, stage: str, fingerprint: str, **extra: Any) -> None:
    state = load_state(cfg)
    state[stage] = {"fingerprint": fingerprint, **extra}
    write_json(state_path(cfg), state)


def plan(cfg: ProjectConfig, force: list[str]) -> dict[str, str]:
    """Stage -> "run" | "skip" | "resume": forced stages and everything after them run again."""
    fps, state = fingerprints(cfg), load_state(cfg)
    first_forced = min((STAGES.index(s) for s in force), default=len(STAGES))
    out = {}
    for i, stage in enumerate(STAGES):
        done = state.get(stage, {}).get("fingerprint") == fps[stage]
        if i >= first_forced or not done:
            started = state.get("train_started", {}).get("fingerprint") == fps["train"]
            checkpoints = cfg.output_path / "train" / "checkpoints"
            out[stage] = (
                "resume"
                if stage == "train"
                and i < first_forced
                and started
                and checkpoints.exists()
                and any(checkpoints.glob("checkpoint-*"))
                else "run"
            )
        else:
            out[stage] = "skip"
    for i, stage in enumerate(STAGES):  # anything after a stage that runs runs too
        if out[stage] != "skip":
            for later in STAGES[i + 1 :]:
                out[later] = out[later] if out[later] != "skip" else "run"
            break
    return out


@dataclass
class Event:
    """Something the pipeline did, for whoever renders it. `kind`: plan (data: stage -> run/skip/resume),
    checked (the check outcome), split (its summary), prepared (the prepare summary), stage (a stage
    starts; data: "resuming" or not), fit (the pre-flight choices), trained (TrainResult), evaluated
    (EvalResult), gates (GateRows), registered (RegisterResult), unchanged (RegisterResult)."""

    kind: str
    stage: str
    data: Any = None


@dataclass
class RunResult:
    """What `run_pipeline` did: the stages it ran and skipped, the gates, and the version it registered."""

    config: ProjectConfig
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    gates: list[GateRow] = field(default_factory=list)
    passed: bool = False
    data: DataResult | None = None  # None when the data stage was skipped (unchanged)
    trained: TrainResult | None = None  # None when training was skipped
    evaluated: EvalResult | None = None
    registered: RegisterResult | None = None  # None when a gate blocked
    seconds: dict[str, float] = field(default_factory=dict)


def load(config: str | Path, overrides: list[str] | None = None) -> ProjectConfig:
    """The project config with overrides, its base model resolved for every caller: `registry:NAME@REF` is
    merged once and named by its folder (continual learning)."""
    from tunesmith.config import load_config

    cfg = load_config(config, overrides or [])
    if cfg.base_model.startswith("registry:"):
        from tunesmith.registry.parent import resolve_parent

        cfg = resolve_parent(cfg)
    return cfg


def run_pipeline(
    cfg: ProjectConfig,
    *,
    force: list[str] | None = None,
    resume: bool = True,
    on_event: Callable[[Event], None] | None = None,
) -> RunResult:
    """Run what has changed since it last completed: data (check, split, prepare) → train → eval → gate →
    register. Training interrupted with the same inputs resumes from its last complete checkpoint (unless
    `resume` is False); `force` redoes those stages and everything after them. A blocking gate that fails
    ends the run with `passed` False and nothing registered."""
    from tunesmith.train.adapters import check_hardware

    emit = on_event or (lambda event: None)
    bad = [s for s in force or [] if s not in STAGES]
    if bad:
        raise TunesmithError(f"--force {bad[0]}: not a stage; choose from {', '.join(STAGES)}")
    check_hardware(cfg.train, cfg.device)  # a QLoRA config without a GPU fails here, not after the data stage
    fps, todo = fingerprints(cfg), plan(cfg, force or [])
    if not resume and todo["train"] == "resume":
        todo["train"] = "run"
    result = RunResult(
        cfg,
        ran=[s for s, what in todo.items() if what != "skip"],
        skipped=[s for s, what in todo.items() if what == "skip"],
    )
    emit(Event("plan", "", dict(todo)))
    clock = [time.perf_counter()]

    def took(stage: str) -> float:
        now = time.perf_counter()
        result.seconds[stage], clock[0] = round(now - clock[0], 1), now
        return result.seconds[stage]

    if todo["data"] == "run":
        result.data = _data(cfg, emit)
        mark(cfg, "data", fps["data"], seconds=took("data"))
    if todo["train"] != "skip":
        from tunesmith.train.stage import run_train

        emit(Event("stage", "train", "resuming" if todo["train"] == "resume" else ""))
        mark(cfg, "train_started", fps["train"])
        took("train")  # the data stage was skipped or is marked: training's clock starts here
        result.trained = run_train(
            cfg, resume=todo["train"] == "resume", on_fit=lambda fit: emit(Event("fit", "train", fit))
        )
        emit(Event("trained", "train", result.trained))
        mark(cfg, "train", fps["train"], seconds=took("train"))
    from tunesmith.evaluate.gate import check_gates, write_gates
    from tunesmith.evaluate.result import read_eval

    if todo["eval"] == "run":
        emit(Event("stage", "eval"))
        if todo["train"] != "skip" and _fresh_process(cfg):  # ~1.17x slower in a process that has trained
            from tunesmith.evaluate.fresh import run_eval_fresh as evaluate
        else:
            from tunesmith.evaluate.stage import run_eval as evaluate
        evaluated = evaluate(cfg)
        mark(cfg, "eval", fps["eval"], seconds=took("eval"))
    else:
        evaluated = read_eval(cfg)
    result.evaluated = evaluated
    emit(Event("evaluated", "eval", evaluated))
    training = _training(cfg)
    result.gates = check_gates(cfg, evaluated, training)
    result.passed = write_gates(cfg, result.gates).passed
    emit(Event("gates", "gate", result.gates))
    if result.passed:
        result.registered = _register(
            cfg,
            todo["register"] == "skip",
            emit,
            lambda version: mark(cfg, "register", fps["register"], version=version, seconds=took("register")),
        )
    return result


def _register(
    cfg: ProjectConfig, unchanged: bool, emit: Callable[[Event], None], done: Callable[[int], None]
) -> RegisterResult:
    """The version registered for this evaluation: the one an earlier run registered when nothing changed
    since, else a new one (`done(version)` marks the stage complete)."""
    from tunesmith.registry.store import RegisterResult, add_version

    if unchanged:
        from tunesmith.tracking import model_name

        registered = RegisterResult(model_name(cfg), load_state(cfg)["register"].get("version"), True, [], None)
        emit(Event("unchanged", "register", registered))
        return registered
    emit(Event("stage", "register"))
    registered = add_version(cfg)
    done(registered.version)
    emit(Event("registered", "register", registered))
    return registered


def _data(cfg: ProjectConfig, emit: Callable[[Event], None]) -> DataResult:
    from tunesmith.data.stage import run_data

    emit(Event("stage", "data"))

    def step(kind: str, value: Any) -> None:
        if kind != "prepared" or cfg.train.method == "sft":  # DPO's pair lengths have no table of their own
            emit(Event(kind, "data", value))

    return run_data(cfg, step)


FRESH_PROCESS_PARAMS = 100e6  # eval.fresh_process auto: from here an evaluation takes minutes


def _fresh_process(cfg: ProjectConfig) -> bool:
    """Whether to evaluate in a new process after training in this one (`eval.fresh_process`)."""
    if cfg.eval.fresh_process != "auto":
        return bool(cfg.eval.fresh_process)
    from tunesmith.estimate.plan import model_arch

    try:
        return model_arch(cfg).params >= FRESH_PROCESS_PARAMS
    except TunesmithError:  # a hub model whose config cannot be read now: a real model, not a test's
        return True


def _training(cfg: ProjectConfig) -> dict[str, Any] | None:
    from tunesmith.paths import train_dir

    meta = train_dir(cfg) / "metadata.json"
    return json.loads(meta.read_text()) if meta.exists() else None


def run(
    config: str | Path,
    overrides: list[str] | None = None,
    *,
    force: list[str] | None = None,
    resume: bool = True,
    on_event: Callable[[Event], None] | None = None,
) -> RunResult:
    """`tunesmith run` from Python: load the config (with dotted overrides) and run the pipeline."""
    return run_pipeline(load(config, overrides), force=force, resume=resume, on_event=on_event)
