"""Hostile and broken inputs: every one is either handled with a warning or refused with a DataError
naming the file. The corpus is generated here (no binary fixtures)."""

from __future__ import annotations

import io
import os
import pickle
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from gda_core.data import load_dataset, safety
from gda_core.data.base import Dataset, DataSpec
from gda_core.data.folder import load_folder, load_zip
from gda_core.data.npz import load_npz
from gda_core.errors import DataError

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _png_bytes(arr: np.ndarray | None = None, fmt: str = "PNG") -> bytes:
    if arr is None:
        arr = np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims ``width`` x ``height`` pixels (valid CRC)."""
    b = bytearray(_png_bytes(np.zeros((1, 1), np.uint8)))
    assert b[12:16] == b"IHDR"
    b[16:20] = width.to_bytes(4, "big")
    b[20:24] = height.to_bytes(4, "big")
    b[29:33] = zlib.crc32(bytes(b[12:29])).to_bytes(4, "big")
    return bytes(b)


def _good_class(folder: Path, n: int = 4, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        (folder / f"ok{i}.png").write_bytes(_png_bytes(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)))


def _assert_valid(ds: Dataset) -> None:
    assert isinstance(ds, Dataset)
    assert ds.num_classes >= 1 and len(ds.train_labels) >= 1
    for split in ("train", "val", "test"):
        images, labels = ds.split(split)
        assert images.dtype == np.uint8 and images.ndim == 4 and images.shape[3] in (1, 3)
        assert images.shape[1] == images.shape[2] == ds.image_size
        assert labels.dtype == np.int64 and len(labels) == len(images)
        if len(labels):
            assert 0 <= labels.min() and labels.max() < ds.num_classes


def _spec(path: Path, **kw) -> DataSpec:
    return DataSpec(str(path), **kw)


# ---------------------------------------------------------------------------------------------
# broken and hostile image files
# ---------------------------------------------------------------------------------------------


def test_broken_files_are_skipped_with_named_warnings(tmp_path):
    root = tmp_path / "ds"
    _good_class(root / "a")
    _good_class(root / "b", seed=1)
    bad = root / "b"
    png, jpg = _png_bytes(), _png_bytes(fmt="JPEG")
    (bad / "truncated.png").write_bytes(png[: len(png) // 2])
    (bad / "truncated.jpg").write_bytes(jpg[: len(jpg) // 3])
    (bad / "text.png").write_text("this is not a PNG at all")
    (bad / "empty.png").write_bytes(b"")
    (bad / "huge.png").write_bytes(_png_claiming(20000, 20000))  # 400 Mpx: PIL's own bomb error
    (bad / "big.png").write_bytes(_png_claiming(7000, 7000))  # 49 Mpx: over our 40 Mpx limit
    (bad / "tiny.png").write_bytes(_png_bytes(np.full((1, 1, 3), 90, np.uint8)))  # 1x1 is fine
    (bad / "Thumbs.db").write_bytes(b"\0" * 10)
    (bad / "._ok0.png").write_bytes(b"AppleDouble junk")
    (bad / "eps.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")  # no Ghostscript
    (bad / "gif.png").write_bytes(_png_bytes(fmt="GIF"))  # a format we do not decode
    if hasattr(os, "mkfifo"):
        os.mkfifo(bad / "pipe.png")  # would block forever if opened
    ds = load_folder(root, _spec(root))
    _assert_valid(ds)
    total = len(ds.train_labels) + len(ds.val_labels) + len(ds.test_labels)
    assert total == 9  # 4 + 4 good + the 1x1 image
    text = "\n".join(ds.warnings)
    names = ["truncated.png", "truncated.jpg", "text.png", "empty.png", "huge.png", "big.png", "eps.png", "gif.png"]
    for name in names + (["pipe.png"] if hasattr(os, "mkfifo") else []):
        assert f"{bad / name}" in text, name
    assert "too large" in text
    assert "tiny.png" not in text and "Thumbs.db" not in text and "._ok0" not in text


def test_all_images_broken_is_a_data_error(tmp_path):
    root = tmp_path / "broken"
    (root / "x").mkdir(parents=True)
    (root / "x" / "a.png").write_text("nope")
    (root / "x" / "b.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=f"{root}.*no readable images"):
        load_folder(root, _spec(root))


def test_no_class_folders_is_a_data_error(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    (root / "a.png").write_bytes(_png_bytes())
    with pytest.raises(DataError, match=f"{root} has no class sub-folders"):
        load_dataset(root)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=str(empty)):
        load_dataset(empty)


def test_empty_class_is_dropped_and_single_class_warned(tmp_path):
    root = tmp_path / "ds"
    _good_class(root / "kept", n=5)
    (root / "empty class").mkdir()
    (root / "only junk").mkdir()
    (root / "only junk" / "bad.png").write_text("x")
    ds = load_folder(root, _spec(root))
    assert ds.class_names == ["kept"]
    text = "\n".join(ds.warnings)
    assert "'empty class'" in text and "'only junk'" in text and "dropped" in text
    assert "only one class ('kept')" in text


def test_unicode_and_spaces(tmp_path):
    root = tmp_path / "données été 数据"
    for i, cls in enumerate(["класс один", "クラス 2", "🙂 smile"]):
        _good_class(root / cls, n=3, seed=i)
    ds = load_dataset(root)
    assert ds.class_names == sorted(["класс один", "クラス 2", "🙂 smile"])
    _assert_valid(ds)


def test_two_thousand_classes(tmp_path):
    root = tmp_path / "many"
    tiny = _png_bytes(np.zeros((4, 4), np.uint8))
    for k in range(2000):
        d = root / f"class_{k:04d}"
        d.mkdir(parents=True)
        (d / "a.png").write_bytes(tiny)
    start = time.perf_counter()
    ds = load_dataset(root, per_class=1)
    elapsed = time.perf_counter() - start
    assert ds.num_classes == 2000 and ds.class_names[0] == "class_0000"
    assert len(ds.train_labels) == 2000 and ds.image_size == 8  # 4 px -> the 8 px minimum
    assert elapsed < 20, elapsed


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_symlink_outside_root_is_ignored(tmp_path):
    outside = tmp_path / "outside"
    _good_class(outside / "secret", n=2)
    root = tmp_path / "ds"
    _good_class(root / "a", n=3)
    _good_class(root / "b", n=3, seed=2)
    (root / "a" / "link.png").symlink_to(outside / "secret" / "ok0.png")
    (root / "stolen").symlink_to(outside / "secret", target_is_directory=True)
    (root / "b" / "inside.png").symlink_to(root / "a" / "ok0.png")  # inside the root: fine
    (root / "b" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    ds = load_folder(root, _spec(root))
    assert ds.class_names == ["a", "b"]
    assert len(ds.train_labels) + len(ds.val_labels) + len(ds.test_labels) == 7
    text = "\n".join(ds.warnings)
    assert f"{root / 'a' / 'link.png'}" in text and f"{root / 'stolen'}" in text and "outside" in text


def test_duplicate_split_folders_refused(tmp_path):
    root = tmp_path / "ds"
    for split in ("train", "val", "valid"):
        _good_class(root / split / "a", n=2)
    with pytest.raises(DataError, match=f"{root}.*two folders for the val split"):
        load_folder(root, _spec(root))


# ---------------------------------------------------------------------------------------------
# zips
# ---------------------------------------------------------------------------------------------


def _zip(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _good_members(prefix: str = "") -> dict[str, bytes]:
    rng = np.random.default_rng(3)
    return {f"{prefix}{c}/{i}.png": _png_bytes(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for c in "ab" for i in range(3)}


@pytest.mark.parametrize("evil", ["../evil.png", "a/../../evil.png", "/abs.png", "..\\evil.png", "C:/evil.png"])
def test_zip_slip_refused_and_nothing_written(tmp_path, evil):
    work = tmp_path / "work"
    work.mkdir()
    zpath = _zip(work / "slip.zip", {**_good_members(), evil: _png_bytes()})
    before = sorted(p for p in tmp_path.rglob("*"))
    cwd_before = sorted(os.listdir(os.getcwd()))
    with pytest.raises(DataError) as err:
        load_dataset(zpath)
    assert str(zpath) in str(err.value) and "unsafe member path" in str(err.value) and evil in str(err.value)
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert sorted(os.listdir(os.getcwd())) == cwd_before
    assert not (tmp_path / "evil.png").exists() and not Path("/abs.png").exists()


def test_zip_bomb_declared_sizes(tmp_path, monkeypatch):
    zeros = b"\0" * (2 * 1024 * 1024)  # deflates to a few KiB
    zpath = _zip(tmp_path / "bomb.zip", {**_good_members(), "a/bomb.png": zeros})
    assert zpath.stat().st_size < 64 * 1024
    monkeypatch.setattr(safety, "MAX_ZIP_MEMBER_BYTES", 1024 * 1024)
    with pytest.raises(DataError, match=f"{zpath}.*'a/bomb.png'.*zip bomb"):
        load_zip(zpath, _spec(zpath))
    monkeypatch.setattr(safety, "MAX_ZIP_MEMBER_BYTES", 256 * 1024 * 1024)
    monkeypatch.setattr(safety, "MAX_ZIP_BYTES", 1024 * 1024)
    with pytest.raises(DataError, match=f"{zpath}.*uncompressed.*zip bomb"):
        load_zip(zpath, _spec(zpath))
    monkeypatch.setattr(safety, "MAX_ZIP_BYTES", 2 * 1024**3)
    monkeypatch.setattr(safety, "MAX_ZIP_MEMBERS", 5)
    with pytest.raises(DataError, match=f"{zpath} has 7 members"):
        load_zip(zpath, _spec(zpath))


def _lie_about_size(zpath: Path, member: str, fake_size: int) -> None:
    """Rewrite the declared uncompressed size of ``member`` in both headers."""
    data = bytearray(zpath.read_bytes())
    name = member.encode()
    # local file header: signature PK\3\4, uncompressed size at offset 22, name at 30
    pos = 0
    while (pos := data.find(b"PK\x03\x04", pos)) != -1:
        nlen = int.from_bytes(data[pos + 26 : pos + 28], "little")
        if data[pos + 30 : pos + 30 + nlen] == name:
            data[pos + 22 : pos + 26] = fake_size.to_bytes(4, "little")
        pos += 4
    # central directory: signature PK\1\2, uncompressed size at offset 24, name at 46
    pos = 0
    while (pos := data.find(b"PK\x01\x02", pos)) != -1:
        nlen = int.from_bytes(data[pos + 28 : pos + 30], "little")
        if data[pos + 46 : pos + 46 + nlen] == name:
            data[pos + 24 : pos + 28] = fake_size.to_bytes(4, "little")
        pos += 4
    zpath.write_bytes(bytes(data))


def test_zip_lying_header_never_inflates_past_declared_size(tmp_path, monkeypatch):
    zpath = _zip(tmp_path / "liar.zip", {**_good_members(), "b/liar.png": b"\0" * (4 * 1024 * 1024)})
    _lie_about_size(zpath, "b/liar.png", 100)
    with zipfile.ZipFile(zpath) as zf:
        assert zf.getinfo("b/liar.png").file_size == 100
    reads = []
    real = safety.read_zip_member

    def spy(zf, info, path, limit):
        data = real(zf, info, path, limit)
        reads.append((info.filename, len(data)))
        return data

    monkeypatch.setattr(safety, "read_zip_member", spy)
    monkeypatch.setattr(safety, "MAX_ZIP_BYTES", 1024 * 1024)  # the 4 MiB truth would exceed this
    ds = load_zip(zpath, _spec(zpath))  # the liar is skipped as corrupt; the rest loads
    _assert_valid(ds)
    assert len(ds.train_labels) + len(ds.val_labels) + len(ds.test_labels) == 6
    assert any("b/liar.png" in w and str(zpath) in w for w in ds.warnings)
    assert all(n <= 100 for name, n in reads if name == "b/liar.png")


def test_zip_read_counts_actual_bytes(tmp_path):
    """read_zip_member stops at the per-member limit even when the header allows more."""
    zpath = _zip(tmp_path / "z.zip", {"a/x.png": b"\1" * 5000})
    with zipfile.ZipFile(zpath) as zf:
        info = zf.getinfo("a/x.png")
        assert len(safety.read_zip_member(zf, info, zpath, 10_000)) == 5000
        with pytest.raises(DataError, match="inflates past"):
            info.file_size = 10_000  # a header claiming more than the limit we pass
            safety.read_zip_member(zf, info, zpath, 1000)


def test_zip_symlink_member_and_macosx_ignored(tmp_path):
    zpath = tmp_path / "links.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for name, data in _good_members("top/").items():
            zf.writestr(name, data)
        link = zipfile.ZipInfo("top/a/link.png")
        link.create_system = 3
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
        zf.writestr("__MACOSX/top/a/._0.png", b"\0\5\x16\7junk")
        zf.writestr("top/.DS_Store", b"junk")
    ds = load_zip(zpath, _spec(zpath))
    assert ds.class_names == ["a", "b"]
    assert any("link.png" in w and "symlink" in w for w in ds.warnings)
    assert not any("MACOSX" in w or "DS_Store" in w for w in ds.warnings)


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04" + b"\0" * 40])
def test_corrupt_zip_is_a_data_error(tmp_path, content):
    zpath = tmp_path / "bad.zip"
    zpath.write_bytes(content)
    with pytest.raises(DataError, match=str(zpath)):
        load_dataset(zpath)


def test_truncated_zip_is_a_data_error(tmp_path):
    zpath = _zip(tmp_path / "cut.zip", _good_members())
    zpath.write_bytes(zpath.read_bytes()[:-30])  # end-of-central-directory record cut off
    with pytest.raises(DataError, match=str(zpath)):
        load_dataset(zpath)


# ---------------------------------------------------------------------------------------------
# hostile .npz
# ---------------------------------------------------------------------------------------------


class _Evil:
    """Unpickling this creates ``marker``: proof that a loader unpickled user data."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _valid_arrays(n: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "train_images": rng.integers(0, 256, (n, 8, 8), dtype=np.uint8),
        "train_labels": (np.arange(n) % 2).astype(np.uint8).reshape(-1, 1),
        "val_images": rng.integers(0, 256, (4, 8, 8), dtype=np.uint8),
        "val_labels": np.array([[0], [1], [0], [1]], np.uint8),
        "test_images": rng.integers(0, 256, (4, 8, 8), dtype=np.uint8),
        "test_labels": np.array([[0], [1], [0], [1]], np.uint8),
    }


