"""`tunesmith data check`: read every input, convert, validate, measure quality, keep rejects.

One streaming pass: each row is converted and validated as it is read, rejected rows go
to the rejects file straight away with their reasons, and valid records are handed to
the caller (`on_valid`) instead of being collected here.
"""

from __future__ import annotations

import json
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any

from tunesmith.data.converters import CONVERTERS, attach_meta, detect_format
from tunesmith.data.dedup import DuplicateFinder
from tunesmith.data.readers import RawRow, expand_inputs, read_rows
from tunesmith.data.records import Conversation, Problem, Record, RecordError, near_dup_text
from tunesmith.data.split import SPLIT_NAMES
from tunesmith.data.validate import validate_record
from tunesmith.errors import DataError
from tunesmith.pii import find_pii, redact

MAX_LISTED = 10_000  # findings kept in memory per list; the rest are counted (all rejects are still written)
_SPLIT_WORDS = {
    "train": "train",
    "training": "train",
    "valid": "validation",
    "validation": "validation",
    "val": "validation",
    "dev": "validation",
    "eval": "validation",
    "test": "test",
    "testing": "test",
}

ValidCallback = Callable[[int, Record, str], None]


@dataclass
class Source:
    """One input and how to read it."""

    path: Path
    format: str = "auto"
    split: str = "auto"
    task: str | None = None


def split_from_name(name: str) -> str:
    """train / validation / test when a file name says so (as `datasets` infers splits), else auto."""
    bracket = re.search(r"\[(\w+)\]$", name)
    words = [bracket.group(1)] if bracket else re.split(r"[^a-z]+", Path(name).stem.lower())
    found = {_SPLIT_WORDS[w] for w in words if w in _SPLIT_WORDS}
    return found.pop() if len(found) == 1 else "auto"


@dataclass
class CheckResult:
    total: int = 0
    valid: int = 0
    rejected: int = 0
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    errors_omitted: int = 0
    warnings_omitted: int = 0
    files: list[dict[str, Any]] = field(default_factory=list)
    quality: dict[str, Any] = field(default_factory=dict)
    duplicates: list[tuple[int, str, list[int]]] = field(default_factory=list)
    """(key, exact|near, earlier keys) for each repeated valid record; the split keeps them together."""
    rejects_path: str | None = None

    def error(self, problem: Problem) -> None:
        if len(self.errors) < MAX_LISTED:
            self.errors.append(problem)
        else:
            self.errors_omitted += 1

    def warn(self, problem: Problem) -> None:
        if len(self.warnings) < MAX_LISTED:
            self.warnings.append(problem)
        else:
            self.warnings_omitted += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": {"total": self.total, "valid": self.valid, "rejected": self.rejected},
            "files": self.files,
            "errors": [p.to_dict() for p in self.errors],
            "warnings": [p.to_dict() for p in self.warnings],
            "errors_omitted": self.errors_omitted,
            "warnings_omitted": self.warnings_omitted,
            "quality": self.quality,
            "rejects_file": self.rejects_path,
        }


def _rows_with_format(source: Source, on_bytes: Callable[[int], None] | None) -> tuple[str | None, Iterator[RawRow]]:
    """The file's format (given, or detected from its first records) and all its rows."""
    rows = read_rows(source.path, on_bytes)
    if source.format != "auto":
        return source.format, rows
    head = list(islice(rows, 50))
    return detect_format(r.value for r in head if r.error is None), chain(head, rows)


def valid_records(sources: list[Source], label_field: str | None = None) -> Iterator[Record]:
    """Valid records of `sources` in file order, without the quality checks (for previews)."""
    for source in sources:
        for path in expand_inputs([source.path]):
            fmt, rows = _rows_with_format(Source(path, source.format, source.split, source.task), None)
            converter = CONVERTERS.get(fmt) if fmt else None
            for row in rows:
                if _reasons(row, converter, fmt):
                    continue
                try:
                    record = converter(row.value)
                except RecordError:
                    continue
                if not validate_record(record)[0]:
                    attach_meta(record, row.value, label_field)
                    record.meta.update({"file": row.file, "line": row.line})
                    if source.task:
                        record.meta["task"] = source.task
                    yield record


