"""Background jobs for the app: long work (training, evaluation, augmentation, studies, decoding
an upload) queued for worker processes, never run inside the web server.

:class:`JobQueue` is what the pages call: it checks a request against the server's budgets, records
the job in the job store (:mod:`gda_core.server.store`) and puts it on the queue
(:mod:`gda_core.server.queue`). The pages read a job's state, logs, preview and result back from
the store and the files the job wrote, so they survive a browser reload and a server restart. Every
job belongs to one workspace; a workspace lists, reads and cancels only its own.

Outcomes: ``done`` with a result (paths of the files written); ``cancelled``; ``failed`` with a
one-line message (a :class:`~gda_core.errors.GDAError`'s, ``internal error: ...`` for a bug, whose
traceback is in the job's log, or how the job's process died).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, GDAError
from .server.config import ServerConfig
from .server.queue import enqueue, ensure_worker, store_for
from .server.store import CANCELLED, DONE, FAILED, FINAL, QUEUED, RUNNING, Job, QueueError
from .server.workspaces import Workspace

log = logging.getLogger(__name__)

__all__ = ["CANCELLED", "DONE", "FAILED", "FINAL", "QUEUED", "RUNNING", "Job", "JobQueue", "cached_reports", "unique_run_dir"]


class JobQueue:
    """The queue as one app data folder's pages see it."""

    def __init__(self, cfg: ServerConfig, *, serve: bool = False):
        """``serve``: start the queue's worker when a job is queued and none runs (the pages' queue).
        The worker is started on demand, not on every page view: a worker process imports torch
        (seconds of CPU and ~700 MB) and most sessions only look at shipped models."""
        self.cfg = cfg
        self.store = store_for(cfg)
        self.serve = serve

    # -- submitting ------------------------------------------------------------------------------
    def submit(self, ws: Workspace, kind: str, title: str, params: dict, meta: dict | None = None) -> Job:
        """Queue a job: refused (one line) over the workspace's quota or its cap of active jobs, or
        when the queue cannot be written; a refused job leaves no row behind (it would never run and
        would count in everyone's place)."""
        from .server.budgets import check_job

        ws.check_quota(self.cfg)
        check_job(self.cfg, kind, params)
        cap = self.cfg.max_jobs_per_workspace
        if self.store.active_count(ws.id) >= cap:
            raise ConfigError(f"job limit: this workspace has {cap} jobs queued or running (max_jobs_per_workspace = {cap}); "
                              "wait for one to finish or cancel one")  # fmt: skip
        job_id = self.store.create(workspace=ws.id, kind=kind, title=title, params=params, meta=meta)
        try:
            enqueue(self.cfg, job_id)
        except QueueError:
            self.store.discard(job_id)
            raise
        if self.serve:
            try:
                ensure_worker(self.cfg)
            except OSError as exc:  # the job is queued either way: the next page view tries to start the worker again
                log.warning("could not start the queue's worker: %s", exc)
        job = self.store.get(job_id)
        assert job is not None
        return job

    def start_training(self, ws: Workspace, *, family: str, dataset, out: str | Path, resume: bool = False, **kwargs: Any) -> Job:
        """Queue a training of ``family`` on ``dataset`` into ``out`` (checked against the budgets
        first; refused when another job writes that folder)."""
        from .server.budgets import check_training

        out = Path(out)
        if not ws.owns(out):
            raise ConfigError(f"{out.name} is not a run folder of this workspace")
        if str(out) in self.store.active_paths():
            raise ConfigError(f"run folder {out.name} is already being trained by another job; wait or cancel it")
        if not resume:
            mc = {"image_size": dataset.image_size, "channels": dataset.channels, "num_classes": dataset.num_classes,
                  **(kwargs.get("model_config") or {})}  # fmt: skip
            check_training(self.cfg, family, mc, steps=kwargs.get("steps"), minutes=kwargs.get("minutes"))
        name = Path(str(dataset.name)).stem
        title = f"{'resume' if resume else 'train'} {family} on {name} -> {out.name}"
        params = {"family": family, "data": dataset.spec.to_dict(), "out": str(out), "resume": resume, **kwargs}
        return self.submit(ws, "train", title, params, meta={"out": str(out), "family": family})

    def start_sweep(self, ws: Workspace, *, family: str, dataset, grid: str, seeds: int = 3, steps: int | None = None, minutes: float | None = None,
                    preset: str = "quick", classifier: str | None = None, eval_options: dict | None = None, device: str = "auto",
                    out: str | Path | None = None) -> Job:  # fmt: skip
        """Queue a sweep of ``family`` on ``dataset`` (see :mod:`gda_core.sweep`) into ``out``, a new
        folder under the workspace's runs unless given (the same ``out`` again resumes that sweep).
        Checked against the budgets first, every setting's model size with the dataset's dimensions."""
        from .server.budgets import check_sweep

        name = Path(str(dataset.name)).stem
        out = Path(out) if out is not None else unique_run_dir(ws.runs, f"sweep-{family}", name)
        if out.resolve().parent != ws.runs.resolve():
            raise ConfigError(f"{out.name} is not a folder of this workspace's runs")
        if str(out) in self.store.active_paths():
            raise ConfigError(f"sweep folder {out.name} is already being written by another job; wait or cancel it")
        params = {"family": family, "data": dataset.spec.to_dict(), "grid": str(grid), "seeds": seeds, "steps": steps, "minutes": minutes,
                  "preset": preset, "classifier": classifier, "eval_options": eval_options or {}, "device": device, "out": str(out)}  # fmt: skip
        check_sweep(self.cfg, params, dims={"image_size": dataset.image_size, "channels": dataset.channels, "num_classes": dataset.num_classes})
        budget = f"{steps} steps" if steps is not None else f"{minutes:g} minutes"
        title = f"sweep {family} on {name}: {grid} x {seeds} seeds, {budget} each"
        return self.submit(ws, "sweep", title, params, meta={"out": str(out), "family": family})

    def import_run(self, ws: Workspace, data: bytes, name: str) -> Job:
        """Queue the import of an uploaded run zip. Here only the zip's directory is read (member
        names and declared sizes against their caps and the workspace's quota: nothing inflated);
        the zip is kept in the workspace's uploads for the ``import`` job, which inflates and checks it."""
        from .server import workspaces as wsp

        with wsp._open_zip(data) as zf:
            wsp.check_run_zip(self.cfg, ws, zf)
        path = ws.save_upload(self.cfg, name, data)
        return self.submit(ws, "import", f"import {wsp.safe_name(name, 'run.zip')}", {"zip": str(path), "name": name})

    # -- reading ---------------------------------------------------------------------------------
    def list(self, ws: Workspace, kind: str | None = None) -> list[Job]:
        return self.store.list(ws.id, kind)

    def get(self, ws: Workspace, job_id: str) -> Job | None:
        return self.store.get(job_id, ws.id)

    def cancel(self, ws: Workspace, job_id: str) -> bool:
        return self.store.request_cancel(job_id, ws.id)

    def logs(self, job: Job) -> list[dict]:
        return self.store.logs(job.id)

    def active_paths(self) -> set[str]:
        return self.store.active_paths()

    def has_active(self) -> bool:
        """Whether any workspace has a job queued or running (a worker must serve them)."""
        return self.store.has_active()

    @staticmethod
    def preview(job: Job) -> np.ndarray | None:
        """The job's latest preview grid as uint8 (H, W, C), or None."""
        from PIL import Image

        if not job.preview:
            return None
        try:
            with Image.open(job.preview, formats=("PNG",)) as img:
                arr = np.asarray(img.convert("L") if img.mode in ("L", "LA", "I", "I;16") else img.convert("RGB"))
        except (OSError, ValueError):
            return None
        return arr[..., None] if arr.ndim == 2 else arr

    @staticmethod
    def result_file(job: Job, key: str) -> Path | None:
        if job.status != DONE or not isinstance(job.result, dict) or not job.result.get(key):
            return None
        return Path(job.result[key])

    def report(self, job: Job):
        """A finished evaluation's Report (read as untrusted input, like every cached report)."""

        path = self.result_file(job, "report")
        return _read_report(path) if path is not None else None

    def study(self, job: Job):
        from .augment.study_report import StudyResult

        path = self.result_file(job, "study")
        if path is None:
            return None
        try:
            return StudyResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, GDAError):
            return None

    def sweep(self, job: Job):
        """A finished sweep's SweepResult (read as untrusted input), or None."""
        from .sweep import SweepResult

        path = self.result_file(job, "sweep")
        if path is None:
            return None
        try:
            res = SweepResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
            res.table_rows()  # every run's setting and scores readable, or none of it is shown
            return res
        except (OSError, ValueError, GDAError, KeyError, TypeError, IndexError, AttributeError):
            return None

    def curve(self, job: Job) -> dict | None:
        path = self.result_file(job, "curve")
        try:
            return json.loads(path.read_text(encoding="utf-8")) if path is not None else None
        except (OSError, ValueError):
            return None

    def augment(self, job: Job) -> dict | None:
        """A finished augmentation: every image made ("all"), those kept, the selection report, the run."""
        from .augment.generate import SyntheticSet

        path, images = self.result_file(job, "augment"), self.result_file(job, "images")
        if path is None or images is None:
            return None
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            with np.load(images, allow_pickle=False) as z:
                synth = SyntheticSet(z["images"], z["labels"], z["seeds"], list(meta["class_names"]), dict(meta["settings"]),
                                     dict(meta["checkpoint"]), [], list(meta["notes"]))  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError, GDAError):
            return None
        kept = synth.subset(np.asarray(meta["report"]["kept_index"], dtype=np.int64))
        kept.selection = list(meta.get("selection") or [])
        return {"all": synth, "kept": kept, "report": meta["report"], "run_path": meta["run_path"]}