def test_npz_object_array_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "UNPICKLED"
    arrays = _valid_arrays()
    arrays["train_images"] = np.array([_Evil(str(marker))] * 10, dtype=object)
    f = _npz(tmp_path / "evil.npz", **arrays)
    # sanity: the payload works when unpickled (in a throwaway marker location)
    probe = tmp_path / "probe_marker"
    pickle.loads(pickle.dumps(_Evil(str(probe))))
    assert probe.exists()
    with pytest.raises(DataError) as err:
        load_dataset(f)
    assert str(f) in str(err.value) and "holds pickled objects; refused" in str(err.value)
    assert not marker.exists()
    # also when the pickled array is an extra, unexpected key
    extra = _npz(tmp_path / "extra.npz", **_valid_arrays(), notes=np.array([_Evil(str(marker))], dtype=object))
    with pytest.raises(DataError, match="pickled objects; refused"):
        load_npz(extra, _spec(extra))
    assert not marker.exists()


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda a: a.pop("train_labels"), "missing required keys train_labels"),
        (lambda a: (a.pop("train_images"), a.pop("train_labels")), "missing required keys train_images, train_labels"),
        (lambda a: a.pop("val_labels"), "has val_images but no val_labels"),
        (lambda a: a.update(train_images=a["train_images"].astype(np.complex64)), "dtype complex64"),
        (lambda a: a.update(train_images=np.array([["x"] * 8] * 8 * 10).reshape(10, 8, 8)), "dtype <U1"),
        (lambda a: a.update(train_images=a["train_images"].astype(np.float32) * 3 - 10), "float images must be in"),
        (lambda a: a.update(train_images=np.full((10, 8, 8), np.nan, np.float32)), "NaN"),
        (lambda a: a.update(train_images=a["train_images"].astype(np.int32) + 1000), "values above 255"),
        (lambda a: a.update(train_images=a["train_images"][:, :, :, None, None]), "has shape"),
        (lambda a: a.update(train_images=a["train_images"][:7]), "has 7 images but train_labels has 10 labels"),
        (lambda a: a.update(train_labels=a["train_labels"].astype(np.int64) - 1), "negative label"),
        (lambda a: a.update(train_labels=a["train_labels"] + 0.5), "non-integer"),
        (lambda a: a.update(train_labels=np.full((10, 1), 10**9)), "out of range"),
        (lambda a: a.update(train_labels=np.zeros((10, 14), np.uint8)), "multi-label"),
        (lambda a: a.update(train_labels=a["train_labels"] * 5, class_names=np.array(["x", "y"])), "label 5 is out of range for 2 class names"),
        (lambda a: a.update(class_names=np.array([1, 2])), "class_names must be a 1-D array of strings"),
        (lambda a: a.update(val_images=np.zeros((4, 12, 12), np.uint8)), "val_images are 12x12 but train_images are 8x8"),
        (lambda a: a.update(train_images=np.zeros((0, 8, 8), np.uint8), train_labels=np.zeros((0, 1), np.uint8)), "train_images is empty"),
        (lambda a: a.update({k: np.zeros((len(v), 10, 10), np.uint8) for k, v in a.items() if k.endswith("images")}), "not a multiple of 4"),
    ],
)
def test_npz_validation_errors(tmp_path, change, fragment):
    arrays = _valid_arrays()
    change(arrays)
    f = _npz(tmp_path / "bad data.npz", **arrays)
    with pytest.raises(DataError) as err:
        load_dataset(f)
    msg = str(err.value)
    assert str(f) in msg, msg
    assert fragment in msg, msg
    assert "\n" not in msg


