"""Sampling a checkpoint and writing the results (PNG grid, zip of PNGs, .npz with labels)."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

from .errors import ConfigError
from .runtime import atomic_write_bytes


def image_grid(images: torch.Tensor | np.ndarray, nrow: int = 8, *, pad: int = 1, transpose: bool = False) -> np.ndarray:
    """Tile images (N, C, H, W) float [0, 1] or (N, H, W, C) uint8 into one uint8 (H', W', C) grid
    with ``pad`` white pixels around and between the tiles.

    ``nrow`` images per row (fewer images: one narrower row). With ``transpose`` the grid is always
    ``nrow`` columns wide, the missing tiles left white, so ``nrow`` per-class samples form a row per
    class whatever the count.
    """
    if isinstance(images, torch.Tensor):
        t = images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
    else:
        t = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)).permute(0, 3, 1, 2)
    n, c, h, w = t.shape
    if n == 0:
        return np.zeros((h, w, c), dtype=np.uint8)
    cols = nrow if transpose else min(nrow, n)
    # make_grid narrows the grid to n columns when n < nrow and returns a lone image without its
    # border; white tiles completing the last row (and, for one tile, a row to drop) keep the layout.
    rows = -(-n // cols)
    extra = rows * cols - n + (cols if rows * cols == 1 else 0)
    t = torch.cat([t, t.new_full((extra, c, h, w), 255)])
    grid = make_grid(t, nrow=cols, padding=pad, pad_value=255)[:c, : rows * (h + pad) + pad]
    return grid.permute(1, 2, 0).contiguous().numpy()


def to_pil(arr: np.ndarray, upscale: int = 1) -> Image.Image:
    img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    if upscale > 1:
        img = img.resize((img.width * upscale, img.height * upscale), Image.NEAREST)
    return img


def png_bytes(arr: np.ndarray, upscale: int = 1, *, provenance: dict | None = None) -> bytes:
    """PNG of a uint8 image; ``provenance`` (``gda_core.provenance.make``) goes into an iTXt chunk."""
    buf = io.BytesIO()
    kw = {}
    if provenance:
        from .provenance import png_info

        kw["pnginfo"] = png_info(provenance)
    to_pil(arr, upscale).save(buf, format="PNG", **kw)
    return buf.getvalue()


def save_png(path: str | os.PathLike, arr: np.ndarray, upscale: int = 1, *, provenance: dict | None = None) -> None:
    atomic_write_bytes(path, png_bytes(arr, upscale, provenance=provenance))


@dataclass
class SampleResult:
    """Generated images (uint8 (N, H, W, C)), their labels, seeds and the settings used."""

    images: np.ndarray
    labels: np.ndarray
    seeds: np.ndarray
    settings: dict
    class_names: list[str]
    notes: list[str] = field(default_factory=list)
    # The checkpoint the images came from (``provenance.run_fields``), when ``generate`` got a Run.
    source: dict = field(default_factory=dict)

    def grid(self, nrow: int = 8) -> np.ndarray:
        return image_grid(self.images, nrow=nrow)

    def provenance(self) -> dict:
        """What made these images: checkpoint, weights hash, settings, seeds (image i: seed first + i)."""
        from . import __version__

        first, last = (int(self.seeds[0]), int(self.seeds[-1])) if len(self.seeds) else (None, None)
        return {"kind": "samples", **self.source, "family": self.settings.get("family"), "settings": dict(self.settings),
                "seeds": {"first": first, "last": last, "rule": "image i was drawn with seed first + i"}, "n": len(self.images),
                "class_names": list(self.class_names), "notes": list(self.notes), "gda_core_version": __version__}  # fmt: skip

    def grid_png(self, nrow: int = 8, upscale: int = 1) -> bytes:
        """The grid as PNG bytes with the provenance in an iTXt chunk."""
        return png_bytes(self.grid(nrow), upscale, provenance=self.provenance())

    def npz_bytes(self) -> bytes:
        from .provenance import npz_entry

        buf = io.BytesIO()
        np.savez_compressed(buf, images=self.images, labels=self.labels.astype(np.int64), seeds=self.seeds.astype(np.int64),
                            class_names=np.array(self.class_names, dtype=str), provenance=npz_entry(self.provenance()))  # fmt: skip
        return buf.getvalue()

    def zip_bytes(self) -> bytes:
        from .provenance import ZIP_MEMBER, dumps

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for i, (img, lab, s) in enumerate(zip(self.images, self.labels, self.seeds, strict=True)):
                name = _safe_name(self.class_names[int(lab)])
                zf.writestr(f"{name}/{i:05d}_seed{int(s)}.png", png_bytes(img))
            zf.writestr(ZIP_MEMBER, dumps(self.provenance()) + "\n")
        return buf.getvalue()

    def save(self, path: str | os.PathLike, nrow: int = 8) -> Path:
        """Write .png (grid), .npz (images uint8 + labels) or .zip (class folders of PNGs)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".png":
            atomic_write_bytes(path, self.grid_png(nrow))
        elif suffix == ".npz":
            atomic_write_bytes(path, self.npz_bytes())
        elif suffix == ".zip":
            atomic_write_bytes(path, self.zip_bytes())
        else:
            raise ConfigError(f"output must end in .png, .npz or .zip, got '{path.name}'")
        return path


