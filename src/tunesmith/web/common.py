"""What every page shares: the templates, the key cookie, the page renderer and the caller's context."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from tunesmith.config import ProjectConfig

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
COOKIE = "tunesmith_key"


def page(request: Request, template: str, section: str, title: str, **context: Any) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, template, {"section": section, "title": title, **context})


def context_of(request: Request) -> tuple[ProjectConfig, Any]:
    """(the project config the pages read, the server's state)."""
    state = request.app.state.server
    return state.config, state


def store(request: Request) -> Any:
    """The fine-tuning jobs store, when the jobs API is mounted."""
    return request.app.state.server.jobs


def caller(request: Request) -> tuple[bool, str]:
    """(admin, organisation): an admin sees every run; others their organisation's jobs only (the project's
    own run is the operator's)."""
    from tunesmith.serve.keys import organisation

    cfg, _ = context_of(request)
    return bool(getattr(request.state, "is_admin", False)), organisation(
        cfg.serve, getattr(request.state, "key_digest", None)
    )


def output_of(run_id: str, request: Request) -> Path | None:
    cfg, _ = context_of(request)
    admin, org = caller(request)
    jobs = store(request)
    if run_id == "project":
        return cfg.output_path if admin else None
    job = jobs.job(run_id, None if admin else org) if jobs is not None else None
    return Path(job["folder"]) / "outputs" if job else None


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def as_html(text: str | None) -> str | None:
    """A Markdown report as HTML for the pages (tables and headings rendered). Its text is escaped first, so
    nothing a record or a model wrote can become markup; Markdown's own syntax survives escaping."""
    if not text:
        return None
    import html

    import markdown

    return markdown.markdown(html.escape(text, quote=False), extensions=["tables", "fenced_code"])