def test_npz_corrupt_files(tmp_path):
    good = _npz(tmp_path / "good.npz", **_valid_arrays())
    _assert_valid(load_dataset(good))
    raw = good.read_bytes()
    cases = {
        "random.npz": os.urandom(300),
        "text.npz": b"hello world",
        "empty.npz": b"",
        "half.npz": raw[: len(raw) // 2],
        "npy.npz": b"\x93NUMPY" + raw[6:200],
    }
    for name, content in cases.items():
        f = tmp_path / name
        f.write_bytes(content)
        with pytest.raises(DataError, match=str(f)):
            load_dataset(f)
    # flip bytes in the compressed payload of a compressed npz
    comp = tmp_path / "comp.npz"
    np.savez_compressed(comp, **_valid_arrays(200))
    data = bytearray(comp.read_bytes())
    for i in range(200, 1200, 7):
        data[i] ^= 0xFF
    comp.write_bytes(bytes(data))
    with pytest.raises(DataError, match=str(comp)):
        load_dataset(comp)


def test_npz_members_that_are_not_arrays(tmp_path):
    marker = tmp_path / "UNPICKLED"

    def build(name: str, extra: dict[str, bytes], skip: tuple[str, ...] = ()) -> Path:
        f = tmp_path / name
        with zipfile.ZipFile(f, "w") as zf:
            for key, arr in _valid_arrays().items():
                if key not in skip:
                    b = io.BytesIO()
                    np.save(b, arr)
                    zf.writestr(f"{key}.npy", b.getvalue())
            for member, data in extra.items():
                zf.writestr(member, data)
        return f

    # raw bytes where an array should be (numpy would return bytes for it)
    raw = build("raw.npz", {"train_images": b"\0" * 640}, skip=("train_images",))
    with pytest.raises(DataError, match=f"{raw}: member 'train_images' is not a numpy array"):
        load_dataset(raw)
    # an unexpected non-array member is ignored
    ok = build("readme.npz", {"README.txt": b"hello"})
    _assert_valid(load_dataset(ok))
    # a pickled array hidden under a name without .npy is still refused, never unpickled
    b = io.BytesIO()
    np.save(b, np.array([_Evil(str(marker))], dtype=object), allow_pickle=True)
    hidden = build("hidden.npz", {"notes": b.getvalue()})
    with pytest.raises(DataError, match=f"{hidden}: array 'notes' holds pickled objects; refused"):
        load_dataset(hidden)
    assert not marker.exists()


def test_npz_bomb_and_lying_npy_header(tmp_path, monkeypatch):
    f = tmp_path / "bomb.npz"
    np.savez_compressed(f, **{**_valid_arrays(), "train_images": np.zeros((3000, 32, 32), np.uint8), "train_labels": np.zeros(3000, np.uint8)})
    monkeypatch.setattr(safety, "MAX_NPZ_BYTES", 1024 * 1024)
    with pytest.raises(DataError, match=f"{f}.*zip bomb"):
        load_npz(f, _spec(f))
    monkeypatch.undo()
    # an .npy header claiming a 10^12-element array in a tiny member: refused before allocation
    liar = tmp_path / "liar.npz"
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False, "shape": (10**6, 1000, 1000)})
    with zipfile.ZipFile(liar, "w") as zf:
        for key, arr in _valid_arrays().items():
            if key != "train_images":
                b = io.BytesIO()
                np.save(b, arr)
                zf.writestr(f"{key}.npy", b.getvalue())
        zf.writestr("train_images.npy", buf.getvalue() + b"\0" * 64)
    with pytest.raises(DataError, match=f"{liar}: array 'train_images' claims"):
        load_npz(liar, _spec(liar))


