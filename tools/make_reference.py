"""Write the generated reference pages of the docs site from the code itself:

    docs/reference/config.md   every config field: its dotted name, type, default and the docstring under it
    docs/reference/cli.md      every command: its help, arguments and options, as `--help` prints them

Run from the repository root: python tools/make_reference.py  (tests/test_docs.py checks that the committed
pages are what this writes, and that no field or command lacks its help text).
"""

from __future__ import annotations

import textwrap
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "reference"


def _type(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "").replace("tunesmith.config.", "")
    for long, short in (("<class '", ""), ("'>", ""), ("NoneType", "None"), ("pathlib.Path", "Path")):
        text = text.replace(long, short)
    return text


def config_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted name, type, default, description) of every field, sections and list entries expanded in
    declaration order (`data.datasets[].path` is a field of each entry of `data.datasets`)."""
    rows = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        dotted = f"{prefix}{name}"
        description = (field.description or "").strip()
        nested = _section_in(field.annotation)
        if field.is_required():
            default = "required"
        else:
            value = field.get_default(call_default_factory=True)
            default = "null" if value is None else "" if isinstance(value, BaseModel) else _json(value)
        if nested is not None:
            listed = typing.get_origin(field.annotation) is list
            kind = "list of entries" if listed else "section" + (" or null" if default == "null" else "")
            rows.append((dotted, kind, "" if default == "" else default, description))
            rows += config_fields(nested, dotted + ("[]." if listed else "."))
            continue
        rows.append((dotted, _type(field.annotation), default, description))
    return rows


def _json(value: Any) -> str:
    import json

    try:
        return json.dumps(value, ensure_ascii=False)
    except TypeError:
        return str(value)


def _section_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _section_in(arg)
        if found is not None:
            return found
    return None


def config_page() -> str:
    from tunesmith.config import ProjectConfig

    intro = (
        "Every field of `tunesmith.yaml`, generated from the config models (`src/tunesmith/config/`) by "
        "`tools/make_reference.py`. Set any of them in the file or as a dotted override on the command line "
        "(`tunesmith run tunesmith.yaml train.learning_rate=1e-4`); `auto` leaves the choice to tunesmith "
        "([defaults](../defaults.md) says how it chooses). `tunesmith init` writes them all as a commented YAML."
    )
    lines = ["# Configuration reference", "", *textwrap.wrap(intro, 110, break_on_hyphens=False), ""]
    lines += ["## Top level", ""]
    for dotted, kind, default, description in config_fields(ProjectConfig):
        if kind.startswith("section") and "." not in dotted:
            lines += [f"## `{dotted}`", "", *textwrap.wrap(" ".join(description.split()), 110), ""]
            continue
        lines += [
            f"### `{dotted}`",
            "",
            f"*{kind}*" + (f", default `{default}`" if default else ""),
            "",
            *textwrap.wrap(" ".join(description.split()), 110, break_on_hyphens=False),
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def _commands(group: Any, prefix: str) -> list[tuple[str, Any]]:
    import typer.main

    click_group = typer.main.get_command(group) if not hasattr(group, "commands") else group
    out = []
    for name, command in sorted(click_group.commands.items()):
        full = f"{prefix} {name}"
        if hasattr(command, "commands"):
            out += _commands(command, full)
        else:
            out.append((full, command))
    return out


def cli_page() -> str:
    from tunesmith.cli import app

    lines = [
        "# Command-line reference",
        "",
        "Every command and its options, generated from the command line itself (`tools/make_reference.py`); "
        "`tunesmith COMMAND --help` prints the same.",
        "",
    ]
    for full, command in _commands(app, "tunesmith"):
        lines += [f"## `{full}`", "", (command.help or "").strip(), ""]
        params = [p for p in command.params if p.name != "help"]
        if params:
            lines += ["| argument or option | help |", "|---|---|"]
            for p in params:
                option = getattr(p, "param_type_name", "") == "option"
                name = " / ".join(p.opts + list(getattr(p, "secondary_opts", []))) if option else p.name.upper()
                text = " ".join((getattr(p, "help", None) or "").split()).replace("|", "\\|")
                lines.append(f"| `{name}` | {text} |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "config.md").write_text(config_page(), encoding="utf-8")
    (OUT / "cli.md").write_text(cli_page(), encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}/config.md and cli.md")


if __name__ == "__main__":
    main()
