"""Multi-task training: how many training records each task gets.

With several tasks of very different sizes, training on them as they are (by size) lets the large
task drown the small ones; equal shares overfit the small ones by repetition. The T5 and mT5 papers
(Raffel et al. 2020, §3.5.2; Xue et al. 2021) sample task i with probability ∝ n_i^(1/T): T=1 is by
size, T→∞ is equal. The total number of training records stays the same; a task above its own
size is repeated (whole copies first, then a seeded sample), one below it is subsampled.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from tunesmith.data.records import Conversation


def task_shares(sizes: dict[str, int], rule: str, temperature: float = 2.0) -> dict[str, float]:
    """Each task's share of the training records under `rule` (size, equal or temperature)."""
    if rule == "equal":
        weights = {t: 1.0 for t in sizes}
    elif rule == "temperature":
        weights = {t: n ** (1.0 / temperature) for t, n in sizes.items()}
    else:
        weights = {t: float(n) for t, n in sizes.items()}
    total = sum(weights.values())
    return {t: w / total for t, w in weights.items()}


def sample_tasks(
    records: list[Conversation], rule: str, temperature: float, seed: int
) -> tuple[list[Conversation], dict[str, Any]]:
    """The training records drawn by task share (same total), with a summary per task."""
    by_task: dict[str, list[Conversation]] = defaultdict(list)
    for r in records:
        by_task[str(r.meta.get("task", "default"))].append(r)
    sizes = {t: len(rs) for t, rs in sorted(by_task.items())}
    shares = task_shares(sizes, rule, temperature)
    total = sum(sizes.values())
    rng = random.Random(seed)
    out: list[Conversation] = []
    summary: dict[str, Any] = {"rule": rule, "temperature": temperature if rule == "temperature" else None, "tasks": {}}
    for task, rs in sorted(by_task.items()):
        target = max(1, round(shares[task] * total))
        whole, rest = divmod(target, len(rs))
        drawn = rs * whole + rng.sample(rs, rest)
        out += drawn
        summary["tasks"][task] = {
            "records": len(rs),
            "drawn": len(drawn),
            "share": round(shares[task], 4),
            "share_by_size": round(len(rs) / total, 4),
        }
    rng.shuffle(out)
    return out, summary