def redact_record(record: Record) -> tuple[Record, Counter]:
    """A copy of the record with PII replaced by placeholders, and the kinds replaced."""
    kinds: Counter = Counter()

    def clean(messages: list[dict]) -> list[dict]:
        out = []
        for m in messages:
            found = find_pii(m["content"])
            kinds.update(p.kind for p in found)
            out.append({**m, "content": redact(m["content"], found)} if found else m)
        return out

    if isinstance(record, Conversation):
        return Conversation(clean(record.messages), dict(record.meta)), kinds
    return type(record)(clean(record.prompt), clean(record.chosen), clean(record.rejected), dict(record.meta)), kinds


def _message_fields(record: Record) -> Iterator[tuple[str, str]]:
    if isinstance(record, Conversation):
        for i, m in enumerate(record.messages):
            yield f"messages[{i}].content", m["content"]
    else:
        for part in ("prompt", "chosen", "rejected"):
            for i, m in enumerate(getattr(record, part)):
                yield f"{part}[{i}].content", m["content"]


_PII_WORDS = {
    "email": "an email address",
    "phone": "a phone number",
    "credit_card": "a credit card number",
    "iban": "an IBAN",
    "ssn": "a US social security number",
    "ip_address": "an IP address",
    "secret": "an API key or secret",
}


