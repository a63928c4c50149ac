"""Load an .npz in MedMNIST layout.

Keys: ``train_images, train_labels`` (required), ``val_images, val_labels, test_images,
test_labels`` (optional pairs: a missing pair is carved out of train with a seeded stratified
split), ``class_names`` (optional unicode array). Images: (N, H, W), (N, H, W, 1|3|4) or
channel-first (N, 1|3, H, W); uint8, uint16 (scaled), other integers within 0..255, or floats in
[0, 1] / [0, 255]. Labels: (N,) or (N, 1) non-negative integers.

The file is always opened with ``allow_pickle=False``; before any array is read, every member's
.npy header is parsed so that object arrays are refused (never unpickled) and arrays whose header
claims more bytes than the archive holds are refused before numpy allocates them.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError
from . import safety
from .base import SPLITS, Dataset, DataSpec, finalize, stratified_split

_VAL_FRACTION = 0.1
_TEST_FRACTION = 0.2


def load_npz(
    path: str | os.PathLike,
    spec: DataSpec,
    *,
    name: str | None = None,
    class_names: list[str] | None = None,
    description: str = "",
) -> Dataset:
    """Load a MedMNIST-layout .npz as a :class:`Dataset` (see the module docstring for the layout).

    Args:
        path: the .npz file.
        spec: size / channels / per_class / seed to apply.
        name: display name (default: the file name without extension).
        class_names: names to use instead of the file's ``class_names`` key or "0".."K-1".
        description: free text kept on the dataset.

    Raises:
        DataError: the file is missing, not an .npz, holds pickled objects, is too large, or its
            arrays do not form a valid labelled image dataset. The message names the file.
    """
    path = Path(path)
    name = name or path.stem
    arrays = _read_arrays(path)
    warnings: list[str] = []
    present = _given_splits(path, arrays, warnings)
    present = _consistent_shapes(path, present, spec, warnings)
    class_names = _resolve_class_names(path, arrays, present, class_names)
    _carve_missing_splits(path, present, spec, warnings)
    try:
        return finalize(
            name=name,
            class_names=class_names,
            splits=present,
            spec=spec,
            warnings=warnings,
            description=description or f"{path.name} (MedMNIST-layout .npz)",
        )
    except DataError as exc:
        msg = str(exc)
        raise DataError(msg if str(path) in msg else f"{path}: {msg}") from None


def _given_splits(path: Path, arrays: dict[str, np.ndarray], warnings: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(images, labels) of each split the file holds, checked; train is required and not empty."""
    missing = [k for k in ("train_images", "train_labels") if k not in arrays]
    if missing:
        found = ", ".join(sorted(arrays)) or "none"
        raise DataError(f"{path} is missing required keys {', '.join(missing)} (found: {found}); expected MedMNIST layout")
    present: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in SPLITS:
        ik, lk = f"{split}_images", f"{split}_labels"
        if (ik in arrays) != (lk in arrays):
            have, lack = (ik, lk) if ik in arrays else (lk, ik)
            raise DataError(f"{path} has {have} but no {lack}")
        if ik in arrays:
            images = _images(path, ik, arrays[ik], warnings)
            labels = _labels(path, lk, arrays[lk])
            if len(images) != len(labels):
                raise DataError(f"{path}: {ik} has {len(images)} images but {lk} has {len(labels)} labels")
            present[split] = (images, labels)
    if len(present["train"][1]) == 0:
        raise DataError(f"{path}: train_images is empty")
    return present


