"""The blind human evaluation pages (`/ui/human`): export the rating sheet, rate pairs one at a time
(each rater's answers in their own file, a rater name claimed by one key), and the agreement summary."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from tunesmith.config import ProjectConfig
from tunesmith.paths import human_dir
from tunesmith.web import data
from tunesmith.web.common import context_of, page

router = APIRouter(include_in_schema=False)


@router.get("/ui/human", response_class=HTMLResponse)
async def human(request: Request) -> HTMLResponse:
    cfg, _ = context_of(request)
    sheet = human_dir(cfg) / "sheet.csv"
    return page(
        request,
        "human.html",
        "Human evaluation",
        "Blind human evaluation",
        sheet=sheet.exists(),
        rater=None,
        summary=_human_summary(cfg) if sheet.exists() else None,
    )


@router.post("/ui/human/export")
async def human_export(request: Request) -> Any:
    cfg, _ = context_of(request)
    from tunesmith.errors import TunesmithError
    from tunesmith.evaluate.human import export_sheets

    try:
        await asyncio.get_running_loop().run_in_executor(None, lambda: export_sheets(cfg))
    except TunesmithError as exc:  # nothing evaluated yet: say what to run first
        return HTMLResponse(str(exc).replace(str(cfg.output_path) + "/", ""), status_code=409)
    return RedirectResponse("/ui/human", status_code=303)


@router.get("/ui/human/rate", response_class=HTMLResponse)
async def rate_page(request: Request, rater: str) -> HTMLResponse:
    cfg, _ = context_of(request)
    from tunesmith.evaluate.human import RUBRIC

    rater = _rater(rater)
    rows = data.sheet_rows(human_dir(cfg) / "sheet.csv")
    mine = human_dir(cfg) / "ratings" / f"{rater}.csv"
    done = {int(r["item"]) for r in data.sheet_rows(mine)} if mine.exists() else set()
    item = next((r for r in rows if int(r["item"]) not in done), None)
    return page(
        request,
        "rate.html",
        "Human evaluation",
        "Which answer is better?",
        rater=rater,
        item=item,
        done=len(done),
        total=len(rows),
        rubric=RUBRIC,
    )


@router.post("/ui/human/rate")
async def rate(request: Request) -> RedirectResponse:
    cfg, _ = context_of(request)
    from tunesmith.evaluate.human import RUBRIC

    form = await request.form()
    rater = _rater(str(form.get("rater", "")))
    rows = data.sheet_rows(human_dir(cfg) / "sheet.csv") if (human_dir(cfg) / "sheet.csv").exists() else []
    item = str(form.get("item", ""))
    if not item.isdigit() or int(item) not in {int(r["item"]) for r in rows}:
        return HTMLResponse(f"no item {item[:20]!r} in the rating sheet", status_code=400)
    refused = data.claim_rater(human_dir(cfg) / "ratings", rater, getattr(request.state, "key_digest", None))
    if refused:
        return HTMLResponse(refused, status_code=403 if "another key" in refused else 400)
    answer = {"preferred": str(form.get("preferred", "")), "comment": str(form.get("comment", ""))[:2000]}
    for c in RUBRIC:
        for side in ("1", "2"):
            value = str(form.get(f"{c}_{side}", ""))
            answer[f"{c}_{side}"] = value if value in {"1", "2", "3", "4", "5"} else ""
    if answer["preferred"] not in ("1", "2", "tie"):
        answer["preferred"] = ""
    with _lock(rater):
        data.save_rating(human_dir(cfg) / "ratings", rater, rows, int(item), answer)
    return RedirectResponse(f"/ui/human/rate?rater={rater}", status_code=303)


_LOCKS: dict[str, Any] = {}


def _lock(rater: str) -> Any:
    import threading

    return _LOCKS.setdefault(rater, threading.Lock())


def _rater(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "", name)[:40] or "anonymous"


def _human_summary(cfg: ProjectConfig) -> dict[str, Any]:
    """Ratings so far, and the evaluation stage's statistics over them (win rate, agreement)."""
    from tunesmith.evaluate.human import import_sheets
    from tunesmith.paths import human_dir

    sheets = sorted((human_dir(cfg) / "ratings").glob("*.csv"))
    judged = sum(1 for s in sheets for r in data.sheet_rows(s) if r.get("preferred"))
    summary: dict[str, Any] = {"raters": [s.stem for s in sheets], "judged": judged, "results": None}
    if sheets:
        try:
            summary["results"] = json.loads(json.dumps(import_sheets(cfg, sheets), default=str))
        except Exception as exc:  # e.g. too few judgments for agreement yet
            summary["error"] = f"{type(exc).__name__}: {exc}"
    return summary
