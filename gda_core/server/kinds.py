"""What each kind of job does, inside the process the queue starts for it.

``python -m gda_core.server.kinds APP_DATA JOB_ID`` claims the job, caps torch's threads, runs the
job's body with a :class:`JobContext` (progress, logs, preview, a cancel event fed from the store),
writes its result as files in the job's workspace and records the outcome. A process per job means
its own RNG state: two trainings with the same seed at the same time cannot disturb each other.
A SIGTERM (the worker stopping) cancels the job the way the Cancel button does, so a training
saves a checkpoint first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Cancelled, GDAError
from ..runtime import atomic_path, atomic_write_json
from .budgets import apply_data_limits, capped_minutes, check_job, check_training
from .config import ServerConfig, load_config
from .queue import store_for
from .store import CANCELLED, DONE, FAILED, Job, JobStore
from .workspaces import Workspace, check_data_source, open_workspace, safe_name

log = logging.getLogger(__name__)
CANCEL_POLL_S = 0.5


class JobContext:
    """What a job body reports through (the store) and checks (``cancel_event``)."""

    def __init__(self, store: JobStore, job: Job, ws: Workspace, cfg: ServerConfig):
        self.store, self.job, self.ws, self.cfg = store, job, ws, cfg
        self.dir = ws.jobs / job.id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cancel_event = threading.Event()
        threading.Thread(target=self._poll_cancel, daemon=True, name="cancel-poll").start()
        # Whatever the kind, a job stops at the time budget (with a margin, so that a training's own
        # minutes limit, capped at max_minutes, ends it first and saves it as done).
        self.timed_out = threading.Event()
        timer = threading.Timer(cfg.max_minutes * 60 * 1.05 + 30, self._time_up)
        timer.daemon = True
        timer.start()

    def _time_up(self) -> None:
        self.timed_out.set()
        self.cancel_event.set()

    def _poll_cancel(self) -> None:
        while not self.cancel_event.is_set():
            if self.store.cancel_requested(self.job.id):
                self.cancel_event.set()
            time.sleep(CANCEL_POLL_S)

    def update(self, *, progress: float | None = None, message: str | None = None, eta_s: float | None = None) -> None:
        self.store.update(self.job.id, progress=progress, message=message, eta_s=eta_s)

    def log(self, record: dict) -> None:
        self.store.log(self.job.id, record)

    def set_preview(self, image: np.ndarray) -> None:
        from ..sampling import save_png

        path = self.dir / "preview.png"
        with atomic_path(path) as tmp:
            save_png(tmp, image)
        self.store.set_preview(self.job.id, path)

    def write_json(self, name: str, obj: Any) -> str:
        path = self.dir / name
        atomic_write_json(path, obj)
        return str(path)


# -- job bodies -------------------------------------------------------------------------------------


def _dataset(ctx: JobContext, spec: dict):
    """The dataset a job names, when its workspace may read it."""
    from ..data import load_dataset

    spec = dict(spec)
    check_data_source(ctx.cfg, ctx.ws, str(spec["source"]), spec.get("data_dir"))
    return load_dataset(spec.pop("source"), **spec)


def _run_data_allowed(ctx: JobContext, run_dir: str) -> None:
    from ..checkpoints import read_config

    data = read_config(run_dir).get("data") or {}
    check_data_source(ctx.cfg, ctx.ws, str(data.get("source", "")), data.get("data_dir"))


def train_job(ctx: JobContext, p: dict) -> dict:
    from ..models import TrainConfig
    from ..training import train

    ds = _dataset(ctx, p["data"])
    mc = {"image_size": ds.image_size, "channels": ds.channels, "num_classes": ds.num_classes, **(p.get("model_config") or {})}
    if not p.get("resume"):
        check_training(ctx.cfg, p["family"], mc, steps=p.get("steps"), minutes=p.get("minutes"))

    def on_event(ev) -> None:
        if ev.kind == "step":
            ctx.log(ev.logs)
        if ev.kind == "preview" and ev.preview is not None:
            ctx.set_preview(ev.preview)
        total = f"/{ev.total_steps}" if ev.total_steps else ""
        ctx.update(progress=ev.fraction, message=ev.message or f"step {ev.step}{total}", eta_s=ev.eta_s)

    ctx.update(progress=0.0, message="loading model...")
    tc = TrainConfig.from_dict(p["train_config"]) if p.get("train_config") else None
    out = train(p["family"], ds, out=p["out"], steps=p.get("steps"), minutes=capped_minutes(ctx.cfg, p.get("minutes")), model_config=p.get("model_config"),
                train_config=tc, seed=int(p.get("seed", 0)), device=p.get("device", "auto"), resume=bool(p.get("resume")),
                callback=on_event, cancel=ctx.cancel_event, preview_every=p.get("preview_every"),
                checkpoint_every=p.get("checkpoint_every"))  # fmt: skip
    return {"run_dir": str(out)}


def evaluate_job(ctx: JobContext, p: dict) -> dict:
    """The evaluation's report as a file of the workspace; the run folder's own cache is used only
    for the workspace's runs (nothing is written into shipped or published ones)."""
    from ..metrics.classifier import DEFAULT_BUDGET, with_classifier
    from ..metrics.evaluation import evaluate, evaluation_options

    run_dir = p["run_dir"]
    _run_data_allowed(ctx, run_dir)
    opts = {**evaluation_options(p.get("preset", "quick")), **(p.get("sampling") or {})}
    opts["budget"] = with_classifier(opts.get("budget", DEFAULT_BUDGET), p.get("classifier"))
    # Stage outputs and the extractor in the workspace, not the server's shared cache: counted in its
    # quota, deleted with it, and never read by another user's evaluation.
    rep = evaluate(str(run_dir), seed=int(p.get("seed", 0)), device=p.get("device", "auto"), cache=ctx.ws.owns(run_dir), cache_dir=ctx.ws.eval_cache,
                   progress=lambda stage, f: ctx.update(progress=f, message=stage), cancel=ctx.cancel_event, **opts)  # fmt: skip
    path = ctx.ws.evaluations / safe_name(Path(run_dir).name, "run") / f"{ctx.job.id}.json"
    rep.save(path)
    return {"report": str(path), "run_dir": str(run_dir)}


