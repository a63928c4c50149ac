"""Run directories: weights (safetensors) + config.json, loaded with validation.

A run directory holds:
- ``model.safetensors``: every tensor of the model (live, EMA and critic networks);
- ``config.json``: format tag, family, model config, training config, data spec, class names,
  seed, step, timings, gda_core version;
- ``train_state.pt``: the complete resumable snapshot (weights, optimiser moments, RNG state,
  step, loss history) written atomically as ONE file, read back with ``weights_only=True``;
- ``history.json`` (losses per logged step), ``preview.png`` (the latest sample grid);
- ``eval/`` cached evaluation reports; ``MODEL_CARD.md`` for shipped checkpoints.
No pickle is ever read: ``torch.load`` is only used on our own training state with weights_only.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from . import __version__
from .data.base import DataSpec
from .errors import CheckpointError, GDAError
from .models import GenerativeModel, get_model_class
from .runtime import atomic_path, atomic_write_json, resolve_device

FORMAT = "gda-run/1"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
STATE = "train_state.pt"
HISTORY = "history.json"
PREVIEW = "preview.png"
MAX_CONFIG_BYTES = 1_000_000
MAX_HISTORY_BYTES = 64_000_000
# No model_config integer of any family comes near this; a tampered one would only exhaust memory.
MAX_CONFIG_INT = 1_000_000
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "checkpoints"


@dataclass
class Run:
    """A loaded checkpoint."""

    model: GenerativeModel
    run_dir: Path
    config: dict
    weights_hash: str
    history: list[dict] = field(default_factory=list)

    @property
    def family(self) -> str:
        return self.model.family

    @property
    def class_names(self) -> list[str]:
        return list(self.config.get("class_names") or [str(i) for i in range(self.model.config.num_classes)])

    @property
    def data_spec(self) -> DataSpec:
        d = dict(self.config.get("data") or {})
        allowed = {"source", "image_size", "channels", "per_class", "seed", "data_dir", "subset_seed"}
        return DataSpec(**{k: v for k, v in d.items() if k in allowed})

    @property
    def name(self) -> str:
        return self.run_dir.name


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:120] if lines else type(exc).__name__


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_weights(run_dir: Path, model: GenerativeModel, meta: dict[str, str] | None = None) -> None:
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    data = safetensors_bytes(state, metadata={"format": FORMAT, "family": model.family, **(meta or {})})
    with atomic_path(run_dir / WEIGHTS) as tmp:
        # Written by Python (not safetensors' own writer) so a full disk is an OSError with its errno.
        tmp.write_bytes(data)


def write_config(run_dir: Path, config: dict) -> None:
    atomic_write_json(run_dir / CONFIG, config)


def read_config(run_dir: str | os.PathLike) -> dict:
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise CheckpointError(f"checkpoint folder {run_dir} does not exist")
    if not run_dir.is_dir():
        hint = " (pickled .pt/.pkl weights are refused; GDA Studio reads safetensors + config.json run folders)" if run_dir.suffix in (".pt", ".pth", ".pkl", ".ckpt", ".bin") else ""
        raise CheckpointError(f"{run_dir} is not a checkpoint folder{hint}")
    path = run_dir / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: no {CONFIG}; not a GDA Studio run folder")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{path}: config file is implausibly large; refused")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} config (format tag missing or different)")
    for key in ("family", "model_config"):
        if key not in cfg:
            raise CheckpointError(f"{path}: missing '{key}'")
    if not isinstance(cfg["model_config"], dict):
        raise CheckpointError(f"{path}: 'model_config' must be an object")
    if not isinstance(cfg["family"], str):
        raise CheckpointError(f"{path}: 'family' must be a string")
    for key, value in cfg["model_config"].items():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, float) and not math.isfinite(v):
                raise CheckpointError(f"{path}: model_config '{key}' is {v}; refused")
            if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_CONFIG_INT:
                raise CheckpointError(f"{path}: model_config '{key}' = {v} is implausibly large; refused")
    names = cfg.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise CheckpointError(f"{path}: 'class_names' must be a list of strings")
    if "step" in cfg and (not isinstance(cfg["step"], int) or isinstance(cfg["step"], bool) or cfg["step"] < 0):
        raise CheckpointError(f"{path}: 'step' must be a non-negative integer")
    return cfg


def build_from_config(cfg: dict, where: Path, *, meta: bool = False) -> GenerativeModel:
    """Build the model a config describes. ``meta=True`` allocates no memory (shapes only)."""
    try:
        cls = get_model_class(str(cfg["family"]))
        model_cfg = cls.Config.from_dict(cfg["model_config"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's "zero-element tensor" warning: we refuse those below
            if meta:
                with torch.device("meta"):
                    model = cls(model_cfg)
            else:
                model = cls(model_cfg)
    except GDAError as exc:
        raise CheckpointError(f"{where / CONFIG}: {exc}") from None
    except (RuntimeError, ValueError, TypeError, OverflowError, ZeroDivisionError) as exc:
        # e.g. a negative channel count: torch refuses to create the layer.
        raise CheckpointError(f"{where / CONFIG}: model_config cannot be built ({_first_line(exc)})") from None
    empty = [k for k, v in model.state_dict().items() if v.numel() == 0]
    if empty:
        raise CheckpointError(f"{where / CONFIG}: model_config gives empty layers (e.g. '{empty[0]}'); refused")
    return model


def load_run(run_dir: str | os.PathLike, device: str | torch.device = "auto") -> Run:
    """Load a run folder for sampling: validate config, read safetensors, check every shape."""
    run_dir = Path(run_dir).expanduser()
    cfg = read_config(run_dir)
    # Shapes first, on the meta device: a tampered config (huge sizes) allocates nothing before the
    # weights file's header has been checked against it.
    expected = build_from_config(cfg, run_dir, meta=True).state_dict()
    wpath = run_dir / WEIGHTS
    if not wpath.is_file():
        pickled = sorted(p.name for p in run_dir.glob("*") if p.suffix in (".pt", ".pth", ".pkl", ".ckpt", ".bin") and p.name != STATE)
        extra = f" (found {', '.join(pickled)}: pickled weights are refused, only safetensors are read)" if pickled else ""
        raise CheckpointError(f"{run_dir}: no {WEIGHTS}{extra}")
    try:
        with safe_open(str(wpath), framework="pt") as fh:
            shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{wpath}: unreadable safetensors file ({_first_line(exc)})") from None
    missing = [k for k in expected if k not in shapes]
    unexpected = [k for k in shapes if k not in expected]
    if missing or unexpected:
        raise CheckpointError(
            f"{wpath}: weights do not match config.json ({len(missing)} missing e.g. {missing[:2]}, {len(unexpected)} unexpected e.g. {unexpected[:2]})"
        )
    for k, v in expected.items():
        if shapes[k] != tuple(v.shape):
            raise CheckpointError(f"{wpath}: tensor '{k}' has shape {shapes[k]} but config.json implies {tuple(v.shape)}")
    model = build_from_config(cfg, run_dir)
    expected = model.state_dict()
    try:
        state = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{wpath}: unreadable safetensors file ({_first_line(exc)})") from None
    for k, v in expected.items():
        if k not in state or tuple(state[k].shape) != tuple(v.shape):  # the file changed since its header was read
            raise CheckpointError(f"{wpath}: tensor '{k}' is missing or has the wrong shape")
        if state[k].dtype != v.dtype:
            state[k] = state[k].to(v.dtype)
        if v.is_floating_point() and not torch.isfinite(state[k]).all():
            raise CheckpointError(f"{wpath}: tensor '{k}' holds NaN or inf values")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{wpath}: weights do not fit the model ({_first_line(exc)})") from None
    model.to(resolve_device(device)).eval()
    history = []
    hpath = run_dir / HISTORY
    if hpath.is_file() and hpath.stat().st_size <= MAX_HISTORY_BYTES:
        try:
            history = json.loads(hpath.read_text())
            if not isinstance(history, list):
                history = []
        except (ValueError, UnicodeDecodeError, RecursionError, OSError):
            history = []
    return Run(model=model, run_dir=run_dir, config=cfg, weights_hash=file_sha256(wpath), history=history)


# ---------------------------------------------------------------------------------------------
# Resumable training state: one file, atomically replaced.
# ---------------------------------------------------------------------------------------------


class _CheckedWriter:
    """File wrapper for torch.save that keeps the OSError (e.g. ENOSPC) torch would turn into a RuntimeError."""

    def __init__(self, fh):
        self.fh = fh
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            self.fh.write(data)
        except OSError as exc:
            self.error = exc
            raise
        return len(data)

    def flush(self) -> None:
        self.fh.flush()


def save_train_state(run_dir: Path, state: dict[str, Any]) -> None:
    with atomic_path(run_dir / STATE) as tmp:
        with open(tmp, "wb") as fh:
            writer = _CheckedWriter(fh)
            try:
                torch.save(state, writer)
            except RuntimeError:
                if writer.error is not None:
                    raise writer.error from None  # atomic_path turns it into a one-line error naming the file
                raise


def load_train_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / STATE
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: nothing to resume ({STATE} is missing)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": refused or not, one line only
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means a corrupt/foreign file
        raise CheckpointError(f"{path}: unreadable training state ({exc.__class__.__name__}); start a new run") from None


# ---------------------------------------------------------------------------------------------
# Listing runs for pickers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    path: Path
    family: str
    dataset: str
    step: int
    image_size: int
    channels: int
    num_classes: int
    shipped: bool
    finished: bool
    modified: float

    @property
    def label(self) -> str:
        from .data import dataset_title

        tag = "shipped" if self.shipped else ("finished" if self.finished else "in progress")
        return f"{self.path.name} · {self.family} · {dataset_title(self.dataset)} · {self.step} steps ({tag})"


def default_runs_dir() -> Path:
    env = os.environ.get("GDA_RUNS_DIR")
    return Path(env).expanduser() if env else Path.cwd() / "runs"


def list_runs(*roots: str | os.PathLike, include_shipped: bool = True) -> list[RunInfo]:
    """Run folders (with a readable config and weights) under the given roots, newest first."""
    dirs: list[Path] = [Path(r) for r in roots] or [default_runs_dir()]
    if include_shipped:
        dirs.append(SHIPPED_DIR)
    out: dict[Path, RunInfo] = {}
    for root in dirs:
        if not root.is_dir():
            continue
        for cfg_path in sorted(root.glob(f"*/{CONFIG}")):
            d = cfg_path.parent
            if not (d / WEIGHTS).is_file():
                continue
            try:
                cfg = read_config(d)
                mc = cfg["model_config"]
                out[d.resolve()] = RunInfo(
                    path=d,
                    family=str(cfg["family"]),
                    # A path source is shown by its last part only: labels reach every picker (and, for a
                    # published run, every user), and a workspace's path must not.
                    dataset=Path(str((cfg.get("data") or {}).get("source", "?")).replace("\\", "/")).name or "?",
                    step=int(cfg.get("step", 0)),
                    image_size=int(mc.get("image_size", 0)),
                    channels=int(mc.get("channels", 0)),
                    num_classes=int(mc.get("num_classes", 0)),
                    shipped=d.resolve().parent == SHIPPED_DIR.resolve(),
                    finished=bool(cfg.get("finished", False)),
                    modified=(d / WEIGHTS).stat().st_mtime,
                )
            except (GDAError, ValueError, TypeError, OSError):
                continue
    # Shipped ones by dataset and family (their file times only say when the clone was made), then the
    # user's own runs newest first.
    from .data import dataset_title
    from .models import BUILTIN_FAMILIES

    order = {f: i for i, f in enumerate(BUILTIN_FAMILIES)}

    def key(r: RunInfo):
        if r.shipped:
            return (0, dataset_title(r.dataset).lower(), order.get(r.family, len(order)), r.path.name)
        return (1, -r.modified)

    return sorted(out.values(), key=key)


def base_config(model: GenerativeModel, **extra: Any) -> dict:
    return {
        "format": FORMAT,
        "gda_core_version": __version__,
        "family": model.family,
        "model_config": model.config.to_dict(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }
