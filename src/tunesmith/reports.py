"""Reports as blocks (a title, a table, a plot, a note), written as Markdown and as one self-contained
HTML page with the plots inlined. Shared by the evaluation and monitoring reports."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Block:
    """One section of a report."""

    title: str
    headers: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    image: Path | None = None
    text: str = ""


def to_markdown(title: str, blocks: list[Block], base: Path) -> str:
    """The report as Markdown; images are linked relative to `base`."""
    lines = [f"# {title}", ""]
    for b in blocks:
        lines += [f"## {b.title}", ""]
        if b.rows:
            lines.append("| " + " | ".join(b.headers) + " |")
            lines.append("|" + "---|" * len(b.headers))
            lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in b.rows]
            lines.append("")
        if b.text:
            lines += [b.text, ""]
        if b.image:
            lines += [f"![{b.title}]({b.image.relative_to(base).as_posix()})", ""]
    return "\n".join(lines)


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}img{max-width:100%}</style></head>
<body><h1>{{ title }}</h1>
{% for b in blocks %}<h2>{{ b.title }}</h2>
{% if b.rows %}<table><tr>{% for h in b.headers %}<th>{{ h }}</th>{% endfor %}</tr>
{% for r in b.rows %}<tr>{% for c in r %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}</table>{% endif %}
{% if b.text %}<p>{{ b.text }}</p>{% endif %}
{% if b.image %}<img alt="{{ b.title }}" src="data:image/png;base64,{{ images[loop.index0] }}">{% endif %}
{% endfor %}</body></html>
"""


def to_html(title: str, blocks: list[Block]) -> str:
    """The report as one HTML page, images inlined as data URIs, every value escaped."""
    from jinja2 import Environment

    images = [base64.b64encode(b.image.read_bytes()).decode() if b.image else "" for b in blocks]
    return Environment(autoescape=True).from_string(_HTML).render(title=title, blocks=blocks, images=images)
