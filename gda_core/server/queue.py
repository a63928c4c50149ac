"""The job queue: Huey with its SQLite backend, and the consumer that runs jobs in processes.

The app puts a job's id on the queue (:func:`enqueue`); the consumer (``python -m gda_core
worker``, started by the app when none runs) takes at most ``workers`` of them at once. Each is run
by :func:`execute` in a process of its own (``python -m gda_core.server.kinds``) with its thread
cap; ``execute`` waits for it and, when the process dies without reporting (SIGKILL, the kernel's
out-of-memory killer), marks the job failed with the reason. The consumer itself only waits, so
neither a job's death nor the web server's restart takes the queue down: queued jobs stay in
``queue.db`` and run when a consumer is back.

Messages are JSON (a job id and the app data folder), not Huey's default pickle. Workers on other
machines: see docs/deployment.md (Huey's Redis or Postgres backend, the same ``execute``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from huey import SqliteHuey
from huey.registry import Message
from huey.serializer import Serializer

from ..runtime import atomic_write_text
from .config import ServerConfig, load_config
from .store import FAILED, QUEUED, JobStore, _queue_error, pid_alive
from .workspaces import folder_id

log = logging.getLogger(__name__)
QUEUE_DB = "queue.db"
JOBS_DB = "jobs.db"
WORKER_LOCK = "worker.lock"
WORKER_PID = "worker.pid"
#: Seconds a submission waits for a locked queue.db before it is refused (one line, nothing left behind).
QUEUE_TIMEOUT_S = 10.0


class JsonSerializer(Serializer):
    """Huey messages as JSON: our tasks take only strings, and nothing is ever unpickled."""

    def _serialize(self, data: Message) -> bytes:
        d = data._asdict()
        d["eta"] = d["eta"].isoformat() if isinstance(d["eta"], datetime) else None
        d["expires_resolved"] = d["expires_resolved"].isoformat() if isinstance(d.get("expires_resolved"), datetime) else None
        return json.dumps(d).encode()

    def _deserialize(self, data: bytes) -> Message:
        d = json.loads(data)
        for k in ("eta", "expires_resolved"):
            if d.get(k):
                d[k] = datetime.fromisoformat(d[k])
        d["args"] = tuple(d.get("args") or ())
        return Message(**d)


def store_for(cfg: ServerConfig) -> JobStore:
    return JobStore(cfg.app_data / JOBS_DB)


@functools.cache
def _huey(app_data: str) -> tuple[SqliteHuey, object]:
    Path(app_data).mkdir(parents=True, exist_ok=True)
    huey = SqliteHuey("gda", filename=str(Path(app_data) / QUEUE_DB), results=False, serializer=JsonSerializer(), timeout=QUEUE_TIMEOUT_S)
    task = huey.task(name="execute")(execute)
    return huey, task


def enqueue(cfg: ServerConfig, job_id: str) -> None:
    """Put a message on the queue for ``job_id``. A message is a turn for a worker thread, which then
    runs the job :meth:`JobStore.pick` chooses (workspaces in turn), not necessarily this one.
    Raises QueueError (one line) when queue.db cannot be written."""
    import sqlite3

    from huey.exceptions import HueyException

    try:
        _huey(str(cfg.app_data))[1](job_id, str(cfg.app_data))
    except (sqlite3.Error, HueyException, OSError) as exc:
        raise _queue_error(exc) from None


def _death(rc: int) -> str:
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"its process was killed by {name}" + (" (out of memory, or stopped by hand)" if name == "SIGKILL" else "")
    return f"its process exited with code {rc} (the traceback is in the server's job log)"


PICK_POLL_S = 1.0


def execute(job_id: str, app_data: str) -> None:
    """Take a turn: run the job the store picks next (workspaces in turn, each under its cap of
    running jobs) in a process of its own, and record how it ended if the process could not. The
    message's ``job_id`` only names what was submitted; a job of a capped workspace waits here
    until one of its running jobs ends, and a turn with nothing left to run returns."""
    cfg = load_config(app_data)
    store = store_for(cfg)
    while True:
        picked = store.pick(cfg.resolved_running_per_workspace())
        if picked is not None:
            break
        if store.waiting_count() == 0:
            return  # every queued job is taken by another turn (or was cancelled)
        time.sleep(PICK_POLL_S)
    _run_picked(cfg, store, picked)


def _run_picked(cfg: ServerConfig, store: JobStore, job_id: str) -> None:
    job = store.get(job_id)
    if job is None or job.status != QUEUED:
        return  # cancelled while queued
    env = {**os.environ, "GDA_APP_DATA": str(cfg.app_data)}
    threads = str(cfg.resolved_job_threads())
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, GDA_JOB_THREADS=threads)
    job_dir = cfg.workspaces_dir / folder_id(job.workspace) / "jobs" / job_id
    job_dir.mkdir(parents=True, exist_ok=True)
    with open(job_dir / "job.log", "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gda_core.server.kinds", str(cfg.app_data), job_id], env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
        rc = proc.wait()
    after = store.get(job_id)
    if after is not None and not after.done:
        hint = "; resume the run to continue from its last checkpoint" if job.kind == "train" else ""
        store.finish(job_id, FAILED, error=f"{job.title}: {_death(rc)}{hint}")


def requeue_orphans(cfg: ServerConfig) -> int:
    """At worker start: forget the picks of a stopped worker and give every queued job a turn on the
    queue (a job row whose message was lost, e.g. to a crash between the two writes); return how
    many turns were added."""
    store = store_for(cfg)
    store.unpick_all()
    missing = store.queued_count() - _huey(str(cfg.app_data))[0].pending_count()
    for _ in range(max(0, missing)):
        enqueue(cfg, "requeued")
    return max(0, missing)


# -- the consumer ----------------------------------------------------------------------------------


def run_worker(cfg: ServerConfig) -> int:
    """The consumer (blocks): one per app data folder and machine, held by a file lock."""
    from filelock import FileLock, Timeout

    cfg.app_data.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(cfg.app_data / WORKER_LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"a worker already serves {cfg.app_data}", file=sys.stderr)
        return 0
    (cfg.app_data / WORKER_PID).write_text(str(os.getpid()))
    n = store_for(cfg).reap("the worker stopped while the job ran (a server restart?); start it again")
    if n:
        log.warning("marked %d job(s) of a stopped worker failed", n)
    if k := requeue_orphans(cfg):
        log.warning("gave %d queued job(s) without a queue message their turn back", k)
    huey, _task = _huey(str(cfg.app_data))
    consumer = huey.create_consumer(workers=cfg.resolved_workers(), worker_type="thread", initial_delay=0.1, backoff=1.15, max_delay=1.0,
                                    check_worker_health=True)  # fmt: skip
    try:
        consumer.run()
    finally:
        lock.release()
    return 0


def worker_running(cfg: ServerConfig) -> bool:
    from filelock import FileLock, Timeout

    lock = FileLock(str(cfg.app_data / WORKER_LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def ensure_worker(cfg: ServerConfig) -> bool:
    """Start the consumer in its own session when none serves this app data folder; True when started.
    Its own session: stopping or restarting the web server leaves the queue running."""
    from filelock import FileLock

    cfg.app_data.mkdir(parents=True, exist_ok=True)
    # Check and spawn under one lock, and count a worker that is still starting (its pid file names a
    # live worker that has not taken the worker lock yet) as running: two reruns in the same second
    # otherwise each spawned one, the second overwrote the pid file, and stop_worker never found the first.
    with FileLock(str(cfg.app_data / "spawn.lock")):
        if worker_running(cfg) or _starting_worker(cfg) is not None:
            return False
        with open(cfg.app_data / "worker.log", "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "gda_core", "worker", "--app-data", str(cfg.app_data)], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                    env={**os.environ, "GDA_APP_DATA": str(cfg.app_data)})  # fmt: skip
        # Written now, not only by the worker once it runs: stop_worker must find a worker still starting.
        atomic_write_text(cfg.app_data / WORKER_PID, str(proc.pid))
    return True


def _starting_worker(cfg: ServerConfig) -> int | None:
    """The pid of the worker this folder's pid file names, when it is alive (starting or running)."""
    try:
        pid = int((cfg.app_data / WORKER_PID).read_text())
    except (OSError, ValueError):
        return None
    # The marker is this folder's worker command line (NUL-separated in /proc), so a reused pid of any
    # other process does not pass for a worker and block a new one.
    return pid if pid_alive(pid, f"worker\x00--app-data\x00{cfg.app_data}") else None


def stop_worker(cfg: ServerConfig, timeout: float = 20.0) -> None:
    """Stop the consumer and its jobs (SIGTERM to its process group: a training saves a checkpoint)."""
    try:
        pid = int((cfg.app_data / WORKER_PID).read_text())
    except (OSError, ValueError):
        return
    end = time.time() + timeout
    while time.time() < end and not worker_running(cfg) and pid_alive(pid):
        time.sleep(0.1)  # still starting: let it take the lock (or give up) so that SIGTERM finds a consumer
    _signal_worker(pid, signal.SIGTERM)
    end = time.time() + timeout
    while time.time() < end and worker_running(cfg):
        time.sleep(0.2)
    if worker_running(cfg):
        _signal_worker(pid, signal.SIGKILL)


def _signal_worker(pid: int, sig: int) -> None:
    """The whole group when the worker leads its own (as ensure_worker starts it), else the worker alone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
