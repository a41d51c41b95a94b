"""The fine-tuning API's durable state: files, jobs, their events and checkpoints, in one SQLite file.

The web process and the worker process share it (WAL mode, so readers never wait on the
writer). Every change a client can see is one transaction; claiming a job is a conditional
UPDATE, so two workers never take the same job; events and checkpoints have a unique key, so
a worker that restarts and scans a job's folder again never lists one twice.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, org TEXT NOT NULL, filename TEXT NOT NULL, purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL, created_at INTEGER NOT NULL, path TEXT NOT NULL,
    status TEXT NOT NULL, status_details TEXT, deleted INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, org TEXT NOT NULL, seq INTEGER NOT NULL, model TEXT NOT NULL,
    training_file TEXT NOT NULL, validation_file TEXT, suffix TEXT, seed INTEGER NOT NULL,
    metadata TEXT, method TEXT NOT NULL, hyperparameters TEXT NOT NULL, status TEXT NOT NULL,
    error TEXT, fine_tuned_model TEXT, adapter_path TEXT, created_at INTEGER NOT NULL,
    finished_at INTEGER, trained_tokens INTEGER, estimated_finish INTEGER, result_files TEXT,
    folder TEXT NOT NULL, request TEXT, worker TEXT, heartbeat REAL, pid INTEGER);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL, id TEXT NOT NULL,
    created_at INTEGER NOT NULL, level TEXT NOT NULL, message TEXT NOT NULL, data TEXT, type TEXT NOT NULL,
    PRIMARY KEY (job_id, key));
CREATE TABLE IF NOT EXISTS checkpoints (
    job_id TEXT NOT NULL, step INTEGER NOT NULL, id TEXT NOT NULL, created_at INTEGER NOT NULL,
    metrics TEXT NOT NULL, PRIMARY KEY (job_id, step));
CREATE INDEX IF NOT EXISTS jobs_by_org ON jobs (org, seq);
"""

ACTIVE = ("validating_files", "queued", "running")
FINAL = ("succeeded", "failed", "cancelled")


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