@dataclass
class _Tally:
    """What the check pass keeps about the valid records: where each came from, in compact arrays (a few bytes
    a record, for huge files), and the counts its quality report is made of."""

    file_names: list[str] = field(default_factory=list)
    file_of: array = field(default_factory=lambda: array("I"))
    line_of: array = field(default_factory=lambda: array("Q"))
    split_of: array = field(default_factory=lambda: array("B"))
    pii: list[dict[str, Any]] = field(default_factory=list)
    pii_counts: Counter = field(default_factory=Counter)
    counts: dict[str, int] = field(default_factory=lambda: {"exact_duplicates": 0, "near_duplicates": 0, "leakage": 0})
    turns: Counter = field(default_factory=Counter)
    roles: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)
    leak_examples: list[dict[str, Any]] = field(default_factory=list)

    SPLITS = ("auto", *SPLIT_NAMES)

    def place(self, key: int) -> str:
        return f"{self.file_names[self.file_of[key]]}:{self.line_of[key]}"

    def add(self, row: RawRow, split: str) -> int:
        """A valid record's key, with where it came from."""
        key = len(self.line_of)
        self.file_of.append(len(self.file_names) - 1)
        self.line_of.append(row.line)
        self.split_of.append(self.SPLITS.index(split))
        return key

    def count(self, record: Any) -> None:
        self.kinds[record.kind] += 1
        msgs = record.messages if isinstance(record, Conversation) else record.chosen_conversation()
        self.turns[len(msgs)] += 1
        self.roles.update(m["role"] for m in msgs)
        if "label" in record.meta:
            self.labels[record.meta["label"]] += 1

    def scan_pii(self, record: Any, row: RawRow, result: CheckResult) -> bool:
        """Count the record's PII and warn once per kind; True when it holds any."""
        found_kinds: set[str] = set()
        for fld, content in _message_fields(record):
            for m in find_pii(content):
                self.pii_counts[m.kind] += 1
                if len(self.pii) < MAX_LISTED:
                    self.pii.append({"file": row.file, "line": row.line, "kind": m.kind, "field": fld})
                if m.kind not in found_kinds:
                    found_kinds.add(m.kind)
                    result.warn(
                        Problem(
                            row.file,
                            row.line,
                            fld,
                            f"contains {_PII_WORDS[m.kind]}; redact it (data.redact_pii: true or "
                            "--redact-pii) unless the model must learn it",
                        )
                    )
        return bool(found_kinds)

    def too_long(self, found: list[tuple[int, int]], max_length: int, result: CheckResult) -> None:
        for key, n in found:
            result.warn(
                Problem(
                    self.file_names[self.file_of[key]],
                    self.line_of[key],
                    "messages",
                    f"{n} tokens is more than max_length={max_length} by {n - max_length}; "
                    "it would be dropped or cut when preparing — raise data.max_length or shorten the record",
                )
            )

    def duplicates(self, finder: DuplicateFinder, result: CheckResult) -> None:
        """Each repeated record: a warning, and a leak when its copy sits in another given split."""
        splits = self.SPLITS
        for key, kind, earlier in finder.duplicates():
            self.counts[f"{kind}_duplicates"] += 1
            result.duplicates.append((key, kind, earlier))
            file, line, split = self.file_names[self.file_of[key]], self.line_of[key], splits[self.split_of[key]]
            result.warn(
                Problem(
                    file,
                    line,
                    None,
                    f"{'duplicate' if kind == 'exact' else 'near-duplicate'} of {self.place(earlier[0])}"
                    + ("; it is dropped when splitting" if kind == "exact" else "; both stay in one split"),
                )
            )
            leaked = [
                k
                for k in earlier
                if "auto" not in (splits[self.split_of[k]], split) and splits[self.split_of[k]] != split
            ]
            if leaked:
                other = splits[self.split_of[leaked[0]]]
                self.counts["leakage"] += 1
                if len(self.leak_examples) < 100:
                    self.leak_examples.append(
                        {
                            "file": file,
                            "line": line,
                            "split": split,
                            "same_as": self.place(leaked[0]),
                            "other_split": other,
                        }
                    )
                result.warn(
                    Problem(
                        file,
                        line,
                        None,
                        f"leakage: the {split} split repeats {self.place(leaked[0])} from the {other} split; "
                        "remove one of them",
                    )
                )

    def quality(self, near_dup_threshold: float, length_counter: Any, label_field: str | None) -> dict[str, Any]:
        return {
            "record_kinds": dict(self.kinds),
            "exact_duplicates": self.counts["exact_duplicates"],
            "near_duplicates": self.counts["near_duplicates"],
            "near_dup_threshold": near_dup_threshold,
            "leakage": {
                "pairs": self.counts["leakage"],
                "examples": self.leak_examples,
                "checked": len({s for s in self.split_of if s != 0}) > 1,
            },
            "pii": self.pii,
            "pii_counts": dict(self.pii_counts),
            "length": length_counter.summary() if length_counter is not None else None,
            "turns": {str(k): v for k, v in sorted(self.turns.items())},
            "roles": dict(self.roles),
            "labels": _balance(self.labels, label_field),
        }