def curve_job(ctx: JobContext, p: dict) -> dict:
    from ..metrics.curve import quality_cost_curve

    _run_data_allowed(ctx, p["run_dir"])
    curve = quality_cost_curve(str(p["run_dir"]), steps=list(p["steps"]), device=p.get("device", "auto"), cancel=ctx.cancel_event, cache_dir=ctx.ws.eval_cache,
                               progress=lambda stage, f: ctx.update(progress=f, message=stage), **(p.get("sampling") or {}))  # fmt: skip
    return {"curve": ctx.write_json("curve.json", curve), "run_dir": str(p["run_dir"])}


def augment_job(ctx: JobContext, p: dict) -> dict:
    """Generate and select; the images as .npz (images, labels, seeds) and the rest as JSON."""
    from ..augment.generate import generate_synthetic
    from ..augment.select import SelectionContext, parse_filters
    from ..augment.select import select as apply_filters
    from ..checkpoints import load_run
    from ..data import load_spec

    _run_data_allowed(ctx, p["run_path"])
    run = load_run(p["run_path"], device="auto")
    ds = load_spec(run.data_spec)
    seed = int(p.get("seed", 0))
    ctx.update(progress=0.02, message="sampling")
    synth = generate_synthetic(run, float(p["ratio"]), real_labels=ds.train_labels, mode=p.get("mode", "balanced"), seed=seed,
                               temperature=float(p.get("temperature", 1.0)), cancel=ctx.cancel_event,
                               progress=lambda d, t: ctx.update(progress=0.02 + 0.6 * d / max(1, t), message=f"sampling {d}/{t}"))  # fmt: skip
    if p.get("spec"):
        sel = SelectionContext.from_dataset(ds, seed=seed, device=run.model.device, cancel=ctx.cancel_event,
                                            progress=lambda m: ctx.update(progress=0.7, message=m))  # fmt: skip
        kept, report = apply_filters(synth, parse_filters(p["spec"], seed=seed), sel)
    else:
        kept, report = synth, {"before": synth.class_counts(), "after": synth.class_counts(), "filters": [], "kept_index": list(range(len(synth))),
                               "dropped_index": [], "class_names": synth.class_names}  # fmt: skip
    with atomic_path(ctx.dir / "synthetic.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, images=synth.images, labels=synth.labels, seeds=synth.seeds)
    meta = {"class_names": synth.class_names, "settings": synth.settings, "checkpoint": synth.checkpoint, "notes": synth.notes,
            "selection": kept.selection, "report": report, "run_path": str(p["run_path"])}  # fmt: skip
    return {"augment": ctx.write_json("augment.json", meta), "images": str(ctx.dir / "synthetic.npz")}


def study_job(ctx: JobContext, p: dict) -> dict:
    from ..augment import quick_budget, run_study
    from ..checkpoints import load_run
    from ..metrics import DEFAULT_BUDGET
    from ..metrics.classifier import with_classifier

    opts = dict(p["options"])
    opts["budget"] = with_classifier(quick_budget() if opts.pop("budget", "quick") == "quick" else DEFAULT_BUDGET, opts.pop("classifier", None))
    if opts.get("checkpoints"):
        opts["checkpoints"] = [load_run(c, device="auto") for c in opts["checkpoints"]]
    opts["cache_dir"] = str(ctx.ws.study_cache)

    def progress(frac: float, msg: str) -> None:
        ctx.update(progress=frac, message=msg)
        if not msg.startswith("training "):
            ctx.log({"cell": msg})

    study = run_study(_dataset(ctx, p["data"]), **opts, progress=progress, cancel=ctx.cancel_event)
    path = ctx.ws.exports / f"study-{ctx.job.id}.json"
    atomic_write_json(path, study.to_dict())
    return {"study": str(path)}


def sweep_job(ctx: JobContext, p: dict) -> dict:
    """Train and evaluate a grid of settings x seeds into a folder under the workspace's runs (so every
    run counts in its quota); sweep.json is rewritten after each run, so the same job again resumes."""
    from ..sweep import FILE, run_sweep
    from .budgets import check_sweep

    out = Path(p["out"])
    if out.resolve().parent != ctx.ws.runs.resolve():  # a folder of its own in the runs, never the runs folder itself
        raise GDAError("the sweep's folder is not a folder of this workspace's runs")
    ds = _dataset(ctx, p["data"])
    grid = check_sweep(ctx.cfg, p, dims={"image_size": ds.image_size, "channels": ds.channels, "num_classes": ds.num_classes})
    ctx.update(progress=0.0, message=f"{len(grid)} settings x {p['seeds']} seeds")
    res = run_sweep(ds, p["family"], grid, out=out, seeds=int(p["seeds"]), steps=p.get("steps"), minutes=p.get("minutes"),
                    preset=p.get("preset", "quick"), device=p.get("device", "auto"), eval_options=_sweep_eval_options(ctx, p),
                    progress=lambda f, m: ctx.update(progress=f, message=m), cancel=ctx.cancel_event)  # fmt: skip
    ctx.update(progress=1.0, message=f"{len(res.runs)} runs trained and evaluated")
    return {"sweep": str(out / FILE), "csv": str(out / "sweep.csv"), "out": str(out)}


def _sweep_eval_options(ctx: JobContext, p: dict) -> dict:
    """The job's evaluation overrides (checked against SWEEP_EVAL_KEYS by the budget) as evaluate()
    keywords, the classifier picked, and the workspace's own cache of extractor and stages."""
    from ..metrics import DEFAULT_BUDGET, ClassifierBudget
    from ..metrics.classifier import with_classifier
    from ..metrics.evaluation import evaluation_options

    ev = dict(p.get("eval_options") or {})
    try:
        if "budget" in ev:
            ev["budget"] = ClassifierBudget(**ev["budget"])
        if "extractor_budget" in ev:
            ev["extractor_options"] = {"budget": ClassifierBudget(**ev.pop("extractor_budget"))}
        if "augment" in ev:
            ev["augment"] = tuple(int(k) for k in ev["augment"])
    except (TypeError, ValueError):
        raise GDAError("a sweep's evaluation budget must name ClassifierBudget fields with numbers") from None
    base = ev.get("budget", evaluation_options(p.get("preset", "quick")).get("budget", DEFAULT_BUDGET))
    ev["budget"] = with_classifier(base, p.get("classifier"))
    return {**ev, "cache_dir": ctx.ws.eval_cache}


def prepare_job(ctx: JobContext, p: dict) -> dict:
    """Decode an uploaded (or server-path) dataset here, off the web server, into plain arrays
    (an .npz in MedMNIST layout) that the app loads cheaply; the data budgets apply while decoding."""
    ctx.update(progress=0.05, message="decoding images...")
    ds = _dataset(ctx, p["data"])
    out = Path(p["out"])
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, train_images=ds.train_images, train_labels=ds.train_labels, val_images=ds.val_images, val_labels=ds.val_labels,
                     test_images=ds.test_images, test_labels=ds.test_labels, class_names=np.array(ds.class_names, dtype=str))  # fmt: skip
    atomic_write_json(out.with_suffix(".json"), {"warnings": ds.warnings, "label": p.get("label", ""), "source": p["data"]["source"]})
    return {"npz": str(out), "warnings": ds.warnings}


