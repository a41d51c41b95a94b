"""`tunesmith data synth`: grow a small seed set with a teacher model at an OpenAI-compatible endpoint.

For each seed conversation the teacher is asked (through the official `openai` client, so
tunesmith's own server, vLLM or a hosted API all work) for new examples of the same task.
Each candidate is kept only if it parses, passes the same record validation as
`data check`, keeps the task's shape (when the seed's answer is a JSON object, the new
answer must be one with the same keys), and is neither an exact nor a near-duplicate
(MinHash, as in `data check`) of the existing data or of an earlier candidate. Kept
records carry their provenance in `meta` (synthetic, teacher, seed file and line, a hash
of the prompt) so they can be filtered or weighted later, and their number is capped so
synthetic records stay under `max_share` of the result.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from tunesmith.data.records import Conversation
from tunesmith.errors import TunesmithError
from tunesmith.files import write_atomic

INSTRUCTION = (
    "You write training examples for fine-tuning a model. You are shown one example of a task. Write "
    "one NEW example of the same task: a different user input and the correct reply, in exactly the "
    "same style and format as the example's reply. Answer only with a JSON object "
    '{"user": "...", "assistant": "..."}.'
)


def _shape(text: str) -> tuple[str, ...] | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return tuple(sorted(value)) if isinstance(value, dict) else None


def _ask(client: Any, model: str, seed: Conversation, temperature: float, request_seed: int) -> str:
    example = {
        "user": next(m["content"] for m in seed.messages if m["role"] == "user"),
        "assistant": seed.messages[-1]["content"],
    }
    answer = client.chat.completions.create(
        model=model,
        temperature=temperature,
        seed=request_seed,
        max_tokens=512,
        messages=[
            {"role": "system", "content": INSTRUCTION},
            {"role": "user", "content": json.dumps(example, ensure_ascii=False)},
        ],
    )
    return answer.choices[0].message.content or ""


def synthesize(
    seeds: list[Conversation],
    existing: list[Conversation],
    *,
    base_url: str,
    model: str,
    api_key: str | None = None,
    per_seed: int = 3,
    max_share: float = 0.5,
    temperature: float = 0.8,
    seed: int = 0,
    near_dup_threshold: float = 0.8,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(kept records as dicts, statistics). `existing` is what the new records must not repeat."""
    from openai import OpenAI, OpenAIError

    from tunesmith.data.validate import validate_record

    if not 0 < max_share < 1:
        raise TunesmithError("max_share must be between 0 and 1")
    client = OpenAI(base_url=base_url, api_key=api_key or "not-needed", max_retries=1, timeout=300)
    rejected: Counter = Counter()
    candidates: list[tuple[Conversation, dict[str, Any]]] = []
    for i, s in enumerate(seeds):
        if s.messages[-1]["role"] != "assistant":
            rejected["seed has no final assistant reply"] += 1
            continue
        system = [m for m in s.messages[:1] if m["role"] == "system"]
        want = _shape(s.messages[-1]["content"])
        for j in range(per_seed):
            request_seed = seed * 1_000_003 + i * 101 + j
            try:
                text = _ask(client, model, s, temperature, request_seed)
            except OpenAIError as exc:
                raise TunesmithError(f"the teacher at {base_url} failed ({type(exc).__name__}: {exc})") from None
            try:
                value = json.loads(text.strip().removeprefix("```json").removeprefix("```").removesuffix("```"))
                user, reply = str(value["user"]).strip(), str(value["assistant"]).strip()
            except (json.JSONDecodeError, TypeError, KeyError, AttributeError):
                rejected["teacher reply is not a JSON object with user and assistant"] += 1
                continue
            record = Conversation(system + [{"role": "user", "content": user}, {"role": "assistant", "content": reply}])
            if validate_record(record)[0]:
                rejected["fails record validation"] += 1
                continue
            if want is not None and _shape(reply) != want:
                rejected["answer does not keep the task's JSON shape"] += 1
                continue
            prompt_hash = hashlib.sha256(f"{INSTRUCTION}\n{s.messages}".encode()).hexdigest()[:16]
            meta = {
                "synthetic": True,
                "teacher": model,
                "seed_file": s.meta.get("file"),
                "seed_line": s.meta.get("line"),
                "prompt_sha256": prompt_hash,
                "request_seed": request_seed,
            }
            candidates.append((record, meta))
    kept = _new_records(candidates, existing, near_dup_threshold, rejected)
    cap = int(max_share / (1 - max_share) * len(existing))
    if len(kept) > cap:
        rejected[f"over the synthetic share cap ({max_share:.0%})"] += len(kept) - cap
        kept = kept[:cap]
    stats = {
        "seeds": len(seeds),
        "asked": len(seeds) * per_seed,
        "kept": len(kept),
        "rejected": dict(rejected),
        "existing": len(existing),
        "synthetic_share": round(len(kept) / (len(kept) + len(existing)), 4) if existing or kept else 0.0,
    }
    return kept, stats


def _new_records(
    candidates: list[tuple[Conversation, dict[str, Any]]],
    existing: list[Conversation],
    near_dup_threshold: float,
    rejected: Counter,
) -> list[dict[str, Any]]:
    """The candidates that repeat neither the existing data nor an earlier candidate (exactly or nearly)."""
    from tunesmith.data.dedup import DuplicateFinder
    from tunesmith.data.records import record_text

    finder = DuplicateFinder(near_dup_threshold)
    pool = list(existing) + [c for c, _ in candidates]
    for k, record in enumerate(pool):
        finder.add(k, record, record_text(record))
    dup = {k: kind for k, kind, _ in finder.duplicates() if k >= len(existing)}
    kept = []
    for offset, (record, meta) in enumerate(candidates):
        kind = dup.get(len(existing) + offset)
        if kind:
            rejected[f"{kind} duplicate of existing data or an earlier candidate"] += 1
            continue
        kept.append({"messages": record.messages, "meta": meta})
    return kept


def write_synthetic(path: Path, records: list[dict[str, Any]]) -> Path:
    return write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
