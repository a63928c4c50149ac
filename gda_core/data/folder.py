"""Load a folder (or a .zip of a folder) of images with one sub-folder per class.

Layouts:
    root/<class>/<image>               -> a stratified 70/10/20 split made with ``spec.seed``
    root/{train,val,test}/<class>/...  -> the given split (a missing val or test split is carved
                                          out of train with ``spec.seed``; ``valid`` and
                                          ``validation`` are accepted for ``val``)
A single top-level folder wrapping all of this (what zipping a folder gives) is unwrapped.
Images inside sub-folders of a class folder belong to that class.

Images: png, jpg/jpeg, bmp, tif/tiff, webp (any case); grey, grey+alpha, RGB, RGBA, palette,
16-bit and 32-bit modes. Alpha is composited over black; 16-bit data is scaled to 8 bits by its
bit depth (see :func:`safety.to_uint8`). The dataset is grey when every image is grey, else RGB.

Sizing: every image is centre-cropped to a square on its shorter side, then resized (bicubic,
antialiased) to ``spec.image_size``; when that is None, to the median shorter side rounded down
to a multiple of 4 and kept within 8..256 (a warning says so when images had to be resized).

Robustness: files without an image extension and OS litter (``.DS_Store``, ``Thumbs.db``,
``__MACOSX``, hidden files) are skipped silently; image files that fail to decode, are too large
(pixels or bytes) or are not regular files are skipped with a warning naming them; symlinks that
point outside the root are ignored with a warning and never followed; a .zip is read in memory
(never extracted) and refused when a member name is absolute or has ``..`` components, or when it
exceeds the member-count / size limits of :mod:`safety` (declared sizes and bytes actually read).
"""

from __future__ import annotations

import functools
import io
import os
import re
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError
from . import safety
from .base import (
    MAX_IMAGE_SIZE,
    MIN_IMAGE_SIZE,
    SPLITS,
    Dataset,
    DataSpec,
    finalize,
    stratified_split,
)

_VAL_FRACTION = 0.1
_TEST_FRACTION = 0.2
_SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"})
#: The decoders PIL may use (older Pillows open multi-picture JPEGs from phones as MPO).
_WANTED_FORMATS = ("PNG", "JPEG", "MPO", "BMP", "TIFF", "WEBP")


@functools.cache
def _pil_formats() -> tuple[str, ...]:
    Image.init()
    return tuple(f for f in _WANTED_FORMATS if f in Image.OPEN)

_MAX_WARNED_FILES = 20  # name at most this many skipped files one by one, then summarise


# ---------------------------------------------------------------------------------------------
# A tiny in-memory tree of the dataset's files, built from a folder walk or a zip's member list.
# ---------------------------------------------------------------------------------------------


@dataclass
class _Node:
    dirs: dict[str, _Node] = field(default_factory=dict)
    files: list[tuple[str, Callable[[], object]]] = field(default_factory=list)  # (display name, opener)

    def child(self, name: str) -> _Node:
        return self.dirs.setdefault(name, _Node())

    def all_files(self) -> list[tuple[str, Callable[[], object]]]:
        out = sorted(self.files, key=lambda f: f[0])  # by name: the same order from a folder or a zip
        for name in sorted(self.dirs):
            out.extend(self.dirs[name].all_files())
        return out


class _Skips:
    """Collects 'skipped file' warnings, naming the first few and counting the rest."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.extra = 0

    def add(self, display: str, why: str) -> None:
        if len(self.messages) < _MAX_WARNED_FILES:
            self.messages.append(f"skipped {display}: {why}")
        else:
            self.extra += 1

    def warnings(self) -> list[str]:
        out = list(self.messages)
        if self.extra:
            out.append(f"skipped {self.extra} more files that could not be used")
        return out


# ---------------------------------------------------------------------------------------------
# Public loaders
# ---------------------------------------------------------------------------------------------


def load_folder(path: str | os.PathLike, spec: DataSpec, *, name: str | None = None) -> Dataset:
    """Load a folder of class sub-folders (optionally under train/val/test) as a Dataset.

    Raises:
        DataError: the folder is missing, holds no class folder with a readable image, or holds
            more image files than :data:`safety.MAX_FOLDER_FILES`. The message names the folder.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist")
    if not path.is_dir():
        raise DataError(f"{path} is not a folder")
    skips = _Skips()
    notes: list[str] = []
    tree = _walk_folder(path, skips, notes)
    return _load_tree(tree, path, spec, name or path.resolve().name or str(path), skips, notes)