def import_job(ctx: JobContext, p: dict) -> dict:
    """Add an uploaded run zip (saved in the workspace's uploads) as a run: inflating and building it
    happen here, never in the web server. The zip is removed afterwards, done or not (it counted
    against the quota, and the run holds what it held)."""
    from .workspaces import import_run_zip

    zip_path = Path(p["zip"])
    if not ctx.ws.owns(zip_path):
        raise GDAError("the run zip is not an upload of this workspace")
    ctx.update(progress=0.1, message="checking the run...")
    try:
        run = import_run_zip(ctx.cfg, ctx.ws, zip_path, str(p.get("name") or zip_path.name))
    finally:
        zip_path.unlink(missing_ok=True)
    return {"run_dir": str(run)}


KINDS: dict[str, Callable[[JobContext, dict], dict]] = {"train": train_job, "evaluate": evaluate_job, "curve": curve_job,
                                                        "augment": augment_job, "study": study_job, "sweep": sweep_job,
                                                        "prepare": prepare_job, "import": import_job}  # fmt: skip


# -- the process ------------------------------------------------------------------------------------


def _outcome(fn: Callable[[], dict]) -> tuple[str, dict | None, str | None]:
    try:
        return DONE, fn(), None
    except Cancelled as exc:
        return CANCELLED, None, str(exc)
    except GDAError as exc:
        return FAILED, None, str(exc)
    except MemoryError:
        return FAILED, None, "out of memory; try a smaller dataset, image size, model or batch"
    except Exception as exc:  # noqa: BLE001 - a bug: one line for the user, the traceback in the job log
        log.exception("job crashed")
        first = (str(exc).splitlines() or [""])[0][:200]
        return FAILED, None, f"internal error: {type(exc).__name__}: {first}".rstrip(": ")


