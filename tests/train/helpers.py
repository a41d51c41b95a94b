"""Tiny training projects for tests: a tiny model, small data, the data stage already run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import yaml

from tunesmith.config import load_config


def arithmetic_rows(n: int = 64, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        rows.append(
            {"messages": [{"role": "user", "content": f"{a} + {b} = ?"}, {"role": "assistant", "content": f"{a + b}"}]}
        )
    return rows


def preference_rows(n: int = 40, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [
        {"prompt": f"Is {rng.randint(0, 99)} a number? Answer yes or no.", "chosen": "yes", "rejected": "no"}
        for _ in range(n)
    ]


def make_project(root: Path, model_dir: Path, rows: list[dict], **train) -> Path:
    """Write tunesmith.yaml + data under `root` and run the data stage; returns the config path."""
    from tunesmith.data.pairs import pair_lengths
    from tunesmith.data.stage import check_config, prepare_splits, split_outcome
    from tunesmith.models import load_tokenizer

    root.mkdir(parents=True, exist_ok=True)
    (root / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = {
        "max_steps": 8,
        "logging_steps": 1,
        "eval_steps": 4,
        "save_steps": 4,
        "micro_batch_size": 2,
        "gradient_accumulation_steps": 2,
        "learning_rate": 1e-2,
        "mlflow": False,
        "bf16": False,
        "warmup_ratio": 0.03,
        "early_stopping_patience": None,
        **train,
    }
    path = root / "tunesmith.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "base_model": str(model_dir),
                "output_dir": "out",
                "data": {"datasets": [{"path": "d.jsonl"}], "max_length": 64, "dedup": "none"},
                "train": settings,
            }
        )
    )
    cfg = load_config(path)
    split_outcome(cfg, check_config(cfg, keep_records=True, show_progress=False))
    if cfg.train.method == "sft":
        prepare_splits(cfg, load_tokenizer(str(model_dir)))
    else:  # as the pipeline's data stage does: the pairs' lengths for the pre-flight check
        pair_lengths(cfg, load_tokenizer(str(model_dir)))
    return path