def _consistent_shapes(path: Path, present: dict, spec: DataSpec, warnings: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One size and one channel count across splits: RGB when they mix grey and RGB, and square
    images (centre-cropped to the shorter side, as the folder loader does)."""
    hw = present["train"][0].shape[1:3]
    for split, (images, _) in present.items():
        if images.shape[1:3] != hw and len(images) and spec.image_size is None:
            raise DataError(
                f"{path}: {split}_images are {images.shape[1]}x{images.shape[2]} but train_images are "
                f"{hw[0]}x{hw[1]}; pass an image size to resize them all"
            )
    if len({imgs.shape[3] for imgs, _ in present.values()}) > 1:
        present = {s: (np.repeat(i, 3, axis=3) if i.shape[3] == 1 else i, lab) for s, (i, lab) in present.items()}
        warnings.append(f"{path.name}: splits mix grey and RGB images; all converted to RGB")
    if hw[0] != hw[1]:
        present = {s: (_center_crop(i), lab) for s, (i, lab) in present.items()}
        side = min(hw)
        warnings.append(f"{path.name}: images are {hw[0]}x{hw[1]}, not square; centre-cropped to {side}x{side}")
    return present


def _resolve_class_names(path: Path, arrays: dict[str, np.ndarray], present: dict, class_names: list[str] | None) -> list[str]:
    """The caller's names, else the file's ``class_names``, else a known dataset's, else "0".."K-1"."""
    max_label = max(int(lab.max()) for _, lab in present.values() if len(lab))
    if max_label >= safety.MAX_CLASSES:
        raise DataError(f"{path}: label {max_label} is out of range (more than {safety.MAX_CLASSES} classes); labels must be 0..K-1")
    if class_names is None and "class_names" in arrays:
        class_names = _class_names(path, arrays["class_names"])
    if class_names is None:
        class_names = _known_class_names(path, max_label)
    if class_names is None:
        return [str(i) for i in range(max_label + 1)]
    if max_label >= len(class_names):
        raise DataError(f"{path}: label {max_label} is out of range for {len(class_names)} class names (labels must be 0..{len(class_names) - 1})")
    return [str(c) for c in class_names]


def _carve_missing_splits(path: Path, present: dict, spec: DataSpec, warnings: list[str]) -> None:
    """A missing val and/or test split is carved out of train (already cropped and converted, so
    the carved splits match the given ones) with a seeded stratified split."""
    if "val" in present and "test" in present:
        return
    train_images, train_labels = present["train"]
    val_f = _VAL_FRACTION if "val" not in present else 0.0
    test_f = _TEST_FRACTION if "test" not in present else 0.0
    tr, va, te = stratified_split(train_labels, val_fraction=val_f, test_fraction=test_f, seed=spec.seed)
    made = [s for s in ("val", "test") if s not in present]
    if "val" not in present:
        present["val"] = (train_images[va], train_labels[va])
    if "test" not in present:
        present["test"] = (train_images[te], train_labels[te])
    present["train"] = (train_images[tr], train_labels[tr])
    warnings.append(f"{path.name} has no {'/'.join(made)} split; made a stratified one from train with seed {spec.seed}")


# ---------------------------------------------------------------------------------------------


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """All arrays of the archive, after the safety checks (sizes, object dtypes, headers)."""
    if not path.exists():
        raise DataError(f"{path} does not exist")
    if not path.is_file():
        raise DataError(f"{path} is not a file")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise DataError(f"{path} could not be read: {exc.strerror or exc}") from None
    if magic[:2] != b"PK":
        if magic[:4] == b"\x93NUM":
            raise DataError(f"{path} is a single .npy array, not an .npz archive; save with numpy.savez")
        raise DataError(f"{path} is not an .npz archive (not a zip file)")

    with safety.open_zip(path, "npz archive") as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        safety.check_zip_members(
            path, infos, max_members=safety.MAX_NPZ_MEMBERS, max_total=safety.MAX_NPZ_BYTES, max_member=None
        )
        # Only members that really are .npy arrays are loaded (numpy would hand others back as bytes);
        # their declared sizes are spent against the dataset budget before any is read.
        budget = safety.DatasetBudget(path)
        keys = {_key(info.filename) for info in infos if _check_npy_header(path, zf, info, budget)}
        not_arrays = sorted(_key(i.filename) for i in infos if _key(i.filename) not in keys)
    for key in ("train_images", "train_labels"):
        if key in not_arrays:
            raise DataError(f"{path}: member '{key}' is not a numpy array")

    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):  # pragma: no cover - ruled out by the magic check
                raise DataError(f"{path} is not an .npz archive")
            for key in npz.files:
                if key in keys:
                    value = npz[key]
                    if not isinstance(value, np.ndarray):  # pragma: no cover - headers were checked
                        raise DataError(f"{path}: member '{key}' is not a numpy array")
                    arrays[key] = value
    except DataError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise DataError(f"{path} holds pickled objects; refused (arrays must be plain numeric data)") from None
        raise DataError(f"{path} is corrupt: {exc}") from None
    except MemoryError:
        raise DataError(f"{path} is too large to load into memory") from None
    except Exception as exc:  # noqa: BLE001 - zipfile / zlib / EOF / format errors of a corrupt archive
        raise DataError(f"{path} is corrupt or truncated ({type(exc).__name__}: {exc})") from None
    return arrays


def _key(member: str) -> str:
    return member.removesuffix(".npy")


def _check_npy_header(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: safety.DatasetBudget) -> bool:
    """False for a member that is not an .npy array; raises for pickled, corrupt or lying ones."""
    key = _key(info.filename)
    try:
        with zf.open(info) as fh:
            if fh.read(len(np.lib.format.MAGIC_PREFIX)) != np.lib.format.MAGIC_PREFIX:
                return False
            fh.seek(0)
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version in ((2, 0), (3, 0)):
                shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:  # pragma: no cover - read_magic only returns known versions
                raise ValueError(f"unknown .npy version {version}")
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure of untrusted bytes is a corrupt file
        raise DataError(f"{path}: array '{key}' has a corrupt .npy header ({exc})") from None
    if dtype.hasobject:
        raise DataError(f"{path}: array '{key}' holds pickled objects; refused (arrays must be plain numeric data)")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if nbytes > info.file_size:
        raise DataError(f"{path}: array '{key}' claims {safety.human_bytes(nbytes)} but its member holds {safety.human_bytes(info.file_size)}; corrupt")
    budget.spend_bytes(nbytes, "declares arrays of")
    return True


