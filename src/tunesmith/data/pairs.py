"""Preference pairs (DPO, ORPO) are trained as they are, not packed: the data stage measures the training
pairs' lengths once (`prepare.json`), and the pre-flight check plans from those figures
(estimate/plan.data_stats) instead of reading the records again."""

from __future__ import annotations

from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.data.stage import system_prompt_for, train_lengths
from tunesmith.files import write_json
from tunesmith.paths import data_dir


def pair_lengths(cfg: ProjectConfig, tokenizer: Any) -> dict[str, Any]:
    """For preference training (DPO), which trains on the pairs as they are: the training pairs' token
    lengths (prompt with the longer answer) and the window, as `prepare.json`. The pre-flight check reads
    these figures instead of reading the records again (estimate/plan.data_stats)."""
    from tunesmith.data.window import choose_window

    d = cfg.data
    system = system_prompt_for(cfg)
    lengths, context = train_lengths(cfg, tokenizer, system)
    window = (
        choose_window(lengths, context)
        if d.max_length == "auto"
        else {"max_length": d.max_length, "reason": "set in the config"}
    )
    max_length = int(window["max_length"])
    kept = [n for n in lengths if n <= max_length or d.truncation == "truncate"]
    summary = {
        "method": cfg.train.method,
        "max_length": max_length,
        "max_length_reason": window["reason"],
        "system_prompt": system,
        "train": {
            "pairs": len(kept),
            "left_out": len(lengths) - len(kept),
            "tokens": sum(min(n, max_length) for n in kept),
            "longest": min(max(kept, default=0), max_length),
        },
    }
    write_json(data_dir(cfg) / "prepare.json", summary)
    return summary
