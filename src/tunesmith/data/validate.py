"""Structural rules every canonical record must meet, whatever format it came from."""

from __future__ import annotations

from tunesmith.data.records import Conversation, Message, Preference, Record

Finding = tuple[str | None, str]


def _conversation_findings(messages: list[Message], field: str) -> tuple[list[Finding], list[Finding]]:
    errors: list[Finding] = []
    warnings: list[Finding] = []
    roles = [m["role"] for m in messages]
    for i, role in enumerate(roles):
        if role == "system" and i > 0 and roles[i - 1] != "system":
            errors.append((f"{field}[{i}].role", "system message after other turns; put system messages first"))
    if "assistant" not in roles:
        errors.append((field, "no assistant turn to learn from; add the reply the model should give"))
    elif roles[-1] == "user":
        errors.append(
            (
                f"{field}[{len(roles) - 1}]",
                "conversation ends on a user turn that nothing answers; "
                "add the assistant reply or remove the last user turn",
            )
        )
    elif all(m.get("weight", 1) == 0 for m in messages if m["role"] == "assistant"):
        errors.append((field, "every assistant turn has weight 0, so nothing would be trained on"))
    if "user" not in roles:
        warnings.append((field, "no user turn: the model learns to speak unprompted"))
    for i in range(1, len(roles)):
        if roles[i] == roles[i - 1] and roles[i] in ("user", "assistant"):
            warnings.append((f"{field}[{i}].role", f"two {roles[i]} turns in a row; merge them unless intended"))
    return errors, warnings


def validate_record(record: Record) -> tuple[list[Finding], list[Finding]]:
    """(errors, warnings) for one record; any error rejects it."""
    if isinstance(record, Conversation):
        return _conversation_findings(record.messages, "messages")
    assert isinstance(record, Preference)
    errors: list[Finding] = []
    warnings: list[Finding] = []
    if not record.prompt or record.prompt[-1]["role"] not in ("user", "tool"):
        errors.append(("prompt", "must end with a user turn that chosen and rejected answer"))
    if [m["content"].strip() for m in record.chosen] == [m["content"].strip() for m in record.rejected]:
        errors.append(
            (
                "rejected",
                "is the same as chosen, so there is no preference to learn; give a worse answer or remove the record",
            )
        )
    return errors, warnings
