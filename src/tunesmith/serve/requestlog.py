"""The request log: one SQLite row per request, for monitoring and the feedback loop.

Counts, latency and status always; prompt and completion texts only when `serve.log_texts`
is on, and then with PII replaced by placeholders unless `serve.redact_pii` is off.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from tunesmith.pii import redact

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS requests (
  id TEXT PRIMARY KEY, time REAL, model TEXT, target TEXT, version TEXT, user TEXT,
  prompt_tokens INTEGER, completion_tokens INTEGER, latency_ms REAL, status INTEGER,
  finish_reason TEXT, error TEXT, prompt TEXT, completion TEXT, shadow INTEGER DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS feedback (
  request_id TEXT, time REAL, score REAL, correction TEXT, key TEXT DEFAULT '')""",
    """CREATE UNIQUE INDEX IF NOT EXISTS feedback_once ON feedback (request_id, key)""",
    """CREATE TABLE IF NOT EXISTS events (time REAL, model TEXT, kind TEXT, detail TEXT)""",
]


class RequestLog:
    def __init__(self, path: Path, *, log_texts: bool = False, redact_pii: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.log_texts, self.redact_pii = path, log_texts, redact_pii
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        for statement in SCHEMA:
            if "feedback_once" in statement:  # request logs written before feedback had a key
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(feedback)")}
                if "key" not in columns:
                    self._db.execute("ALTER TABLE feedback ADD COLUMN key TEXT DEFAULT ''")
                    self._db.execute(
                        "DELETE FROM feedback WHERE rowid NOT IN (SELECT MAX(rowid) FROM feedback "
                        "GROUP BY request_id, key)"
                    )  # the last word of each, as counted from now on
            self._db.execute(statement)

    def _text(self, text: str | None) -> str | None:
        if not self.log_texts or text is None:
            return None
        return redact(text) if self.redact_pii else text

    def write(
        self,
        *,
        id: str,
        model: str,
        target: str = "",
        version: str = "",
        user: str = "",
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        latency_ms: float = 0.0,
        status: int = 200,
        finish_reason: str = "",
        error: str = "",
        prompt: str | None = None,
        completion: str | None = None,
        shadow: bool = False,
    ) -> None:
        user = redact(user) if self.redact_pii and user else user  # user ids are often e-mail addresses
        row = (
            id,
            time.time(),
            model,
            target,
            version,
            user,
            prompt_tokens,
            completion_tokens,
            latency_ms,
            status,
            finish_reason,
            error,
            self._text(prompt),
            self._text(completion),
            int(shadow),
        )
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO requests VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", row)

    def get(self, request_id: str) -> dict[str, Any] | None:
        with self._lock:
            cur = self._db.execute("SELECT * FROM requests WHERE id = ?", (request_id,))
            names = [c[0] for c in cur.description]
            row = cur.fetchone()
        return dict(zip(names, row)) if row else None

    def add_feedback(self, request_id: str, score: float | None, correction: str | None, key: str = "") -> bool:
        """Store feedback, once per request and key: a repeat replaces the earlier one. True when first."""
        row = (request_id, time.time(), score, self._text(correction) if correction else None, key)
        with self._lock:
            first = (
                self._db.execute("SELECT 1 FROM feedback WHERE request_id=? AND key=?", (request_id, key)).fetchone()
                is None
            )
            self._db.execute(
                "INSERT OR REPLACE INTO feedback (request_id, time, score, correction, key) VALUES (?,?,?,?,?)", row
            )
        return first

    def feedback(self) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.execute(
                "SELECT f.request_id, f.time, f.score, f.correction, r.model, r.target, r.version, "
                "r.prompt, r.completion FROM feedback f LEFT JOIN requests r ON r.id = f.request_id "
                "ORDER BY f.time"
            )
            names = [c[0] for c in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

    def event(self, model: str, kind: str, detail: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO events VALUES (?,?,?,?)", (time.time(), model, kind, detail))

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.execute("SELECT * FROM events ORDER BY time")
            names = [c[0] for c in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

    def rows(self, limit: int = 1000) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.execute("SELECT * FROM requests ORDER BY time DESC LIMIT ?", (limit,))
            names = [c[0] for c in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

    def close(self) -> None:
        with self._lock:
            self._db.close()
