"""Web pages on the server (`/ui/...`): runs, evaluation, registry, rollout, blind human evaluation, playground.

Server-rendered with Jinja2 (FastAPI's templating), no JavaScript build step; everything works
without JavaScript except the rating page's keyboard shortcuts. Loss curves are inline SVG and a
running run's page refreshes itself. Behind the API key when keys are set: the browser sends it
as a cookie set by `/ui/login`; promote and rollback also need an admin key when admin keys are set.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tunesmith.config import ProjectConfig
from tunesmith.paths import eval_dir, monitor_dir, train_dir
from tunesmith.web import data
from tunesmith.web.common import COOKIE, as_html, caller, context_of, output_of, page, read_text, store

router = APIRouter(include_in_schema=False)


def mount_pages(app: FastAPI, cfg: ProjectConfig) -> None:
    """The pages at /ui/ on a server (create_app), reading `cfg`'s outputs and registry."""
    from tunesmith.web import human

    app.state.server.config = cfg
    app.include_router(router)
    app.include_router(human.router)


@router.get("/ui")
@router.get("/ui/")
async def home() -> RedirectResponse:
    return RedirectResponse("/ui/runs", status_code=303)


@router.get("/ui/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = "/ui/runs") -> HTMLResponse:
    return page(request, "login.html", "", "Sign in", next=_next_page(next))


@router.post("/ui/login")
async def login(request: Request, key: str = Form(...), next: str = Form("/ui/runs")) -> RedirectResponse:
    if not key.isascii() or not key.isprintable() or len(key) > 200:  # a key tunesmith makes never is
        return HTMLResponse("not an API key: keys are printable ASCII", status_code=400)
    answer = RedirectResponse(_next_page(next), status_code=303)
    answer.set_cookie(COOKIE, key, httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return answer


@router.get("/ui/runs", response_class=HTMLResponse)
async def runs(request: Request) -> HTMLResponse:
    cfg, _ = context_of(request)
    admin, org = caller(request)
    return page(request, "runs.html", "Runs", "Runs", runs=data.runs(cfg, store(request), None if admin else org))


@router.get("/ui/runs/{run_id}", response_class=HTMLResponse)
async def run(request: Request, run_id: str) -> HTMLResponse:
    output = output_of(run_id, request)
    if output is None:
        return page(request, "runs.html", "Runs", f"No run {run_id}", runs=[])
    job = store(request).job(run_id) if run_id != "project" and store(request) is not None else None
    summary = data.run_summary(run_id, output, "", job["status"] if job else None)
    rows = data.metrics_rows(output / "train" / "metrics.csv")
    alarms = data.read_jsonl(output / "train" / "alarms.jsonl")
    config = read_text(output / "train" / "config.yaml") or read_text(output / "data" / "config.yaml")
    running = summary["status"] in ("running", "queued", "validating_files")
    return page(
        request,
        "run.html",
        "Runs",
        f"Run {run_id}",
        run=summary,
        rows=rows,
        svg=data.loss_svg(rows),
        alarms=alarms,
        config=config,
        report=as_html(read_text(output / "data" / "report.md")),
        refresh=5 if running else None,
    )


@router.get("/ui/eval", response_class=HTMLResponse)
async def evaluation(request: Request, model: str = "fine_tuned", filter: str = "") -> HTMLResponse:
    cfg, _ = context_of(request)
    from tunesmith.evaluate.gate import check_gates
    from tunesmith.evaluate.result import metrics_path, read_eval

    evaluated = read_eval(cfg) if metrics_path(cfg).exists() else None
    training = data.read_json(train_dir(cfg) / "metadata.json")
    gates = check_gates(cfg, evaluated, training) if evaluated else []
    keys = sorted(
        {
            k
            for m in (evaluated.models.values() if evaluated else [])
            for k in m.values
            if m.interval(k) is not None or k.startswith("latency")
        }
    )
    flt = filter if filter in data.FILTERS else None
    rows = data.examples(cfg.output_path, model if model in ("fine_tuned", "base", "few_shot") else "fine_tuned", flt)
    for r in rows:
        r["prompt_text"] = data.prompt_text(r)
    return page(
        request,
        "eval.html",
        "Evaluation",
        "Evaluation: before and after",
        result=evaluated,
        keys=keys,
        gates=gates,
        rows=rows,
        filters=data.FILTERS,
        flt=flt,
        model=model,
    )


@router.get("/ui/eval/diff", response_class=HTMLResponse)
async def diff(request: Request, a: str = "base", b: str = "fine_tuned", changed: str = "") -> HTMLResponse:
    cfg, _ = context_of(request)
    loop = asyncio.get_running_loop()
    versions = await loop.run_in_executor(None, _versions, cfg)
    choices = ["base", "few_shot", "fine_tuned"] + [f"v{v['version']}" for v in versions]
    left = await loop.run_in_executor(None, _predictions, cfg, a)
    right = await loop.run_in_executor(None, _predictions, cfg, b)
    by_id = {r.get("id"): r for r in right}
    rows = []
    for r in left:
        other = by_id.get(r.get("id"))
        if other is None:
            continue
        rows.append(
            {
                "id": r.get("id"),
                "prompt": data.prompt_text(r),
                "reference": r.get("reference", ""),
                "a": r.get("output", ""),
                "b": other.get("output", ""),
                "score_a": r.get("task_metric"),
                "score_b": other.get("task_metric"),
            }
        )
    differ = sum(1 for r in rows if r["a"] != r["b"])
    shown = [r for r in rows if r["a"] != r["b"]] if changed else rows
    mean = lambda key: statistics.fmean([r[key] for r in rows if isinstance(r[key], (int, float))] or [0.0])
    return page(
        request,
        "diff.html",
        "Evaluation",
        f"{a} vs {b} on the same examples",
        choices=choices,
        a=a,
        b=b,
        rows=shown,
        differ=differ,
        total=len(rows),
        changed=bool(changed),
        score_a=mean("score_a"),
        score_b=mean("score_b"),
    )


@router.get("/ui/registry", response_class=HTMLResponse)
async def registry(request: Request, message: str = "") -> HTMLResponse:
    cfg, _ = context_of(request)
    loop = asyncio.get_running_loop()
    versions = await loop.run_in_executor(None, _versions, cfg)
    history = await loop.run_in_executor(None, _history, cfg)
    return page(request, "registry.html", "Registry", "Registry", versions=versions, history=history, message=message)


@router.get("/ui/registry/confirm", response_class=HTMLResponse)
async def confirm(request: Request, action: str, alias: str = "production", version: str = "") -> HTMLResponse:
    question = (
        f"Point {alias} at v{version}? A running server follows within seconds."
        if action == "promote"
        else f"Roll {alias} back to the version before? A running server follows within seconds."
    )
    return page(
        request,
        "confirm.html",
        "Registry",
        "Confirm",
        question=question,
        action="promote" if action == "promote" else "rollback",
        alias=alias,
        version=version,
    )


@router.post("/ui/registry/{action}")
async def registry_action(
    request: Request, action: str, alias: str = Form("production"), version: str = Form(""), reason: str = Form("")
) -> Any:
    cfg, state = context_of(request)
    from tunesmith.errors import TunesmithError
    from tunesmith.registry import store as registry

    if not getattr(request.state, "is_admin", False):  # the server's one rule (serve/access.py)
        return HTMLResponse(
            "promote and rollback need an admin key (serve.admin_key_sha256); without keys, "
            "only a browser on the server's own machine may",
            status_code=403,
        )
    why = reason or "from the web page"
    try:
        if action == "promote":
            done = await asyncio.get_running_loop().run_in_executor(
                None, lambda: registry.promote(cfg, version, alias, reason=why)
            )
        elif action == "rollback":
            done = await asyncio.get_running_loop().run_in_executor(
                None, lambda: registry.rollback(cfg, alias, reason=why)
            )
        else:
            return HTMLResponse("unknown action", status_code=404)
    except TunesmithError as exc:
        return RedirectResponse(f"/ui/registry?message={_q(str(exc))}", status_code=303)
    except Exception as exc:  # the registry's own error (no such model or version yet): said, not a 500
        return RedirectResponse(
            f"/ui/registry?message={_q(f'{action} failed: {type(exc).__name__}: {exc}')}", status_code=303
        )
    watcher = state.aliases
    if watcher is not None:
        await asyncio.get_running_loop().run_in_executor(None, watcher.poll)  # this server follows at once
    now = f"{alias} is now v{done['version']}"
    return RedirectResponse(f"/ui/registry?message={_q(now)}", status_code=303)


@router.get("/ui/registry/{version}", response_class=HTMLResponse)
async def card(request: Request, version: int) -> HTMLResponse:
    cfg, _ = context_of(request)
    from tunesmith.tracking import model_name

    path = cfg.output_path / "registry" / f"{model_name(cfg)}-v{version}.md"
    return page(
        request, "card.html", "Registry", f"Model card v{version}", card=as_html(read_text(path)) or "<p>no card</p>"
    )


@router.get("/ui/rollout", response_class=HTMLResponse)
async def rollout(request: Request) -> HTMLResponse:
    cfg, state = context_of(request)
    if not caller(request)[0]:  # every organisation's traffic: the operator's page
        return HTMLResponse("the rollout page needs an admin key (serve.admin_key_sha256)", status_code=403)
    routers = {name: r.state() for name, r in state.routers.items()}
    return page(
        request,
        "rollout.html",
        "Rollout",
        "Rollout and monitoring",
        routers=routers,
        buckets=_buckets(state.log),
        events=state.log.events(),
        drift=read_text(monitor_dir(cfg) / "drift.json"),
        refresh=10,
    )


@router.get("/ui/rollout/traffic.png")
async def rollout_chart(request: Request) -> Response:
    """Requests, p95 latency, error rate, feedback and USD per 1K requests per version, drawn now."""
    cfg, state = context_of(request)
    if not caller(request)[0]:
        return HTMLResponse("the rollout page needs an admin key (serve.admin_key_sha256)", status_code=403)
    import io

    from tunesmith.monitor.charts import traffic_chart

    rows = sorted(state.log.rows(5000), key=lambda r: r["time"])
    png = io.BytesIO()
    await asyncio.get_running_loop().run_in_executor(
        None, traffic_chart, rows, state.log.feedback(), cfg.cost.serving_usd_per_hour, png
    )
    return Response(png.getvalue(), media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/ui/playground", response_class=HTMLResponse)
async def playground(request: Request) -> HTMLResponse:
    _, state = context_of(request)
    return page(
        request,
        "playground.html",
        "Playground",
        "Playground",
        models=_served(state),
        a="base",
        b="",
        prompt="",
        max_tokens=128,
        answers=None,
    )


@router.post("/ui/playground", response_class=HTMLResponse)
async def play(
    request: Request, prompt: str = Form(...), a: str = Form("base"), b: str = Form(""), max_tokens: int = Form(128)
) -> HTMLResponse:
    _, state = context_of(request)
    names = [n for n in (a, b) if n]
    texts = await asyncio.gather(*(_answer(request.app, request, n, prompt, max_tokens) for n in names))
    return page(
        request,
        "playground.html",
        "Playground",
        "Playground",
        models=_served(state),
        a=a,
        b=b,
        prompt=prompt,
        max_tokens=max_tokens,
        answers=list(zip(names, texts)),
    )


def _next_page(target: str) -> str:
    """Where to go after signing in: one of these pages (a plain path), never another site or odd bytes."""
    return target if re.fullmatch(r"/ui[A-Za-z0-9/_.?=&%-]{0,200}", target) else "/ui/runs"


def _q(text: str) -> str:
    from urllib.parse import quote

    return quote(text[:300])


def _versions(cfg: ProjectConfig) -> list[dict[str, Any]]:
    from tunesmith.registry.store import versions

    if not cfg.registry.tracking_uri and not (cfg.output_path / "mlflow.db").exists():
        return []
    rows = versions(cfg)
    for r in rows:
        r["lineage"] = f"from {r['parent']}" if r.get("parent") else (r.get("base_model") or "")
    return rows


def _history(cfg: ProjectConfig) -> list[dict[str, Any]]:
    from tunesmith.registry.store import history

    if not cfg.registry.tracking_uri and not (cfg.output_path / "mlflow.db").exists():
        return []
    return history(cfg)


def _predictions(cfg: ProjectConfig, which: str) -> list[dict[str, Any]]:
    """A model's per-example outputs on the test split: this project's, or a registry version's
    (logged with it at registration; downloaded once into <output_dir>/web/)."""

    if which in ("base", "few_shot", "fine_tuned"):
        return data.read_jsonl(eval_dir(cfg) / f"predictions_{which}.jsonl")
    if not re.fullmatch(r"v\d+", which):
        return []
    cached = cfg.output_path / "web" / f"predictions_{which}.jsonl"
    if not cached.exists():
        import mlflow

        from tunesmith.registry.store import client
        from tunesmith.tracking import model_name

        try:
            version = client(cfg).get_model_version(model_name(cfg), which[1:])
            path = mlflow.artifacts.download_artifacts(
                run_id=version.run_id,
                artifact_path="eval/predictions_fine_tuned.jsonl",
                dst_path=str(cached.parent / f".{which}"),
            )
        except Exception:
            return []
        cached.parent.mkdir(parents=True, exist_ok=True)
        Path(path).replace(cached)
    return data.read_jsonl(cached)


def _buckets(log: Any) -> list[dict[str, Any]]:
    """Requests per minute and version: count, errors, p50 latency, mean feedback."""
    feedback: dict[str, list[float]] = {}
    for f in log.feedback():
        if f["score"] is not None:
            feedback.setdefault(f["request_id"], []).append(f["score"])
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in log.rows(5000):
        minute = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["time"]))
        groups.setdefault((minute, r["version"] or r["target"] or r["model"]), []).append(r)
    out = []
    for (minute, version), rows in sorted(groups.items(), reverse=True)[:60]:
        latencies = [r["latency_ms"] for r in rows if r["status"] == 200]
        scores = [s for r in rows for s in feedback.get(r["id"], [])]
        out.append(
            {
                "minute": minute,
                "version": version,
                "requests": len(rows),
                "errors": sum(1 for r in rows if r["status"] >= 500),
                "p50": round(statistics.median(latencies)) if latencies else "-",
                "feedback": round(statistics.fmean(scores), 2) if scores else "-",
            }
        )
    return out


def _served(state: Any) -> list[str]:
    return sorted(n for n, t in state.targets.items() if t.kind == "local")


async def _answer(app: Any, request: Request, name: str, prompt: str, max_tokens: int) -> str:
    """One playground answer, asked of this server's own chat completions route in-process, so it meets the
    same key, limits, deadline and request log as any API call."""
    import httpx

    key = request.headers.get("authorization") or (
        f"Bearer {request.cookies[COOKIE]}" if COOKIE in request.cookies else None
    )
    client_address = (request.client.host, request.client.port) if request.client else ("127.0.0.1", 0)
    transport = httpx.ASGITransport(app=app, client=client_address)
    async with httpx.AsyncClient(transport=transport, base_url="http://playground", timeout=None) as client:
        answer = await client.post(
            "/v1/chat/completions",
            headers={"Authorization": key} if key else {},
            json={
                "model": name,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "user": "playground",
            },
        )
    body = answer.json()
    if answer.status_code != 200:
        return f"({body.get('error', {}).get('message', answer.status_code)})"
    return body["choices"][0]["message"]["content"]
