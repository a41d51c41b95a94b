"""Data-parallel training on several processes: `tunesmith train ... --nproc N` runs this under torchrun.

torchrun starts N copies; transformers' Trainer (through accelerate) joins them into one
process group — gloo on CPUs, NCCL on GPUs — and each process trains on its share of
every batch. FSDP or DeepSpeed ZeRO are the same launch with an accelerate config:
`accelerate launch --config_file fsdp.yaml -m tunesmith.train.launch tunesmith.yaml`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def launch(
    cfg: Any, overrides: list[str], nproc: int, resume: bool, on_fit: Callable[[dict[str, Any]], None] | None = None
) -> int:
    """Start `nproc` training processes with torchrun and wait for them. `cfg` is the loaded config (its base
    model resolved); each process loads its file again with `overrides`, which must name that base model."""
    from tunesmith.train.stage import preflight, previous_choices, train_dir

    config = cfg.config_path
    if resume:
        cfg = previous_choices(cfg)
    # chosen once, for all processes (memory shared by N copies on one machine), and passed down as settings
    fit = preflight(cfg, nproc=nproc)
    if fit.choices and on_fit:
        on_fit(fit.to_dict())
    chosen = [f"{c['setting']}={c['value']}" for c in fit.choices]
    if not resume:
        shutil.rmtree(train_dir(cfg), ignore_errors=True)  # here, once, not racing in N processes
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "tunesmith.train.launch",
        str(Path(config).resolve()),
        *overrides,
        *chosen,
        "--resume",
    ]
    env = {
        **os.environ,
        "TUNESMITH_PREFLIGHT_DONE": "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc))),
    }
    return subprocess.call(cmd, env=env)


def main(argv: list[str]) -> None:
    from tunesmith.config import load_config
    from tunesmith.train.stage import run_train

    resume = "--resume" in argv
    args = [a for a in argv if a != "--resume"]
    cfg = load_config(args[0], args[1:])
    run_train(cfg, resume=resume)


if __name__ == "__main__":
    main(sys.argv[1:])