def _read_report(path: Path):
    from .metrics import Report

    try:
        return Report.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, GDAError, TypeError, AttributeError, KeyError):
        return None


# ---------------------------------------------------------------------------------------------
# Run folders and their saved evaluations.
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


def cached_reports(run_dir: str | Path, ws: Workspace | None = None) -> list[tuple[Path, Any]]:
    """Readable saved evaluation reports of the current metrics version of a run, newest first, as (path, Report): the run folder's
    ``eval/`` and, with ``ws``, the evaluations that workspace made of it. Read as untrusted input."""
    folders = [Path(run_dir) / "eval"]
    if ws is not None:
        from .server.workspaces import safe_name

        folders.append(ws.root / "evaluations" / safe_name(Path(run_dir).name, "run"))
    from .metrics.evaluation import METRICS_VERSION

    files = [p for f in folders if f.is_dir() for p in f.glob("*.json")]
    out = []
    for p in sorted(files, key=lambda q: q.stat().st_mtime, reverse=True):
        rep = _read_report(p)
        # A report of older metrics answers with other definitions: never drawn beside current ones.
        if rep is not None and rep.provenance.get("metrics_version") == METRICS_VERSION:
            # The folder it was evaluated in (a shipped report's names the machine that made it): where the run is
            # now is what the claims read its training steps from.
            rep.provenance["run_dir"] = str(Path(run_dir))
            out.append((p, rep))
    return out
