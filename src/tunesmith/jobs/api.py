"""OpenAI's files and fine-tuning endpoints on tunesmith's server, and the `ft:` models they make.

    POST /v1/files                          upload (multipart: file, purpose=fine-tune); records checked
    GET  /v1/files, /v1/files/{id}, /v1/files/{id}/content;  DELETE /v1/files/{id}
    POST /v1/fine_tuning/jobs               create (validating_files → queued → running → succeeded | failed)
    GET  /v1/fine_tuning/jobs               list, newest first (after, limit)
    GET  /v1/fine_tuning/jobs/{id}          retrieve
    POST /v1/fine_tuning/jobs/{id}/cancel | /pause | /resume
    GET  /v1/fine_tuning/jobs/{id}/events | /checkpoints   (after, limit)

The shapes are OpenAI's, so the official client works by changing `base_url`. A job is trained by
the worker process (jobs/worker.py), never in the web process. Each API key sees only its
organisation's files and jobs (`serve.organizations`; a key not listed is its own organisation).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import FileResponse

from tunesmith.config import ProjectConfig
from tunesmith.jobs.spec import SpecError, check_file, check_suffix, fine_tuned_name, model_short, normalise
from tunesmith.jobs.store import JobStore
from tunesmith.serve.protocol import ApiError

PURPOSES = ("fine-tune", "fine-tune-results")


def _size(fh: Any) -> int:
    fh.seek(0, 2)
    return fh.tell()


def jobs_root(cfg: ProjectConfig) -> Path:
    return cfg.output_path / "jobs"


def organisation(cfg: ProjectConfig, digest: str | None) -> str:
    """The organisation a key belongs to (serve/keys.py)."""
    from tunesmith.serve.keys import organisation as of_key

    return of_key(cfg.serve, digest)


def file_object(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "file",
        "bytes": row["bytes"],
        "created_at": row["created_at"],
        "filename": row["filename"],
        "purpose": row["purpose"],
        "status": row["status"],
        "status_details": row["status_details"],
        "expires_at": None,
    }


def job_object(row: dict[str, Any]) -> dict[str, Any]:
    method = json.loads(row["method"])
    hyper = json.loads(row["hyperparameters"])
    return {
        "id": row["id"],
        "object": "fine_tuning.job",
        "created_at": row["created_at"],
        "error": json.loads(row["error"]) if row["error"] else None,
        "fine_tuned_model": row["fine_tuned_model"],
        "finished_at": row["finished_at"],
        "hyperparameters": hyper,
        "model": row["model"],
        "organization_id": row["org"],
        "result_files": json.loads(row["result_files"]) if row["result_files"] else [],
        "seed": row["seed"],
        "status": row["status"],
        "trained_tokens": row["trained_tokens"],
        "training_file": row["training_file"],
        "validation_file": row["validation_file"],
        "estimated_finish": row["estimated_finish"],
        "integrations": [],
        "metadata": json.loads(row["metadata"]) if row["metadata"] else None,
        "method": {"type": method["type"], method["type"]: {"hyperparameters": hyper}},
        "user_provided_suffix": row["suffix"],
    }


def event_object(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "fine_tuning.job.event",
        "created_at": row["created_at"],
        "level": row["level"],
        "message": row["message"],
        "data": json.loads(row["data"]) if row["data"] else {},
        "type": row["type"],
    }


def checkpoint_object(row: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    metrics = json.loads(row["metrics"])
    name = job["fine_tuned_model"] or fine_tuned_name(job["model"], job["org"], job["suffix"], job["id"])
    return {
        "id": row["id"],
        "object": "fine_tuning.job.checkpoint",
        "created_at": row["created_at"],
        "fine_tuned_model_checkpoint": f"{name}:ckpt-step-{row['step']}",
        "fine_tuning_job_id": job["id"],
        "metrics": {"step": row["step"], **metrics},
        "step_number": row["step"],
    }


def page(items: list[dict[str, Any]], more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "has_more": more,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
    }


router = APIRouter()


def mount_jobs(app: FastAPI, cfg: ProjectConfig) -> JobStore:
    """Add the files and fine-tuning endpoints to a server made by serve.app.create_app."""
    store = JobStore(jobs_root(cfg))
    state = app.state.server
    state.config, state.jobs = cfg, store
    app.include_router(router)
    _serve_models(app, cfg, store)
    return store


def _jobs(request: Request) -> tuple[ProjectConfig, JobStore]:
    """(the project config, the jobs store) of the server this request reached."""
    state = request.app.state.server
    return state.config, state.jobs


def org_of(request: Request) -> str:
    cfg, _ = _jobs(request)
    return organisation(cfg, getattr(request.state, "key_digest", None))


def own_job(request: Request, job_id: str) -> dict[str, Any]:
    row = _jobs(request)[1].job(job_id, org_of(request))
    if row is None:
        raise ApiError(404, f"no fine-tuning job {job_id!r}", param="fine_tuning_job_id", code="job_not_found")
    return row


def own_file(request: Request, file_id: str, param: str = "file_id") -> dict[str, Any]:
    row = _jobs(request)[1].file(org_of(request), file_id)
    if row is None:
        raise ApiError(404, f"no file {file_id!r}", param=param, code="file_not_found")
    return row


@router.post("/v1/files")
async def upload(request: Request, file: UploadFile = File(...), purpose: str = Form(...)) -> dict[str, Any]:
    cfg, store = _jobs(request)
    settings = cfg.serve.jobs
    if purpose not in PURPOSES:
        raise ApiError(400, f"purpose {purpose!r}: this server takes fine-tune files", param="purpose")
    import asyncio

    loop = asyncio.get_running_loop()
    size = file.size if file.size is not None else await loop.run_in_executor(None, _size, file.file)
    if size > settings.max_file_bytes:  # the body guard counted the whole request; this is the file alone
        raise ApiError(413, f"file over serve.jobs.max_file_bytes ({settings.max_file_bytes} bytes)", param="file")
    held = store.usage(org_of(request))
    if held["files"] >= settings.max_files_per_org or held["bytes"] + size > settings.max_bytes_per_org:
        raise ApiError(
            429,
            f"your organisation holds {held['files']} files of {held['bytes']} bytes; this server "
            f"keeps at most {settings.max_files_per_org} files and {settings.max_bytes_per_org} bytes "
            "each (serve.jobs.max_files_per_org, max_bytes_per_org): delete files you no longer need",
            param="file",
            code="quota_exceeded",
        )
    row = await loop.run_in_executor(
        None,
        store.add_file_from,
        org_of(request),
        file.filename or "upload.jsonl",
        purpose,
        file.file,
        "uploaded",
        None,
    )  # copied and fsynced off the loop
    if purpose == "fine-tune":
        valid, problems = await loop.run_in_executor(None, check_file, Path(row["path"]))
        status, details = ("processed", None) if not problems else ("error", "; ".join(problems))
        store.set_file_status(row["id"], status, details)
        row = store.file(org_of(request), row["id"])
    return file_object(row)  # type: ignore[arg-type]


@router.get("/v1/files")
async def list_files(request: Request, purpose: str | None = None) -> dict[str, Any]:
    _, store = _jobs(request)
    return page([file_object(r) for r in store.files(org_of(request), purpose)], False)


@router.get("/v1/files/{file_id}")
async def get_file(request: Request, file_id: str) -> dict[str, Any]:
    return file_object(own_file(request, file_id))


@router.get("/v1/files/{file_id}/content")
async def file_content(request: Request, file_id: str) -> FileResponse:
    row = own_file(request, file_id)
    return FileResponse(row["path"], media_type="application/octet-stream")  # streamed from disk


@router.delete("/v1/files/{file_id}")
async def delete_file(request: Request, file_id: str) -> dict[str, Any]:
    _, store = _jobs(request)
    own_file(request, file_id)
    store.delete_file(org_of(request), file_id)
    return {"id": file_id, "object": "file", "deleted": True}


@router.post("/v1/fine_tuning/jobs")
async def create_job(request: Request) -> dict[str, Any]:
    cfg, store = _jobs(request)
    settings = cfg.serve.jobs
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    org = org_of(request)
    try:
        kind, hyper = normalise(body)
        check_suffix(body.get("suffix"))
    except SpecError as exc:
        raise ApiError(400, str(exc), param=exc.param, code=exc.code) from None
    if store.usage(org)["active_jobs"] >= settings.max_active_jobs_per_org:
        raise ApiError(
            429,
            f"your organisation has {settings.max_active_jobs_per_org} jobs waiting or running, "
            "this server's limit (serve.jobs.max_active_jobs_per_org); wait for one to finish or cancel "
            "one",
            code="quota_exceeded",
        )
    model = body.get("model")
    if model not in (cfg.base_model, model_short(cfg.base_model), "base"):  # "base": the name /v1/models lists
        raise ApiError(
            400,
            f"model {model!r} is not available for fine-tuning here; this server fine-tunes "
            f"{model_short(cfg.base_model)!r} (its base_model)",
            param="model",
            code="model_not_available",
        )
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**31):
        raise ApiError(400, "seed must be an integer from 0 to 2147483647", param="seed")
    metadata = body.get("metadata")
    if metadata is not None and (
        not isinstance(metadata, dict) or len(metadata) > 16 or not all(isinstance(v, str) for v in metadata.values())
    ):
        raise ApiError(400, "metadata must be an object of at most 16 string values", param="metadata")
    files = {}
    for key in ("training_file", "validation_file"):
        if body.get(key) is None:
            if key == "training_file":
                raise ApiError(400, "training_file is required", param=key)
            continue
        if not isinstance(body[key], str):
            raise ApiError(400, f"{key} must be a file id (a string)", param=key)
        row = own_file(request, body[key], param=key)
        if row["purpose"] != "fine-tune":
            raise ApiError(400, f"{key} {row['id']} has purpose {row['purpose']!r}, not fine-tune", param=key)
        files[key] = row
    import secrets

    job = store.add_job(
        org,
        {
            "model": model_short(cfg.base_model),
            "training_file": files["training_file"]["id"],
            "validation_file": files.get("validation_file", {}).get("id"),
            "suffix": body.get("suffix"),
            "seed": seed if seed is not None else secrets.randbelow(2**31),
            "metadata": metadata,
            "method": {"type": kind},
            "hyperparameters": hyper,
        },
    )
    store.event(job["id"], "created", f"Created fine-tuning job: {job['id']}")
    await _validate(store, job, files, kind)
    return job_object(store.job(job["id"]))  # type: ignore[arg-type]


@router.get("/v1/fine_tuning/jobs")
async def list_jobs(request: Request, after: str | None = None, limit: int = 20) -> dict[str, Any]:
    _, store = _jobs(request)
    rows, more = store.jobs(org_of(request), after, max(1, min(limit, 100)))
    return page([job_object(r) for r in rows], more)


@router.get("/v1/fine_tuning/jobs/{job_id}")
async def get_job(request: Request, job_id: str) -> dict[str, Any]:
    return job_object(own_job(request, job_id))


@router.post("/v1/fine_tuning/jobs/{job_id}/cancel")
async def cancel(request: Request, job_id: str) -> dict[str, Any]:
    _, store = _jobs(request)
    import time

    row = own_job(request, job_id)
    if not store.move(
        job_id, ("validating_files", "queued", "running", "paused"), "cancelled", finished_at=int(time.time())
    ):
        raise ApiError(
            400,
            f"job {job_id} is {row['status']}; only an unfinished job can be cancelled",
            param="fine_tuning_job_id",
            code="job_not_cancellable",
        )
    store.event(job_id, "cancelled", "Fine-tuning job cancelled")
    return job_object(own_job(request, job_id))


@router.post("/v1/fine_tuning/jobs/{job_id}/pause")
async def pause(request: Request, job_id: str) -> dict[str, Any]:
    _, store = _jobs(request)
    row = own_job(request, job_id)
    if not store.move(job_id, ("queued", "running"), "paused"):
        raise ApiError(
            400,
            f"job {job_id} is {row['status']}; only a queued or running job can be paused",
            param="fine_tuning_job_id",
            code="job_not_pausable",
        )
    store.event(
        job_id,
        f"paused-{store.count_events(job_id, 'paused-')}",
        "Fine-tuning job paused; resume continues from its last checkpoint",
    )
    return job_object(own_job(request, job_id))


@router.post("/v1/fine_tuning/jobs/{job_id}/resume")
async def resume(request: Request, job_id: str) -> dict[str, Any]:
    _, store = _jobs(request)
    row = own_job(request, job_id)
    if not store.move(job_id, ("paused",), "queued", worker=None, heartbeat=None):
        raise ApiError(
            400,
            f"job {job_id} is {row['status']}; only a paused job can be resumed",
            param="fine_tuning_job_id",
            code="job_not_resumable",
        )
    store.event(job_id, f"resumed-{store.count_events(job_id, 'resumed-')}", "Fine-tuning job resumed")
    return job_object(own_job(request, job_id))


@router.get("/v1/fine_tuning/jobs/{job_id}/events")
async def events(request: Request, job_id: str, after: str | None = None, limit: int = 20) -> dict[str, Any]:
    _, store = _jobs(request)
    own_job(request, job_id)
    rows, more = store.events(job_id, after, max(1, min(limit, 100)))
    return page([event_object(r) for r in rows], more)


@router.get("/v1/fine_tuning/jobs/{job_id}/checkpoints")
async def checkpoints(request: Request, job_id: str, after: str | None = None, limit: int = 10) -> dict[str, Any]:
    _, store = _jobs(request)
    job = own_job(request, job_id)
    rows, more = store.checkpoints(job_id, after, max(1, min(limit, 100)))
    return page([checkpoint_object(r, job) for r in rows], more)


async def _validate(store: JobStore, job: dict[str, Any], files: dict[str, dict[str, Any]], kind: str) -> None:
    """validating_files → queued, or failed with OpenAI's error (code, message naming the line, param)."""
    import asyncio
    import time

    loop = asyncio.get_running_loop()
    for key, row in files.items():
        valid, problems = await loop.run_in_executor(None, check_file, Path(row["path"]), kind)
        if problems:
            message = f"{key} {row['id']} ({row['filename']}) failed validation: " + "; ".join(problems[:5])
            error = {"code": f"invalid_{key}", "message": message, "param": key}
            store.move(job["id"], ("validating_files",), "failed", error=error, finished_at=int(time.time()))
            store.event(job["id"], "validation", message, level="error")
            return
        store.event(
            job["id"], f"validated-{key}", f"Validated {key} {row['id']}: {valid} records", data={"records": valid}
        )
    if store.move(job["id"], ("validating_files",), "queued"):
        store.event(job["id"], "queued", "Files validated, moving job to queued state")


