"""The two canonical records everything downstream of the data stage sees."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

ROLES = ("system", "user", "assistant", "tool")

Message = dict[str, str]


@dataclass
class Conversation:
    """A chat: `messages` of {role, content}, plus `meta` (source file, line, id, label)."""

    messages: list[Message]
    meta: dict[str, Any] = field(default_factory=dict)

    kind = "sft"

    def to_dict(self) -> dict[str, Any]:
        return {"messages": self.messages, "meta": self.meta}

    def texts(self) -> list[str]:
        return [m["content"] for m in self.messages]


@dataclass
class Preference:
    """A preference pair: `prompt` messages, then one `chosen` and one `rejected` assistant reply."""

    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]
    meta: dict[str, Any] = field(default_factory=dict)

    kind = "preference"

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected, "meta": self.meta}

    def texts(self) -> list[str]:
        return [m["content"] for m in self.prompt + self.chosen + self.rejected]

    def chosen_conversation(self) -> list[Message]:
        return self.prompt + self.chosen

    def rejected_conversation(self) -> list[Message]:
        return self.prompt + self.rejected


Record = Union[Conversation, Preference]


def record_text(record: Record) -> str:
    """All text of a record in one string, for duplicate and PII checks."""
    return "\n".join(record.texts())


def near_dup_text(record: Record) -> str:
    """The text near-duplicates are judged on: every turn except system prompts. A system prompt is
    usually one template shared by many records; left in, it makes short records that share it
    near-duplicates of each other (a long classification prompt outweighs a six-word question)."""
    messages = record.messages if isinstance(record, Conversation) else record.prompt + record.chosen + record.rejected
    return "\n".join(m["content"] for m in messages if m.get("role") != "system")


def record_from_dict(row: dict[str, Any]) -> Record:
    """Rebuild a record written by `to_dict` (the canonical JSONL of prepared splits)."""
    if "messages" in row:
        return Conversation(messages=row["messages"], meta=row.get("meta", {}))
    return Preference(prompt=row["prompt"], chosen=row["chosen"], rejected=row["rejected"], meta=row.get("meta", {}))


@dataclass
class Problem:
    """One finding about one record: where it is and what to do about it."""

    file: str
    line: int | None
    field: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "field": self.field, "message": self.message}

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        fld = f" [{self.field}]" if self.field else ""
        return f"{where}{fld}: {self.message}"


class RecordError(Exception):
    """Raised by converters for a record that cannot become a canonical record."""

    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field
        self.message = message