def check_sources(
    sources: list[Source],
    *,
    rejects_path: Path,
    label_field: str | None = None,
    length_counter: Any = None,
    near_dup_threshold: float = 0.8,
    redact_pii: bool = False,
    on_valid: ValidCallback | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> CheckResult:
    """Check every record of every source; valid records go to `on_valid(key, record, split)`, rejected ones
    to `rejects_path` with their reasons."""
    result = CheckResult(rejects_path=str(rejects_path))
    finder = DuplicateFinder(near_dup_threshold)
    tally = _Tally()
    rejects_path.parent.mkdir(parents=True, exist_ok=True)
    with open(rejects_path, "w", encoding="utf-8") as rejects:
        for source in sources:
            for path in expand_inputs([source.path]):
                sub = Source(path, source.format, source.split, source.task)
                fmt, rows = _rows_with_format(sub, on_bytes)
                stats = {"file": str(path), "format": fmt, "split": "auto", "records": 0, "valid": 0, "rejected": 0}
                result.files.append(stats)
                converter = CONVERTERS.get(fmt) if fmt else None
                for row in rows:
                    if not tally.file_names or tally.file_names[-1] != row.file:
                        tally.file_names.append(row.file)
                    stats["records"] += 1
                    result.total += 1
                    split = sub.split if sub.split != "auto" else split_from_name(row.file)
                    stats["split"] = split
                    record, reasons = _converted(row, converter, fmt, result)
                    if reasons:
                        stats["rejected"] += 1
                        result.rejected += 1
                        _reject(row, reasons, result, rejects)
                        continue
                    stats["valid"] += 1
                    result.valid += 1
                    key = tally.add(row, split)
                    attach_meta(record, row.value, label_field)
                    record.meta.update({"file": row.file, "line": row.line})
                    if source.task:
                        record.meta["task"] = source.task
                    finder.add(key, record, near_dup_text(record))
                    if tally.scan_pii(record, row, result) and redact_pii:
                        record, _ = redact_record(record)
                    tally.count(record)
                    if length_counter is not None:
                        tally.too_long(length_counter.add(key, record), length_counter.max_length, result)
                    if on_valid:
                        on_valid(key, record, split)
    if length_counter is not None:
        tally.too_long(length_counter.flush(), length_counter.max_length, result)
    tally.duplicates(finder, result)
    result.quality = tally.quality(near_dup_threshold, length_counter, label_field)
    return result


def _converted(row: RawRow, converter: Any, fmt: str | None, result: CheckResult) -> tuple[Any, list[Any]]:
    """The row as a canonical record, or why it cannot be one; the record's warnings go to `result`."""
    reasons = _reasons(row, converter, fmt)
    if reasons:
        return None, reasons
    try:
        record = converter(row.value)
    except RecordError as exc:
        return None, [(exc.field, exc.message)]
    errors, warnings = validate_record(record)
    for fld, msg in warnings:
        result.warn(Problem(row.file, row.line, fld, msg))
    return record, errors


def _reject(row: RawRow, reasons: list[Any], result: CheckResult, rejects: Any) -> None:
    """A rejected record: its problems in the report, the record and its reasons in rejects.jsonl."""
    for fld, msg in reasons:
        result.error(Problem(row.file, row.line, fld, msg))
    rejects.write(
        json.dumps(
            {
                "file": row.file,
                "line": row.line,
                "reasons": [{"field": f, "message": m} for f, m in reasons],
                "raw": row.raw,
            },
            ensure_ascii=False,
        )
        + "\n"
    )


def _reasons(row: RawRow, converter: Any, fmt: str | None) -> list[tuple[str | None, str]]:
    if row.error:
        return [(None, row.error)]
    if not isinstance(row.value, dict):
        return [(None, f"each record must be a JSON object, got {type(row.value).__name__}")]
    if converter is None:
        keys = ", ".join(map(str, row.value)) or "none"
        return [
            (
                None,
                f"cannot tell the record format from its keys ({keys}); expected messages, "
                "instruction/output, prompt/completion, prompt/chosen/rejected, "
                "input/preferred_output/non_preferred_output or conversations — or set the format",
            )
        ]
    return []


def _balance(labels: Counter, label_field: str | None) -> dict[str, Any] | None:
    if not label_field:
        return None
    if not labels:
        return {"field": label_field, "counts": {}, "note": f"no record has a {label_field!r} field"}
    most, least = labels.most_common()[0][1], min(labels.values())
    return {
        "field": label_field,
        "counts": dict(labels.most_common()),
        "classes": len(labels),
        "imbalance_ratio": round(most / least, 2),
    }


def sources_from_paths(paths: list[str], fmt: str = "auto") -> list[Source]:
    """Sources for paths given on the command line."""
    if not paths:
        raise DataError("give at least one data file, folder or tunesmith.yaml")
    return [Source(Path(p), fmt) for p in paths]