class JobStore:
    """Thread-safe access to the jobs database (one connection per process, serialised by a lock)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.files_dir = self.root / "files"
        self.runs_dir = self.root / "runs"
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(self.root / "jobs.db"), check_same_thread=False, isolation_level=None, timeout=30
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a committed job survives a power cut, not only a crash
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def _one(self, sql: str, args: tuple = ()) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        return dict(row) if row else None

    def _all(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, args).fetchall()]

    def _write(self, sql: str, args: tuple = ()) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    # files
    def add_file(
        self, org: str, filename: str, purpose: str, data: bytes, status: str, details: str | None
    ) -> dict[str, Any]:
        from tunesmith.files import write_atomic

        file_id = new_id("file")
        path = self.files_dir / file_id / (Path(filename).name or "upload.jsonl")
        write_atomic(path, data)
        self._write(
            "INSERT INTO files VALUES (?,?,?,?,?,?,?,?,?,0)",
            (file_id, org, Path(filename).name, purpose, len(data), int(time.time()), str(path), status, details),
        )
        return self.file(org, file_id)  # type: ignore[return-value]

    def add_file_from(
        self, org: str, filename: str, purpose: str, source: Any, status: str, details: str | None
    ) -> dict[str, Any]:
        """`add_file` from an open file (an upload spooled to disk), copied in blocks: never whole in memory."""
        import os
        import shutil

        file_id = new_id("file")
        path = self.files_dir / file_id / (Path(filename).name or "upload.jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        source.seek(0)
        with open(partial, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(path)
        size = path.stat().st_size
        self._write(
            "INSERT INTO files VALUES (?,?,?,?,?,?,?,?,?,0)",
            (file_id, org, Path(filename).name, purpose, size, int(time.time()), str(path), status, details),
        )
        return self.file(org, file_id)  # type: ignore[return-value]

    def set_file_status(self, file_id: str, status: str, details: str | None) -> None:
        self._write("UPDATE files SET status=?, status_details=? WHERE id=?", (status, details, file_id))

    def file(self, org: str, file_id: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM files WHERE id=? AND org=? AND deleted=0", (file_id, org))

    def files(self, org: str, purpose: str | None = None) -> list[dict[str, Any]]:
        if purpose:
            return self._all(
                "SELECT * FROM files WHERE org=? AND purpose=? AND deleted=0 ORDER BY created_at DESC", (org, purpose)
            )
        return self._all("SELECT * FROM files WHERE org=? AND deleted=0 ORDER BY created_at DESC", (org,))

    def usage(self, org: str) -> dict[str, int]:
        """What an organisation holds now: files, their bytes, and jobs not yet finished."""
        files = self._one(
            "SELECT COUNT(*) AS n, COALESCE(SUM(bytes), 0) AS b FROM files WHERE org=? AND deleted=0", (org,)
        ) or {"n": 0, "b": 0}
        jobs = self._one(
            "SELECT COUNT(*) AS n FROM jobs WHERE org=? AND status IN "
            "('validating_files', 'queued', 'running', 'paused')",
            (org,),
        ) or {"n": 0}
        return {"files": int(files["n"]), "bytes": int(files["b"]), "active_jobs": int(jobs["n"])}

    def delete_file(self, org: str, file_id: str) -> bool:
        row = self.file(org, file_id)
        if row is None:
            return False
        self._write("UPDATE files SET deleted=1 WHERE id=?", (file_id,))
        try:  # jobs that used it keep their own copy (the job's folder)
            Path(row["path"]).unlink()
        except OSError:
            pass
        return True

    # jobs
    def add_job(self, org: str, fields: dict[str, Any]) -> dict[str, Any]:
        job_id = new_id("ftjob")
        with self._lock:
            seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
            self._db.execute(
                "INSERT INTO jobs (id, org, seq, model, training_file, validation_file, suffix, seed, metadata, method, "
                "hyperparameters, status, created_at, folder, request) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    job_id,
                    org,
                    seq,
                    fields["model"],
                    fields["training_file"],
                    fields.get("validation_file"),
                    fields.get("suffix"),
                    fields["seed"],
                    json.dumps(fields.get("metadata")),
                    json.dumps(fields["method"]),
                    json.dumps(fields["hyperparameters"]),
                    "validating_files",
                    int(time.time()),
                    str(self.runs_dir / job_id),
                    json.dumps(fields.get("request", {})),
                ),
            )
        return self.job(job_id)  # type: ignore[return-value]

    def job(self, job_id: str, org: str | None = None) -> dict[str, Any] | None:
        if org is None:
            return self._one("SELECT * FROM jobs WHERE id=?", (job_id,))
        return self._one("SELECT * FROM jobs WHERE id=? AND org=?", (job_id, org))

    def jobs(self, org: str, after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Newest first, starting after the job `after` (cursor pagination); and whether more follow."""
        start = None
        if after:
            row = self.job(after, org)
            start = row["seq"] if row else None
        if start is None:
            rows = self._all("SELECT * FROM jobs WHERE org=? ORDER BY seq DESC LIMIT ?", (org, limit + 1))
        else:
            rows = self._all(
                "SELECT * FROM jobs WHERE org=? AND seq<? ORDER BY seq DESC LIMIT ?", (org, start, limit + 1)
            )
        return rows[:limit], len(rows) > limit

    def all_jobs(self) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM jobs ORDER BY seq")

    def update(self, job_id: str, **fields: Any) -> None:
        sets = ", ".join(f"{k}=?" for k in fields)
        values = tuple(
            json.dumps(v) if k in ("error", "result_files") and v is not None else v for k, v in fields.items()
        )
        self._write(f"UPDATE jobs SET {sets} WHERE id=?", (*values, job_id))

    def move(self, job_id: str, from_states: tuple[str, ...], to: str, **fields: Any) -> bool:
        """Change a job's status only if it is in one of `from_states` (one statement: no race)."""
        sets = ", ".join(["status=?"] + [f"{k}=?" for k in fields])
        values = tuple(
            json.dumps(v) if k in ("error", "result_files") and v is not None else v for k, v in fields.items()
        )
        marks = ",".join("?" * len(from_states))
        return (
            self._write(
                f"UPDATE jobs SET {sets} WHERE id=? AND status IN ({marks})", (to, *values, job_id, *from_states)
            )
            == 1
        )

    def claim(self, worker: str, stale_s: float) -> dict[str, Any] | None:
        """The oldest job waiting for a worker — queued, or running under a worker that stopped
        beating — now held by `worker`."""
        now = time.time()
        with self._lock:
            rows = self._db.execute(
                "SELECT id, status FROM jobs WHERE status='queued' OR (status='running' AND "
                "(heartbeat IS NULL OR heartbeat < ?) AND (worker IS NULL OR worker != ?)) ORDER BY seq",
                (now - stale_s, worker),
            ).fetchall()
            for row in rows:
                changed = self._db.execute(
                    "UPDATE jobs SET status='running', worker=?, heartbeat=? WHERE id=? AND status=? AND "
                    "(status='queued' OR heartbeat IS NULL OR heartbeat < ?)",
                    (worker, now, row["id"], row["status"], now - stale_s),
                ).rowcount
                if changed:
                    return self.job(row["id"])
        return None

    def release_dead(self, host: str) -> None:
        """Running jobs held by a worker on this host whose process is gone can be taken over at once."""
        for row in self._all("SELECT id, worker FROM jobs WHERE status='running' AND worker IS NOT NULL"):
            where, _, pid = row["worker"].rpartition(":")
            if where == host and pid.isdigit() and not pid_alive(int(pid)):
                self._write("UPDATE jobs SET heartbeat=NULL WHERE id=? AND worker=?", (row["id"], row["worker"]))

    def beat(self, job_id: str, worker: str) -> str | None:
        """Renew the worker's hold on a job; returns the job's status (a client may have cancelled
        or paused it), or None when another worker holds it now."""
        with self._lock:
            self._db.execute("UPDATE jobs SET heartbeat=? WHERE id=? AND worker=?", (time.time(), job_id, worker))
            row = self._db.execute("SELECT status, worker FROM jobs WHERE id=?", (job_id,)).fetchone()
        return row["status"] if row and row["worker"] == worker else None

    # events and checkpoints
    def event(
        self, job_id: str, key: str, message: str, *, level: str = "info", data: Any = None, type: str = "message"
    ) -> None:
        """Add an event once: a second event with the same key is ignored."""
        with self._lock:
            seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE job_id=?", (job_id,)).fetchone()[
                0
            ]
            self._db.execute(
                "INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    job_id,
                    seq,
                    key,
                    f"ftevent-{job_id[6:]}-{seq}",
                    int(time.time()),
                    level,
                    message,
                    json.dumps(data) if data is not None else None,
                    type,
                ),
            )

    def events(self, job_id: str, after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Newest first, as OpenAI lists them."""
        return self._page("events", "seq", job_id, after, limit)

    def count_events(self, job_id: str, key_prefix: str) -> int:
        row = self._one("SELECT COUNT(*) AS n FROM events WHERE job_id=? AND key LIKE ?", (job_id, f"{key_prefix}%"))
        return row["n"] if row else 0

    def checkpoint(self, job_id: str, step: int, metrics: dict[str, Any]) -> bool:
        """Record a checkpoint once (True when it is new)."""
        return (
            self._write(
                "INSERT OR IGNORE INTO checkpoints VALUES (?,?,?,?,?)",
                (job_id, step, f"ftckpt-{job_id[6:]}-{step}", int(time.time()), json.dumps(metrics)),
            )
            == 1
        )

    def checkpoints(self, job_id: str, after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Newest step first."""
        return self._page("checkpoints", "step", job_id, after, limit)

    def _page(
        self, table: str, order: str, job_id: str, after: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """A job's rows of `table`, descending by `order`, starting after the row with id `after` (OpenAI's
        cursor pagination); and whether more follow. `table` and `order` are this module's own names."""
        start = None
        if after:
            row = self._one(f"SELECT {order} FROM {table} WHERE job_id=? AND id=?", (job_id, after))
            start = row[order] if row else None
        if start is None:
            rows = self._all(f"SELECT * FROM {table} WHERE job_id=? ORDER BY {order} DESC LIMIT ?", (job_id, limit + 1))
        else:
            rows = self._all(
                f"SELECT * FROM {table} WHERE job_id=? AND {order}<? ORDER BY {order} DESC LIMIT ?",
                (job_id, start, limit + 1),
            )
        return rows[:limit], len(rows) > limit


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
