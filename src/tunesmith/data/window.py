"""`data.max_length: auto`: the training window chosen from the records' real token lengths.

The window is the shortest multiple of 64 that holds at least 99% of the training records
(chat template included) and that packing fills to at least 90%, never more than the model's
context. One shorter than most records drops or cuts them. One just above the records' length
packs badly: records of 85 tokens fill a 128-token window once and leave a third of it empty,
a third of every step's work spent on padding; a few multiples of 64 more hold two or three of
them. Longer than that gains nothing: packed windows cost per record (`eager_varlen` attends
within each record), and the micro-batch is sized in tokens, so a longer window means fewer
windows a step, not more memory. The fill is simulated with the packer's own best-fit on the
lengths (a sample of 20,000 for larger sets), up to four times the covering window or 512 tokens.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

COVER = 0.99
MULTIPLE = 64
FILL = 0.9  # the packing efficiency a window should reach
SAMPLE = 20_000


def choose_window(
    lengths: list[int] | np.ndarray, context: int, *, cover: float = COVER, multiple: int = MULTIPLE
) -> dict[str, Any]:
    """The window for these token lengths, with what it covers and why."""
    values = np.asarray(lengths, dtype=np.int64)
    if values.size == 0:
        return {"max_length": min(context, 2048), "reason": "no records measured; 2048 tokens (or the context)"}
    quantile = int(np.quantile(values, cover, method="higher"))  # a real record's length: no interpolation
    window = max(multiple, math.ceil(quantile / multiple) * multiple)
    capped = window > context
    window = min(window, context)
    fill, covering = packing_fill(values, window), window
    if not capped and fill < FILL:
        window, fill = _fuller(values, window, min(context, max(4 * window, 512)), multiple, fill)
    covered = float((values <= window).mean())
    reason = (
        f"holds {covered:.1%} of {values.size} records (p{cover * 100:g} = {quantile} tokens, "
        f"longest {int(values.max())}), rounded up to a multiple of {multiple}"
    )
    if window != covering:
        reason += (
            f"; packs {fill:.0%} full where {covering} tokens would pack "
            f"{packing_fill(values, covering):.0%} (longer windows hold more records each)"
        )
    if capped:
        reason = f"the model's context ({context} tokens); " + reason
    return {
        "max_length": int(window),
        "p99": quantile,
        "longest": int(values.max()),
        "covers": round(covered, 4),
        "packing_fill": round(fill, 4),
        "records": int(values.size),
        "context": context,
        "reason": reason,
    }


def packing_fill(lengths: np.ndarray, window: int) -> float:
    """The share of `window`-token windows that packing these records fills (those that fit)."""
    from tunesmith.data.packing import windows_needed

    sample = lengths if lengths.size <= SAMPLE else np.random.default_rng(0).choice(lengths, SAMPLE, replace=False)
    kept = [int(n) for n in sample if n <= window]
    return sum(kept) / (windows_needed(kept, window) * window) if kept else 0.0


def _fuller(values: np.ndarray, start: int, top: int, multiple: int, fill: float) -> tuple[int, float]:
    """The shortest window from `start` to `top` that packs at least FILL full, else the fullest."""
    best = (start, fill)
    for window in range(start + multiple, top + 1, multiple):
        now = packing_fill(values, window)
        if now >= FILL:
            return window, now
        if now > best[1] + 0.01:
            best = (window, now)
    return best
