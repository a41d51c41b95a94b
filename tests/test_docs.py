"""The README stays a newcomer's page (short lines, a few screens, no lab journal) and every link in it and in
docs/ leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_the_readme_fits_a_few_screens():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, len(lines)
    long = [(n, len(line)) for n, line in enumerate(lines, 1) if len(line) > 120]
    assert not long, f"README lines over 120 characters (line, length): {long}"


def test_the_readme_states_what_the_product_does_not_who_did_it():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    journal = [
        w
        for w in (r"\bI\b", r"\bwe\b", r"\bour\b", r"\bsession\b", r"\byesterday\b", r"\bthis morning\b")
        if re.search(w, text, re.IGNORECASE if w != r"\bI\b" else 0)
    ]
    assert not journal, journal


def test_every_relative_link_leads_to_a_file():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, broken


def _reference():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_reference", REPO / "tools" / "make_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reference_pages_are_what_the_code_generates():
    reference = _reference()
    assert (REPO / "docs" / "reference" / "config.md").read_text(encoding="utf-8") == reference.config_page(), (
        "docs/reference/config.md is out of date: run python tools/make_reference.py"
    )
    assert (REPO / "docs" / "reference" / "cli.md").read_text(encoding="utf-8") == reference.cli_page(), (
        "docs/reference/cli.md is out of date: run python tools/make_reference.py"
    )


def test_every_config_field_and_every_command_says_what_it_does():
    from tunesmith.cli import app
    from tunesmith.config import ProjectConfig

    reference = _reference()
    fields = reference.config_fields(ProjectConfig)
    assert len(fields) > 120
    assert not [name for name, _, _, text in fields if not text], "config fields without a docstring under them"
    commands = reference._commands(app, "tunesmith")
    assert len(commands) > 25
    assert not [name for name, command in commands if not (command.help or "").strip()], "commands without help"
    bare = [
        f"{name} {p.name}"
        for name, command in commands
        for p in command.params
        if p.name != "help" and not (getattr(p, "help", None) or "").strip()
    ]
    assert not bare, f"arguments and options without help: {bare}"


JOURNAL = re.compile(
    r"\b(?:I (?:did|tried|stopped|measured|ran|think|found|lost|decided)|[Ww]e|[Oo]ur|us|"
    r"(?:[Tt]his|[Ll]ast|[Nn]ext|[Pp]revious|[Ff]irst|[Ss]econd|[Tt]hird|[Ff]ourth|[Ff]ifth) session|"
    r"[Yy]esterday|this morning)\b"
)


def test_the_docs_state_what_the_product_does_in_lines_a_reader_can_follow():
    """No working journal in the reference pages (docs/log.md is the history, kept apart), and no prose line
    past 200 characters (table rows cannot wrap)."""
    problems = []
    for page in (p for p in PAGES if p.name != "log.md"):
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if JOURNAL.search(line) and "x-session-id" not in line:
                problems.append(f"{page.relative_to(REPO)}:{number}: {JOURNAL.search(line).group(0)!r}")
            if len(line) > 200 and not line.lstrip().startswith("|"):
                problems.append(f"{page.relative_to(REPO)}:{number}: {len(line)} characters")
    assert not problems, problems[:10]
