"""Writing augmented training sets: a zip of class folders or a MedMNIST-layout .npz, each with
a provenance record (checkpoint hash, seeds, sampling settings, selection filters, counts).

Both load back with ``gda_core.data.load_dataset``:

- zip: ``<class>/synth_<i>_seed<s>.png`` (+ ``provenance.json``); with ``merge_with=dataset``
  ``train/<class>/`` holds the real training images (``real_<i>.png``) and the synthetic ones, and
  ``val/`` / ``test/`` the real validation and test images. Class folders are the class names
  (sanitised); the folder loader orders classes by folder name, ``provenance.json`` lists them in
  the label order of the source.
- npz: ``train_images`` / ``train_labels`` (synthetic, or real + synthetic when merging), and
  when merging ``val_*`` / ``test_*`` from the real dataset; labels are (N, 1) uint8 (a wider
  unsigned type past 256 classes), grey images (N, H, W) as in MedMNIST, plus ``class_names`` and
  ``train_is_synthetic`` (bool (N,)). The provenance goes beside it as ``<name>.provenance.json``.
- folder: the zip's layout written as files (``export_folder``), with ``provenance.json``.

Every file is written atomically (temp file + rename).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..runtime import atomic_write_bytes, atomic_write_json
from ..sampling import _safe_name, png_bytes
from .generate import SyntheticSet


def _check_merge(synth: SyntheticSet, dataset) -> None:
    if dataset is None:
        return
    if list(dataset.class_names) != list(synth.class_names):
        raise ConfigError(
            f"cannot merge: the dataset's classes ({', '.join(dataset.class_names[:5])}...) differ from the checkpoint's ({', '.join(synth.class_names[:5])}...)"
        )
    if dataset.train_images.shape[1:] != synth.images.shape[1:] and len(synth):
        raise ConfigError(
            f"cannot merge: dataset images are {dataset.train_images.shape[1:]} but synthetic images are {synth.images.shape[1:]} (H, W, C)"
        )


def provenance(synth: SyntheticSet, merge_with=None) -> dict:
    prov = synth.provenance()
    # The fields every GDA Studio output carries at the top level (gda_core.provenance).
    ck = prov.get("checkpoint") or {}
    prov = {"kind": "augment", "family": ck.get("family"), "dataset": ck.get("trained_on"), "weights_sha256": ck.get("weights_sha256"), **prov}
    if merge_with is not None:
        prov["merged_with"] = {
            "dataset": merge_with.name,
            "spec": merge_with.spec.to_dict(),
            "real_train_counts_per_class": dict(zip(merge_with.class_names, merge_with.class_counts("train"), strict=True)),
            "val": len(merge_with.val_labels),
            "test": len(merge_with.test_labels),
        }
    return prov


def _folder_names(class_names: list[str]) -> list[str]:
    out: list[str] = []
    for name in class_names:
        safe = _safe_name(name)
        while safe.lower() in (o.lower() for o in out) or safe.lower() in ("train", "val", "test"):
            safe = f"{safe}_"
        out.append(safe)
    return out


def _members(synth: SyntheticSet, merge_with=None):
    """(relative path, uint8 image) for every image of the export."""
    folders = _folder_names(synth.class_names)
    prefix = "train/" if merge_with is not None else ""
    if merge_with is not None:
        for i, (img, lab) in enumerate(zip(merge_with.train_images, merge_with.train_labels, strict=True)):
            yield f"train/{folders[int(lab)]}/real_{i:06d}.png", img
    for i, (img, lab, s) in enumerate(zip(synth.images, synth.labels, synth.seeds, strict=True)):
        yield f"{prefix}{folders[int(lab)]}/synth_{i:06d}_seed{int(s)}.png", img
    if merge_with is not None:
        for split in ("val", "test"):
            images, labels = merge_with.split(split)
            for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
                yield f"{split}/{folders[int(lab)]}/real_{i:06d}.png", img


def zip_bytes(synth: SyntheticSet, *, merge_with=None) -> bytes:
    _check_merge(synth, merge_with)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, img in _members(synth, merge_with):
            zf.writestr(name, png_bytes(img))
        prov = provenance(synth, merge_with)
        prov["class_folders"] = dict(zip(synth.class_names, _folder_names(synth.class_names), strict=True))
        zf.writestr("provenance.json", json.dumps(prov, indent=2, default=_default) + "\n")
    return buf.getvalue()


def _default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _labels_col(labels: np.ndarray, num_classes: int) -> np.ndarray:
    dtype = np.uint8 if num_classes <= 256 else (np.uint16 if num_classes <= 65536 else np.uint32)
    return np.asarray(labels).astype(dtype).reshape(-1, 1)


def _medmnist_images(images: np.ndarray) -> np.ndarray:
    return images[..., 0] if images.ndim == 4 and images.shape[-1] == 1 else images


def npz_bytes(synth: SyntheticSet, *, merge_with=None) -> bytes:
    _check_merge(synth, merge_with)
    k = synth.num_classes
    if merge_with is not None:
        train_images = np.concatenate([merge_with.train_images, synth.images]) if len(synth) else merge_with.train_images
        train_labels = np.concatenate([merge_with.train_labels, synth.labels])
        is_syn = np.concatenate([np.zeros(len(merge_with.train_labels), bool), np.ones(len(synth), bool)])
    else:
        if len(synth) == 0:
            raise ConfigError("no synthetic images to export (all were filtered out, or the ratio is 0)")
        train_images, train_labels, is_syn = synth.images, synth.labels, np.ones(len(synth), bool)
    arrays = {
        "train_images": _medmnist_images(train_images),
        "train_labels": _labels_col(train_labels, k),
        "train_is_synthetic": is_syn,
        "class_names": np.array(synth.class_names, dtype=str),
    }
    if merge_with is not None:
        for split in ("val", "test"):
            images, labels = merge_with.split(split)
            if len(labels):
                arrays[f"{split}_images"] = _medmnist_images(images)
                arrays[f"{split}_labels"] = _labels_col(labels, k)
    from ..provenance import NPZ_ENTRY, npz_entry

    # Inside the file too (not only in the .provenance.json beside it), so a copied .npz still says what made it.
    arrays[NPZ_ENTRY] = npz_entry(json.loads(json.dumps(provenance(synth, merge_with), default=_default)))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def export_zip(synth: SyntheticSet, path: str | os.PathLike, *, merge_with=None) -> Path:
    """Write a zip of class folders of PNGs with ``provenance.json`` inside (atomically)."""
    path = Path(path)
    if path.suffix.lower() != ".zip":
        raise ConfigError(f"zip export path must end in .zip, got '{path.name}'")
    if merge_with is None and len(synth) == 0:
        raise ConfigError("no synthetic images to export (all were filtered out, or the ratio is 0)")
    atomic_write_bytes(path, zip_bytes(synth, merge_with=merge_with))
    return path


def provenance_path(npz_path: str | os.PathLike) -> Path:
    p = Path(npz_path)
    return p.with_name(p.name[: -len(p.suffix)] + ".provenance.json") if p.suffix else p.with_name(p.name + ".provenance.json")


def export_npz(synth: SyntheticSet, path: str | os.PathLike, *, merge_with=None) -> Path:
    """Write a MedMNIST-layout .npz and ``<name>.provenance.json`` beside it (atomically)."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise ConfigError(f"npz export path must end in .npz, got '{path.name}'")
    data = npz_bytes(synth, merge_with=merge_with)
    atomic_write_bytes(path, data)
    prov = provenance(synth, merge_with)
    prov["file"] = path.name
    atomic_write_json(provenance_path(path), prov)
    return path


