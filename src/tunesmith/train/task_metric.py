"""A validation task metric read off the validation-loss pass, for early stopping and the best checkpoint.

Greedy decoding reproduces the first k tokens of a reference answer exactly when each of them is the
argmax given the ones before it, and teacher forcing computes exactly those argmaxes. So the logits
the validation loss needs anyway tell, for every answer, how much of it greedy decoding would
reproduce, without generating a token. An answer scored whole (no fields) is right when all of it is,
its end-of-turn token included: exactly greedy decoding's exact match. A JSON field is right when
every token of its value, as written in the reference, is the argmax given the reference before it;
greedy decoding that went wrong on an earlier field sees its own tokens instead, so this is an
estimate of evaluation's field accuracy, not an identity. On the demo's validation split (41 tickets,
checkpoints at steps 33, 44 and 45) it gave 0.837, 0.911 and 0.911, and generating gave the same three.

No library computes this (TRL and tunesmith log mean token accuracy, which counts a summary's
paraphrase against the answer as much as a wrong label), hence by hand.
"""

from __future__ import annotations

import json
import re
from typing import Any

_SPACE = re.compile(r"\s*")


def field_spans(text: str) -> dict[str, tuple[int, int]] | None:
    """Each top-level key of the JSON object `text` opens with -> where its value starts and ends in
    `text`; None when `text` does not open with a JSON object (what follows its closing brace is ignored)."""
    decoder = json.JSONDecoder()
    i = _SPACE.match(text).end()
    if not text.startswith("{", i):
        return None
    spans: dict[str, tuple[int, int]] = {}
    i += 1
    try:
        while True:
            i = _SPACE.match(text, i).end()
            if text[i] == "}" and not spans:
                return spans
            key, i = decoder.raw_decode(text, i)
            i = _SPACE.match(text, i).end()
            if text[i] != ":":
                return None
            start = _SPACE.match(text, i + 1).end()
            _, i = decoder.raw_decode(text, start)
            spans[str(key)] = (start, i)
            i = _SPACE.match(text, i).end()
            if text[i] == "}":
                return spans
            if text[i] != ",":
                return None
            i += 1
    except (ValueError, IndexError):
        return None


def answer_score(reference: str, right: list[bool], offsets: Any, fields: list[str]) -> float:
    """Score of one answer whose tokens were predicted `right` (argmax, teacher-forced):
    the share of `fields` whose value's tokens all were, or, when the reference is not a JSON object with
    any of them (or `fields` is empty), 1.0 only if every token was. `offsets(i)`: where token i ends in
    `reference`."""
    spans = field_spans(reference) if fields else None
    present = [f for f in fields if spans and f in spans]
    if not present:
        return float(all(right))
    hits = 0
    for f in present:
        start, end = spans[f]
        i, begin = 0, 0
        ok = True
        while i < len(right) and begin < end:  # the tokens overlapping [start, end)
            stop = offsets(i)
            if stop > start and not right[i]:
                ok = False
                break
            i, begin = i + 1, stop
        hits += ok
    return hits / len(present)


class TeacherForcedScore:
    """Collects `answer_score` over the validation answers of one evaluation (fed batch by batch)."""

    def __init__(self, tokenizer: Any, fields: list[str]):
        self.tokenizer = tokenizer
        self.fields = list(fields)
        self.scores: list[float] = []

    def add(self, positions: Any, targets: Any, predicted: Any, ignore_index: int) -> None:
        """`positions` [K]: the sequence positions kept; `targets` and `predicted` [B, K]: the token each
        predicts and the argmax, `ignore_index` where nothing is trained. An answer is a run of trained
        tokens at consecutive positions (packing never puts two answers side by side)."""
        positions = positions.tolist()
        for row_targets, row_predicted in zip(targets.tolist(), predicted.tolist()):
            run: list[tuple[int, int]] = []
            last = None
            for pos, target, guess in zip(positions, row_targets, row_predicted):
                if target == ignore_index:
                    continue
                if run and pos != last + 1:
                    self._score(run)
                    run = []
                run.append((target, guess))
                last = pos
            if run:
                self._score(run)

    def _score(self, run: list[tuple[int, int]]) -> None:
        from functools import cache

        tokens = [t for t, _ in run]

        @cache
        def offsets(i: int) -> int:  # decoded as a prefix: a character split over tokens is counted once
            return len(self.tokenizer.decode(tokens[: i + 1]))

        reference = self.tokenizer.decode(tokens) if self.fields else ""
        self.scores.append(answer_score(reference, [t == g for t, g in run], offsets, self.fields))

    def pop(self, reduce: Any = None) -> float | None:
        """The mean score since the last call (None if no answer was seen), and start afresh. `reduce`
        sums (total, count) over processes when validation is sharded (accelerate's `reduce`)."""
        scores, self.scores = self.scores, []
        total, count = sum(scores), len(scores)
        if reduce is not None:
            import torch

            total, count = reduce(torch.tensor([total, count], dtype=torch.float64)).tolist()
        return round(total / count, 4) if count else None
