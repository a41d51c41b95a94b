"""Token-length statistics measured with the real tokenizer and chat template."""

from __future__ import annotations

from array import array
from pathlib import Path
from typing import Any

import numpy as np

from tunesmith.data.records import Record
from tunesmith.data.template import record_texts


class LengthCounter:
    """Collects token lengths in batches (fast tokenizers encode a batch at once)."""

    def __init__(self, tokenizer: Any, max_length: int, system_prompt: str | None = None, batch_size: int = 256):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.system_prompt = system_prompt
        self.batch_size = batch_size
        self.lengths = array("I")
        self._pending: list[tuple[Any, list[str]]] = []
        self.over: list[tuple[Any, int]] = []  # (tag, tokens) of records longer than max_length

    def add(self, tag: Any, record: Record) -> list[tuple[Any, int]]:
        """Queue a record; returns (tag, length) of records measured so far that exceed max_length."""
        self._pending.append((tag, record_texts(record, self.tokenizer, self.system_prompt)))
        return self.flush() if len(self._pending) >= self.batch_size else []

    def flush(self) -> list[tuple[Any, int]]:
        if not self._pending:
            return []
        texts = [t for _, ts in self._pending for t in ts]
        counts = iter(len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"])
        too_long = []
        for tag, ts in self._pending:
            n = max(next(counts) for _ in ts)
            self.lengths.append(n)
            if n > self.max_length:
                too_long.append((tag, n))
        self._pending.clear()
        self.over += too_long
        return too_long

    def summary(self) -> dict[str, Any]:
        lengths = np.frombuffer(self.lengths, dtype=np.uint32).astype(np.int64)
        if lengths.size == 0:
            return {"measured": 0, "max_length": self.max_length}
        excess = lengths[lengths > self.max_length] - self.max_length
        pct = {f"p{q}": int(np.percentile(lengths, q)) for q in (50, 90, 95, 99)}
        return {
            "measured": int(lengths.size),
            "max_length": self.max_length,
            "min": int(lengths.min()),
            "mean": round(float(lengths.mean()), 1),
            **pct,
            "max": int(lengths.max()),
            "total_tokens": int(lengths.sum()),
            "over_max_length": int(excess.size),
            "tokens_cut": {
                "total": int(excess.sum()),
                "mean": round(float(excess.mean()), 1) if excess.size else 0.0,
                "max": int(excess.max()) if excess.size else 0,
            },
        }

    def histogram(self, path: Path) -> Path | None:
        """A PNG of the length distribution with max_length marked; None when nothing was measured."""
        if len(self.lengths) == 0:
            return None
        from tunesmith.plots import pyplot

        plt = pyplot()

        lengths = np.frombuffer(self.lengths, dtype=np.uint32)
        fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
        ax.hist(lengths, bins=min(60, max(10, len(set(lengths.tolist())))), color="#4C72B0")
        ax.axvline(self.max_length, color="#C44E52", linestyle="--", label=f"max_length = {self.max_length}")
        ax.set_xlabel("tokens per record (chat template included)")
        ax.set_ylabel("records")
        ax.set_title(f"Token lengths of {len(lengths)} records")
        ax.legend()
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
        plt.close(fig)
        return path
