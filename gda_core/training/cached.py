"""Runs trained on demand and kept: the generators of a study, the replicas of a checkpoint.

``ensure_trained`` trains ``family`` into ``out`` unless a finished run is already there; a run
killed part-way resumes from its last checkpoint (the trainer's resume is bit-identical), and a
folder killed before its first checkpoint is started again.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from .. import checkpoints as ck
from .trainer import TrainEvent, train


def is_finished(out: str | Path) -> bool:
    """Whether ``out`` holds a run that trained to the end of its budget."""
    try:
        return bool(ck.read_config(out).get("finished"))
    except ck.CheckpointError:
        return False


def ensure_trained(
    out: str | Path,
    family: str,
    dataset,
    *,
    steps: int | None = None,
    minutes: float | None = None,
    model_config: dict | None = None,
    train_config=None,
    seed: int = 0,
    device: str = "auto",
    callback: Callable[[TrainEvent], None] | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """The finished run folder ``out``: reused, resumed or trained from scratch."""
    out = Path(out)
    if is_finished(out):
        return out
    resume = (out / ck.STATE).is_file()
    if out.exists() and not resume:
        shutil.rmtree(out)  # killed before its first checkpoint: nothing to keep
    out.parent.mkdir(parents=True, exist_ok=True)
    return train(family, dataset, out=out, steps=steps, minutes=minutes, model_config=model_config or None, train_config=train_config,
                 seed=seed, device=device, resume=resume, callback=callback, cancel=cancel)  # fmt: skip
