"""Replay: general examples mixed into SFT training so a narrow task does not erase general ability.

Fine-tuning on one task moves the whole model; the guides' remedy for catastrophic forgetting is to
keep training on general data at a small ratio. With `data.replay.source: self` (the default) the
general data is the base model's *own* answers to a packaged set of general prompts
(`general_prompts.jsonl`, disjoint from the regression suite): self-distillation, which needs no
outside data and works for any base model. They are generated once per base model, greedily, and
cached under `$TUNESMITH_CACHE/replay/` with their provenance; answers cut off by the token limit are
left out (a cut-off answer teaches the model to stop mid-sentence). A file can be given instead.

Replay records never receive `data.system_prompt`: they teach the model what to do *outside* the
task's prompt. They are added to the prepared training windows only (train.jsonl, validation and
test stay the user's own records).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.data.records import Conversation
from tunesmith.errors import DataError
from tunesmith.files import write_atomic, write_json
from tunesmith.models.generate import MAX_ROWS

ROUND = 32  # prompts answered in the first round at least; a model that ends none of them gets no more
MARGIN = 1.2  # a round answers the prompts its estimate of the yield says are still needed, and a fifth more
MAX_ROUND = MAX_ROWS  # prompts in one round, generated together in one batch (128): on a CPU a decoding
# step costs about the same for 32 rows as for 128 (it reads every weight once); SmolLM2-135M, 2 cores, bf16:
# 209 / 387 / 629 generated tokens/s at 32 / 64 / 128 rows (docs/benchmarks.md). So the number of rounds
# is what costs: the demo's replay took rounds of 32, 64 and 64 prompts when they were fixed. Answers
# beyond the need stay cached for later runs.


def _round_size(needed_tokens: int, tokens: int, seen: int, max_new_tokens: int) -> int:
    """Prompts for the next round: enough to reach `needed_tokens` with MARGIN to spare, at the yield so
    far (`tokens` kept from `seen` prompts) or, before any, at half of `max_new_tokens` a prompt;
    between ROUND and MAX_ROUND."""
    per_prompt = tokens / seen if seen else max_new_tokens / 2
    if not per_prompt:
        return ROUND
    return max(ROUND, min(MAX_ROUND, math.ceil((needed_tokens - tokens) / per_prompt * MARGIN)))


def general_prompts() -> list[dict[str, str]]:
    """The packaged general prompts, in their shipped (category-balanced) order."""
    text = (resources.files("tunesmith.data") / "general_prompts.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def model_fingerprint(model_dir: str) -> str:
    """Names one model's weights: its folder and each weight file's size and modification time."""
    folder = Path(model_dir)
    parts = [str(folder.resolve())] if folder.exists() else [model_dir]
    for f in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")) if folder.exists() else []:
        st = f.stat()
        parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def cache_file(model_dir: str, max_new_tokens: int) -> Path:
    from tunesmith.files import cache_root

    return cache_root() / "replay" / f"{model_fingerprint(model_dir)}-t{max_new_tokens}.jsonl"


def _read_cache(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            rows[row["id"]] = row
        except (json.JSONDecodeError, KeyError):  # a torn last line from an interrupted run: answer it again
            continue
    return rows


def self_answers(
    cfg: ProjectConfig, tokenizer: Any, needed_tokens: int, count_tokens: Any, max_length: int
) -> tuple[list[Conversation], dict[str, Any]]:
    """The base model's own answers to general prompts, enough to hold `needed_tokens`, from the cache
    first; the prompts not cached yet are answered in rounds, each as large as the need and the yield so
    far say (_round_size), until enough are kept."""
    from tunesmith.models import resolve_model

    r = cfg.data.replay
    model_dir = resolve_model(cfg.base_model)
    path = cache_file(model_dir, r.max_new_tokens)
    cached = _read_cache(path)
    prompts = general_prompts()
    chosen: list[Conversation] = []
    tokens = 0
    model = None
    generated = 0
    start = 0
    while start < len(prompts):
        batch = prompts[start : start + _round_size(needed_tokens, tokens, start, r.max_new_tokens)]
        missing = [p for p in batch if p["id"] not in cached]
        if missing:
            if model is None:
                model = _load(cfg)
            generated += len(missing)
            for row in _answer(model, tokenizer, missing, r.max_new_tokens):
                cached[row["id"]] = row
            _write_cache(path, cached, cfg.base_model, model_dir, r.max_new_tokens)
        for p in batch:
            row = cached[p["id"]]
            if not row["stopped"] or not row["answer"]:
                continue
            record = Conversation(
                [{"role": "user", "content": p["prompt"]}, {"role": "assistant", "content": row["answer"]}],
                {"source": "replay", "id": f"replay:{p['id']}", "category": p["category"]},
            )
            n = count_tokens(record)
            if n <= max_length:
                chosen.append(record)
                tokens += n
        if tokens >= needed_tokens or (start == 0 and not chosen):  # a model that ends no answer: one round
            break
        start += len(batch)
    ended = sum(1 for row in cached.values() if row["stopped"] and row["answer"])
    info = {
        "source": "self",
        "cache": str(path),
        "answers_cached": len(cached),
        "answers_ended": ended,
        "generated_now": generated,
        "base_model": cfg.base_model,
        "max_new_tokens": r.max_new_tokens,
    }
    return chosen, info


def _load(cfg: ProjectConfig) -> Any:
    from tunesmith.hardware import pick_device
    from tunesmith.models import inference_dtype, load_model

    device = pick_device(cfg.device)
    return load_model(
        cfg.base_model,
        dtype=inference_dtype(cfg.base_model, device, cfg.train.precision),
        trust_remote_code=cfg.trust_remote_code,
        device=device,
    )


def _answer(model: Any, tokenizer: Any, prompts: list[dict[str, str]], max_new_tokens: int) -> list[dict[str, Any]]:
    from tunesmith.console import err
    from tunesmith.models.generate import generate

    err.print(f"replay: the base model answers {len(prompts)} general prompts (once; cached)")
    outs = generate(
        model, tokenizer, [[{"role": "user", "content": p["prompt"]}] for p in prompts], max_new_tokens=max_new_tokens
    )  # rows a batch: as many as fit, up to MAX_ROUND
    return [
        {"id": p["id"], "prompt": p["prompt"], "answer": o["output"], "stopped": o["stopped"]}
        for p, o in zip(prompts, outs)
    ]


def _write_cache(
    path: Path, rows: dict[str, dict[str, Any]], base_model: str, model_dir: str, max_new_tokens: int
) -> None:
    from tunesmith import __version__

    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows.values()))
    write_json(
        path.with_suffix(".provenance.json"),
        {
            "base_model": base_model,
            "model_dir": model_dir,
            "fingerprint": model_fingerprint(model_dir),
            "prompts": "tunesmith/data/general_prompts.jsonl",
            "decoding": {"greedy": True, "max_new_tokens": max_new_tokens},
            "answers": len(rows),
            "tunesmith": __version__,
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )


def file_records(cfg: ProjectConfig) -> tuple[list[Conversation], dict[str, Any]]:
    from tunesmith.data.check import Source, valid_records

    path = cfg.resolve(cfg.data.replay.source)
    if not path.exists():
        raise DataError(
            f"data.replay.source: {path} not found; give a file of general conversations, or `self` "
            "for the base model's own answers to packaged general prompts"
        )
    records = [r for r in valid_records([Source(path, "auto", "train")]) if isinstance(r, Conversation)]
    if not records:
        raise DataError(f"data.replay.source: {path} holds no valid conversations")
    random.Random(cfg.seed).shuffle(records)
    for r in records:
        r.meta["source"] = "replay"
    return records, {"source": str(path)}


def _take(pool: list[Conversation], needed: int, count_tokens: Any, max_length: int) -> tuple[list[Conversation], int]:
    chosen, tokens = [], 0
    for record in pool:
        if tokens >= needed:
            break
        n = count_tokens(record)
        if n <= max_length:  # a longer one would be dropped from the windows
            chosen.append(record)
            tokens += n
    return chosen, tokens


def previous_records(cfg: ProjectConfig, parent: dict[str, Any]) -> list[Conversation]:
    """The previous version's training conversations (continual learning), shuffled by the seed."""
    from tunesmith.data.records import record_from_dict

    path = parent["splits"].get("train")
    if not path or not Path(path).exists():
        return []
    records = [
        record_from_dict(json.loads(line)) for line in Path(path).read_text(encoding="utf-8").splitlines() if line
    ]
    records = [r for r in records if isinstance(r, Conversation)]
    random.Random(cfg.seed).shuffle(records)
    for r in records:
        r.meta["source"] = "previous"
    return records


