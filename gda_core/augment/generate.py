"""Synthetic training sets: how many images per class, and sampling them from a checkpoint.

Two ways to decide the per-class counts for a ``ratio`` (the synthetic set has
``round(ratio x N_real)`` images in total, N_real = size of the real training split, so "2x"
means the same number of images in both modes):

- ``balanced``: the synthetic set has the real split's class balance. Class c gets
  ``ratio x n_c`` images (largest-remainder rounding so the total is exact).
- ``rebalance``: the same total budget is spent by *water-filling*: each synthetic image goes to
  the class that has the fewest images so far (real + synthetic). Minority classes are first filled
  up towards the majority count; once every class has as many images as the majority class, the
  rest is shared equally. With a small ratio the minority classes may not reach the majority
  count (the budget runs out first); ties go to the lower class index.

Image i of the set is sampled with seed ``seed + i`` (the models' per-image determinism), images
are grouped by class in label order, so the same (checkpoint, counts, seed, settings) always gives
the same images.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import Cancelled, ConfigError

MODES = ("balanced", "rebalance")
MAX_SYNTHETIC = 100_000
CHUNK = 256  # images sampled between two cancellation checks


@dataclass
class SyntheticSet:
    """Synthetic images (uint8 (N, H, W, C)) with their intended labels, seeds and provenance.

    ``settings``: how they were sampled (ratio, mode, seed, temperature, ...).
    ``checkpoint``: which checkpoint (run folder, family, weights sha256, its training data).
    ``selection``: one record per selection filter applied so far (name, parameters, counts).
    """

    images: np.ndarray
    labels: np.ndarray
    seeds: np.ndarray
    class_names: list[str]
    settings: dict = field(default_factory=dict)
    checkpoint: dict = field(default_factory=dict)
    selection: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.seeds = np.asarray(self.seeds, dtype=np.int64).reshape(-1)
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ConfigError(f"synthetic images must be uint8 (N, H, W, C), got {self.images.dtype} {self.images.shape}")
        if not (len(self.images) == len(self.labels) == len(self.seeds)):
            raise ConfigError(f"got {len(self.images)} images, {len(self.labels)} labels and {len(self.seeds)} seeds")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> list[int]:
        return np.bincount(self.labels, minlength=self.num_classes).astype(int).tolist()

    def subset(self, index) -> SyntheticSet:
        """The images at ``index`` (indices or a boolean mask), same provenance."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return SyntheticSet(
            self.images[index], self.labels[index], self.seeds[index], list(self.class_names),
            dict(self.settings), dict(self.checkpoint), [dict(r) for r in self.selection], list(self.notes),
        )  # fmt: skip

    def per_class_prefix(self, counts: list[int]) -> SyntheticSet:
        """The first ``counts[c]`` images of each class c (in set order)."""
        keep = []
        for c, n in enumerate(counts):
            idx = np.flatnonzero(self.labels == c)
            if n > len(idx):
                raise ConfigError(f"class {self.class_names[c]} has {len(idx)} synthetic images, {n} requested")
            keep.append(idx[:n])
        return self.subset(np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64))

    def provenance(self) -> dict:
        """What a reader of an exported file needs to know about where these images came from."""
        from .. import __version__

        return {
            "format": "gda-augment/1",
            "gda_core_version": __version__,
            "checkpoint": dict(self.checkpoint),
            "sampling": dict(self.settings),
            "seeds": _ranges(self.seeds),
            "selection": [dict(r) for r in self.selection],
            "class_names": list(self.class_names),
            "counts_per_class": dict(zip(self.class_names, self.class_counts(), strict=True)),
            "total": len(self),
            "notes": list(self.notes),
        }


def _ranges(seeds: np.ndarray) -> list[list[int]]:
    """Seeds as inclusive [first, last] runs of consecutive integers (compact, exact)."""
    out: list[list[int]] = []
    for s in np.asarray(seeds, dtype=np.int64).tolist():
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


def _largest_remainder(quotas: np.ndarray, total: int) -> np.ndarray:
    """Integers summing to ``total``, each floor or ceil of its quota (ties: lower index first)."""
    base = np.floor(quotas).astype(np.int64)
    left = int(total - base.sum())
    if left > 0:
        frac = quotas - base
        order = np.lexsort((np.arange(len(quotas)), -frac))
        base[order[:left]] += 1
    return base