# ---------------------------------------------------------------------------------------------
# property tests: whatever the bytes, a Dataset or a DataError
# ---------------------------------------------------------------------------------------------

_PROPERTY = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_PROPERTY
@given(blobs=st.lists(st.binary(max_size=600), min_size=1, max_size=4), keep_good=st.booleans())
def test_property_random_png_bytes(blobs, keep_good):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        (root / "c").mkdir(parents=True)
        for i, blob in enumerate(blobs):
            (root / "c" / f"r{i}.png").write_bytes(blob)
        if keep_good:
            _good_class(root / "d", n=2)
        try:
            ds = load_dataset(root)
        except DataError as exc:
            assert str(root) in str(exc)
        else:
            _assert_valid(ds)


def _mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for pos, val in flips:
        if out:
            out[pos % len(out)] = val
    return bytes(out[:cut] if cut is not None else out)


_VALID_NPZ = io.BytesIO()
np.savez(_VALID_NPZ, **_valid_arrays())
_VALID_PNG = _png_bytes()


@_PROPERTY
@given(
    raw=st.one_of(st.binary(max_size=400), st.builds(lambda b: b"PK\x03\x04" + b, st.binary(max_size=400))),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 3000)),
    use_valid=st.booleans(),
)
def test_property_random_npz_bytes(raw, flips, cut, use_valid):
    content = _mutate(_VALID_NPZ.getvalue(), flips, cut) if use_valid else raw
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "r.npz"
        f.write_bytes(content)
        try:
            ds = load_dataset(f)
        except DataError as exc:
            assert str(f) in str(exc)
        else:
            _assert_valid(ds)


@_PROPERTY
@given(
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 4000)),
    png_flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
)
def test_property_mutated_zip(flips, cut, png_flips):
    members = {"x/a/0.png": _mutate(_VALID_PNG, png_flips, None), "x/a/1.png": _VALID_PNG, "x/b/0.png": _VALID_PNG}
    with tempfile.TemporaryDirectory() as tmp:
        z = _zip(Path(tmp) / "m.zip", members, zipfile.ZIP_STORED)
        z.write_bytes(_mutate(z.read_bytes(), flips, cut))
        try:
            ds = load_dataset(z)
        except DataError as exc:
            assert str(z) in str(exc)
        else:
            _assert_valid(ds)