def run_job(app_data: str, job_id: str) -> int:
    import torch

    cfg = load_config(app_data)
    store = store_for(cfg)
    job = store.get(job_id)
    if job is None or not store.claim(job_id, os.getpid(), os.getppid()):
        return 0  # unknown, or cancelled before it started
    torch.set_num_threads(int(os.environ.get("GDA_JOB_THREADS") or cfg.resolved_job_threads()))
    with contextlib.suppress(OSError):  # below the web server's priority; a platform without nice just runs as it is
        os.nice(max(0, min(19, int(cfg.job_niceness))))
    apply_data_limits(cfg)
    ws = open_workspace(cfg, job.workspace)
    if ws is None:
        store.finish(job_id, FAILED, error="the job's workspace no longer exists")
        return 0
    ctx = JobContext(store, job, ws, cfg)
    signal.signal(signal.SIGTERM, lambda *_: ctx.cancel_event.set())
    body = KINDS.get(job.kind)
    if body is None:
        store.finish(job_id, FAILED, error=f"unknown job kind '{job.kind}'")
        return 0
    # Every kind's budget again here: a job row need not have come through JobQueue.submit.
    status, result, error = _outcome(lambda: (check_job(cfg, job.kind, job.params), body(ctx, job.params))[1])
    if status == CANCELLED and ctx.timed_out.is_set():
        status, error = FAILED, f"time budget: stopped after max_minutes = {cfg.max_minutes:g} minutes"
    store.finish(job_id, status, result=result, error=error)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m gda_core.server.kinds APP_DATA JOB_ID")
    raise SystemExit(run_job(sys.argv[1], sys.argv[2]))