def load_zip(path: str | os.PathLike, spec: DataSpec, *, name: str | None = None) -> Dataset:
    """Load a .zip of class folders (optionally under train/val/test) in memory, never extracting it.

    Raises:
        DataError: corrupt / non-zip file, a member with an absolute or ``..`` path (zip-slip),
            more members or more (declared or actual) uncompressed bytes than the limits in
            :mod:`safety`, or no class folder with a readable image. The message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist")
    if not path.is_file():
        raise DataError(f"{path} is not a file")
    skips = _Skips()
    notes: list[str] = []
    with safety.open_zip(path) as zf:
        infos = zf.infolist()
        safety.check_zip_members(
            path,
            infos,
            max_members=safety.MAX_ZIP_MEMBERS,
            max_total=safety.MAX_ZIP_BYTES,
            max_member=safety.MAX_ZIP_MEMBER_BYTES,
        )
        tree = _zip_tree(zf, infos, path, skips)
        return _load_tree(tree, path, spec, name or path.stem, skips, notes)


# ---------------------------------------------------------------------------------------------
# Building the tree
# ---------------------------------------------------------------------------------------------


def _walk_folder(root: Path, skips: _Skips, notes: list[str]) -> _Node:
    real_root = os.path.realpath(root)
    tree = _Node()
    count = 0
    visited = {real_root}
    stack: list[tuple[str, _Node, str]] = [(real_root, tree, str(root))]
    while stack:
        real_dir, node, shown_dir = stack.pop()
        try:
            entries = sorted(os.scandir(real_dir), key=lambda e: e.name)
        except OSError as exc:
            notes.append(f"could not list {shown_dir}: {exc.strerror or exc}; skipped")
            continue
        for entry in entries:
            if safety.is_ignored_name(entry.name):
                continue
            shown = os.path.join(shown_dir, entry.name)
            target = entry.path
            try:
                if entry.is_symlink():
                    target = os.path.realpath(entry.path)
                    if not _inside(target, real_root):
                        notes.append(f"ignored symlink {shown}: it points outside {root}")
                        continue
                st = os.stat(target)
            except OSError as exc:
                if safety.is_image_name(entry.name):
                    skips.add(shown, f"cannot read ({exc.strerror or exc})")
                continue
            if stat.S_ISDIR(st.st_mode):
                if target in visited:
                    continue
                visited.add(target)
                stack.append((target, node.child(entry.name), shown))
                continue
            if not safety.is_image_name(entry.name):
                continue
            if not stat.S_ISREG(st.st_mode):
                skips.add(shown, "not a regular file")
                continue
            if st.st_size > safety.MAX_IMAGE_FILE_BYTES:
                skips.add(shown, f"file is {safety.human_bytes(st.st_size)}, over the {safety.human_bytes(safety.MAX_IMAGE_FILE_BYTES)} limit")
                continue
            count += 1
            if count > safety.MAX_FOLDER_FILES:
                raise DataError(f"{root} holds more than {safety.MAX_FOLDER_FILES} image files; refused (limit)")
            node.files.append((shown, _file_opener(target)))
    return tree


def _inside(target: str, root: str) -> bool:
    try:
        return os.path.commonpath([target, root]) == root
    except ValueError:  # different drives on Windows
        return False


def _file_opener(target: str) -> Callable[[], object]:
    return lambda: target


_DRIVE = re.compile(r"^[A-Za-z]:")


def _zip_tree(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], path: Path, skips: _Skips) -> _Node:
    tree = _Node()
    budget = _ZipBudget(path)
    for info in infos:
        raw = info.filename.replace("\\", "/")
        parts = [p for p in raw.split("/") if p not in ("", ".")]
        if raw.startswith("/") or _DRIVE.match(raw) or ".." in parts:
            raise DataError(f"{path} has an unsafe member path '{info.filename}' (absolute or with '..'); refused")
        if not parts or any(safety.is_ignored_name(p) for p in parts):
            continue
        is_dir = info.is_dir()
        mode = info.external_attr >> 16
        if not is_dir and stat.S_ISLNK(mode):
            skips.add(f"{path}:{raw}", "symlink members are not followed")
            continue
        node = tree
        for part in parts[:-1] if not is_dir else parts:
            node = node.child(part)
        if is_dir or not safety.is_image_name(parts[-1]):
            continue
        node.files.append((f"{path}:{raw}", _zip_opener(zf, info, path, budget)))
    return tree


class _ZipBudget:
    """Counts the bytes actually inflated across the whole archive (each member once)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.total = 0
        self.seen: set[int] = set()

    def spend(self, key: int, n: int) -> None:
        if key in self.seen:
            return
        self.seen.add(key)
        self.total += n
        if self.total > safety.MAX_ZIP_BYTES:
            raise DataError(
                f"{self.path} inflates to more than {safety.human_bytes(safety.MAX_ZIP_BYTES)}; refused (zip bomb?)"
            )


