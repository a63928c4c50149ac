"""Job state in SQLite: what the app shows about every job, written by the job processes.

One row per job (status, progress, message, parameters, result, the process that runs it) and one
row per logged record (the live loss curves). The database lives in the app's data folder, so a
job and its state survive a browser reload, a server restart and the death of the process that ran
it. Every call opens its own connection (the app's threads, the queue's workers and the job
processes all use it at once); WAL mode lets readers go on while a writer commits.

A job whose process is gone while its row still says ``running`` is marked ``failed`` with the
reason, by whoever reads it first (see :meth:`JobStore.reap`).

Which queued job runs next is decided here, not by the queue's order (:meth:`JobStore.pick`):
workspaces take turns (a workspace's n-th queued job comes after every other workspace's
(n-1)-th), and a workspace at its cap of running jobs waits. A database error (locked, disk full)
reaches the caller as one line (:class:`QueueError`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GDAError

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINAL = (DONE, FAILED, CANCELLED)
MAX_LOGS = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, workspace TEXT NOT NULL, kind TEXT NOT NULL,
    title TEXT NOT NULL, status TEXT NOT NULL, progress REAL NOT NULL DEFAULT 0, message TEXT NOT NULL DEFAULT '',
    eta_s REAL, error TEXT, params TEXT NOT NULL, meta TEXT NOT NULL, result TEXT, preview TEXT,
    created REAL NOT NULL, started REAL, finished REAL, pid INTEGER, supervisor INTEGER, host TEXT, cancel INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_ws ON jobs (workspace, kind);
CREATE TABLE IF NOT EXISTS logs (seq INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logs_job ON logs (job, seq);
"""


class QueueError(GDAError):
    """The job database could not be read or written (locked for too long, disk full)."""


def _queue_error(exc: BaseException) -> QueueError:
    first = (str(exc).splitlines() or [""])[0][:120]
    return QueueError(f"the job queue is busy or unavailable ({first or type(exc).__name__}); try again in a moment")


