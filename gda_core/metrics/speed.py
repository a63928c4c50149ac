"""Sampling speed: images per second at a fixed batch, every stage from noise to pixels included."""

from __future__ import annotations

import math
import os
import statistics
import time

import torch

from ..errors import ConfigError
from ..runtime import device_name as _device_name
from ..runtime import resolve_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # not on every platform
        return None


def speed_score(images_per_s: float) -> float:
    """Radar score clip(log10(images_per_s) / 5, 0, 1): 1 img/s -> 0, 100,000 img/s -> 1."""
    if not images_per_s or images_per_s <= 0 or not math.isfinite(images_per_s):
        return 0.0
    return float(min(1.0, max(0.0, math.log10(images_per_s) / 5.0)))


def sampling_speed(
    model,
    *,
    batch_size: int = 64,
    steps: int | None = None,
    guidance: float | None = None,
    device: torch.device | str | None = None,
    repeats: int = 3,
    seed: int = 0,
    sampler: str | None = None,
    temperature: float = 1.0,
) -> dict:
    """Time ``model.sample`` on one batch: one warm-up batch, then the median of ``repeats`` timed
    batches with device synchronisation. Falls back to half the batch on out-of-memory.

    Returns {'images_per_s', 'nfe_per_image', 'device_name', 'batch_size', 'seconds_per_batch',
    'seconds_all'} (every timed batch, for an interval).
    """
    if batch_size < 1 or repeats < 1:
        raise ConfigError("batch_size and repeats must be >= 1")
    if device is not None:
        model = model.to(resolve_device(device))
    dev = model.device
    bs = batch_size
    while True:
        try:
            # One call shape for every family: controls it does not use are left out, not an error.
            kw, _ = model.split_controls(steps=steps, guidance=guidance, sampler=sampler, temperature=temperature)
            kw["batch_size"] = bs
            model.sample(bs, None, seed=seed, **kw)  # warm-up (allocations, cudnn autotune)
            _sync(dev)
            times = []
            for r in range(repeats):
                t0 = time.perf_counter()
                model.sample(bs, None, seed=seed + (r + 1) * bs, **kw)
                _sync(dev)
                times.append(time.perf_counter() - t0)
            break
        except torch.OutOfMemoryError:
            if bs == 1:
                raise
            bs = max(1, bs // 2)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    med = statistics.median(times)
    return {
        "images_per_s": float(bs / med) if med > 0 else float("inf"),
        "nfe_per_image": float(model.nfe_per_image(steps, guidance, sampler)),
        "device_name": _device_name(dev),
        "batch_size": int(bs),
        "seconds_per_batch": float(med),
        "seconds_all": [float(t) for t in times],
        # Other work on the machine slows every timing alike and is not in the interval: recorded
        # so a reader can tell a busy machine's figure from a quiet one's.
        "load_avg_1min": _load(),
    }