def _zip_opener(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, budget: _ZipBudget) -> Callable[[], object]:
    def opener() -> io.BytesIO:
        data = safety.read_zip_member(zf, info, path, safety.MAX_ZIP_MEMBER_BYTES)
        budget.spend(id(info), len(data))
        return io.BytesIO(data)

    return opener


# ---------------------------------------------------------------------------------------------
# From tree to Dataset
# ---------------------------------------------------------------------------------------------


def _unwrap(tree: _Node) -> _Node:
    """Strip single folders that only wrap the real layout (no images of their own)."""
    while not tree.files and len(tree.dirs) == 1:
        (only,) = tree.dirs.values()
        if only.files or not only.dirs:
            break  # a single class folder: keep it
        tree = only
    return tree


# Files of one class: (name shown in warnings, a function that opens the file).
_Files = list[tuple[str, Callable[[], object]]]
# A readable file after the header pass: (name, opener, (width, height), grey).
_Probed = list[tuple[str, Callable[[], object], tuple[int, int], bool]]


def _load_tree(tree: _Node, path: Path, spec: DataSpec, name: str, skips: _Skips, notes: list[str]) -> Dataset:
    """The dataset of a folder tree: find the layout, read the headers to choose one size, decode,
    then keep the split the folders give or make a stratified one."""
    tree = _unwrap(tree)
    warnings: list[str] = []
    layout, split_layout = _layout(tree, path, notes)
    all_classes = sorted({c for per in layout.values() for c in per})
    if not all_classes:
        raise DataError(f"{path} has no class sub-folders; put the images of each class in their own folder")

    # Pass 1: headers only (size, grey or colour) to choose the size before decoding anything; the
    # dataset's pixel budget is spent here, so an archive of too many pixels is refused undecoded.
    budget = safety.DatasetBudget(path)
    probes = {(split, cls): _probe_files(files, skips, budget) for split, per in layout.items() for cls, files in per.items()}
    size = _choose_size(probes, spec, path, layout, warnings)
    grey = all(g for items in probes.values() for _, _, _, g in items)

    # Pass 2: decode, crop, resize.
    decoded = {key: _decode_files(items, size, grey, skips, budget) for key, items in probes.items()}
    classes = _classes_with_images(all_classes, decoded, layout, path, warnings)
    splits = _splits(layout, decoded, classes, size, 1 if grey else 3, split_layout, spec, path, warnings, notes)
    try:
        return finalize(
            name=name,
            class_names=classes,
            splits=splits,
            spec=spec,
            warnings=warnings + notes + skips.warnings(),
            description=f"{path.name}: {len(classes)} classes of images",
            default_size=size,
        )
    except DataError as exc:
        msg = str(exc)
        raise DataError(msg if str(path) in msg else f"{path}: {msg}") from None


def _layout(tree: _Node, path: Path, notes: list[str]) -> tuple[dict[str, dict[str, _Files]], bool]:
    """split -> class name -> files, and whether the folders give the split (else one split "whole")."""
    lowered = {d.lower(): d for d in tree.dirs}
    split_layout = "train" in lowered and all(k in _SPLIT_ALIASES for k in lowered)
    if tree.files:
        notes.append(f"{len(tree.files)} image(s) directly in {path} are outside any class folder; ignored")
    if not split_layout:
        return {"whole": {cls: sub.all_files() for cls, sub in tree.dirs.items()}}, False
    layout: dict[str, dict[str, _Files]] = {}
    for low, actual in lowered.items():
        split = _SPLIT_ALIASES[low]
        if split in layout:
            raise DataError(f"{path} has two folders for the {split} split ({', '.join(k for k in lowered if _SPLIT_ALIASES[k] == split)})")
        node = tree.dirs[actual]
        if node.files:
            notes.append(f"{len(node.files)} image(s) directly in the {actual} folder are outside any class folder; ignored")
        layout[split] = {cls: sub.all_files() for cls, sub in node.dirs.items()}
    return layout, True


