"""The in-memory dataset every loader returns, and the transforms every dataset takes.

Images are kept as uint8 arrays of shape (N, H, W, C) (C = 1 or 3) with integer labels of
shape (N,). Datasets in the product's regime (hundreds to tens of thousands of small images)
fit in memory, and keeping them as one array lets training index them on the device without
per-image Python.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from ..errors import ConfigError, DataError

Channels = Literal["keep", "grey", "rgb"]
CHANNEL_CHOICES = ("keep", "grey", "rgb")
SPLITS = ("train", "val", "test")
MIN_IMAGE_SIZE = 8
MAX_IMAGE_SIZE = 256


@dataclass(frozen=True)
class DataSpec:
    """Everything needed to load the same dataset again (recorded in every run's config)."""

    source: str
    image_size: int | None = None
    channels: str = "keep"
    per_class: int | None = None
    seed: int = 0
    data_dir: str | None = None
    # Seed of the per-class subset when it differs from ``seed`` (which also seeds the split of a
    # dataset without one): a study draws several subsets of ONE split. None: ``seed``.
    subset_seed: int | None = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["subset_seed"] is None:  # keeps specs (and cache keys) of runs without one unchanged
            d.pop("subset_seed")
        return d


@dataclass
class Dataset:
    """A labelled image dataset split into train / val / test.

    Attributes:
        name: short display name.
        class_names: one name per label index.
        train_images, val_images, test_images: uint8 arrays (N, H, W, C), C in {1, 3}.
        train_labels, val_labels, test_labels: int64 arrays (N,) with values in [0, num_classes).
        spec: how it was loaded.
        warnings: human-readable notes (skipped files, small splits) for the UI and CLI.
    """

    name: str
    class_names: list[str]
    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    spec: DataSpec
    warnings: list[str] = field(default_factory=list)
    description: str = ""

    # -- shape facts ---------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[3])

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in SPLITS:
            raise ConfigError(f"unknown split '{name}'; choose one of {', '.join(SPLITS)}")
        return getattr(self, f"{name}_images"), getattr(self, f"{name}_labels")

    def tensors(self, split: str = "train", device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Float images (N, C, H, W) in [0, 1] and long labels (N,) on ``device``."""
        images, labels = self.split(split)
        return images_to_tensor(images, device), torch.as_tensor(labels, dtype=torch.long, device=device)

    def class_counts(self, split: str = "train") -> list[int]:
        _, labels = self.split(split)
        return np.bincount(labels, minlength=self.num_classes).astype(int).tolist()

    def summary(self) -> dict:
        return {
            "name": self.name,
            "image_size": self.image_size,
            "channels": self.channels,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "train": len(self.train_labels),
            "val": len(self.val_labels),
            "test": len(self.test_labels),
            "train_class_counts": self.class_counts("train"),
            "spec": self.spec.to_dict(),
        }


def images_to_tensor(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return t.permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def tensor_to_images(x: torch.Tensor) -> np.ndarray:
    """float (N, C, H, W) in [0, 1] -> uint8 (N, H, W, C)."""
    x = x.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


# ---------------------------------------------------------------------------------------------
# Transforms every dataset takes: size, channels, scarcity.
# ---------------------------------------------------------------------------------------------


def validate_options(image_size: int | None, channels: str, per_class: int | None) -> None:
    if image_size is not None:
        if not isinstance(image_size, (int, np.integer)) or not (MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE):
            raise ConfigError(f"image size must be an integer between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE}, got {image_size}")
        if image_size % 4:
            raise ConfigError(f"image size must be a multiple of 4 (the models downsample twice), got {image_size}")
    if channels not in CHANNEL_CHOICES:
        raise ConfigError(f"channels must be one of {', '.join(CHANNEL_CHOICES)}, got '{channels}'")
    if per_class is not None and (not isinstance(per_class, (int, np.integer)) or per_class < 1):
        raise ConfigError(f"per_class must be a positive integer, got {per_class}")


def convert_channels(images: np.ndarray, channels: str) -> np.ndarray:
    """Convert (N, H, W, C) uint8 images to the requested channel layout."""
    c = images.shape[3]
    if channels == "keep" or (channels == "grey" and c == 1) or (channels == "rgb" and c == 3):
        return images
    if channels == "grey":
        # ITU-R 601-2 luma, as PIL's convert("L").
        w = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        grey = (images.astype(np.float32) @ w).round().clip(0, 255).astype(np.uint8)
        return grey[..., None]
    return np.repeat(images, 3, axis=3)


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Resize (N, H, W, C) uint8 images to (N, size, size, C) with antialiasing."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    if len(images) == 0:
        return np.zeros((0, size, size, images.shape[3]), dtype=np.uint8)
    out = []
    # Chunk to bound memory on big datasets.
    for start in range(0, len(images), 4096):
        t = images_to_tensor(images[start : start + 4096])
        t = torch.nn.functional.interpolate(t, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        out.append(tensor_to_images(t))
    return np.concatenate(out)


def _class_groups(labels: np.ndarray) -> list[np.ndarray]:
    """Ascending indices of each class, classes in ascending order (as ``flatnonzero(labels == c)``
    for each ``c`` in ``unique(labels)``), in O(N log N) so thousands of classes stay fast."""
    labels = np.asarray(labels).reshape(-1)
    if len(labels) == 0:
        return []
    order = np.argsort(labels, kind="stable")
    _, starts = np.unique(labels[order], return_index=True)
    return np.split(order, starts[1:])


def stratified_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of at most ``per_class`` examples of each class, chosen with ``seed``; sorted."""
    rng = np.random.default_rng(seed)
    keep = []
    for idx in _class_groups(labels):
        if len(idx) > per_class:
            idx = rng.choice(idx, size=per_class, replace=False)
        keep.append(idx)
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def stratified_split(
    labels: np.ndarray, *, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split indices into train/val/test keeping class proportions; every class keeps >= 1 train image."""
    rng = np.random.default_rng(seed)
    tr, va, te = [], [], []
    for idx in _class_groups(labels):
        idx = rng.permutation(idx)
        n = len(idx)
        n_test = round(n * test_fraction) if n >= 3 else 0
        n_val = round(n * val_fraction) if n >= 5 else 0
        n_test = min(n_test, n - 1)
        n_val = min(n_val, n - 1 - n_test)
        te.append(idx[:n_test])
        va.append(idx[n_test : n_test + n_val])
        tr.append(idx[n_test + n_val :])
    return tuple(np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64) for p in (tr, va, te))  # type: ignore[return-value]


def finalize(
    *,
    name: str,
    class_names: list[str],
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    spec: DataSpec,
    warnings: list[str] | None = None,
    description: str = "",
    default_size: int | None = None,
) -> Dataset:
    """Validate raw splits, apply size / channels / per_class from ``spec``, return a Dataset.

    ``splits`` maps 'train', 'val', 'test' to (uint8 images (N, H, W, C), int labels (N,)).
    """
    validate_options(spec.image_size, spec.channels, spec.per_class)
    warnings = list(warnings or [])
    num_classes = len(class_names)
    if num_classes < 1:
        raise DataError(f"dataset '{name}' has no classes")
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    size = spec.image_size or default_size
    for split_name in SPLITS:
        images, labels = splits[split_name]
        if images.ndim != 4 or images.shape[3] not in (1, 3) or images.dtype != np.uint8:
            raise DataError(f"dataset '{name}' {split_name} images must be uint8 (N, H, W, 1|3), got {images.dtype} {images.shape}")
        labels = np.asarray(labels).astype(np.int64).reshape(-1)
        if len(labels) != len(images):
            raise DataError(f"dataset '{name}' {split_name} has {len(images)} images but {len(labels)} labels")
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise DataError(f"dataset '{name}' {split_name} labels must be in [0, {num_classes - 1}], found {labels.min()}..{labels.max()}")
        images = convert_channels(images, spec.channels)
        if size is not None:
            images = resize_images(images, size)
        out[split_name] = (np.ascontiguousarray(images), labels)
    train_images, train_labels = out["train"]
    if len(train_labels) == 0:
        raise DataError(f"dataset '{name}' has no training images")
    if train_images.shape[1] != train_images.shape[2]:
        raise DataError(f"dataset '{name}' images must be square after resizing, got {train_images.shape[1:3]}; pass an image size")
    if size is None and train_images.shape[1] % 4:
        raise DataError(f"dataset '{name}' images are {train_images.shape[1]} px, not a multiple of 4; pass an image size (e.g. {max(8, train_images.shape[1] // 4 * 4)})")
    if spec.per_class is not None:
        keep = stratified_subset(train_labels, spec.per_class, spec.seed if spec.subset_seed is None else spec.subset_seed)
        train_images, train_labels = train_images[keep], train_labels[keep]
    present = np.bincount(train_labels, minlength=num_classes)
    missing = [class_names[i] for i in range(num_classes) if present[i] == 0]
    if missing:
        warnings.append(f"classes with no training images: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
    return Dataset(
        name=name,
        class_names=list(class_names),
        train_images=train_images,
        train_labels=train_labels,
        val_images=out["val"][0],
        val_labels=out["val"][1],
        test_images=out["test"][0],
        test_labels=out["test"][1],
        spec=spec,
        warnings=warnings,
        description=description,
    )
