"""Feature extractors for fidelity, diversity and FID, behind a registry.

No hub weights are downloaded at run time, so the default extractor, ``domain-cnn``, is the fixed
small CNN classifier (``classifier.py``) trained on the REAL training split of the dataset
(fixed seed and budget) and read at its penultimate layer (128 dims). Trained weights are cached as
safetensors + JSON under ``$GDA_CACHE_DIR/extractors`` (else the user cache dir), keyed by dataset
source, size, channels, seed and a hash of the training images, so a dataset's extractor is
trained once and every later evaluation uses the very same features.

Other extractors plug in with ``@register_extractor(name)`` on a factory
``factory(dataset, *, device, cache_dir, **options) -> FeatureExtractor``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, GDAError
from ..runtime import atomic_path, atomic_write_json, cache_root, resolve_device
from .classifier import (
    DEFAULT_BUDGET,
    ClassifierBudget,
    SmallCNN,
    build_classifier,
    train_classifier,
)
from .classifier import features as _cnn_features

EXTRACTOR_VERSION = 1


@dataclass
class FeatureExtractor:
    """A callable images -> features: float (N, C, H, W) in [0, 1] (or uint8) -> float32 (N, D) on CPU."""

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    dim: int
    info: dict = field(default_factory=dict)

    def __call__(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        return self.fn(images)


_EXTRACTORS: dict[str, Callable[..., FeatureExtractor]] = {}


def register_extractor(name: str):
    """Decorator registering ``factory(dataset, *, device, cache_dir, **options)`` under ``name``."""

    def deco(factory):
        key = name.lower()
        if key in _EXTRACTORS:
            raise ValueError(f"feature extractor '{name}' is already registered")
        _EXTRACTORS[key] = factory
        return factory

    return deco


def list_extractors() -> list[str]:
    return list(_EXTRACTORS)


def default_cache_dir() -> Path:
    """``extractors`` under the cache root ($GDA_CACHE_DIR, else the user cache dir)."""
    return cache_root() / "extractors"


def get_extractor(
    name: str,
    dataset,
    *,
    device: torch.device | str = "auto",
    cache_dir: str | os.PathLike | None = None,
    **options,
) -> FeatureExtractor:
    """Build (or load from cache) the extractor ``name`` for ``dataset`` (a gda_core.data.Dataset)."""
    key = str(name).lower()
    if key not in _EXTRACTORS:
        raise ConfigError(f"unknown feature extractor '{name}'; choose one of {', '.join(_EXTRACTORS)}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return _EXTRACTORS[key](dataset, device=resolve_device(device), cache_dir=cache, **options)


def data_hash(images: np.ndarray, labels: np.ndarray | None = None) -> str:
    """sha256 hex of an image array (and labels): identifies the exact training data."""
    h = hashlib.sha256()
    h.update(str(images.shape).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    if labels is not None:
        h.update(np.ascontiguousarray(np.asarray(labels, dtype=np.int64)).tobytes())
    return h.hexdigest()


@register_extractor("domain-cnn")
def domain_cnn(
    dataset,
    *,
    device: torch.device,
    cache_dir: Path,
    seed: int = 0,
    budget: ClassifierBudget = DEFAULT_BUDGET,
    progress: Callable[[int, int], None] | None = None,
    cancel=None,
) -> FeatureExtractor:
    """The fixed small CNN trained on ``dataset``'s real training split; penultimate features."""
    from safetensors.torch import load_file, save_file

    images, labels = dataset.split("train")
    spec = dataset.spec
    ident = {
        "extractor": "domain-cnn",
        "version": EXTRACTOR_VERSION,
        "source": str(spec.source),
        "image_size": int(dataset.image_size),
        "channels": int(dataset.channels),
        "num_classes": int(dataset.num_classes),
        "seed": int(seed),
        "budget": budget.to_dict(),
        "data_sha256": data_hash(images, labels),
    }
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]
    wpath, jpath = cache_dir / f"domain-cnn-{key}.safetensors", cache_dir / f"domain-cnn-{key}.json"
    model: SmallCNN | None = None
    if wpath.exists() and jpath.exists():
        try:
            meta = json.loads(jpath.read_text())
            if meta.get("ident") == ident:
                model = build_classifier(ident["channels"], ident["num_classes"], ident["image_size"], **meta.get("arch_kwargs", {}))
                model.load_state_dict(load_file(str(wpath)))
                model = model.to(device).eval()
        except (OSError, ValueError, KeyError, RuntimeError, TypeError):  # corrupt cache entry: retrain and overwrite
            model = None
    cached = model is not None
    if model is None:
        x, y = dataset.tensors("train")
        model = train_classifier(x, y, dataset.num_classes, seed=seed, budget=budget, device=device, progress=progress, cancel=cancel)
        try:
            state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            with atomic_path(wpath) as tmp:
                save_file(state, str(tmp))
            arch = model.arch()
            atomic_write_json(jpath, {"ident": ident, "arch_kwargs": {"widths": arch["widths"], "feature_dim": arch["feature_dim"]}})
        except (OSError, GDAError):  # a read-only cache must not stop an evaluation
            warnings.warn(f"could not write the feature-extractor cache in {cache_dir}", stacklevel=2)
    model.requires_grad_(False)
    info = {**ident, "cache_key": key, "loaded_from_cache": cached, "dim": model.feature_dim}
    info.pop("data_sha256")
    info["data_sha256"] = ident["data_sha256"][:16]
    return FeatureExtractor(name="domain-cnn", fn=lambda imgs: _cnn_features(model, imgs), dim=model.feature_dim, info=info)
