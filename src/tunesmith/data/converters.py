"""One pure converter per source format, each `dict -> Conversation | Preference`.

A converter raises `RecordError(field, message)` for a record it cannot convert; it
never guesses. Structural rules that hold for every format (an assistant turn to learn
from, no trailing user turn, chosen != rejected) live in `validate.py`.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from tunesmith.data.records import ROLES, Conversation, Message, Preference, Record, RecordError

# Role spellings other tools use, and what they mean here.
_ROLE_ALIASES = {
    "human": "user",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "ai": "assistant",
    "chatgpt": "assistant",
    "function": "tool",
    "observation": "tool",
    "developer": "system",
}
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "model": "assistant",
    "system": "system",
    "observation": "tool",
    "tool": "tool",
    "function_response": "tool",
    "function_call": "assistant",
}


def _text(value: Any, field: str, *, allow_empty: bool = False) -> str:
    """Content as a string; OpenAI-style lists of text parts are joined."""
    if isinstance(value, list) and all(isinstance(p, dict) for p in value):
        parts = []
        for i, part in enumerate(value):
            if part.get("type", "text") != "text" or not isinstance(part.get("text"), str):
                raise RecordError(
                    f"{field}[{i}]", f"only text content parts are supported, got type {part.get('type')!r}"
                )
            parts.append(part["text"])
        value = "".join(parts)
    if value is None:
        raise RecordError(field, "is null; give the text as a string")
    if not isinstance(value, str):
        raise RecordError(field, f"must be a string, got {type(value).__name__} ({str(value)[:40]!r})")
    if not allow_empty and not value.strip():
        raise RecordError(field, "is empty; give the text, or remove this record")
    return value


def _role(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise RecordError(field, f"must be one of {', '.join(ROLES)}, got {value!r}")
    role = value.strip().lower()
    if role in ROLES:
        return role
    if role in _ROLE_ALIASES:
        raise RecordError(field, f"unknown role {value!r}; in the messages format write {_ROLE_ALIASES[role]!r}")
    close = difflib.get_close_matches(role, ROLES, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; use one of {', '.join(ROLES)}"
    raise RecordError(field, f"unknown role {value!r}{hint}")


def _messages(value: Any, field: str) -> list[Message]:
    if not isinstance(value, list):
        raise RecordError(field, f"must be a list of messages, got {type(value).__name__}")
    if not value:
        raise RecordError(field, "is an empty list; a conversation needs at least a user and an assistant message")
    out: list[Message] = []
    for i, msg in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(msg, dict):
            raise RecordError(where, f"must be an object with role and content, got {type(msg).__name__}")
        if "role" not in msg:
            raise RecordError(f"{where}.role", "is missing")
        if "content" not in msg:
            raise RecordError(f"{where}.content", "is missing")
        role = _role(msg["role"], f"{where}.role")
        message: Message = {"role": role, "content": _text(msg["content"], f"{where}.content")}
        if "weight" in msg:  # OpenAI fine-tuning format: weight 0 excludes an assistant turn from the loss
            if msg["weight"] not in (0, 1) or role != "assistant":
                raise RecordError(f"{where}.weight", "must be 0 or 1, and only on assistant messages")
            message["weight"] = int(msg["weight"])
        out.append(message)
    return out


def _prompt(value: Any, field: str) -> list[Message]:
    """A prompt given as plain text (one user turn) or as a list of messages."""
    if isinstance(value, str):
        return [{"role": "user", "content": _text(value, field)}]
    if not isinstance(value, list):
        raise RecordError(field, f"must be a string or a list of messages, got {type(value).__name__}")
    return _messages(value, field)


def _reply(value: Any, field: str) -> list[Message]:
    """A reply given as plain text or as assistant messages."""
    if isinstance(value, str):
        return [{"role": "assistant", "content": _text(value, field)}]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise RecordError(field, f"must be a string or a list of messages, got {type(value).__name__}")
    msgs = _messages(value, field)
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            raise RecordError(f"{field}[{i}].role", f"must be 'assistant' in a reply, got {m['role']!r}")
    return msgs


def _require(row: dict[str, Any], key: str) -> Any:
    if key not in row:
        raise RecordError(key, f"is missing (record keys: {', '.join(map(str, row)) or 'none'})")
    return row[key]


def from_messages(row: dict[str, Any]) -> Conversation:
    """OpenAI / ChatML chat format: {"messages": [{"role", "content"}, ...]}."""
    return Conversation(_messages(_require(row, "messages"), "messages"))


def from_alpaca(row: dict[str, Any]) -> Conversation:
    """Alpaca: {"instruction", "input"?, "output", "system"?, "history"?: [[q, a], ...]}."""
    instruction = _text(_require(row, "instruction"), "instruction")
    extra = row.get("input")
    if extra is not None and not isinstance(extra, str):
        raise RecordError("input", f"must be a string, got {type(extra).__name__}")
    output = _text(_require(row, "output"), "output")
    msgs: list[Message] = []
    if row.get("system"):
        msgs.append({"role": "system", "content": _text(row["system"], "system")})
    for i, pair in enumerate(row.get("history") or []):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise RecordError(f"history[{i}]", "must be a [question, answer] pair")
        msgs += [
            {"role": "user", "content": _text(pair[0], f"history[{i}][0]")},
            {"role": "assistant", "content": _text(pair[1], f"history[{i}][1]")},
        ]
    user = instruction if not (extra and extra.strip()) else f"{instruction}\n\n{extra}"
    msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    return Conversation(msgs)


def from_prompt_completion(row: dict[str, Any]) -> Conversation:
    """{"prompt", "completion"}: text, or message lists as in TRL's conversational format."""
    prompt = _prompt(_require(row, "prompt"), "prompt")
    return Conversation(prompt + _reply(_require(row, "completion"), "completion"))


