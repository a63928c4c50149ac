"""Devices, seeds, atomic writes and run-folder locks: the small pieces every module shares."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError, GDAError, TrainingError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return a usable torch device: ``auto`` picks cuda, then mps, then cpu."""
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{device}' requested but no CUDA GPU is available; use --device cpu")
        return torch.device(name)
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError("device 'mps' requested but Apple MPS is not available; use --device cpu")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"unknown device '{device}'; choose one of {', '.join(DEVICE_CHOICES)}")


def cache_root() -> Path:
    """Where GDA Studio caches what it can recompute (extractors, stage outputs, study generators):
    $GDA_CACHE_DIR, else platformdirs' user cache dir for 'gda-studio'."""
    env = os.environ.get("GDA_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("gda-studio"))


def device_name(device: torch.device | str) -> str:
    """Human-readable device name: the GPU model for CUDA, else 'CPU' / 'Apple MPS'."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return "CPU"


def generators_for(seeds: list[int] | np.ndarray, device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per image so that image i depends only on seed i, whatever the batch."""
    gens = []
    for s in seeds:
        g = torch.Generator(device=torch.device(device))
        g.manual_seed(int(s))
        gens.append(g)
    return gens


def randn_per_seed(
    shape: tuple[int, ...], generators: list[torch.Generator], device: torch.device | str, dtype=torch.float32
) -> torch.Tensor:
    """Stack ``randn(shape)`` drawn from each generator (first dim = len(generators))."""
    device = torch.device(device)
    out = [torch.randn(shape, generator=g, device=g.device, dtype=dtype) for g in generators]
    return torch.stack(out).to(device)


# ---------------------------------------------------------------------------------------------
# Atomic writes: temp file in the same folder, fsync, then os.replace. A reader never sees a
# half-written file, and a killed process leaves either the old file or the new one.
# ---------------------------------------------------------------------------------------------


def _read_umask() -> int:
    # Read once at import (os.umask is process-wide; toggling it later would race with threads).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _check_writable_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GDAError(f"cannot create output folder {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK):
        raise GDAError(f"output folder {path} is not writable")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success it is renamed over ``path``."""
    path = Path(path)
    _check_writable_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; give the final file the permissions a plain open() would (umask).
    os.chmod(tmp_path, 0o666 & ~_UMASK)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise GDAError(f"could not write {path}: {exc.strerror or exc}") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, *, what: str = "training") -> Iterator[None]:
    """Exclusive lock on a run folder so two jobs never write it at once."""
    from filelock import FileLock, Timeout

    run_dir = Path(run_dir)
    _check_writable_dir(run_dir)
    lock = FileLock(str(run_dir / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise TrainingError(f"run folder {run_dir} is in use by another job ({what}); wait or pick another --out") from None
    try:
        yield
    finally:
        lock.release()


def set_global_seed(seed: int) -> None:
    """Seed python/numpy/torch global RNGs (used only by training; sampling uses generators)."""
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