@dataclass
class Job:
    """A snapshot of one job's row (read-only: change a job through the store)."""

    id: str
    workspace: str
    kind: str
    title: str
    status: str
    progress: float = 0.0
    message: str = ""
    eta_s: float | None = None
    error: str | None = None
    params: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    result: Any = None
    preview: str | None = None
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    pid: int | None = None
    supervisor: int | None = None
    host: str | None = None
    cancel_requested: bool = False
    queue_position: int | None = None

    @property
    def done(self) -> bool:
        return self.status in FINAL

    @property
    def elapsed_s(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started

    @property
    def waited_s(self) -> float:
        """Seconds between submission and start (so far, while queued)."""
        return (self.started or time.time()) - self.created


def pid_alive(pid: int, marker: str = "") -> bool:
    """Whether ``pid`` is still running (not a zombie) and its command line holds ``marker`` (a reused
    pid runs something else). Without /proc (macOS) the pid alone decides."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return state != "Z" and marker.encode() in cmdline


class JobStore:
    """The jobs database of one app data folder."""

    #: Seconds a call waits for a lock before it gives up with a QueueError.
    timeout_s: float = 30.0

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(_SCHEMA)
            with contextlib.suppress(sqlite3.OperationalError):  # a database of an older version
                db.execute("ALTER TABLE jobs ADD COLUMN picked INTEGER NOT NULL DEFAULT 0")

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        except sqlite3.Error as exc:
            raise _queue_error(exc) from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
            db.row_factory = sqlite3.Row
            yield db
        except sqlite3.Error as exc:
            raise _queue_error(exc) from None
        finally:
            db.close()

    # -- writing ---------------------------------------------------------------------------------
    def create(self, *, workspace: str, kind: str, title: str, params: dict, meta: dict | None = None) -> str:
        job_id = uuid.uuid4().hex[:16]
        with self._db() as db:
            db.execute(
                "INSERT INTO jobs (id, workspace, kind, title, status, params, meta, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, workspace, kind, title, QUEUED, json.dumps(params), json.dumps(meta or {}), time.time()),
            )
        return job_id

    def discard(self, job_id: str) -> None:
        """Remove a job that never reached the queue (its submission failed)."""
        with self._db() as db:
            db.execute("DELETE FROM jobs WHERE id = ? AND status = 'queued'", (job_id,))

    def active_count(self, workspace: str) -> int:
        """Queued and running jobs of ``workspace``."""
        with self._db() as db:
            return db.execute("SELECT COUNT(*) FROM jobs WHERE workspace = ? AND status IN ('queued', 'running')", (workspace,)).fetchone()[
                0
            ]

    def pick(self, max_running: int) -> str | None:
        """Take the next job to run (workspaces in turn; one at ``max_running`` running jobs waits)
        and mark it picked so that no other worker thread takes it; None when none may start now."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            order = _fair_order(db)
            running = _running_counts(db)
            for row in order:
                if running.get(row["workspace"], 0) < max_running:
                    db.execute("UPDATE jobs SET picked = 1 WHERE id = ?", (row["id"],))
                    db.execute("COMMIT")
                    return str(row["id"])
            db.execute("COMMIT")
        return None

    def unpick_all(self) -> int:
        """Forget picks of a worker that stopped before its job's process claimed it (worker start)."""
        with self._db() as db:
            return db.execute("UPDATE jobs SET picked = 0 WHERE status = 'queued' AND picked = 1").rowcount

    def has_active(self) -> bool:
        """Any job queued or running, in any workspace."""
        with self._db() as db:
            return db.execute("SELECT 1 FROM jobs WHERE status IN ('queued', 'running') LIMIT 1").fetchone() is not None

    def queued_count(self) -> int:
        with self._db() as db:
            return db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()[0]

    def waiting_count(self) -> int:
        """Queued jobs no worker thread has picked yet."""
        with self._db() as db:
            return db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND picked = 0").fetchone()[0]

    def _set(self, job_id: str, where: str = "", **values: Any) -> bool:
        cols = ", ".join(f"{k} = ?" for k in values)
        with self._db() as db:
            cur = db.execute(f"UPDATE jobs SET {cols} WHERE id = ? {where}", (*values.values(), job_id))
            return cur.rowcount > 0

    def claim(self, job_id: str, pid: int, supervisor: int | None = None) -> bool:
        """Mark a queued job running in process ``pid``, watched by the worker ``supervisor`` (which
        records how the process ended if it could not); False when it was cancelled meanwhile."""
        return self._set(job_id, "AND status = 'queued'", status=RUNNING, started=time.time(), pid=pid, supervisor=supervisor,
                         host=socket.gethostname(), message="starting...")  # fmt: skip

    def update(self, job_id: str, *, progress: float | None = None, message: str | None = None, eta_s: float | None = None) -> None:
        values: dict[str, Any] = {"eta_s": eta_s}
        if progress is not None:
            values["progress"] = float(min(1.0, max(0.0, progress)))
        if message is not None:
            values["message"] = str(message)[:500]
        self._set(job_id, "AND status = 'running'", **values)

    def log(self, job_id: str, record: dict) -> None:
        with self._db() as db:
            db.execute("INSERT INTO logs (job, data) VALUES (?, ?)", (job_id, json.dumps(record, default=float)))

    def set_preview(self, job_id: str, path: str | os.PathLike) -> None:
        self._set(job_id, preview=str(path))

    def finish(self, job_id: str, status: str, *, result: Any = None, error: str | None = None) -> None:
        """The job's outcome (only a job still running can finish: a reaped one stays failed)."""
        values: dict[str, Any] = {"status": status, "finished": time.time(), "error": error, "result": json.dumps(result)}
        if status == DONE:
            values["progress"] = 1.0
        if error:
            values["message"] = error
        self._set(job_id, "AND status IN ('queued', 'running')", **values)

    def request_cancel(self, job_id: str, workspace: str) -> bool:
        """Ask a job of ``workspace`` to stop: a queued one is cancelled at once, a running one at
        its next check. False for an unknown job, another workspace's, or one already over."""
        job = self.get(job_id, workspace)
        if job is None or job.done:
            return False
        with self._db() as db:
            db.execute("UPDATE jobs SET cancel = 1, message = 'cancelling...' WHERE id = ?", (job_id,))
            db.execute("UPDATE jobs SET status = ?, finished = ?, error = ?, message = ? WHERE id = ? AND status = 'queued'",
                       (CANCELLED, time.time(), "cancelled before it started", "cancelled before it started", job_id))  # fmt: skip
        return True

    def cancel_requested(self, job_id: str) -> bool:
        with self._db() as db:
            row = db.execute("SELECT cancel FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row["cancel"])

    def delete_workspace(self, workspace: str) -> None:
        with self._db() as db:
            ids = [r["id"] for r in db.execute("SELECT id FROM jobs WHERE workspace = ?", (workspace,))]
            db.executemany("DELETE FROM logs WHERE job = ?", [(i,) for i in ids])
            db.execute("DELETE FROM jobs WHERE workspace = ?", (workspace,))

    # -- reading ---------------------------------------------------------------------------------
    def _job(self, row: sqlite3.Row, position: int | None) -> Job:
        return Job(id=row["id"], workspace=row["workspace"], kind=row["kind"], title=row["title"], status=row["status"],
                   progress=row["progress"], message=row["message"], eta_s=row["eta_s"], error=row["error"],
                   params=json.loads(row["params"]), meta=json.loads(row["meta"]),
                   result=json.loads(row["result"]) if row["result"] else None, preview=row["preview"], created=row["created"],
                   started=row["started"], finished=row["finished"], pid=row["pid"], supervisor=row["supervisor"], host=row["host"],
                   cancel_requested=bool(row["cancel"]),
                   queue_position=position)  # fmt: skip

    def _rows(self, sql: str, args: tuple) -> list[Job]:
        with self._db() as db:
            rows = db.execute(sql, args).fetchall()
            queued = [r["seq"] for r in _fair_order(db)]
        place = {seq: i + 1 for i, seq in enumerate(queued)}
        jobs = [self._job(r, place.get(r["seq"])) for r in rows]
        if any(self._dead(j) for j in jobs):
            self.reap()
            return self._rows(sql, args)
        return jobs

    def get(self, job_id: str, workspace: str | None = None) -> Job | None:
        """The job, or None when unknown or (``workspace`` given) another workspace's."""
        jobs = self._rows("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if not jobs or (workspace is not None and jobs[0].workspace != workspace):
            return None
        return jobs[0]

    def list(self, workspace: str | None = None, kind: str | None = None) -> list[Job]:
        """Jobs (of ``workspace`` / ``kind`` when given), newest first."""
        sql, args = "SELECT * FROM jobs WHERE 1 = 1", []
        if workspace is not None:
            sql, args = sql + " AND workspace = ?", [*args, workspace]
        if kind is not None:
            sql, args = sql + " AND kind = ?", [*args, kind]
        return self._rows(sql + " ORDER BY seq DESC", tuple(args))

    def logs(self, job_id: str) -> list[dict]:
        """The job's logged records in order (at most MAX_LOGS, thinned evenly when longer)."""
        with self._db() as db:
            rows = [json.loads(r["data"]) for r in db.execute("SELECT data FROM logs WHERE job = ? ORDER BY seq", (job_id,))]
        if len(rows) > MAX_LOGS:
            stride = -(-len(rows) // MAX_LOGS)
            rows = rows[::stride] + ([rows[-1]] if (len(rows) - 1) % stride else [])
        return rows

    def active_paths(self) -> set[str]:
        """Run folders written by queued or running jobs (a second writer is refused before it starts)."""
        return {str(j.meta.get("out")) for j in self.list() if not j.done and j.meta.get("out")}

    # -- the dead --------------------------------------------------------------------------------
    def _dead(self, job: Job) -> bool:
        """Running on this machine, its process gone, and no live worker left to say how it ended."""
        if job.status != RUNNING or job.pid is None or job.host != socket.gethostname() or pid_alive(job.pid, job.id):
            return False
        return job.supervisor is None or not pid_alive(job.supervisor, "worker")

    def reap(self, reason: str | None = None) -> int:
        """Mark ``failed`` every running job of this machine whose process is gone; return how many."""
        dead = [j for j in self._rows_raw() if self._dead(j)]
        for j in dead:
            why = reason or ("its process stopped without reporting (killed, for example out of memory or by a server restart)"
                             + ("; resume the run to continue from its last checkpoint" if j.kind == "train" else ""))  # fmt: skip
            self.finish(j.id, FAILED, error=f"{j.title}: {why}")
        return len(dead)

    def _rows_raw(self) -> list[Job]:
        with self._db() as db:
            return [self._job(r, None) for r in db.execute("SELECT * FROM jobs WHERE status = 'running'")]


def _running_counts(db: sqlite3.Connection) -> dict[str, int]:
    """Running jobs per workspace, counting a picked one whose process has not claimed it yet: it
    starts in a second or two (torch's import), and a cap that ignored it let a second job through."""
    sql = "SELECT workspace, COUNT(*) FROM jobs WHERE status = 'running' OR (status = 'queued' AND picked = 1) GROUP BY workspace"
    return {r[0]: r[1] for r in db.execute(sql)}


def _fair_order(db: sqlite3.Connection) -> list[sqlite3.Row]:
    """Queued jobs in the order they will start: each workspace's jobs oldest first, interleaved so
    that a workspace's n-th job (counting its running ones) comes after every other's (n-1)-th."""
    rows = db.execute("SELECT id, seq, workspace, picked FROM jobs WHERE status = 'queued' AND picked = 0 ORDER BY seq").fetchall()
    turn = dict(_running_counts(db))
    keyed = []
    for r in rows:
        n = turn.get(r["workspace"], 0)
        turn[r["workspace"]] = n + 1
        keyed.append((n, r["seq"], r))
    return [r for _n, _seq, r in sorted(keyed, key=lambda k: (k[0], k[1]))]