def _probe_files(files: _Files, skips: _Skips, budget: safety.DatasetBudget) -> _Probed:
    ok = []
    for display, opener in files:
        info = _probe(display, opener, skips)
        if info is not None:
            budget.spend_pixels(info[0][0] * info[0][1])
            ok.append((display, opener, info[0], info[1]))
    return ok


def _choose_size(probes: dict[tuple[str, str], _Probed], spec: DataSpec, path: Path, layout: dict, warnings: list[str]) -> int:
    """``spec.image_size``, or when None the median shorter side rounded down to a multiple of 4
    (within the limits), with a warning when that resizes any image."""
    sides = [min(size) for items in probes.values() for _, _, size, _ in items]
    if not sides:
        raise DataError(f"{path} has no readable images ({_count(layout)} image file(s) found, none could be decoded)")
    if spec.image_size is not None:
        return spec.image_size
    median = int(np.median(sides))
    size = int(min(max(median // 4 * 4, MIN_IMAGE_SIZE), MAX_IMAGE_SIZE))
    dims = {s for items in probes.values() for _, _, s, _ in items}
    if dims != {(size, size)}:
        shown = ", ".join(f"{w}x{h}" for w, h in sorted(dims)[:4]) + (" ..." if len(dims) > 4 else "")
        warnings.append(
            f"images ({shown}) centre-cropped and resized to {size}x{size}: the median shorter side "
            f"({median} px) rounded down to a multiple of 4 within {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE}; pass an image size to choose"
        )
    return size


def _decode_files(items: _Probed, size: int, grey: bool, skips: _Skips, budget: safety.DatasetBudget) -> list[np.ndarray]:
    arrays = []
    for display, opener, _, _ in items:
        budget.spend_bytes(size * size * (1 if grey else 3))  # before the decode, so the limit is never passed
        arr = _decode(display, opener, size, grey, skips)
        if arr is not None:
            arrays.append(arr)
    return arrays


def _classes_with_images(all_classes: list[str], decoded: dict, layout: dict, path: Path, warnings: list[str]) -> list[str]:
    """The classes with at least one readable image; a warning names the dropped ones."""
    classes = [c for c in all_classes if any(decoded.get((s, c)) for s in layout)]
    dropped = [c for c in all_classes if c not in classes]
    if dropped:
        shown = ", ".join(f"'{c}'" for c in dropped[:10]) + (" ..." if len(dropped) > 10 else "")
        warnings.append(f"{len(dropped)} class folder(s) in {path} with no readable images dropped: {shown}")
    if not classes:
        raise DataError(f"{path} has no readable images ({_count(layout)} image file(s) found, none could be decoded)")
    if len(classes) == 1:
        warnings.append(f"only one class ('{classes[0]}') in {path}; class-conditional models need two or more")
    return classes


def _splits(layout: dict, decoded: dict, classes: list[str], size: int, channels: int, split_layout: bool,
            spec: DataSpec, path: Path, warnings: list[str], notes: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """(images, labels) per split: the folders' own splits (a missing val or test carved out of
    train), or a stratified 70/10/20 split of the one "whole" set."""
    index = {c: i for i, c in enumerate(classes)}

    def stack(split: str) -> tuple[np.ndarray, np.ndarray]:
        imgs, labs = [], []
        for cls in classes:
            arrays = decoded.get((split, cls), [])
            imgs.extend(arrays)
            labs.extend([index[cls]] * len(arrays))
        if not imgs:
            return np.zeros((0, size, size, channels), np.uint8), np.zeros(0, np.int64)
        return np.stack(imgs), np.asarray(labs, dtype=np.int64)

    if not split_layout:
        images, labels = stack("whole")
        tr, va, te = stratified_split(labels, val_fraction=_VAL_FRACTION, test_fraction=_TEST_FRACTION, seed=spec.seed)
        notes.append(f"no train/val/test folders in {path}; made a stratified 70/10/20 split with seed {spec.seed}")
        return {"train": (images[tr], labels[tr]), "val": (images[va], labels[va]), "test": (images[te], labels[te])}
    splits = {split: stack(split) for split in layout}
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        images, labels = splits["train"]
        tr, va, te = stratified_split(
            labels,
            val_fraction=_VAL_FRACTION if "val" in missing else 0.0,
            test_fraction=_TEST_FRACTION if "test" in missing else 0.0,
            seed=spec.seed,
        )
        splits["train"] = (images[tr], labels[tr])
        splits.setdefault("val", (images[va], labels[va]))
        splits.setdefault("test", (images[te], labels[te]))
        warnings.append(f"no {'/'.join(missing)} folder in {path}; made a stratified split from train with seed {spec.seed}")
    return splits


def _count(layout: dict) -> int:
    return sum(len(files) for per in layout.values() for files in per.values())


# ---------------------------------------------------------------------------------------------
# Decoding one image
# ---------------------------------------------------------------------------------------------


def _open(opener: Callable[[], object]) -> Image.Image:
    """Open lazily (header only) with only the accepted decoders; over the pixel limit -> error.

    Restricting ``formats`` matters: a file named .png may hold any format PIL knows, and some
    decoders are risky (EPS runs Ghostscript). PIL itself raises DecompressionBombError above
    2x its global limit; our lower per-image limit is checked here without touching PIL's global.
    """
    img = Image.open(opener(), formats=_pil_formats())
    w, h = img.size
    if w * h > safety.MAX_IMAGE_PIXELS:
        img.close()
        raise Image.DecompressionBombError(f"{w}x{h} px is over the {safety.MAX_IMAGE_PIXELS:,} pixel limit")
    return img


def _why(exc: BaseException) -> str:
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"image too large ({exc})"
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not a readable image"
    text = str(exc).split("\n")[0][:120]
    return f"could not decode ({type(exc).__name__}{': ' + text if text else ''})"


def _probe(display: str, opener: Callable[[], object], skips: _Skips) -> tuple[tuple[int, int], bool] | None:
    try:
        with _open(opener) as img:
            w, h = img.size
            if w < 1 or h < 1:
                raise ValueError("empty image")
            return (w, h), img.mode in _GREY_MODES
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure means: skip this file
        skips.add(display, _why(exc))
        return None


def _decode(display: str, opener: Callable[[], object], size: int, grey: bool, skips: _Skips) -> np.ndarray | None:
    try:
        with _open(opener) as img:
            if img.format == "JPEG":
                img.draft(img.mode, (size, size))  # decode at a reduced scale when much larger
            img.load()
            img = _to_8bit(img)
            w, h = img.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            img = img.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))
            if grey and img.mode != "L":
                img = img.convert("L")
            elif not grey and img.mode != "RGB":
                img = img.convert("RGB")
            arr = np.asarray(img, dtype=np.uint8)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure means: skip this file
        skips.add(display, _why(exc))
        return None
    return arr.reshape(size, size, 1) if arr.ndim == 2 else arr


def _to_8bit(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 'L' or 'RGB' (alpha composited over black, deep data scaled by bit depth)."""
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(img)
        if arr.dtype.kind == "f":
            arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
            top = 1.0 if arr.max(initial=0.0) <= 1.0 else 255.0 if arr.max() <= 255.0 else float(arr.max())
            arr = np.clip(np.rint(np.clip(arr, 0, None) * (255.0 / top)), 0, 255).astype(np.uint8)
        else:
            arr = safety.to_uint8(arr.astype(np.int64))
        return Image.fromarray(np.ascontiguousarray(arr if arr.ndim == 2 else arr[..., 0]))
    if mode in ("LA", "La", "PA", "RGBA", "RGBa", "P"):
        if mode == "LA":
            return Image.fromarray(np.ascontiguousarray(safety.drop_alpha(np.asarray(img))[..., 0]))
        rgba = np.asarray(img.convert("RGBA"))
        return Image.fromarray(safety.drop_alpha(rgba))
    return img.convert("RGB")
