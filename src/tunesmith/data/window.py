"""`data.max_length: auto`: the training window chosen from the records' real token lengths.

The window is the shortest multiple of 64 that holds at least 99% of the training records
(chat template included), never more than the model's context. A window much longer than
the records wastes memory on every micro-batch (activations grow with it, attention with
its square); one shorter than most records drops or cuts them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

COVER = 0.99
MULTIPLE = 64


def choose_window(lengths: list[int] | np.ndarray, context: int, *, cover: float = COVER,
                  multiple: int = MULTIPLE) -> dict[str, Any]:
    """The window for these token lengths, with what it covers and why."""
    values = np.asarray(lengths, dtype=np.int64)
    if values.size == 0:
        return {"max_length": min(context, 2048), "reason": "no records measured; 2048 tokens (or the context)"}
    quantile = int(np.quantile(values, cover, method="higher"))  # a real record's length: no interpolation
    window = max(multiple, math.ceil(quantile / multiple) * multiple)
    capped = window > context
    window = min(window, context)
    covered = float((values <= window).mean())
    reason = (f"holds {covered:.1%} of {values.size} records (p{cover * 100:g} = {quantile} tokens, "
              f"longest {int(values.max())}), rounded up to a multiple of {multiple}")
    if capped:
        reason = f"the model's context ({context} tokens); " + reason
    return {"max_length": int(window), "p99": quantile, "longest": int(values.max()), "covers": round(covered, 4),
            "records": int(values.size), "context": context, "reason": reason}