def target_counts(real_labels, num_classes: int, ratio: float, mode: str = "balanced") -> list[int]:
    """Synthetic images per class for ``ratio`` x the real split's size (see the module docstring)."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    try:
        ratio = float(ratio)
    except (TypeError, ValueError):
        raise ConfigError(f"ratio must be a number, got {ratio!r}") from None
    if not np.isfinite(ratio) or ratio < 0:
        raise ConfigError(f"ratio must be a finite number >= 0, got {ratio}")
    real_labels = np.asarray(real_labels, dtype=np.int64).reshape(-1)
    if len(real_labels) and (real_labels.min() < 0 or real_labels.max() >= num_classes):
        raise ConfigError(f"real labels must be in 0..{num_classes - 1} (the checkpoint's classes)")
    real = np.bincount(real_labels, minlength=num_classes).astype(np.int64)
    total = int(round(ratio * len(real_labels)))
    if total > MAX_SYNTHETIC:
        raise ConfigError(f"{ratio}x of {len(real_labels)} real images is {total} synthetic images; the limit is {MAX_SYNTHETIC}")
    if total == 0:
        return [0] * num_classes
    if mode == "balanced":
        return _largest_remainder(ratio * real.astype(np.float64), total).tolist()
    # rebalance: water-filling. Highest integer level L with sum(max(0, L - real)) <= total.
    lo, hi = int(real.min()), int(real.max()) + total + 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if int(np.maximum(0, mid - real).sum()) <= total:
            lo = mid
        else:
            hi = mid
    alloc = np.maximum(0, lo - real)
    left = total - int(alloc.sum())
    at_level = np.flatnonzero(real + alloc == lo)  # every class at the water level, by index
    alloc[at_level[:left]] += 1
    return alloc.astype(int).tolist()


def checkpoint_info(run) -> dict:
    """Provenance of a loaded Run: where, which family, weights hash, the data it was trained on."""
    spec = run.data_spec
    return {
        "run_dir": str(Path(run.run_dir).resolve()),
        "name": run.name,
        "family": run.family,
        "weights_sha256": run.weights_hash,
        "step": run.config.get("step"),
        "trained_on": spec.source,
        "trained_per_class": spec.per_class,
        "train_images": run.config.get("train_images"),
        "data_spec": spec.to_dict(),
    }


def generate_synthetic(
    run,
    ratio: float,
    *,
    real_labels,
    mode: str = "balanced",
    seed: int = 0,
    temperature: float = 1.0,
    guidance: float | None = None,
    steps: int | None = None,
    sampler: str | None = None,
    batch_size: int = 64,
    counts: list[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> SyntheticSet:
    """Sample a synthetic training set of ``ratio`` x the real split's size from a loaded Run.

    ``real_labels``: labels of the real training split (fixes the size and class balance).
    ``mode``: "balanced" or "rebalance" (module docstring). ``counts`` overrides the per-class
    counts directly. ``progress(done, total)`` after every batch; ``cancel`` is checked between
    chunks of images and raises :class:`Cancelled`.
    """
    from ..sampling import generate

    model = run.model
    k = int(model.config.num_classes)
    names = run.class_names
    if counts is None:
        counts = target_counts(real_labels, k, ratio, mode)
    elif len(counts) != k or any(int(c) < 0 for c in counts):
        raise ConfigError(f"counts must be {k} non-negative integers")
    counts = [int(c) for c in counts]
    n = sum(counts)
    if n > MAX_SYNTHETIC:
        raise ConfigError(f"{n} synthetic images requested; the limit is {MAX_SYNTHETIC}")
    labels = np.repeat(np.arange(k), counts).astype(np.int64)
    seed = int(seed)
    settings = {
        "family": model.family, "ratio": float(ratio), "mode": mode, "seed": seed, "temperature": float(temperature),
        "guidance": guidance, "steps": steps, "sampler": sampler, "n": n, "counts_per_class": counts,
        "real_counts_per_class": np.bincount(np.asarray(real_labels, dtype=np.int64).reshape(-1), minlength=k).astype(int).tolist(),
    }  # fmt: skip
    c, s = model.config.channels, model.config.image_size
    parts: list[np.ndarray] = []
    notes: list[str] = []
    for start in range(0, n, CHUNK):
        if cancel is not None and cancel.is_set():
            raise Cancelled("generation cancelled")
        stop = min(n, start + CHUNK)

        def cb(done: int, _total: int, start=start) -> None:
            if progress is not None:
                progress(start + done, n)

        res = generate(run, stop - start, labels[start:stop].tolist(), temperature=temperature, guidance=guidance, steps=steps,
                       sampler=sampler, seed=seed + start, batch_size=batch_size, progress=cb)  # fmt: skip
        parts.append(res.images)
        notes = res.notes
    images = np.concatenate(parts) if parts else np.zeros((0, s, s, c), dtype=np.uint8)
    return SyntheticSet(images, labels, np.arange(seed, seed + n), list(names), settings, checkpoint_info(run), [], list(notes))
