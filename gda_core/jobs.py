"""Background jobs for the app: long work (training, evaluation) off the script thread.

A :class:`Job` runs ``fn(job, **kwargs)`` in a daemon thread. ``fn`` reports through
``job.update(progress=, message=)`` / ``job.log(record)`` / ``job.set_preview(array)`` and checks
``job.cancel_event``. Jobs live in one process-wide :class:`JobManager` (the app keeps it in
``st.cache_resource``), so they survive page switches and reruns; every job has an ``owner`` (one
id per browser session) and a session only lists its own jobs.

Outcomes: a return value -> ``done`` with ``result``; :class:`~gda_core.errors.Cancelled` ->
``cancelled``; any other :class:`~gda_core.errors.GDAError` -> ``failed`` with its one-line
message; anything else -> ``failed`` with ``internal error: ...`` (the traceback is logged, never
shown to the user).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import Cancelled, ConfigError, GDAError

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINAL = (DONE, FAILED, CANCELLED)
MAX_EVENTS = 200
MAX_LOGS = 5000


@dataclass
class Job:
    """One unit of background work and everything the UI shows about it."""

    id: str
    kind: str
    owner: str | None
    title: str = ""
    status: str = QUEUED
    progress: float = 0.0
    message: str = ""
    eta_s: float | None = None
    result: Any = None
    error: str | None = None
    meta: dict = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    events: deque = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    logs: list[dict] = field(default_factory=list)
    preview: np.ndarray | None = None
    thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- reporting (called from the worker thread) ----------------------------------------------
    def update(self, *, progress: float | None = None, message: str | None = None, eta_s: float | None = None) -> None:
        with self._lock:
            if progress is not None:
                self.progress = float(min(1.0, max(0.0, progress)))
            if message is not None:
                self.message = str(message)
                self.events.append((time.time(), self.message))
            self.eta_s = eta_s

    def log(self, record: dict) -> None:
        """Append one logged record (e.g. losses at a step) for live curves."""
        with self._lock:
            self.logs.append(dict(record))
            if len(self.logs) > MAX_LOGS:
                # Keep the curve's shape: drop every other old record.
                self.logs = self.logs[: MAX_LOGS // 2 : 2] + self.logs[MAX_LOGS // 2 :]

    def set_preview(self, image: np.ndarray) -> None:
        with self._lock:
            self.preview = image

    # -- reading (called from the UI) -----------------------------------------------------------
    def snapshot_logs(self) -> list[dict]:
        with self._lock:
            return list(self.logs)

    @property
    def done(self) -> bool:
        return self.status in FINAL

    @property
    def elapsed_s(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started

    def cancel(self) -> None:
        self.cancel_event.set()
        with self._lock:
            if self.status in (QUEUED, RUNNING):
                self.message = "cancelling..."

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends (tests and CLI); True when it ended."""
        if self.thread is not None:
            self.thread.join(timeout)
        return self.done


