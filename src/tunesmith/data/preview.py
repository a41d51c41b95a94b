"""`tunesmith data preview`: records after the chat template, trained tokens marked."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.text import Text

from tunesmith.data.records import Record
from tunesmith.data.template import IGNORE_INDEX, conversation_of, tokenize_messages, with_system_prompt


def mask_segments(input_ids: list[int], labels: list[int], tokenizer: Any) -> list[tuple[str, bool]]:
    """Runs of consecutive tokens as (decoded text, trained?)."""
    segments: list[tuple[str, bool]] = []
    run: list[int] = []
    flag = None
    for token, label in zip(input_ids, labels):
        trained = label != IGNORE_INDEX
        if flag is not None and trained != flag:
            segments.append((tokenizer.decode(run), flag))
            run = []
        run.append(token)
        flag = trained
    if run:
        segments.append((tokenizer.decode(run), bool(flag)))
    return segments


def preview_panel(
    record: Record, tokenizer: Any, *, train_on_prompt: bool = False, system_prompt: str | None = None
) -> Panel:
    """A Rich panel: prompt tokens dim, trained tokens bold green on a dark background."""
    enc = tokenize_messages(with_system_prompt(conversation_of(record), system_prompt), tokenizer, train_on_prompt)
    text = Text()
    for chunk, trained in mask_segments(enc["input_ids"], enc["labels"], tokenizer):
        text.append(chunk, style="bold green on grey15" if trained else "dim")
    trained = sum(1 for x in enc["labels"] if x != IGNORE_INDEX)
    where = f"{record.meta.get('file', '?')}:{record.meta.get('line', '?')}"
    title = f"{where} — {len(enc['input_ids'])} tokens, {trained} trained"
    legend = Text.assemble(("trained on", "bold green on grey15"), "  ", ("not trained on", "dim"))
    return Panel(Group(text, Text(""), legend), title=title, title_align="left")
