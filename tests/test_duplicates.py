"""Exact and near duplicates between splits: planted copies are counted exactly, clean splits have none."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gda_core.data.duplicates import find_duplicates, perceptual_hash, split_duplicates
from gda_core.errors import DataError

from .test_app import runs_dir  # noqa: F401  (the fixture of the Data page test)


def _planted(digits, n_exact: int, n_near: int, seed: int = 0):
    """digits with test images 0..n_exact-1 replaced by exact copies of training images and the next
    n_near by copies with noise (sd 3 grey levels) and a brightness shift (+-15)."""
    rng = np.random.default_rng(seed)
    train, test = digits.train_images, digits.test_images.copy()
    src = rng.choice(len(train), n_exact + n_near, replace=False)
    test[:n_exact] = train[src[:n_exact]]
    shift = np.where(np.arange(n_near) % 2 == 0, 15.0, -15.0)[:, None, None, None]
    noisy = train[src[n_exact:]].astype(np.float64) + rng.normal(0, 3, (n_near, *train.shape[1:])) + shift
    test[n_exact : n_exact + n_near] = np.clip(noisy, 0, 255).round().astype(np.uint8)
    return dataclasses.replace(digits, test_images=test), src


def test_clean_digits_splits_have_no_duplicates(digits):
    rep = split_duplicates(digits)
    assert [(p.a, p.b) for p in rep.pairs] == [("train", "test"), ("train", "val"), ("val", "test")]
    assert (rep.exact, rep.near) == (0, 0) and rep.warnings() == []


def test_planted_train_test_duplicates_are_counted_exactly(digits):
    ds, src = _planted(digits, n_exact=7, n_near=12)
    rep = split_duplicates(ds)
    tt = rep.get("train", "test")
    assert (tt.exact, tt.near) == (7, 12)
    assert sorted(j for _, j in tt.exact_pairs) == list(range(7))
    assert {(i, j) for i, j in tt.exact_pairs} == {(int(src[j]), j) for j in range(7)}
    # Every near example points at the training image it was made from.
    assert all(i == src[j] and 0.992 <= c <= 1.0 for i, j, c in tt.near_pairs)
    assert len(tt.near_pairs) == 10  # examples are capped; the count is not
    (w,) = rep.warnings()
    assert w.startswith("19 of 359 test images have a copy in train (7 exact and 12 near")
    # The other split pairs are untouched.
    assert rep.get("train", "val").total == 0 and rep.get("val", "test").total == 0


def test_rgb_and_brightness_invariant_hash():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    a = np.stack([np.clip(x.astype(int) // 2 + 64, 0, 255) for x in a]).astype(np.uint8)  # headroom for the shift
    brighter = np.clip(a.astype(int) + 20, 0, 255).astype(np.uint8)
    assert (perceptual_hash(a) == perceptual_hash(brighter)).all()
    d = find_duplicates(a, brighter[::-1], a="train", b="val")
    assert (d.exact, d.near) == (0, 40)
    assert all(i == 39 - j for i, j, _ in d.near_pairs)
    assert find_duplicates(a, a[:5]).exact == 5


def test_bad_input_is_a_data_error():
    with pytest.raises(DataError, match="uint8 images"):
        find_duplicates(np.zeros((2, 8, 8)), np.zeros((2, 8, 8, 1), np.uint8))
    with pytest.raises(DataError, match="differ in shape"):
        find_duplicates(np.zeros((2, 8, 8, 1), np.uint8), np.zeros((2, 9, 9, 1), np.uint8))


@pytest.mark.usefixtures("runs_dir")
def test_data_page_warns_of_duplicates_with_the_count(shared_data, monkeypatch):
    """Digits: no duplicates, said so. BreastMNIST (real data): the scans it has in two splits, counted."""
    from .test_app import _ok, _open

    at = _open("1_Data.py")
    _ok(at)
    assert any("No exact or near duplicates" in c.value for c in at.caption)
    monkeypatch.setenv("GDA_DATA_DIR", str(shared_data / "breastmnist"))
    at = _open("1_Data.py")
    at.selectbox(key="data_name").set_value("breastmnist").run()
    _ok(at)
    warnings = [w.value for w in at.warning]
    assert any(w.startswith("32 of 156 test images have a copy in train \\(1 exact and 31 near") for w in warnings), warnings
    assert any(w.startswith("20 of 78 val images have a copy in train") for w in warnings), warnings
