"""`tunesmith feedback export`: production feedback as training data for the next fine-tune.

From the request log (texts are there only with `serve.log_texts: true`): a corrected
answer becomes a chat record with the correction as the assistant turn, and a preference
pair (correction chosen over the served answer); a positive score without correction
keeps the served answer as a chat record; a negative score without correction is
skipped (there is nothing to learn the right answer from). Records carry their
provenance (request id, model, version, score) in `meta`, so they can be filtered or
weighted later. The latest feedback per request wins.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.errors import TunesmithError
from tunesmith.files import write_atomic


def request_log_path(cfg: ProjectConfig) -> Path:
    path = cfg.output_path / "serve" / "requests.db"
    if not path.exists():
        raise TunesmithError(f"no request log at {path}; it is written by `tunesmith serve`")
    return path


def _messages(prompt: str) -> list[dict[str, str]]:
    try:
        value = json.loads(prompt)
    except json.JSONDecodeError:
        value = None
    if isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value):
        return value
    return [{"role": "user", "content": prompt}]  # a /v1/completions prompt


def export_feedback(cfg: ProjectConfig, out: Path, pairs: Path | None = None) -> dict[str, Any]:
    from tunesmith.serve.requestlog import RequestLog

    log = RequestLog(request_log_path(cfg))
    latest = {row["request_id"]: row for row in log.feedback()}
    log.close()
    records, preference, skipped = [], [], Counter()
    for rid, row in latest.items():
        if row["prompt"] is None:
            skipped["texts not logged (serve.log_texts is off)"] += 1
            continue
        messages = _messages(row["prompt"])
        meta = {
            "source": "feedback",
            "request_id": rid,
            "model": row["model"],
            "version": row["version"],
            "score": row["score"],
        }
        answer = row["completion"] or ""
        if row["correction"]:
            records.append({"messages": messages + [{"role": "assistant", "content": row["correction"]}], "meta": meta})
            if answer.strip() and answer.strip() != row["correction"].strip():
                preference.append(
                    {
                        "prompt": messages,
                        "chosen": [{"role": "assistant", "content": row["correction"]}],
                        "rejected": [{"role": "assistant", "content": answer}],
                        "meta": meta,
                    }
                )
        elif row["score"] is not None and row["score"] >= 0.5:
            if answer.strip():
                records.append({"messages": messages + [{"role": "assistant", "content": answer}], "meta": meta})
            else:
                skipped["positive, but the served answer was empty"] += 1
        else:
            skipped["negative without a correction"] += 1
    write_atomic(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    if pairs is not None:
        write_atomic(pairs, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in preference))
    return {
        "feedback": len(latest),
        "chat_records": len(records),
        "preference_pairs": len(preference),
        "skipped": dict(skipped),
        "out": str(out),
        "pairs": str(pairs) if pairs else None,
    }
