"""Metric functions against hand-computed cases and independent implementations (prdc, skimage, scipy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gda_core.errors import ConfigError, GDAError
from gda_core.metrics import (
    density_coverage,
    fid,
    kid,
    knn_radii,
    nearest_ssim,
    prdc,
    precision_recall,
    ssim_matrix,
)

prdc_pkg = pytest.importorskip("prdc")
skm = pytest.importorskip("skimage.metrics")


def _prdc_ref(real, fake, k):
    return prdc_pkg.compute_prdc(real_features=real, fake_features=fake, nearest_k=k)


# -- precision / recall / density / coverage --------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_prdc_matches_package_on_random_features(seed, capsys):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(300, 16)).astype(np.float32)
    fake = (rng.normal(size=(260, 16)) * 1.2 + 0.3).astype(np.float32)
    p, r = precision_recall(real, fake, k=3)
    ref3 = _prdc_ref(real, fake, 3)
    assert p == pytest.approx(ref3["precision"], abs=1e-6)
    assert r == pytest.approx(ref3["recall"], abs=1e-6)
    d, c = density_coverage(real, fake, k=5)
    ref5 = _prdc_ref(real, fake, 5)
    assert d == pytest.approx(ref5["density"], abs=1e-6)
    assert c == pytest.approx(ref5["coverage"], abs=1e-6)
    assert 0 < p < 1 and 0 < r < 1  # the case is not degenerate


def _hand_prdc(real, fake, k, strict):
    """The four figures by brute force, with a strict (`<`, the prdc package) or non-strict (`<=`,
    ours) ball membership; radii = distance to the k-th nearest OTHER point."""
    inside = np.less if strict else np.less_equal
    d = np.linalg.norm(real[:, None].astype(np.float64) - fake[None], axis=2)  # (N real, M fake)
    r_real = np.sort(np.linalg.norm(real[:, None].astype(np.float64) - real[None], axis=2), 1)[:, k]
    r_fake = np.sort(np.linalg.norm(fake[:, None].astype(np.float64) - fake[None], axis=2), 1)[:, k]
    return {
        "precision": inside(d, r_real[:, None]).any(0).mean(),
        "recall": inside(d, r_fake[None, :]).any(1).mean(),
        "density": inside(d, r_real[:, None]).sum(0).mean() / k,
        "coverage": inside(d.min(1), r_real).mean(),
    }


def test_prdc_on_clustered_features_differs_only_by_ties(capsys):
    # Integer-valued clustered features: many exact distance ties, where `<=` counts and `<` does not.
    rng = np.random.default_rng(3)
    centres = rng.integers(0, 6, size=(5, 4))
    real = (centres[rng.integers(0, 5, 200)] + rng.integers(0, 2, (200, 4))).astype(np.float32)
    fake = (centres[rng.integers(0, 5, 150)] + rng.integers(0, 3, (150, 4))).astype(np.float32)
    ours = {**dict(zip(("precision", "recall"), precision_recall(real, fake, k=3), strict=True)),
            **dict(zip(("density", "coverage"), density_coverage(real, fake, k=5), strict=True))}  # fmt: skip
    pkg = {**{k: _prdc_ref(real, fake, 3)[k] for k in ("precision", "recall")}, **{k: _prdc_ref(real, fake, 5)[k] for k in ("density", "coverage")}}
    hand_le = {**{k: v for k, v in _hand_prdc(real, fake, 3, strict=False).items() if k in ("precision", "recall")},
               **{k: v for k, v in _hand_prdc(real, fake, 5, strict=False).items() if k in ("density", "coverage")}}  # fmt: skip
    hand_lt = {**{k: v for k, v in _hand_prdc(real, fake, 3, strict=True).items() if k in ("precision", "recall")},
               **{k: v for k, v in _hand_prdc(real, fake, 5, strict=True).items() if k in ("density", "coverage")}}  # fmt: skip
    for key in ("precision", "recall", "density", "coverage"):
        # Every figure: ours is exactly the non-strict count, the package exactly the strict one ...
        assert ours[key] == pytest.approx(hand_le[key], abs=1e-12), key
        assert pkg[key] == pytest.approx(hand_lt[key], abs=1e-12), key
        # ... and the ties matter in this case (the test would not notice a switch to `<` otherwise).
        assert hand_le[key] > hand_lt[key], key


def test_prdc_extremes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 8))
    assert precision_recall(x, x, k=3) == (1.0, 1.0)
    d, c = density_coverage(x, x, k=5)
    assert c == 1.0 and d >= 1.0
    far = x + 1000.0
    assert precision_recall(x, far, k=3) == (0.0, 0.0)
    assert density_coverage(x, far, k=5) == (0.0, 0.0)


def test_prdc_hand_computed_1d():
    # real points 0, 1, 2, 3 -> 1-NN radius (excluding self) is 1 for each; fake 0.5 and 10.
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    fake = torch.tensor([[0.5], [10.0], [11.0], [13.0]])
    assert knn_radii(real.double(), 1).tolist() == [1.0, 1.0, 1.0, 1.0]
    p, r = precision_recall(real, fake, k=1)
    assert p == 0.25  # only 0.5 lies within a real ball
    # fake radii (k=1): 0.5 -> 9.5, 10 -> 1, 11 -> 1, 13 -> 2 ; every real point within 9.5 of 0.5
    assert r == 1.0


def test_prdc_chunking_is_invariant():
    rng = np.random.default_rng(5)
    real, fake = rng.normal(size=(90, 6)), rng.normal(size=(70, 6))
    assert precision_recall(real, fake, 3, chunk=7) == precision_recall(real, fake, 3)
    assert density_coverage(real, fake, 5, chunk=11) == density_coverage(real, fake, 5)
    # The one-pass prdc gives exactly what the figures computed one by one give, at any chunk size.
    whole = prdc(real, fake)
    assert prdc(real, fake, chunk=4) == whole
    assert (whole["precision"], whole["recall"]) == precision_recall(real, fake, 3)
    assert (whole["density"], whole["coverage"]) == density_coverage(real, fake, 5)


@pytest.mark.parametrize(
    "real, fake",
    [(np.zeros((10, 3, 2)), np.zeros((10, 3))), (np.zeros((10, 3)), np.zeros((10, 4))), (np.zeros((3, 3)), np.zeros((10, 3)))],
)
def test_prdc_rejects_bad_shapes(real, fake):
    with pytest.raises(ConfigError):
        precision_recall(real, fake, k=3)
    if real.ndim != 2 or real.shape[1] != fake.shape[1]:
        with pytest.raises(GDAError):
            fid(real, fake)


# -- FID / KID -----------------------------------------------------------------------------


def test_fid_against_scipy_sqrtm():
    from scipy import linalg

    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 12))
    b = rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12)) * 0.5 + 0.7
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert fid(a, b) == pytest.approx(ref, rel=1e-6)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-6)
    # Pure mean shift: FID = ||shift||^2.
    assert fid(a, a + 2.0) == pytest.approx(4.0 * 12, rel=1e-6)


def test_kid_near_zero_for_same_distribution_and_positive_otherwise():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    same, _ = kid(a, b, subsets=10, subset_size=200)
    diff, _ = kid(a, b + 1.0, subsets=10, subset_size=200)
    assert abs(same) < 0.05 < diff
    assert kid(a, b, subsets=3, subset_size=100, seed=4) == kid(a, b, subsets=3, subset_size=100, seed=4)


@pytest.mark.parametrize("shift", [0.0, 0.4])
def test_kid_matches_an_independent_unbiased_mmd(shift):
    """With one subset as large as the sets, KID is the unbiased MMD^2 of the whole sets (a
    permutation does not change it): compare with sklearn's polynomial kernel and the textbook
    estimator (Gretton et al. 2012, eq. 3)."""
    from sklearn.metrics.pairwise import polynomial_kernel

    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(150, 10)), rng.normal(size=(150, 10)) * 1.1 + shift
    n, d = len(a), a.shape[1]
    kxx, kyy, kxy = (polynomial_kernel(p, q, degree=3, gamma=1.0 / d, coef0=1.0) for p, q in ((a, a), (b, b), (a, b)))
    ref = (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean()
    ours, spread = kid(a, b, subsets=1, subset_size=n)
    assert ours == pytest.approx(ref, rel=1e-9, abs=1e-12) and spread == 0.0


# -- SSIM / privacy --------------------------------------------------------------------------


def _sk_ssim(x, y, rgb):
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    if rgb:
        return skm.structural_similarity(x.transpose(1, 2, 0), y.transpose(1, 2, 0), channel_axis=2, **kw)
    return skm.structural_similarity(x[0], y[0], **kw)


def _smooth_images(rng, n, c, size):
    # Smooth blobs with flat black borders: exercises low-variance windows, where float32
    # cancellation would show.
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.zeros((n, c, size, size))
    for i in range(n):
        for ch in range(c):
            cx, cy, s = rng.uniform(0.3, 0.7, 3)
            out[i, ch] = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (0.05 * s))
    out[:, :, :3] = 0.0
    return out


@pytest.mark.parametrize("channels,size", [(1, 16), (1, 28), (3, 20)])
def test_ssim_matches_skimage(channels, size):
    rng = np.random.default_rng(channels * 100 + size)
    a = np.concatenate([rng.random((3, channels, size, size)), _smooth_images(rng, 2, channels, size)])
    b = np.concatenate([rng.random((2, channels, size, size)), _smooth_images(rng, 2, channels, size)])
    b[0] = np.clip(a[0] * 0.8 + 0.1 * rng.random(a[0].shape), 0, 1)  # one correlated pair
    ours = ssim_matrix(torch.from_numpy(a).float(), torch.from_numpy(b).float()).numpy()
    ref = np.array([[_sk_ssim(a[i], b[j], channels == 3) for j in range(len(b))] for i in range(len(a))])
    assert np.abs(ours - ref).max() < 1e-4
    assert ref.max() > 0.5  # the comparison includes a high-similarity pair


def test_nearest_ssim_finds_planted_copy_and_is_chunk_invariant():
    rng = np.random.default_rng(7)
    train = torch.from_numpy(rng.random((40, 1, 16, 16))).float()
    syn = torch.from_numpy(rng.random((12, 1, 16, 16))).float()
    syn[5] = train[17]
    vals, idx = nearest_ssim(syn, train, return_index=True)
    assert vals[5] == pytest.approx(1.0, abs=1e-5) and int(idx[5]) == 17
    assert vals.shape == (12,) and float(vals[[i for i in range(12) if i != 5]].max()) < 0.5
    small = nearest_ssim(syn, train, batch=5)  # tiny chunks, same answer
    assert torch.allclose(small, vals, atol=1e-6)
    # Exactness against an skimage loop over all pairs.
    ref = [
        max(_sk_ssim(syn[i].numpy().astype(np.float64), train[j].numpy().astype(np.float64), False) for j in range(40)) for i in range(3)
    ]
    assert np.allclose(vals[:3].numpy(), ref, atol=1e-4)


def test_nearest_ssim_accepts_uint8_and_rejects_small_or_mismatched():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 1, 12, 12), dtype=np.uint8)
    v = nearest_ssim(torch.from_numpy(x), torch.from_numpy(x))
    assert torch.allclose(v, torch.ones(4, dtype=torch.float64), atol=1e-5)
    with pytest.raises(ConfigError):
        nearest_ssim(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8))
    with pytest.raises(ConfigError):
        nearest_ssim(torch.rand(2, 1, 16, 16), torch.rand(2, 3, 16, 16))
    with pytest.raises(ConfigError):
        nearest_ssim(torch.rand(2, 16, 16), torch.rand(2, 1, 16, 16))