def _images(path: Path, key: str, images: np.ndarray, warnings: list[str]) -> np.ndarray:
    """Validate and convert one images array to uint8 (N, H, W, 1|3)."""
    if images.ndim == 3:
        images = images[..., None]
    elif images.ndim == 4 and images.shape[3] not in (1, 3, 4) and images.shape[1] in (1, 3, 4):
        images = np.moveaxis(images, 1, 3)  # channel-first (N, C, H, W)
    if images.ndim != 4 or images.shape[3] not in (1, 3, 4):
        raise DataError(f"{path}: {key} has shape {images.shape}; expected (N, H, W) or (N, H, W, 1|3|4)")
    if images.shape[1] < 1 or images.shape[2] < 1:
        raise DataError(f"{path}: {key} has shape {images.shape}; images must be at least 1x1 px")
    images = _to_uint8(path, key, images)
    if images.shape[3] == 4:
        images = safety.drop_alpha(images)
        warnings.append(f"{path.name}: {key} are RGBA; alpha composited over black")
    return images


def _to_uint8(path: Path, key: str, images: np.ndarray) -> np.ndarray:
    kind = images.dtype.kind
    if images.dtype == np.uint8:
        return images
    if images.dtype == np.bool_:
        return images.astype(np.uint8) * 255
    if kind in "iu":
        if images.size and images.min() < 0:
            raise DataError(f"{path}: {key} ({images.dtype}) has negative values; expected 0..255")
        if images.dtype == np.uint16:
            return safety.to_uint8(images)
        if images.size and images.max() > 255:
            raise DataError(f"{path}: {key} ({images.dtype}) has values above 255; expected uint8 0..255 or uint16")
        return images.astype(np.uint8)
    if kind == "f":
        if images.size == 0:
            return images.astype(np.uint8)
        if not np.isfinite(images).all():
            raise DataError(f"{path}: {key} ({images.dtype}) has NaN or infinite values")
        lo, hi = float(images.min()), float(images.max())
        if lo >= 0.0 and hi <= 1.0:
            return np.rint(images.astype(np.float32) * 255.0).astype(np.uint8)
        if lo >= 0.0 and hi <= 255.0:
            return np.rint(images).astype(np.uint8)
        raise DataError(f"{path}: {key} ({images.dtype}) values span {lo:g}..{hi:g}; float images must be in [0, 1] or [0, 255]")
    raise DataError(f"{path}: {key} has dtype {images.dtype}; expected uint8 (or uint16, or float in [0, 1])")


def _labels(path: Path, key: str, labels: np.ndarray) -> np.ndarray:
    if labels.ndim == 2 and labels.shape[1] > 1:
        raise DataError(
            f"{path}: {key} has shape {labels.shape}: multi-label data (several labels per image) is not supported; "
            "one integer class per image is needed"
        )
    if labels.ndim not in (1, 2):
        raise DataError(f"{path}: {key} has shape {labels.shape}; expected (N,) or (N, 1)")
    labels = labels.reshape(-1)
    kind = labels.dtype.kind
    if kind == "b":
        labels = labels.astype(np.int64)
    elif kind == "f":
        if labels.size and (not np.isfinite(labels).all() or (labels != np.round(labels)).any()):
            raise DataError(f"{path}: {key} holds non-integer values; labels must be integer class indices")
        labels = labels.astype(np.int64)
    elif kind in "iu":
        if labels.dtype == np.uint64 and labels.size and labels.max() > np.iinfo(np.int64).max:
            raise DataError(f"{path}: {key} has a label out of range ({labels.max()})")
        labels = labels.astype(np.int64)
    else:
        raise DataError(f"{path}: {key} has dtype {labels.dtype}; labels must be integer class indices")
    if labels.size and labels.min() < 0:
        raise DataError(f"{path}: {key} has a negative label ({labels.min()}); labels must be 0..K-1")
    return labels


def _class_names(path: Path, names: np.ndarray) -> list[str]:
    if names.dtype.kind not in "US" or names.ndim != 1:
        raise DataError(f"{path}: class_names must be a 1-D array of strings, got {names.dtype} {names.shape}")
    out = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names.tolist()]
    if len(set(out)) != len(out):
        raise DataError(f"{path}: class_names has duplicates")
    return out


def _known_class_names(path: Path, max_label: int) -> list[str] | None:
    """Official names for a file named like a MedMNIST dataset (``breastmnist.npz``), if they fit."""
    from .medmnist import MEDMNIST_INFO  # local import: medmnist imports this module

    info = MEDMNIST_INFO.get(path.stem.lower())
    if info is None or path.stem.lower() == "chestmnist" or max_label >= len(info[2]):
        return None
    return list(info[2])


def _center_crop(images: np.ndarray) -> np.ndarray:
    h, w = images.shape[1:3]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return np.ascontiguousarray(images[:, top : top + side, left : left + side])
