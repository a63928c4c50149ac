"""Dataset registry: named datasets plug in with ``@register_dataset``; paths are dispatched by type."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, DataError
from .base import Dataset, DataSpec, validate_options


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    loader: Callable[[DataSpec], Dataset]
    offline: bool = True  # True when it needs no file from the user or the network
    plain_name: str = ""  # what a clinician or agronomist calls it ("chest X-rays"); the name when empty


_REGISTRY: dict[str, DatasetInfo] = {}


def register_dataset(name: str, *, description: str, offline: bool = True, plain_name: str = ""):
    """Decorator registering ``loader(spec) -> Dataset`` under ``name`` (duplicates refused)."""

    def deco(fn: Callable[[DataSpec], Dataset]):
        key = name.lower()
        if key in _REGISTRY:
            raise ValueError(f"dataset '{name}' is already registered")
        _REGISTRY[key] = DatasetInfo(key, description, fn, offline, plain_name)
        return fn

    return deco


def list_datasets() -> list[DatasetInfo]:
    return list(_REGISTRY.values())


def get_dataset_info(name: str) -> DatasetInfo:
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown dataset '{name}'; choose one of {', '.join(_REGISTRY)} or give a path to an .npz, .zip or folder") from None


def dataset_title(source: str) -> str:
    """A dataset as the pages name it: "chest X-rays (pneumoniamnist)" for a registered set with a
    plain name, the source itself otherwise (a file's name, an unknown set)."""
    info = _REGISTRY.get(str(source).lower())
    return f"{info.plain_name} ({info.name})" if info is not None and info.plain_name else str(source)


def default_data_dir() -> Path:
    """Where named datasets are looked for: $GDA_DATA_DIR, else the user cache dir."""
    env = os.environ.get("GDA_DATA_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("gda-studio")) / "data"


def load_dataset(
    source: str | os.PathLike,
    *,
    image_size: int | None = None,
    channels: str = "keep",
    per_class: int | None = None,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    subset_seed: int | None = None,
) -> Dataset:
    """Load a dataset by registered name or by path (.npz in MedMNIST layout, .zip, or folder).

    Args:
        source: a registered name (``digits``, ``pneumoniamnist``, ...) or a path.
        image_size: resize to this square size (multiple of 4, 8..256); None keeps the native size.
        channels: ``keep``, ``grey`` or ``rgb``.
        per_class: keep at most this many training images per class (seeded stratified subset).
        seed: seed of the subset and of any split made here.
        data_dir: folder for named datasets' files (default $GDA_DATA_DIR or the user cache).
        subset_seed: seed of the per-class subset when it must differ from ``seed`` (None: ``seed``).
    """
    validate_options(image_size, channels, per_class)
    spec = DataSpec(
        source=str(source),
        image_size=image_size,
        channels=channels,
        per_class=per_class,
        seed=int(seed),
        data_dir=str(data_dir) if data_dir is not None else None,
        subset_seed=None if subset_seed is None else int(subset_seed),
    )
    key = str(source).lower()
    if key in _REGISTRY:
        return _REGISTRY[key].loader(spec)
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"no dataset named '{source}' and no such file or folder; known names: {', '.join(_REGISTRY)}")
    from . import folder, npz  # local import: keeps the registry import light

    if path.is_dir():
        return folder.load_folder(path, spec)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return npz.load_npz(path, spec)
    if suffix == ".zip":
        return folder.load_zip(path, spec)
    raise DataError(f"{path}: unsupported dataset file type '{suffix or path.name}'; give an .npz, a .zip or a folder of class sub-folders")


def load_spec(spec: DataSpec, **overrides) -> Dataset:
    """Load the dataset a ``DataSpec`` (e.g. a run's recorded one) describes; ``overrides`` replace
    fields (``per_class=None`` for the full training split)."""
    d = {**spec.to_dict(), **overrides}
    return load_dataset(d.pop("source"), **d)