def _serve_models(app: FastAPI, cfg: ProjectConfig, store: JobStore) -> None:
    """Succeeded jobs' models by their ft: names: listed for their organisation, loaded on first use."""
    from tunesmith.serve.models import Target, check_adapter

    def find(name: str, digest: str | None) -> Any:
        if not name.startswith("ft:"):
            return None
        org = organisation(cfg, digest)
        for row in store.all_jobs():  # another organisation's model is "not found", as OpenAI answers
            if row["fine_tuned_model"] == name and row["org"] == org and row["status"] == "succeeded":
                folder = Path(row["adapter_path"])
                check_adapter(folder)
                app.state.server.engine.add_adapter(row["id"], str(folder))  # once; later calls find it loaded
                prepared = Path(row["folder"]) / "outputs" / "data" / "prepare.json"
                system = json.loads(prepared.read_text()).get("system_prompt") if prepared.exists() else None
                return Target(name, adapter=row["id"], version=row["id"], system_prompt=system)
        return None

    def listed(digest: str | None) -> list[str]:
        org = organisation(cfg, digest)
        return [
            r["fine_tuned_model"]
            for r in store.all_jobs()
            if r["org"] == org and r["status"] == "succeeded" and r["fine_tuned_model"]
        ]

    app.state.server.model_finders.append(find)
    app.state.server.model_listers.append(listed)
