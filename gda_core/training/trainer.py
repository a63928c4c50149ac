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
from ..models import GenerativeModel, TrainConfig, build_model, get_model_class
from ..runtime import atomic_write_json, device_name, resolve_device, run_lock, set_global_seed
from ..sampling import image_grid, save_png
from .distributed import (
    DistContext,
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


def _check_budget(steps: int | None, minutes: float | None) -> None:
    if steps is None and minutes is None:
        raise ConfigError("give a training budget: steps or minutes")
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise ConfigError(f"steps must be a positive integer, got {steps}")
    if minutes is not None and not (minutes > 0):
        raise ConfigError(f"minutes must be positive, got {minutes}")


def _remove_stale_temp_files(out: Path) -> None:
    """Temp files of writes interrupted by a kill. Called with the run lock held: nobody else is writing here."""
    for stale in out.glob(".*.tmp"):
        stale.unlink(missing_ok=True)


def _saved_run(out: Path, family: str, seed: int, train_config: TrainConfig) -> tuple[dict, dict, int, TrainConfig]:
    """What a resumed run continues from: (train state, model config, seed, train config) of ``out``.
    The saved settings win over the arguments, so a run trains the same however it is resumed."""
    state = ck.load_train_state(out)
    if not isinstance(state, dict):
        raise ck.CheckpointError(f"{out / ck.STATE}: not a training state; start a new run")
    saved_cfg = ck.read_config(out)
    if saved_cfg["family"] != family:
        raise ConfigError(f"{out}: cannot resume a '{saved_cfg['family']}' run as '{family}'")
    seed = saved_cfg.get("seed", seed)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ck.CheckpointError(f"{out / ck.CONFIG}: 'seed' must be an integer, got {seed!r}")
    try:  # a hand-edited config.json is checked as a new one would be
        train_config = TrainConfig.from_dict(saved_cfg.get("train_config", asdict(train_config)))
    except ConfigError as exc:
        raise ck.CheckpointError(f"{out / ck.CONFIG}: {exc}") from None
    return state, saved_cfg["model_config"], seed, train_config


def _build_model(family: str, dataset: Dataset, model_config: dict[str, Any] | None, seed: int, dev: torch.device) -> GenerativeModel:
    """The family's model for ``dataset``, its weights drawn from ``seed``; config errors as ConfigError."""
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
    return model


class _Run:
    """One training run in progress: the state a checkpoint saves (model, optimisers, RNG, step,
    loss history) and the named pieces the loop in :func:`train` calls, in the order it calls them."""

    def __init__(self, out: Path, family: str, dataset: Dataset, model: GenerativeModel, ctx: DistContext, dev: torch.device,
                 *, train_config: TrainConfig, seed: int, steps: int | None, minutes: float | None, state: dict | None,
                 callback: Callable[[TrainEvent], None] | None, preview_every: int | None, checkpoint_every: int | None,
                 checkpoint_seconds: float, log_every: int):  # fmt: skip
        self.out, self.family, self.dataset, self.model, self.ctx, self.dev = out, family, dataset, model, ctx, dev
        self.train_config, self.seed, self.steps, self.minutes, self.callback = train_config, seed, steps, minutes, callback
        self.optimizers = model.configure_optimizers(train_config)
        # What the family steps: accumulation + cross-process averaging happen in optimizer_step.
        self.synced = {k: SyncedOptimizer(o, accum=train_config.grad_accum, ctx=ctx) for k, o in self.optimizers.items()}
        self.step = 0
        self.history: list[dict] = []
        self.window: dict[str, list[float]] = {}  # losses since the last logged step (part of the snapshot)
        self.elapsed_before = 0.0
        if state is not None:
            self._restore(state)
        self.amp_dtype = train_precision(dev, train_config, family)
        self.images, self.labels = dataset.tensors("train", device=dev)
        self.log_every = log_every
        self.preview_every = preview_every or max(50, (steps or 1000) // 10)
        self.checkpoint_every = checkpoint_every or max(100, (steps or 1000) // 10)
        self.checkpoint_seconds = checkpoint_seconds
        self.run_config = ck.base_config(
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
            train_images=len(self.labels),
            train_precision="bfloat16" if self.amp_dtype is not None else "float32",
        )
        self.t0 = time.perf_counter()
        self.last_ckpt_time = self.t0
        self.last_good_step = self.step if state is not None else None  # named by the divergence error

    def _restore(self, state: dict) -> None:
        """Resume: weights, optimiser moments, RNG, step and loss history from a snapshot."""
        try:
            self.model.load_state_dict(state["model"])
            for name, opt in self.optimizers.items():
                opt.load_state_dict(state["optimizers"][name])
            torch.set_rng_state(state["rng_cpu"])
            if self.dev.type == "cuda" and state.get("rng_cuda") is not None:
                torch.cuda.set_rng_state(state["rng_cuda"])
            self.step = int(state["step"])
            self.history = list(state.get("history", []))
            self.window = {str(k): [float(x) for x in v] for k, v in dict(state.get("window", {})).items()}
            self.elapsed_before = float(state.get("elapsed_s", 0.0))
            if self.step < 0:
                raise ValueError(f"negative step {self.step}")
        except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as exc:
            msg = str(exc).strip().splitlines()
            raise ck.CheckpointError(f"{self.out / ck.STATE}: does not match this model ({msg[0][:100] if msg else type(exc).__name__})") from None

    def elapsed(self) -> float:
        """Training seconds, counting the time before a resume."""
        return self.elapsed_before + time.perf_counter() - self.t0

    def fraction(self) -> float:
        fs = self.step / self.steps if self.steps else 0.0
        fm = self.elapsed() / (self.minutes * 60) if self.minutes else 0.0
        return min(1.0, max(fs, fm))

    def emit(self, kind: str, logs: dict | None = None, **kw: Any) -> None:
        if self.callback is None or not self.ctx.is_main:
            return
        f = self.fraction()
        el = self.elapsed()
        eta = (el / f - el) if f > 0 else None
        self.callback(TrainEvent(kind=kind, step=self.step, total_steps=self.steps, elapsed_s=el, fraction=f, logs=logs or {}, eta_s=eta, **kw))

    def start(self) -> None:
        """The start event: what trains on what, where, and at which precision."""
        ctx, dev = self.ctx, self.dev
        where = f" x {ctx.world_size} processes ({ctx.backend})" if ctx.distributed else ""
        precision = ", bfloat16 autocast" if self.amp_dtype is not None else ""
        if self.train_config.cpu_bf16 is True and dev.type == "cpu" and self.amp_dtype is None:
            precision = " (cpu_bf16 ignored: this CPU has no native bfloat16, float32 is faster here)"
        n = len(self.labels)
        self.emit("start", message=f"training {self.family} on {self.dataset.name} ({n} images) on {device_name(dev)}{where}{precision}")

    def should_stop(self, cancel: threading.Event | None) -> bool:
        """True when the budget is spent. A cancel saves a checkpoint and raises Cancelled."""
        if self.steps is not None and self.step >= self.steps:
            return True
        time_up = self.minutes is not None and self.elapsed() >= self.minutes * 60
        cancelled = cancel is not None and cancel.is_set()
        if self.ctx.distributed and all_agree(time_up or cancelled, self.ctx, self.dev):
            time_up = True  # processes stop together (clocks differ by a few ms)
        if cancelled:
            self.checkpoint()
            raise Cancelled(f"training cancelled at step {self.step}; resume to continue from {self.out}")
        return time_up

    def optimisation_step(self) -> dict[str, float]:
        """One step on the effective batch: this process's share of it, in ``grad_accum`` micro-batches,
        gradients averaged over processes by the synced optimisers; the losses averaged the same way."""
        ctx, model = self.ctx, self.model
        if ctx.distributed:
            # Each process draws its own noise; reseeding from (seed, step, rank) keeps
            # resume exact without saving one RNG state per process.
            torch.manual_seed((self.seed * 1_000_003 + self.step) * 1_009 + ctx.rank)
        indices = _batch_indices(self.step, len(self.labels), self.train_config.batch_size, self.seed)
        micro_logs = []
        for i, part in enumerate(shard(indices, ctx, self.train_config.grad_accum)):
            for o in self.synced.values():
                o.micro = i
            part = part.to(self.dev)
            micro_logs.append(model.train_step(self.images[part], self.labels[part], self.synced, step=self.step, amp_dtype=self.amp_dtype))
        logs, _ = reduce_logs(micro_logs, False, ctx, self.dev)
        broadcast_buffers(model, ctx)
        return logs

    def check_finite(self, logs: dict[str, float]) -> None:
        """Divergence: stop on the first non-finite loss, before the EMA or a checkpoint takes it in."""
        bad = [k for k, v in logs.items() if not math.isfinite(v)]
        if bad:
            kept = self.last_good_step
            where = f"the last good checkpoint (step {kept}) is kept in {self.out}" if kept is not None else "no checkpoint was written"
            raise TrainingError(f"training diverged: {bad[0]} became {logs[bad[0]]} at step {self.step + 1}; {where}; try a lower learning rate")

    def update_ema(self) -> None:
        # EMA warm-up (decay grows with the step count) so short runs are not dominated by init.
        self.model.update_ema(min(self.train_config.ema_decay, (1 + self.step) / (10 + self.step)))

    def _window_row(self) -> dict:
        return {"step": self.step, "time_s": round(self.elapsed(), 3), **{k: float(np.mean(v)) for k, v in self.window.items()}}

    def record(self, logs: dict[str, float]) -> None:
        """Add a step's losses to the window; every ``log_every`` steps (and at the last) their means become a history row."""
        for k, v in logs.items():
            self.window.setdefault(k, []).append(v)
        if self.step % self.log_every == 0 or (self.steps is not None and self.step == self.steps):
            row = self._window_row()
            self.history.append(row)
            self.window = {}
            self.emit("step", logs=row)

    def save_preview(self) -> None:
        """Process 0 samples a fixed-seed grid (a few images per class) into preview.png and the app."""
        if not self.ctx.is_main:
            return
        model = self.model
        model.eval()
        k = self.dataset.num_classes
        per = max(1, min(8, 64 // k)) if k <= 64 else 1
        labs = torch.arange(min(k, 64)).repeat_interleave(per)
        imgs = model.sample(len(labs), labs, seed=12345, **model.split_controls(steps=20)[0])  # 20 steps where the family has steps
        model.train()
        grid = image_grid(imgs, nrow=per if k > 1 else 8, transpose=True)
        save_png(self.out / ck.PREVIEW, grid)
        self.emit("preview", preview=grid)

    def checkpoint_due(self) -> bool:
        return self.step % self.checkpoint_every == 0 or time.perf_counter() - self.last_ckpt_time > self.checkpoint_seconds

    def checkpoint(self, finished: bool = False) -> None:
        """Process 0 writes the snapshot (train_state.pt first, so a kill leaves a resumable folder),
        then the sampling weights, config, history and the family's extra files."""
        if self.ctx.is_main:  # one writer
            snap = {
                "model": self.model.state_dict(),
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state() if self.dev.type == "cuda" else None,
                "step": self.step,
                "history": self.history,
                "window": self.window,
                "elapsed_s": self.elapsed(),
            }
            ck.save_train_state(self.out, snap)
            ck.save_weights(self.out, self.model, {"step": str(self.step)})
            ck.write_config(self.out, {**self.run_config, "step": self.step, "train_time_s": round(self.elapsed(), 2), "finished": finished})
            atomic_write_json(self.out / ck.HISTORY, self.history)
            self.model.write_artifacts(self.out, self.dataset, self.step)
        self.last_ckpt_time = time.perf_counter()
        self.last_good_step = self.step
        self.emit("checkpoint", message=f"saved step {self.step}")

    def finish(self) -> None:
        """The last partial window, a check that the processes hold the same weights, then the final preview and checkpoint."""
        if self.window:
            self.history.append(self._window_row())
        check_in_sync(self.model, self.ctx, self.dev)
        self.save_preview()
        self.checkpoint(finished=True)
        self.emit("done", message=f"finished {self.step} steps in {self.elapsed():.0f} s; run saved to {self.out}")

    def loop(self, cancel: threading.Event | None) -> None:
        """Optimisation steps until the budget ends or ``cancel`` is set, with the EMA, logs, previews
        and periodic checkpoints; device and disk failures become one-line TrainingErrors."""
        try:
            while not self.should_stop(cancel):
                logs = self.optimisation_step()
                self.check_finite(logs)
                self.update_ema()
                self.step += 1
                self.record(logs)
                if self.step % self.preview_every == 0:
                    self.save_preview()
                if self.checkpoint_due():
                    self.checkpoint()
        except GDAError:
            raise
        except torch.cuda.OutOfMemoryError:
            raise TrainingError(f"out of GPU memory at batch size {self.train_config.batch_size}; lower the batch size or use --device cpu") from None
        except OSError as exc:
            raise TrainingError(f"could not write to {self.out}: {exc.strerror or exc}") from None


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
    prepare: Callable[[GenerativeModel, bool], None] | None = None,
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
    ``prepare(model, fresh)`` sees the model once built, before a resume restores it (fresh False):
    a distillation attaches its teacher there (``gda_core.distill``).
    """
    _check_budget(steps, minutes)
    out = Path(out).expanduser()
    train_config = train_config or TrainConfig()
    train_config.validate()
    dev = resolve_device(device)
    if not get_model_class(family).trainable_from_scratch and prepare is None:  # also fails fast on an unknown family
        raise ConfigError(f"a {family} model is made from a trained checkpoint, not from data alone; use `python -m gda_core distill`")
    with contextlib.ExitStack() as stack:
        ctx, dev = stack.enter_context(process_group(dev))
        _check_batch(train_config, ctx.world_size)  # before the run folder is touched
        if ctx.is_main:
            stack.enter_context(run_lock(out))
            _remove_stale_temp_files(out)
        state = None
        if resume:
            state, model_config, seed, train_config = _saved_run(out, family, seed, train_config)
        elif (out / ck.STATE).exists() or (out / ck.WEIGHTS).exists():
            raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        _check_batch(train_config, ctx.world_size)  # again: a resumed run trains with its saved settings
        model = _build_model(family, dataset, model_config, seed, dev)
        if prepare is not None:
            prepare(model, state is None)
        broadcast_module(model, ctx)
        model.train()
        run = _Run(out, family, dataset, model, ctx, dev, train_config=train_config, seed=seed, steps=steps, minutes=minutes, state=state,
                   callback=callback, preview_every=preview_every, checkpoint_every=checkpoint_every,
                   checkpoint_seconds=checkpoint_seconds, log_every=log_every)  # fmt: skip
        run.start()
        barrier(ctx)  # every process has checked and loaded the folder before process 0 writes it
        if state is None:
            run.checkpoint()  # step 0: the run folder is valid from the first second
        run.loop(cancel)
        run.finish()
        barrier(ctx)
    return out


def default_model_config(family: str) -> dict:
    return get_model_class(family).Config().to_dict()