def export_folder(synth: SyntheticSet, path: str | os.PathLike, *, merge_with=None) -> Path:
    """Write the zip layout as files under a folder (each PNG atomically) with provenance.json."""
    _check_merge(synth, merge_with)
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root} exists and is not a folder")
    if merge_with is None and len(synth) == 0:
        raise ConfigError("no synthetic images to export (all were filtered out, or the ratio is 0)")
    for name, img in _members(synth, merge_with):
        atomic_write_bytes(root / name, png_bytes(img))
    prov = provenance(synth, merge_with)
    prov["class_folders"] = dict(zip(synth.class_names, _folder_names(synth.class_names), strict=True))
    atomic_write_json(root / "provenance.json", prov)
    return root


def export(synth: SyntheticSet, path: str | os.PathLike, *, merge_with=None) -> Path:
    """By suffix: .zip, .npz, or anything else = a folder."""
    suffix = Path(path).suffix.lower()
    if suffix == ".zip":
        return export_zip(synth, path, merge_with=merge_with)
    if suffix == ".npz":
        return export_npz(synth, path, merge_with=merge_with)
    if suffix:
        raise ConfigError(f"output must be a .zip, a .npz or a folder, got '{Path(path).name}'")
    return export_folder(synth, path, merge_with=merge_with)
