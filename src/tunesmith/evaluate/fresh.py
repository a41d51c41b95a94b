"""`run_eval` in a fresh Python process: `python -m tunesmith.evaluate.fresh REQUEST.json`.

Generation runs slower in a process that has just trained than in a new one (the demo's evaluation,
cold, bf16 on AMX: 207.8 s in the training process against 177.5 s in a child, imports included;
benchmarks/eval_after_training.py, docs/benchmarks.md), so the pipeline evaluates in a child when it
trained in this one (`eval.fresh_process`). No library offers "run this function in a new interpreter
without re-running the caller's script":
multiprocessing's spawn re-imports `__main__`, which runs the whole script again when a user calls
`tunesmith.run()` at the top level of theirs. So the child is started as a module, with the config as
JSON. Its progress goes to the same terminal or job log; it dies with its parent; a TunesmithError in it
comes back as one with the same message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.errors import TunesmithError
from tunesmith.processes import dies_with_parent

if TYPE_CHECKING:
    from tunesmith.config import ProjectConfig
    from tunesmith.evaluate.result import EvalResult

USER_ERROR = 2  # exit status of a TunesmithError; its message is in the reply file


def _give_back_memory() -> None:
    """What training left behind in this process, freed before the child loads its models: objects held in
    reference cycles (the Trainer's), the freed heap (glibc keeps it otherwise) and, on a GPU, the blocks
    torch's caching allocator keeps. Without this a big model is in memory twice while the child runs."""
    import gc

    gc.collect()
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl)
            pass
    torch = sys.modules.get("torch")  # only if this process imported it
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def run_eval_fresh(cfg: ProjectConfig) -> EvalResult:
    """`run_eval(cfg)` in a new Python process; metrics.json and the reports as run_eval writes them."""
    from tunesmith.evaluate.result import read_eval

    _give_back_memory()

    with tempfile.TemporaryDirectory(prefix="tunesmith-eval-") as tmp:
        request, reply = Path(tmp) / "request.json", Path(tmp) / "reply.json"
        request.write_text(
            json.dumps(
                {
                    "config": cfg.model_dump(mode="json"),
                    "config_path": str(cfg.config_path) if cfg.config_path else None,
                    "reply": str(reply),
                }
            )
        )
        code = subprocess.run(
            [sys.executable, "-m", "tunesmith.evaluate.fresh", str(request)],
            env=_env(),
            preexec_fn=dies_with_parent(),  # in this process group: Ctrl-C and a job's kill reach it
        ).returncode
        if code == USER_ERROR and reply.exists():
            raise TunesmithError(json.loads(reply.read_text())["error"])
        if code != 0:
            raise RuntimeError(f"the evaluation's process ended with exit status {code}; its output is above")
    return read_eval(cfg)


def _env() -> dict[str, str]:
    """This environment, with the folder this tunesmith was imported from first on the child's path when
    it is a source tree (an edited sys.path, a checkout): the child runs the same code as its parent. An
    installed tunesmith is found by the same interpreter anyway, and site-packages before the standard
    library would let a backport there shadow it."""
    import tunesmith

    root = Path(tunesmith.__file__).resolve().parents[1]
    if root.name in ("site-packages", "dist-packages"):
        return dict(os.environ)
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(root) + (os.pathsep + path if path else "")}


def _config(request: dict[str, Any]) -> ProjectConfig:
    from tunesmith.config import ProjectConfig

    cfg = ProjectConfig.model_validate(request["config"])
    if request["config_path"]:
        cfg.config_path = Path(request["config_path"])
    return cfg


def main(path: str) -> int:
    from tunesmith.evaluate.stage import run_eval

    request = json.loads(Path(path).read_text())
    try:
        run_eval(_config(request))
    except TunesmithError as exc:
        Path(request["reply"]).write_text(json.dumps({"error": str(exc)}))
        return USER_ERROR
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1]))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole group: the parent says so, once, without a traceback
        sys.exit(130)