def from_preference(row: dict[str, Any]) -> Preference:
    """{"prompt"?, "chosen", "rejected"}; without a prompt, chosen and rejected are whole
    conversations and the prompt is their shared leading turns (TRL's implicit prompt)."""
    if "prompt" in row:
        prompt = _prompt(row["prompt"], "prompt")
        return Preference(
            prompt, _reply(_require(row, "chosen"), "chosen"), _reply(_require(row, "rejected"), "rejected")
        )
    chosen = _messages(_require(row, "chosen"), "chosen")
    rejected = _messages(_require(row, "rejected"), "rejected")
    shared = 0
    while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == 0:
        raise RecordError("prompt", "is missing, and chosen and rejected share no leading turns to take it from")
    return Preference(chosen[:shared], _reply(chosen[shared:], "chosen"), _reply(rejected[shared:], "rejected"))


def from_openai_dpo(row: dict[str, Any]) -> Preference:
    """OpenAI DPO: {"input": {"messages": [...]}, "preferred_output": [...], "non_preferred_output": [...]}."""
    inp = _require(row, "input")
    if not isinstance(inp, dict) or "messages" not in inp:
        raise RecordError("input", "must be an object with a messages list")
    return Preference(
        _messages(inp["messages"], "input.messages"),
        _reply(_require(row, "preferred_output"), "preferred_output"),
        _reply(_require(row, "non_preferred_output"), "non_preferred_output"),
    )


def from_sharegpt(row: dict[str, Any]) -> Conversation:
    """ShareGPT: {"conversations": [{"from": "human"|"gpt"|..., "value"}], "system"?}."""
    turns = _require(row, "conversations")
    if not isinstance(turns, list) or not turns:
        raise RecordError("conversations", "must be a non-empty list of {from, value} turns")
    msgs: list[Message] = []
    if row.get("system"):
        msgs.append({"role": "system", "content": _text(row["system"], "system")})
    for i, turn in enumerate(turns):
        where = f"conversations[{i}]"
        if not isinstance(turn, dict):
            raise RecordError(where, f"must be an object with from and value, got {type(turn).__name__}")
        speaker = turn.get("from")
        if speaker is None:
            raise RecordError(f"{where}.from", "is missing")
        role = _SHAREGPT_ROLES.get(str(speaker).strip().lower())
        if role is None:
            close = difflib.get_close_matches(str(speaker).lower(), list(_SHAREGPT_ROLES), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else "; use human, gpt, system or observation"
            raise RecordError(f"{where}.from", f"unknown speaker {speaker!r}{hint}")
        if "value" not in turn:
            raise RecordError(f"{where}.value", "is missing")
        msgs.append({"role": role, "content": _text(turn["value"], f"{where}.value")})
    return Conversation(msgs)


CONVERTERS: dict[str, Callable[[dict[str, Any]], Record]] = {
    "messages": from_messages,
    "alpaca": from_alpaca,
    "prompt_completion": from_prompt_completion,
    "preference": from_preference,
    "openai_dpo": from_openai_dpo,
    "sharegpt": from_sharegpt,
}

# Checked in order: the first whose keys a record has names its format.
_SIGNATURES: list[tuple[str, tuple[str, ...]]] = [
    ("openai_dpo", ("preferred_output",)),
    ("preference", ("chosen", "rejected")),
    ("sharegpt", ("conversations",)),
    ("messages", ("messages",)),
    ("alpaca", ("instruction",)),
    ("prompt_completion", ("prompt", "completion")),
]


def format_of(row: dict[str, Any]) -> str | None:
    """The format one record's keys point to, or None."""
    for name, keys in _SIGNATURES:
        if all(k in row for k in keys):
            return name
    return None


def detect_format(rows: Iterable[Any]) -> str | None:
    """The format most of these sample records have (None when none has a known shape)."""
    votes = Counter(f for r in rows if isinstance(r, dict) and (f := format_of(r)))
    return votes.most_common(1)[0][0] if votes else None


def attach_meta(record: Record, row: dict[str, Any], label_field: str | None) -> Record:
    """Carry the record's own id, meta and label over into `record.meta`."""
    meta: dict[str, Any] = {}
    for key in ("meta", "metadata"):
        if isinstance(row.get(key), dict):
            meta.update(row[key])
    if "id" in row and row["id"] not in (None, ""):
        meta.setdefault("id", row["id"])
    if label_field:
        value = row.get(label_field, meta.get(label_field))
        if value not in (None, ""):
            meta["label"] = str(value)
    record.meta = {**meta, **record.meta}
    return record