def replay_records(
    cfg: ProjectConfig,
    tokenizer: Any,
    task_tokens: int,
    count_tokens: Any,
    max_length: int,
    parent: dict[str, Any] | None = None,
    system: str | None = None,
) -> tuple[list[Conversation], dict[str, Any]]:
    """Replay conversations that fit the window, making up about `data.replay.ratio` of the training
    tokens, `data.replay.refusals` of them refusals (data/refusals.py; half with the task's `system` prompt)
    and, when training from a registered version, `data.replay.previous` of them from its training records,
    with a summary of what was used: tokens, the ratio reached, where they came from."""
    from tunesmith.data.refusals import refusal_records

    r = cfg.data.replay
    previous = previous_records(cfg, parent) if parent else []
    share = r.ratio + r.refusals + (r.previous if previous else 0.0)
    total = task_tokens / (1 - share)
    needed = round(total * r.ratio)
    if needed == 0:
        pool, info = [], {"source": r.source}
    elif r.source == "self":
        pool, info = self_answers(cfg, tokenizer, needed, count_tokens, max_length)
    else:
        pool, info = file_records(cfg)
    chosen, tokens = _take(pool, needed, count_tokens, max_length)
    ratio = tokens / (total or 1)
    info.update(
        {
            "ratio_asked": r.ratio,
            "ratio": round(ratio, 4),
            "records": len(chosen),
            "tokens": tokens,
            "tokens_asked": needed,
        }
    )
    if tokens < needed:
        info["short"] = (
            f"only {tokens} of the {needed} replay tokens asked for were available "
            f"(ratio {ratio:.1%} instead of {r.ratio:.0%})"
        )
    if r.refusals:
        refusals, refusal_info = refusal_records(round(total * r.refusals), count_tokens, max_length, system)
        chosen += refusals
        info["refusals"] = {
            **refusal_info,
            "ratio_asked": r.refusals,
            "ratio": round(refusal_info["tokens"] / (total or 1), 4),
        }
    if previous:
        wanted = round(total * r.previous)
        earlier, n = _take(previous, wanted, count_tokens, max_length)
        chosen += earlier
        info["previous"] = {
            "version": f"{parent['name']} v{parent['version']}",
            "records": len(earlier),
            "tokens": n,
            "ratio_asked": r.previous,
            "ratio": round(n / (total or 1), 4),
        }
    return chosen, info
