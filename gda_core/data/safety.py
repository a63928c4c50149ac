"""Limits and helpers that keep hostile or broken dataset files from hurting the process.

Every loader reads user files (an .npz, a folder, a .zip) that may be truncated, mislabelled,
or crafted: zip bombs, zip-slip member names, images whose header claims billions of pixels,
pickled objects inside an .npz, symlinks out of the dataset folder. The limits below are module
attributes so that tests (and, if ever needed, a deployment) can change them.

Nothing here is ever extracted to disk and nothing is ever unpickled.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError

GiB = 1024**3
MiB = 1024**2

#: Total uncompressed size of the arrays in one .npz (declared sizes, checked before loading).
MAX_NPZ_BYTES = 2 * GiB
#: Members (arrays) in one .npz.
MAX_NPZ_MEMBERS = 64
#: Members in one .zip of images (files and folders).
MAX_ZIP_MEMBERS = 200_000
#: Total uncompressed size of one .zip of images (declared sizes and bytes actually read).
MAX_ZIP_BYTES = 2 * GiB
#: Uncompressed size of one member of a .zip of images.
MAX_ZIP_MEMBER_BYTES = 256 * MiB
#: Image files in one dataset folder.
MAX_FOLDER_FILES = 200_000
#: Size of one image file in a folder.
MAX_IMAGE_FILE_BYTES = 256 * MiB
#: Pixels (width x height) of one image; larger ones are skipped with a warning.
MAX_IMAGE_PIXELS = 40_000_000
#: Classes in one dataset (largest label + 1 in an .npz).
MAX_CLASSES = 100_000
#: Whole-dataset budgets (a shared server lowers them, gda_core.server.budgets): pixels of every
#: image as stored (width x height, summed from the headers before any image is decoded) and bytes
#: of the decoded arrays (counted while decoding; an .npz's declared array sizes, before loading).
MAX_DATASET_PIXELS = 4_000_000_000
MAX_DATASET_BYTES = 2 * GiB

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
#: File / folder names that are never part of a dataset (OS and archiver litter).
IGNORED_NAMES = frozenset({"__macosx", "thumbs.db", "desktop.ini", "ehthumbs.db"})


def is_ignored_name(name: str) -> bool:
    """True for hidden files (``.DS_Store``, ``._foo`` AppleDouble) and OS litter."""
    return name.startswith(".") or name.lower() in IGNORED_NAMES


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


class DatasetBudget:
    """Counts one dataset's pixels and decoded bytes against MAX_DATASET_PIXELS / MAX_DATASET_BYTES,
    refusing the dataset the moment either is passed (before the memory is spent)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pixels = 0
        self.bytes = 0

    def spend_pixels(self, n: int) -> None:
        self.pixels += int(n)
        if self.pixels > MAX_DATASET_PIXELS:
            raise DataError(f"dataset budget: {self.path} holds more than {MAX_DATASET_PIXELS:,} pixels of images "
                            f"(limit max_dataset_pixels = {MAX_DATASET_PIXELS:,}); refused")  # fmt: skip

    def spend_bytes(self, n: int, what: str = "decodes to") -> None:
        self.bytes += int(n)
        if self.bytes > MAX_DATASET_BYTES:
            raise DataError(f"dataset budget: {self.path} {what} more than {human_bytes(MAX_DATASET_BYTES)} "
                            f"(limit max_dataset_bytes = {human_bytes(MAX_DATASET_BYTES)}); refused")  # fmt: skip


def open_zip(path: Path, what: str = "zip archive") -> zipfile.ZipFile:
    """Open ``path`` as a zip file or raise a one-line DataError."""
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise DataError(f"{path} is not a valid {what} (corrupt or not a zip file)") from None
    except (OSError, ValueError, EOFError, RuntimeError, NotImplementedError) as exc:
        raise DataError(f"{path} could not be opened as a {what}: {exc}") from None


def check_zip_members(
    path: Path, infos: list[zipfile.ZipInfo], *, max_members: int, max_total: int, max_member: int | None
) -> None:
    """Refuse archives whose declared sizes or member count exceed the limits (zip bombs)."""
    if len(infos) > max_members:
        raise DataError(f"{path} has {len(infos)} members, more than the limit of {max_members}; refused")
    total = 0
    for info in infos:
        if info.flag_bits & 0x1:
            raise DataError(f"{path} member '{info.filename}' is encrypted; encrypted archives are not supported")
        if max_member is not None and info.file_size > max_member:
            raise DataError(
                f"{path} member '{info.filename}' declares {human_bytes(info.file_size)} uncompressed, "
                f"more than the per-file limit of {human_bytes(max_member)}; refused (zip bomb?)"
            )
        total += info.file_size
    if total > max_total:
        raise DataError(
            f"{path} declares {human_bytes(total)} uncompressed, more than the limit of {human_bytes(max_total)}; refused (zip bomb?)"
        )


def read_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, limit: int) -> bytes:
    """Read one member into memory, counting the bytes actually produced (a header can lie)."""
    chunks = []
    got = 0
    cap = min(limit, max(info.file_size, 0))
    with zf.open(info) as fh:
        while True:
            chunk = fh.read(min(1 * MiB, cap - got + 1))
            if not chunk:
                break
            got += len(chunk)
            if got > cap:
                raise DataError(
                    f"{path} member '{info.filename}' inflates past its declared size or the limit of "
                    f"{human_bytes(limit)}; refused (zip bomb?)"
                )
            chunks.append(chunk)
    return b"".join(chunks)


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale integer data deeper than 8 bits to uint8 using the smallest common bit depth that fits.

    16-bit files often hold 10-, 12- or 14-bit data; dividing by 65535 would make them black.
    The divisor is (2**bits - 1) for the smallest bits in (8, 10, 12, 14, 16) holding the maximum.
    Values already within 0..255 are kept as they are. Negative values are clipped to 0.
    """
    values = np.asarray(values)
    if values.dtype == np.uint8:
        return values
    if values.size == 0:
        return values.astype(np.uint8)
    vmax = float(values.max())
    for bits in (8, 10, 12, 14, 16, 32):
        top = float(2**bits - 1)
        if vmax <= top:
            break
    if top == 255.0:
        return np.clip(values, 0, 255).astype(np.uint8)
    scaled = np.clip(values.astype(np.float64), 0, None) * (255.0 / top)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def drop_alpha(values: np.ndarray) -> np.ndarray:
    """(..., 4) RGBA or (..., 2) grey+alpha uint8 -> colour composited over black."""
    alpha = values[..., -1:].astype(np.uint16)
    colour = values[..., :-1].astype(np.uint16)
    return ((colour * alpha + 127) // 255).astype(np.uint8)