class JobManager:
    """Process-wide, thread-safe registry of jobs."""

    def __init__(self, *, keep_finished: int = 50):
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.keep_finished = keep_finished

    def start(
        self, kind: str, fn: Callable[..., Any], *, owner: str | None = None, title: str = "", meta: dict | None = None, **kwargs: Any
    ) -> Job:
        """Start ``fn(job, **kwargs)`` in a daemon thread and return its Job at once."""
        job = Job(id=uuid.uuid4().hex[:12], kind=kind, owner=owner, title=title or kind, meta=dict(meta or {}))
        thread = threading.Thread(target=self._run, args=(job, fn, kwargs), name=f"gda-job-{kind}-{job.id}", daemon=True)
        job.thread = thread
        with self._lock:
            self._jobs[job.id] = job
            self._prune()
        thread.start()
        return job

    def _run(self, job: Job, fn: Callable[..., Any], kwargs: dict) -> None:
        job.started = time.time()
        job.status = RUNNING
        try:
            result = fn(job, **kwargs)
        except Cancelled as exc:
            job.error = str(exc)
            job.status = CANCELLED
            job.update(message=str(exc))
        except GDAError as exc:
            job.error = str(exc)
            job.status = FAILED
            job.update(message=str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug: keep the app alive, log the traceback
            log.exception("job %s (%s) crashed", job.id, job.kind)
            first = (str(exc).splitlines() or [""])[0][:200]
            job.error = f"internal error: {type(exc).__name__}: {first}".rstrip(": ")
            job.status = FAILED
            job.update(message=job.error)
        else:
            job.result = result
            job.status = DONE
            job.update(progress=1.0)
        finally:
            job.finished = time.time()

    def _prune(self) -> None:
        finished = sorted((j for j in self._jobs.values() if j.done), key=lambda j: j.finished or 0)
        for j in finished[: max(0, len(finished) - self.keep_finished)]:
            self._jobs.pop(j.id, None)

    def get(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job with this id (None when unknown, or when it belongs to another owner)."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or (owner is not None and job.owner != owner):
            return None
        return job

    def list(self, owner: str | None = None, kind: str | None = None) -> list[Job]:
        """Jobs (of ``owner`` / ``kind`` when given), newest first."""
        with self._lock:
            jobs = list(self._jobs.values())
        jobs = [j for j in jobs if (owner is None or j.owner == owner) and (kind is None or j.kind == kind)]
        return sorted(jobs, key=lambda j: j.created, reverse=True)

    def cancel(self, job_id: str, owner: str | None = None) -> bool:
        job = self.get(job_id, owner)
        if job is None or job.done:
            return False
        job.cancel()
        return True

    def remove(self, job_id: str, owner: str | None = None) -> bool:
        """Forget a finished job (running jobs are kept)."""
        job = self.get(job_id, owner)
        if job is None or not job.done:
            return False
        with self._lock:
            self._jobs.pop(job_id, None)
        return True

    def active_paths(self) -> set[str]:
        """Run folders written by running jobs (to refuse a second writer before it even starts)."""
        return {str(j.meta.get("out")) for j in self.list() if not j.done and j.meta.get("out")}


# ---------------------------------------------------------------------------------------------
# Ready-made jobs the app starts.
# ---------------------------------------------------------------------------------------------


def unique_run_dir(root: str | Path, family: str, dataset_name: str) -> Path:
    """A fresh folder name ``<family>-<dataset>-<YYYYmmdd-HHMMSS>-<4 hex>`` under ``root``."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in dataset_name)[:40] or "data"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = Path(root)
    while True:
        path = root / f"{family}-{safe}-{stamp}-{uuid.uuid4().hex[:4]}"
        if not path.exists():
            return path


def training_job(
    job: Job,
    *,
    family: str,
    dataset,
    out: str | Path,
    steps: int | None = None,
    minutes: float | None = None,
    model_config: dict | None = None,
    train_config=None,
    seed: int = 0,
    device: str = "auto",
    resume: bool = False,
    preview_every: int | None = None,
) -> Path:
    """Job body: ``gda_core.training.train`` with its events routed into ``job``."""
    from .training import train

    def on_event(ev) -> None:
        if ev.kind == "step":
            job.log(ev.logs)
        if ev.kind == "preview" and ev.preview is not None:
            job.set_preview(ev.preview)
        total = f"/{ev.total_steps}" if ev.total_steps else ""
        msg = ev.message or f"step {ev.step}{total}"
        job.update(progress=ev.fraction, message=msg, eta_s=ev.eta_s)

    job.update(progress=0.0, message="loading model...")
    return train(
        family,
        dataset,
        out=out,
        steps=steps,
        minutes=minutes,
        model_config=model_config,
        train_config=train_config,
        seed=seed,
        device=device,
        resume=resume,
        callback=on_event,
        cancel=job.cancel_event,
        preview_every=preview_every,
    )


def start_training(manager: JobManager, *, owner: str | None, family: str, dataset, out: str | Path, **kwargs: Any) -> Job:
    """Start a training job into ``out`` (refused at once when another job of this app writes it)."""
    out = Path(out)
    if str(out) in manager.active_paths():
        raise ConfigError(f"run folder {out} is already being trained by another job; wait or cancel it")
    title = f"{'resume' if kwargs.get('resume') else 'train'} {family} on {dataset.name} -> {out.name}"
    return manager.start("train", training_job, owner=owner, title=title, meta={"out": str(out), "family": family},
                         family=family, dataset=dataset, out=out, **kwargs)  # fmt: skip


def evaluation_job(job: Job, *, run_dir: str | Path, preset: str = "quick", seed: int = 0, device: str = "auto", sampling: dict | None = None):
    """Job body: ``gda_core.metrics.evaluate`` on one run folder at a preset and sampler settings
    (``sampling``: steps, guidance, sampler, temperature); returns the Report."""
    from .metrics.evaluation import evaluate, evaluation_options

    def on_progress(stage: str, fraction: float) -> None:
        job.update(progress=fraction, message=stage)

    return evaluate(str(run_dir), seed=seed, device=device, progress=on_progress, cancel=job.cancel_event, **evaluation_options(preset),
                    **(sampling or {}))  # fmt: skip


def start_evaluation(manager: JobManager, *, owner: str | None, run_dir: str | Path, preset: str = "quick", **kwargs: Any) -> Job:
    run_dir = Path(run_dir)
    return manager.start("evaluate", evaluation_job, owner=owner, title=f"evaluate {run_dir.name} ({preset})",
                         meta={"run_dir": str(run_dir), "preset": preset}, run_dir=run_dir, preset=preset, **kwargs)  # fmt: skip


def curve_job(job: Job, *, run_dir: str | Path, steps: list[int], sampling: dict | None = None, device: str = "auto") -> dict:
    """Job body: ``gda_core.metrics.curve.quality_cost_curve`` on one run folder."""
    from .metrics.curve import quality_cost_curve

    return quality_cost_curve(str(run_dir), steps=steps, device=device, progress=lambda stage, f: job.update(progress=f, message=stage),
                              cancel=job.cancel_event, **(sampling or {}))  # fmt: skip


def start_curve(manager: JobManager, *, owner: str | None, run_dir: str | Path, steps: list[int], **kwargs: Any) -> Job:
    run_dir = Path(run_dir)
    return manager.start("curve", curve_job, owner=owner, title=f"quality against cost of {run_dir.name}", meta={"run_dir": str(run_dir)},
                         run_dir=run_dir, steps=list(steps), **kwargs)  # fmt: skip


def cached_reports(run_dir: str | Path) -> list[tuple[Path, Any]]:
    """Readable cached evaluation reports in ``<run_dir>/eval/``, newest first, as (path, Report)."""
    import json

    from .metrics import Report

    out = []
    ev = Path(run_dir) / "eval"
    if not ev.is_dir():
        return out
    for p in sorted(ev.glob("*.json"), key=lambda q: q.stat().st_mtime, reverse=True):
        try:
            rep = Report.from_dict(json.loads(p.read_text(encoding="utf-8")))
        except (OSError, ValueError, GDAError, TypeError, AttributeError):
            continue
        out.append((p, rep))
    return out
