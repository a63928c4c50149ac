"""The trainer: knows nothing about a family beyond ``configure_optimizers`` / ``train_step``.

Progress goes through ``callback(event)`` so the same loop drives a tqdm bar, JSON lines and the
app. A run is resumable: every ``checkpoint_every`` steps (and at the end) one atomic
``train_state.pt`` snapshot is written, then the sampling weights and config. A run killed at any
moment resumes from its last snapshot with the same data order (batches are a pure function of
seed and step).
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import checkpoints as ck
from .. import fastpath
from ..data import Dataset
from ..errors import Cancelled, ConfigError, GDAError, TrainingError
from ..models import TrainConfig, build_model, get_model_class
from ..runtime import atomic_write_json, device_name, resolve_device, run_lock, set_global_seed
from ..sampling import image_grid, save_png
from .distributed import (
    SyncedOptimizer,
    all_agree,
    barrier,
    broadcast_buffers,
    broadcast_module,
    check_in_sync,
    process_group,
    reduce_logs,
    shard,
)


@dataclass
class TrainEvent:
    """What the trainer reports. kind: start | step | preview | checkpoint | done."""

    kind: str
    step: int
    total_steps: int | None
    elapsed_s: float
    fraction: float
    logs: dict[str, float] = field(default_factory=dict)
    eta_s: float | None = None
    preview: np.ndarray | None = None  # uint8 (H, W, C) grid
    message: str = ""

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("preview")
        return d


def train_precision(dev: torch.device, train_config: TrainConfig, family: str | None = None) -> torch.dtype | None:
    """The autocast dtype of training steps: bf16 on CUDA with ``amp`` (where supported), bf16 on a
    CPU that does it natively when the run asks for it (``cpu_bf16``, or ``family``'s
    ``cpu_bf16_default`` when that is None), otherwise None (float32)."""
    if dev.type == "cuda":
        return torch.bfloat16 if train_config.amp and torch.cuda.is_bf16_supported() else None
    wanted = train_config.cpu_bf16
    if wanted is None:
        wanted = family is not None and get_model_class(family).cpu_bf16_default
    if dev.type == "cpu" and wanted and fastpath.cpu_native_bf16():
        return torch.bfloat16
    return None


def cpu_bf16_offered(device: str = "auto") -> bool:
    """Whether ``TrainConfig.cpu_bf16`` takes effect on ``device``: it resolves to a CPU that does
    bf16 natively. False for GPUs (they use ``amp``) and for devices that are not available."""
    try:
        dev = resolve_device(device)
    except GDAError:
        return False
    return dev.type == "cpu" and train_precision(dev, TrainConfig(cpu_bf16=True)) is not None


def _batch_indices(step: int, n: int, batch: int, seed: int) -> torch.Tensor:
    """Indices of the batch at ``step``: epochs of seeded permutations, a pure function of step."""
    start = step * batch
    out = []
    while len(out) < batch:
        epoch, offset = divmod(start, n)
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g)
        take = perm[offset : offset + batch - len(out)]
        out.extend(take.tolist())
        start += len(take)
    return torch.tensor(out, dtype=torch.long)


def _check_batch(tc: TrainConfig, world_size: int) -> None:
    if tc.batch_size < world_size * tc.grad_accum:
        raise ConfigError(f"batch size {tc.batch_size} is smaller than processes x accumulation steps ({world_size} x {tc.grad_accum})")


def train(
    family: str,
    dataset: Dataset,
    *,
    out: str | os.PathLike,
    steps: int | None = None,
    minutes: float | None = None,
    model_config: dict[str, Any] | None = None,
    train_config: TrainConfig | None = None,
    seed: int = 0,
    device: str = "auto",
    resume: bool = False,
    callback: Callable[[TrainEvent], None] | None = None,
    cancel: threading.Event | None = None,
    preview_every: int | None = None,
    checkpoint_every: int | None = None,
    checkpoint_seconds: float = 60.0,
    log_every: int = 10,
) -> Path:
    """Train ``family`` on ``dataset`` into the run folder ``out``; return the folder.

    Budget: ``steps`` (total optimisation steps) or ``minutes`` of wall-clock time (or both:
    whichever ends first). ``resume=True`` continues from ``out/train_state.pt`` with the saved
    config (the family and model config must match). Cancelling (``cancel.set()``) saves a
    checkpoint and raises :class:`Cancelled`.

    ``train_config.batch_size`` is the effective batch of one optimisation step. With
    ``train_config.grad_accum = k`` it is processed as k micro-batches (same result, less
    memory). Under ``torchrun --nproc_per_node N`` (see :mod:`gda_core.training.distributed`)
    each of the N processes takes 1/N of every batch; process 0 writes the run folder, which
    has the same format as a single-process run and resumes with any number of processes.
    """
    if steps is None and minutes is None:
        raise ConfigError("give a training budget: steps or minutes")
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise ConfigError(f"steps must be a positive integer, got {steps}")
    if minutes is not None and not (minutes > 0):
        raise ConfigError(f"minutes must be positive, got {minutes}")
    out = Path(out).expanduser()
    train_config = train_config or TrainConfig()
    train_config.validate()
    dev = resolve_device(device)
    get_model_class(family)  # fail fast on an unknown family, before touching the run folder
    with contextlib.ExitStack() as stack:
        ctx, dev = stack.enter_context(process_group(dev))
        _check_batch(train_config, ctx.world_size)  # before the run folder is touched
        if ctx.is_main:
            stack.enter_context(run_lock(out))
            # Temp files of writes interrupted by a kill (we hold the lock: nobody else is writing here).
            for stale in out.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
        state = None
        if resume:
            state = ck.load_train_state(out)
            if not isinstance(state, dict):
                raise ck.CheckpointError(f"{out / ck.STATE}: not a training state; start a new run")
            saved_cfg = ck.read_config(out)
            if saved_cfg["family"] != family:
                raise ConfigError(f"{out}: cannot resume a '{saved_cfg['family']}' run as '{family}'")
            model_config = saved_cfg["model_config"]
            seed = saved_cfg.get("seed", seed)
            if not isinstance(seed, int) or isinstance(seed, bool):
                raise ck.CheckpointError(f"{out / ck.CONFIG}: 'seed' must be an integer, got {seed!r}")
            try:  # the saved settings win; a hand-edited config.json is checked as a new one would be
                train_config = TrainConfig.from_dict(saved_cfg.get("train_config", asdict(train_config)))
            except ConfigError as exc:
                raise ck.CheckpointError(f"{out / ck.CONFIG}: {exc}") from None
        elif (out / ck.STATE).exists() or (out / ck.WEIGHTS).exists():
            raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        _check_batch(train_config, ctx.world_size)  # again: a resumed run trains with its saved settings
        accum = train_config.grad_accum
        mc = {"image_size": dataset.image_size, "channels": dataset.channels, "num_classes": dataset.num_classes, **(model_config or {})}
        for key, actual in (("image_size", dataset.image_size), ("channels", dataset.channels), ("num_classes", dataset.num_classes)):
            if mc[key] != actual:
                raise ConfigError(f"model {key}={mc[key]} does not match the dataset ({actual})")
        set_global_seed(seed)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's zero-element warning: refused just below
                model = build_model(family, **mc).to(dev)
        except (RuntimeError, ValueError, TypeError, OverflowError) as exc:  # e.g. a negative or absurd size
            msg = str(exc).strip().splitlines()
            raise ConfigError(f"{family} config {mc} cannot be built ({msg[0][:120] if msg else type(exc).__name__})") from None
        if any(p.numel() == 0 for p in model.parameters()):
            raise ConfigError(f"{family} config {mc} gives empty layers; use positive sizes")
        broadcast_module(model, ctx)
        model.train()
        optimizers = model.configure_optimizers(train_config)
        # What the family steps: accumulation + cross-process averaging happen in optimizer_step.
        synced = {k: SyncedOptimizer(o, accum=accum, ctx=ctx) for k, o in optimizers.items()}
        history: list[dict] = []
        window: dict[str, list[float]] = {}  # losses since the last logged step (part of the snapshot)
        step = 0
        elapsed_before = 0.0
        if state is not None:
            try:
                model.load_state_dict(state["model"])
                for name, opt in optimizers.items():
                    opt.load_state_dict(state["optimizers"][name])
                torch.set_rng_state(state["rng_cpu"])
                if dev.type == "cuda" and state.get("rng_cuda") is not None:
                    torch.cuda.set_rng_state(state["rng_cuda"])
                step = int(state["step"])
                history = list(state.get("history", []))
                window = {str(k): [float(x) for x in v] for k, v in dict(state.get("window", {})).items()}
                elapsed_before = float(state.get("elapsed_s", 0.0))
                if step < 0:
                    raise ValueError(f"negative step {step}")
            except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as exc:
                msg = str(exc).strip().splitlines()
                raise ck.CheckpointError(f"{out / ck.STATE}: does not match this model ({msg[0][:100] if msg else type(exc).__name__})") from None
        amp_dtype = train_precision(dev, train_config, family)
        images, labels = dataset.tensors("train", device=dev)
        n = len(labels)
        batch = train_config.batch_size
        preview_every = preview_every or max(50, (steps or 1000) // 10)
        checkpoint_every = checkpoint_every or max(100, (steps or 1000) // 10)
        run_config = ck.base_config(
            model,
            train_config=asdict(train_config),
            data=dataset.spec.to_dict(),
            dataset_name=dataset.name,
            class_names=dataset.class_names,
            seed=seed,
            device=device_name(dev),
            world_size=ctx.world_size,
            total_steps=steps,
            minutes=minutes,
            train_images=n,
            train_precision="bfloat16" if amp_dtype is not None else "float32",
        )
        t0 = time.perf_counter()
        last_ckpt_time = t0
        last_good_step = step if state is not None else None

        def elapsed() -> float:
            return elapsed_before + time.perf_counter() - t0

        def fraction() -> float:
            fs = step / steps if steps else 0.0
            fm = elapsed() / (minutes * 60) if minutes else 0.0
            return min(1.0, max(fs, fm))

        def emit(kind: str, logs=None, **kw):
            if callback is None or not ctx.is_main:
                return
            f = fraction()
            el = elapsed()
            eta = (el / f - el) if f > 0 else None
            callback(TrainEvent(kind=kind, step=step, total_steps=steps, elapsed_s=el, fraction=f, logs=logs or {}, eta_s=eta, **kw))

        def preview() -> np.ndarray:
            model.eval()
            k = dataset.num_classes
            per = max(1, min(8, 64 // k)) if k <= 64 else 1
            labs = torch.arange(min(k, 64)).repeat_interleave(per)
            imgs = model.sample(len(labs), labs, seed=12345, **model.split_controls(steps=20)[0])  # 20 steps where the family has steps
            model.train()
            return image_grid(imgs, nrow=per if k > 1 else 8, transpose=True)

        def checkpoint(finished: bool = False) -> None:
            nonlocal last_ckpt_time, last_good_step
            if not ctx.is_main:  # one writer: process 0
                last_ckpt_time = time.perf_counter()
                last_good_step = step
                return
            snap = {
                "model": model.state_dict(),
                "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state() if dev.type == "cuda" else None,
                "step": step,
                "history": history,
                "window": window,
                "elapsed_s": elapsed(),
            }
            ck.save_train_state(out, snap)
            ck.save_weights(out, model, {"step": str(step)})
            ck.write_config(out, {**run_config, "step": step, "train_time_s": round(elapsed(), 2), "finished": finished})
            atomic_write_json(out / ck.HISTORY, history)
            model.write_artifacts(out, dataset, step)
            last_ckpt_time = time.perf_counter()
            last_good_step = step
            emit("checkpoint", message=f"saved step {step}")

        where_ = f" x {ctx.world_size} processes ({ctx.backend})" if ctx.distributed else ""
        precision = ", bfloat16 autocast" if amp_dtype is not None else ""
        if train_config.cpu_bf16 is True and dev.type == "cpu" and amp_dtype is None:
            precision = " (cpu_bf16 ignored: this CPU has no native bfloat16, float32 is faster here)"
        emit("start", message=f"training {family} on {dataset.name} ({n} images) on {device_name(dev)}{where_}{precision}")
        barrier(ctx)  # every process has checked and loaded the folder before process 0 writes it
        if state is None:
            checkpoint()  # step 0: the run folder is valid from the first second
        try:
            while True:
                if steps is not None and step >= steps:
                    break
                time_up = minutes is not None and elapsed() >= minutes * 60
                cancelled = cancel is not None and cancel.is_set()
                if ctx.distributed and all_agree(time_up or cancelled, ctx, dev):
                    time_up = True  # processes stop together (clocks differ by a few ms)
                if time_up and not cancelled:
                    break
                if cancelled:
                    checkpoint()
                    raise Cancelled(f"training cancelled at step {step}; resume to continue from {out}")
                if ctx.distributed:
                    # Each process draws its own noise; reseeding from (seed, step, rank) keeps
                    # resume exact without saving one RNG state per process.
                    torch.manual_seed((seed * 1_000_003 + step) * 1_009 + ctx.rank)
                micro_logs = []
                for i, part in enumerate(shard(_batch_indices(step, n, batch, seed), ctx, accum)):
                    for o in synced.values():
                        o.micro = i
                    part = part.to(dev)
                    micro_logs.append(model.train_step(images[part], labels[part], synced, step=step, amp_dtype=amp_dtype))
                logs, _ = reduce_logs(micro_logs, False, ctx, dev)
                broadcast_buffers(model, ctx)
                bad = [k for k, v in logs.items() if not math.isfinite(v)]
                if bad:
                    where = f"the last good checkpoint (step {last_good_step}) is kept in {out}" if last_good_step is not None else "no checkpoint was written"
                    raise TrainingError(f"training diverged: {bad[0]} became {logs[bad[0]]} at step {step + 1}; {where}; try a lower learning rate")
                # EMA warm-up (decay grows with the step count) so short runs are not dominated by init.
                decay = min(train_config.ema_decay, (1 + step) / (10 + step))
                model.update_ema(decay)
                step += 1
                for k, v in logs.items():
                    window.setdefault(k, []).append(v)
                if step % log_every == 0 or (steps is not None and step == steps):
                    rec = {"step": step, "time_s": round(elapsed(), 3), **{k: float(np.mean(v)) for k, v in window.items()}}
                    history.append(rec)
                    window = {}
                    emit("step", logs=rec)
                if step % preview_every == 0 and ctx.is_main:
                    grid = preview()
                    save_png(out / ck.PREVIEW, grid)
                    emit("preview", preview=grid)
                if step % checkpoint_every == 0 or time.perf_counter() - last_ckpt_time > checkpoint_seconds:
                    checkpoint()
        except GDAError:
            raise
        except torch.cuda.OutOfMemoryError:
            raise TrainingError(f"out of GPU memory at batch size {batch}; lower the batch size or use --device cpu") from None
        except OSError as exc:
            raise TrainingError(f"could not write to {out}: {exc.strerror or exc}") from None
        if window:
            history.append({"step": step, "time_s": round(elapsed(), 3), **{k: float(np.mean(v)) for k, v in window.items()}})
        check_in_sync(model, ctx, dev)
        if ctx.is_main:
            grid = preview()
            save_png(out / ck.PREVIEW, grid)
            emit("preview", preview=grid)
        checkpoint(finished=True)
        emit("done", message=f"finished {step} steps in {elapsed():.0f} s; run saved to {out}")
        barrier(ctx)
    return out


def default_model_config(family: str) -> dict:
    return get_model_class(family).Config().to_dict()