def _safe_name(name: str) -> str:
    keep = "".join(ch if (ch.isalnum() or ch in "-_ .") else "_" for ch in name).strip(" .")
    return keep or "class"


def faster_precision(model) -> str | None:
    """The lower precision ``generate(fast=True)`` adds on this model's device beyond the default
    (``"bfloat16"`` on a CPU with native bf16 arithmetic), or None where the default already runs
    the fastest precision (CUDA) or where fast=True keeps float32 (other CPUs)."""
    from . import fastpath
    from .checkpoints import Run

    model = model.model if isinstance(model, Run) else model
    return "bfloat16" if model.device.type == "cpu" and fastpath.cpu_native_bf16() else None


def generate(
    model,
    n: int,
    labels: int | list[int] | None = None,
    *,
    temperature: float = 1.0,
    guidance: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    eta: float = 0.0,
    sampler: str | None = None,
    class_names: list[str] | None = None,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
    fast: bool | None = None,
) -> SampleResult:
    """Sample ``n`` images from a model (or a loaded Run) and say which controls were ignored.

    ``fast`` (see ``gda_core.fastpath``): None (default) = the fast path without compile start-up
    cost where it was measured to help (CPU: channels_last, float32, so images match the plain
    path within float tolerance, at most one uint8 level; CUDA: channels_last + bf16 autocast);
    True = the fastest this machine offers: also torch.compile where it is measured to help (CUDA;
    compiled once per model, then reused) and bf16 autocast on CPUs with native bf16 arithmetic
    (AVX512-BF16 / AMX; images then move by a few uint8 levels, bench/bench_quality.py measures
    the effect on quality); False = the plain path.
    """
    from . import fastpath
    from .checkpoints import Run

    source: dict = {}
    if isinstance(model, Run):
        from .provenance import run_fields

        class_names, source = class_names or model.class_names, run_fields(model)
        model = model.model
    if not isinstance(n, int) or n < 1 or n > 100_000:
        raise ConfigError(f"number of images must be in 1..100000, got {n}")
    # One set of controls for any family (the CLI, a study over several families): validated, and
    # those this family does not use are left out with a note instead of failing the call.
    kwargs, ignored = model.split_controls(temperature=temperature, guidance=guidance, steps=steps, eta=eta, sampler=sampler)
    notes = [f"{k} does not apply to {model.family} and was ignored" for k in ignored]
    labels_t = model.resolve_labels(n, labels)
    if fast is None:
        fast, options = fastpath.auto_enabled(model.device), {"compile": False}
    else:
        # compile="auto" is decided by timing one batch of this very call, eager against compiled.
        k = min(n, batch_size)
        options = {"dtype": "fastest", "probe": lambda m: m.sample(k, labels_t[:k], seed=seed, batch_size=batch_size, **kwargs)}
    try:
        # The model may be shared (the app's cache): the fast path samples a private copy of it.
        with fastpath.fast_sampling(model, enabled=bool(fast), **options) as plan:
            imgs = model.sample(n, labels_t, seed=seed, batch_size=batch_size, progress=progress, **kwargs)
            if plan is not None and fastpath.compile_failed(model):
                notes.append("torch.compile failed on this device; the images were made in eager mode")
    except (RuntimeError, TypeError, ValueError) as exc:
        if not fast:
            raise
        # A family whose code assumes NCHW weights (or a backend bug) must not cost the user the
        # images: back to the plain path, which raises again if the problem was not the fast path.
        fastpath.discard(model)
        notes.append(f"the fast path failed ({type(exc).__name__}); the images were made on the plain path")
        plan = None
        imgs = model.sample(n, labels_t, seed=seed, batch_size=batch_size, progress=progress, **kwargs)
    arr = imgs.float().mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    settings = {"family": model.family, "n": n, "temperature": temperature, "guidance": guidance, "steps": steps, "seed": seed, "eta": eta, "sampler": sampler,
                "fast": plan.to_json() if plan is not None else False}  # fmt: skip
    names = class_names or [str(i) for i in range(model.config.num_classes)]
    return SampleResult(arr, labels_t.cpu().numpy(), np.arange(seed, seed + n), settings, names, notes, source)
