"""Dataset loading: the built-in digits, the shared real .npz files, named MedMNIST, folders, zips."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gda_core.data import list_datasets, load_dataset, medmnist
from gda_core.data.base import DataSpec
from gda_core.data.folder import load_folder, load_zip
from gda_core.data.npz import load_npz
from gda_core.errors import ConfigError, DataError

MEDMNIST_2D = [
    "pathmnist", "chestmnist", "dermamnist", "octmnist", "pneumoniamnist", "retinamnist",
    "breastmnist", "bloodmnist", "tissuemnist", "organamnist", "organcmnist", "organsmnist",
]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# digits (offline, built in)
# ---------------------------------------------------------------------------------------------


def test_digits_shapes_classes_and_splits():
    ds = load_dataset("digits")
    assert ds.train_images.shape[1:] == (16, 16, 1)
    assert ds.train_images.dtype == np.uint8 and ds.train_labels.dtype == np.int64
    assert ds.num_classes == 10 and ds.class_names == [str(i) for i in range(10)]
    assert (len(ds.train_labels), len(ds.val_labels), len(ds.test_labels)) == (1259, 179, 359)
    assert set(np.unique(ds.train_labels)) == set(range(10))
    assert ds.train_images.max() > 200  # ink scaled to 0..255


def test_digits_options_size_channels():
    ds = load_dataset("digits", image_size=28, channels="rgb")
    assert ds.train_images.shape[1:] == (28, 28, 3)
    assert ds.val_images.shape[1:] == (28, 28, 3) and ds.test_images.shape[1:] == (28, 28, 3)
    grey = load_dataset("digits", channels="grey")
    assert grey.channels == 1


def test_digits_per_class_is_seeded():
    a = load_dataset("digits", per_class=5, seed=1)
    b = load_dataset("digits", per_class=5, seed=1)
    c = load_dataset("digits", per_class=5, seed=2)
    assert len(a.train_labels) == 50 and a.class_counts() == [5] * 10
    assert np.array_equal(a.train_images, b.train_images)
    assert not np.array_equal(a.train_images, c.train_images)
    # val / test are untouched by per_class
    assert len(a.test_labels) == 359


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError):
        load_dataset("digits", image_size=30)
    with pytest.raises(ConfigError):
        load_dataset("digits", channels="cmyk")
    with pytest.raises(ConfigError):
        load_dataset("digits", per_class=0)


def test_unknown_source_and_unsupported_file(tmp_path):
    with pytest.raises(DataError, match="no dataset named"):
        load_dataset(str(tmp_path / "nope.npz"))
    f = tmp_path / "data.csv"
    f.write_text("a,b\n")
    with pytest.raises(DataError, match="data.csv"):
        load_dataset(f)


# ---------------------------------------------------------------------------------------------
# shared real .npz datasets
# ---------------------------------------------------------------------------------------------


def test_breastmnist_npz(shared_data):
    ds = load_dataset(shared_data / "breastmnist" / "breastmnist.npz")
    assert ds.train_images.shape == (546, 28, 28, 1)
    assert (len(ds.val_labels), len(ds.test_labels)) == (78, 156)
    assert ds.class_names == ["malignant", "normal, benign"]  # official names from the file name
    assert ds.class_counts("train") == [147, 399]
    assert ds.class_counts("test") == [42, 114]
    assert ds.warnings == []


def test_pneumoniamnist_npz(shared_data):
    ds = load_dataset(shared_data / "pneumoniamnist" / "pneumoniamnist.npz", image_size=32, channels="rgb")
    assert ds.train_images.shape == (2428, 32, 32, 3)
    assert (len(ds.val_labels), len(ds.test_labels)) == (270, 468)
    assert ds.class_counts("train") == [1214, 1214]


def test_plantvillage_corn_npz(shared_data):
    ds = load_dataset(shared_data / "plantvillage_corn" / "plantvillage_corn.npz")
    assert ds.train_images.shape == (2460, 32, 32, 3)
    assert (len(ds.val_labels), len(ds.test_labels)) == (620, 772)
    assert ds.num_classes == 4 and ds.class_names == ["0", "1", "2", "3"]
    assert ds.class_counts("train") == [631, 752, 334, 743]
    small = load_dataset(shared_data / "plantvillage_corn" / "plantvillage_corn.npz", per_class=3, channels="grey", seed=4)
    assert small.train_images.shape == (12, 32, 32, 1)


# ---------------------------------------------------------------------------------------------
# MedMNIST by name (never over the network)
# ---------------------------------------------------------------------------------------------


def test_medmnist_names_registered():
    infos = {d.name: d for d in list_datasets()}
    for name in MEDMNIST_2D:
        assert name in infos and infos[name].offline is False


def test_medmnist_by_name_from_data_dir(shared_data, tmp_path):
    shutil.copy(shared_data / "pneumoniamnist" / "pneumoniamnist.npz", tmp_path / "pneumoniamnist.npz")
    ds = load_dataset("pneumoniamnist", data_dir=tmp_path)
    assert ds.name == "pneumoniamnist"
    assert ds.class_names == ["normal", "pneumonia"]
    assert ds.train_images.shape == (2428, 28, 28, 1)


def test_medmnist_by_name_uses_gda_data_dir(shared_data, tmp_path, monkeypatch):
    shutil.copy(shared_data / "breastmnist" / "breastmnist.npz", tmp_path / "breastmnist.npz")
    monkeypatch.setenv("GDA_DATA_DIR", str(tmp_path))
    ds = load_dataset("BreastMNIST")
    assert ds.class_names == ["malignant", "normal, benign"] and len(ds.train_labels) == 546


def test_medmnist_offline_message(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("bloodmnist", data_dir=tmp_path)
    msg = str(err.value)
    assert "bloodmnist.npz not found in" in msg and str(tmp_path) in msg
    assert "https://zenodo.org/records/10519652/files/bloodmnist.npz?download=1" in msg
    assert "GDA_DATA_DIR" in msg and "\n" not in msg


def test_chestmnist_refused(tmp_path):
    with pytest.raises(DataError, match="multi-label"):
        load_dataset("chestmnist", data_dir=tmp_path)


def test_download_checks_md5_and_writes_atomically(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    payload = b"pretend npz bytes" * 1000
    (src / "retinamnist.npz").write_bytes(payload)
    monkeypatch.setattr(medmnist, "MEDMNIST_URL", (src.as_uri() + "/{name}.npz"))
    info = medmnist.MEDMNIST_INFO["retinamnist"]
    dest_dir = tmp_path / "cache"

    # wrong MD5 (the real one): refused, nothing left behind
    with pytest.raises(DataError, match="MD5"):
        medmnist.download_medmnist("retinamnist", dest_dir)
    assert list(dest_dir.iterdir()) == []

    good = (hashlib.md5(payload).hexdigest(),) + info[1:]
    monkeypatch.setitem(medmnist.MEDMNIST_INFO, "retinamnist", good)
    seen = []
    out = medmnist.download_medmnist("retinamnist", dest_dir, progress=lambda done, total: seen.append(done))
    assert out == dest_dir / "retinamnist.npz" and out.read_bytes() == payload
    assert seen and seen[-1] == len(payload)
    assert [p.name for p in dest_dir.iterdir()] == ["retinamnist.npz"]

    # network failure -> DataError telling where to put the file
    monkeypatch.setattr(medmnist, "MEDMNIST_URL", (tmp_path / "missing").as_uri() + "/{name}.npz")
    with pytest.raises(DataError, match="could not download"):
        medmnist.download_medmnist("retinamnist", tmp_path / "other")


# ---------------------------------------------------------------------------------------------
# .npz variants made here
# ---------------------------------------------------------------------------------------------


def _arrays(n=40, size=12, classes=4, rgb=False, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n, size, size, 3) if rgb else (n, size, size)
    return rng.integers(0, 256, size=shape, dtype=np.uint8), (np.arange(n) % classes).astype(np.uint8).reshape(-1, 1)


def test_npz_without_val_test_is_split_with_seed(tmp_path):
    x, y = _arrays(n=120)
    f = tmp_path / "mine.npz"
    np.savez(f, train_images=x, train_labels=y)
    a = load_npz(f, DataSpec(str(f), seed=3))
    b = load_npz(f, DataSpec(str(f), seed=3))
    c = load_npz(f, DataSpec(str(f), seed=4))
    assert (len(a.train_labels), len(a.val_labels), len(a.test_labels)) == (84, 12, 24)
    assert np.array_equal(a.test_images, b.test_images) and not np.array_equal(a.test_images, c.test_images)
    assert any("no val/test split" in w and "seed 3" in w for w in a.warnings)
    assert a.class_names == ["0", "1", "2", "3"] and a.image_size == 12 and a.channels == 1


def test_npz_conversions(tmp_path):
    x, y = _arrays(n=20, size=8, rgb=True)
    rgba = np.concatenate([x, np.full(x.shape[:3] + (1,), 255, np.uint8)], axis=3)
    f = tmp_path / "rgba.npz"
    np.savez(f, train_images=rgba, train_labels=y[:, 0], val_images=x[:4].astype(np.float32) / 255.0, val_labels=y[:4],
             test_images=(x[:4].astype(np.uint16) * 257), test_labels=y[:4].astype(np.int64),
             class_names=np.array(["a", "b", "c", "d"]))  # fmt: skip
    ds = load_npz(f, DataSpec(str(f)))
    assert ds.train_images.shape == (20, 8, 8, 3) and np.array_equal(ds.train_images, x)
    assert np.array_equal(ds.val_images, x[:4]) and np.array_equal(ds.test_images, x[:4])
    assert ds.class_names == ["a", "b", "c", "d"]
    # 12-bit data stored as uint16 is scaled by its bit depth, not by 65535
    g = tmp_path / "deep.npz"
    deep = np.full((6, 8, 8, 1), 4095, np.uint16)
    np.savez(g, train_images=deep, train_labels=np.array([0, 1, 0, 1, 0, 1]))
    assert load_npz(g, DataSpec(str(g))).train_images.max() == 255


def test_npz_non_square_is_centre_cropped(tmp_path):
    x = np.zeros((10, 12, 20), np.uint8)
    x[:, :, 4:16] = 200
    f = tmp_path / "wide.npz"
    np.savez(f, train_images=x, train_labels=np.arange(10) % 2, val_images=x[:2], val_labels=[0, 1], test_images=x[:2], test_labels=[0, 1])
    ds = load_npz(f, DataSpec(str(f)))
    assert ds.train_images.shape == (10, 12, 12, 1) and ds.train_images.min() == 200
    assert any("not square" in w for w in ds.warnings)


def test_npz_splits_carved_from_train_after_crop_and_rgb(tmp_path):
    # The carved val/test come from the cropped (and RGB-converted) train images, like the given splits.
    x = np.zeros((20, 12, 20), np.uint8)
    x[:, :, 4:16] = 200
    f = tmp_path / "wide_train_only.npz"
    np.savez(f, train_images=x, train_labels=np.arange(20) % 2)
    ds = load_npz(f, DataSpec(str(f)))
    assert ds.train_images.shape[1:] == ds.val_images.shape[1:] == ds.test_images.shape[1:] == (12, 12, 1)
    assert ds.test_images.min() == 200
    g = tmp_path / "grey_train_rgb_val.npz"
    np.savez(g, train_images=x[:, :, 4:16], train_labels=np.arange(20) % 2, val_images=np.full((4, 12, 12, 3), 9, np.uint8), val_labels=[0, 1, 0, 1])
    ds = load_npz(g, DataSpec(str(g)))
    assert ds.train_images.shape[1:] == ds.test_images.shape[1:] == (12, 12, 3) and ds.test_images.min() == 200


# ---------------------------------------------------------------------------------------------
# image folders and zips made here
# ---------------------------------------------------------------------------------------------


def _save(path: Path, img: Image.Image, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)


def _make_mixed_folder(root: Path, per_class: int = 10) -> None:
    """Three classes; PNG/JPEG, grey/RGB/RGBA/palette/16-bit, mixed sizes; plus litter."""
    rng = np.random.default_rng(0)
    for k, cls in enumerate(["cat", "dog", "émeu bird"]):
        for i in range(per_class):
            side = [20, 24, 32, 40][i % 4]
            arr = rng.integers(0, 256, size=(side, side + 4 * (i % 2), 3), dtype=np.uint8)
            kind = (i + k) % 5
            if kind == 0:
                _save(root / cls / f"img{i}.png", Image.fromarray(arr))
            elif kind == 1:
                _save(root / cls / f"img{i}.JPG", Image.fromarray(arr), "JPEG")
            elif kind == 2:
                _save(root / cls / f"img{i}.png", Image.fromarray(arr).convert("L"))
            elif kind == 3:
                _save(root / cls / f"img{i}.png", Image.fromarray(arr).convert("RGBA"))
            else:
                _save(root / cls / f"img{i}.tif", Image.fromarray(arr[..., 0].astype(np.uint16) * 16))
        (root / cls / "notes.txt").write_text("not an image")
        (root / cls / ".DS_Store").write_bytes(b"\0\1\2")
    (root / "README.md").write_text("hello")
    _save(root / "dog" / "sub folder" / "palette.png", Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).convert("P"))


def test_folder_mixed_images(tmp_path):
    root = tmp_path / "my data"
    _make_mixed_folder(root)
    ds = load_dataset(root, seed=5)
    assert ds.class_names == ["cat", "dog", "émeu bird"]
    assert ds.channels == 3  # grey + colour -> RGB
    assert ds.image_size == 24  # median shorter side of 9x20, 9x24, 6x32, 6x40 and 1x16 px
    total = len(ds.train_labels) + len(ds.val_labels) + len(ds.test_labels)
    assert total == 31
    assert len(ds.test_labels) == 6 and len(ds.val_labels) == 3
    assert any("resized to 24x24" in w for w in ds.warnings)
    assert not any("notes.txt" in w or "DS_Store" in w for w in ds.warnings)
    again = load_dataset(root, seed=5)
    assert np.array_equal(ds.train_images, again.train_images)
    sized = load_dataset(root, image_size=16, channels="grey")
    assert sized.train_images.shape[1:] == (16, 16, 1)


def test_folder_all_grey_stays_grey_and_16bit_scaled(tmp_path):
    for cls in ("a", "b"):
        for i in range(4):
            _save(tmp_path / cls / f"{i}.png", Image.fromarray(np.full((8, 8), 4095, np.uint16)))
            _save(tmp_path / cls / f"g{i}.bmp", Image.fromarray(np.full((8, 8), 100, np.uint8)))
    ds = load_folder(tmp_path, DataSpec(str(tmp_path)))
    assert ds.channels == 1 and ds.image_size == 8
    assert set(np.unique(np.concatenate([ds.train_images.ravel(), ds.test_images.ravel()]))) == {100, 255}
    assert not any("resized" in w for w in ds.warnings)


def test_zip_equals_folder_and_unwraps_top_folder(tmp_path):
    root = tmp_path / "wrapped" / "dataset"
    _make_mixed_folder(root)
    zpath = tmp_path / "dataset.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(root.rglob("*")):
            zf.write(f, "dataset/" + f.relative_to(root).as_posix())
        zf.writestr("__MACOSX/dataset/cat/._img0.png", b"junk")
    from_folder = load_dataset(tmp_path / "wrapped", seed=2)  # also wrapped once
    from_zip = load_dataset(zpath, seed=2)
    assert from_zip.class_names == from_folder.class_names == ["cat", "dog", "émeu bird"]
    for split in ("train", "val", "test"):
        assert np.array_equal(from_zip.split(split)[0], from_folder.split(split)[0])
        assert np.array_equal(from_zip.split(split)[1], from_folder.split(split)[1])
    assert not any("MACOSX" in w for w in from_zip.warnings)
    direct = load_zip(zpath, DataSpec(str(zpath), image_size=12))
    assert direct.image_size == 12


def test_train_val_test_layout_is_respected(tmp_path):
    rng = np.random.default_rng(1)
    counts = {"train": 6, "val": 2, "test": 3}
    for split, n in counts.items():
        for cls in ("ant", "bee"):
            for i in range(n):
                _save(tmp_path / "ds" / split / cls / f"{i}.png", Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)))
    ds = load_dataset(tmp_path / "ds")
    assert (len(ds.train_labels), len(ds.val_labels), len(ds.test_labels)) == (12, 4, 6)
    assert ds.class_counts("val") == [2, 2] and ds.image_size == 12
    # 'valid' is accepted, and a missing test folder is carved out of train
    shutil.rmtree(tmp_path / "ds" / "test")
    (tmp_path / "ds" / "val").rename(tmp_path / "ds" / "valid")
    ds2 = load_dataset(tmp_path / "ds", seed=1)
    assert len(ds2.val_labels) == 4 and len(ds2.test_labels) > 0
    assert len(ds2.train_labels) + len(ds2.test_labels) == 12
    assert any("no test folder" in w for w in ds2.warnings)
