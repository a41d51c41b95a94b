"""Order statistics shared by evaluation, the server's rollout triggers and the monitor."""

from __future__ import annotations


def p95(values: list[float]) -> float | None:
    """95th percentile by nearest rank (an observed value, never interpolated); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
