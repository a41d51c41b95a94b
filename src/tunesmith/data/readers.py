"""Stream raw rows out of JSONL, JSON, CSV, Parquet files and `datasets` folders.

Each row keeps where it came from (file and 1-based line, as an editor shows it; the
row number for Parquet and `datasets`) and its original text, so a rejected record can
be reported at its place and written to the rejects file unchanged. JSONL, CSV and
Parquet stream: a 1 GB file is never held in memory whole.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import DataError

FILE_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
# Columns of CSV files that usually hold JSON (a list of messages) rather than plain text.
_JSON_COLUMNS = {
    "messages",
    "conversations",
    "chosen",
    "rejected",
    "prompt",
    "input",
    "preferred_output",
    "non_preferred_output",
    "meta",
    "metadata",
}

BytesCallback = Callable[[int], None]


@dataclass
class RawRow:
    """One row as read: its place, its original text, and the parsed value or why parsing failed."""

    file: str
    line: int
    raw: str
    value: Any = None
    error: str | None = None


def is_dataset_folder(path: Path) -> bool:
    """A folder written by `datasets.save_to_disk`."""
    return path.is_dir() and any((path / n).exists() for n in ("dataset_info.json", "state.json", "dataset_dict.json"))


def expand_inputs(paths: list[Path]) -> list[Path]:
    """Files and `datasets` folders named by `paths`; plain folders are searched for data files."""
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise DataError(f"{path}: no such file or folder")
        if path.is_file():
            if path.suffix.lower() not in FILE_SUFFIXES:
                raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .jsonl, .json, .csv or .parquet")
            found.append(path)
        elif is_dataset_folder(path):
            found.append(path)
        else:
            inner = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FILE_SUFFIXES)
            subsets = sorted(p for p in path.iterdir() if is_dataset_folder(p))
            if not inner and not subsets:
                raise DataError(f"{path}: folder holds no .jsonl, .json, .csv or .parquet files")
            found.extend(inner + subsets)
    return found


def read_rows(path: Path, on_bytes: BytesCallback | None = None) -> Iterator[RawRow]:
    """Rows of one input, by its type."""
    if path.is_dir():
        yield from _read_dataset_folder(path)
        return
    kind = FILE_SUFFIXES[path.suffix.lower()]
    reader = {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv, "parquet": _read_parquet}[kind]
    yield from reader(path, on_bytes)


def _read_jsonl(path: Path, on_bytes: BytesCallback | None) -> Iterator[RawRow]:
    name = str(path)
    with open(path, "rb") as fh:
        for number, data in enumerate(fh, start=1):
            if on_bytes:
                on_bytes(len(data))
            if number == 1 and data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
            ends_with_newline = data.endswith(b"\n")
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raw = data.decode("utf-8", errors="replace").rstrip("\r\n")
                yield RawRow(
                    name,
                    number,
                    raw,
                    error=(
                        f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at column {exc.start + 1}); "
                        "re-save the file as UTF-8"
                    ),
                )
                continue
            text = text.rstrip("\r\n")
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                at_end = exc.pos >= len(text.rstrip()) - 1 or exc.msg.startswith("Unterminated string")
                if not ends_with_newline and at_end:
                    reason = (
                        "truncated record: the file ends in the middle of this JSON value "
                        "(was the write interrupted?); complete or delete this line"
                    )
                else:
                    reason = f"not valid JSON: {exc.msg} at column {exc.colno}; each line must be one JSON object"
                yield RawRow(name, number, text, error=reason)
                continue
            yield RawRow(name, number, text, value=value)


def _read_json(path: Path, on_bytes: BytesCallback | None) -> Iterator[RawRow]:
    """A JSON file holding an array of records (or one record); read whole, elements located by line."""
    name = str(path)
    raw_bytes = path.read_bytes()
    if on_bytes:
        on_bytes(len(raw_bytes))
    try:
        text = raw_bytes.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: not valid UTF-8 (byte offset {exc.start}); re-save the file as UTF-8") from None
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if pos >= len(text):
        return
    if text[pos] != "[":
        try:
            value, _ = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            yield RawRow(
                name, exc.lineno, text[pos : pos + 200], error=f"not valid JSON: {exc.msg} at column {exc.colno}"
            )
            return
        yield RawRow(name, text.count("\n", 0, pos) + 1, text[pos:].strip(), value=value)
        return
    pos = _skip_ws(text, pos + 1)
    line = 1 + text.count("\n", 0, pos)
    last = pos
    while pos < len(text) and text[pos] != "]":
        line += text.count("\n", last, pos)
        last = pos
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            tail = text[pos:].split("\n", 1)[0]
            reason = (
                f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}); the rest of the file is unreadable"
            )
            if exc.pos >= len(text.rstrip()) - 1:
                reason = "truncated file: it ends inside this record (was the write interrupted?)"
            yield RawRow(name, line, tail, error=reason)
            return
        yield RawRow(name, line, text[pos:end], value=value)
        pos = _skip_ws(text, end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
    if pos >= len(text):
        line += text.count("\n", last, pos)
        yield RawRow(name, line, "", error="truncated file: the JSON array is never closed with ']'")


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _read_csv(path: Path, on_bytes: BytesCallback | None) -> Iterator[RawRow]:
    name = str(path)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                return
            header = [h.strip() for h in header]
            previous_end = reader.line_num
            for cells in reader:
                line = previous_end + 1
                previous_end = reader.line_num
                if not any(c.strip() for c in cells):
                    continue
                raw = json.dumps(dict(zip(header, cells)), ensure_ascii=False)
                if len(cells) != len(header):
                    yield RawRow(
                        name,
                        line,
                        ",".join(cells),
                        error=(
                            f"row has {len(cells)} fields but the header has {len(header)}; "
                            "quote fields that contain commas or line breaks"
                        ),
                    )
                    continue
                yield RawRow(name, line, raw, value={k: _maybe_json(k, v) for k, v in zip(header, cells)})
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: not valid UTF-8 (byte offset {exc.start}); re-save the file as UTF-8") from None
    if on_bytes:
        on_bytes(path.stat().st_size)


def _maybe_json(column: str, cell: str) -> Any:
    stripped = cell.strip()
    if column in _JSON_COLUMNS and stripped[:1] in ("[", "{"):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return cell
    return cell


def _read_parquet(path: Path, on_bytes: BytesCallback | None) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    name = str(path)
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise DataError(f"{name}: not a readable Parquet file ({exc})") from None
    row = 0
    for batch in pf.iter_batches(batch_size=1024):
        for value in batch.to_pylist():
            row += 1
            yield RawRow(name, row, json.dumps(value, ensure_ascii=False, default=str), value=value)
    if on_bytes:
        on_bytes(path.stat().st_size)


def _read_dataset_folder(path: Path) -> Iterator[RawRow]:
    from datasets import Dataset, load_from_disk

    try:
        loaded = load_from_disk(str(path))
    except Exception as exc:  # datasets raises several types for foreign folders
        raise DataError(f"{path}: not a folder written by datasets.save_to_disk ({exc})") from None
    parts = [(str(path), loaded)] if isinstance(loaded, Dataset) else [(f"{path}[{k}]", v) for k, v in loaded.items()]
    for name, ds in parts:
        for row, value in enumerate(ds, start=1):
            yield RawRow(name, row, json.dumps(value, ensure_ascii=False, default=str), value=value)
