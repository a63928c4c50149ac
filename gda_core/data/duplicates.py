"""Exact and near duplicates between a dataset's splits (train / val / test).

The same photograph of a leaf, or two scans of one patient, in both the training and the test
split makes every test figure optimistic (the classifier has seen the answer) and hides copying (a
generator that reproduces a training image also reproduces a "held-out" one). This module counts
such images so that the Data page, ``evaluate`` and the study can warn.

- **exact**: pixel-identical images, found by bucketing a hash of the pixel bytes (no pairs compared).
- **near**: a perceptual hash (pHash: the signs of the 8 x 8 lowest DCT frequencies of the image
  shrunk to 32 x 32 grey, against their median; Zauner 2010) within ``max_hamming`` bits, then
  confirmed by the Pearson correlation of the two images' pixels >= ``min_corr``. Both ignore a
  change of brightness or contrast (the hash: it only moves the DC coefficient or scales them all)
  and tolerate slight noise; the correlation removes hash collisions between different images.
  Hamming distances are computed on packed 64-bit hashes in vectorised chunks (a few thousand x a
  few thousand in milliseconds); only the candidate pairs reach the correlation.

Why correlation, not SSIM, confirms: SSIM punishes exactly the changes a re-exported copy carries.
Measured here, a breastmnist scan made 30 grey levels brighter keeps SSIM 0.68 with its original
(noise of sd 2 grey levels: 0.83), while two different 16 px digits scans reach SSIM 0.985. Their
correlation: >= 0.997 for the brighter copy, <= 0.9912 for the two different digits (the highest of
any train/val/test pair of the clean digits splits; breastmnist's real near copies: 0.999+).

A count is per image of the later split: "12 test images have a near copy in train".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError

HASH_SIZE = 8  # 8 x 8 DCT coefficients -> 64-bit hash
HASH_INPUT = 32  # images are shrunk to 32 x 32 before the DCT (the usual pHash input)
MAX_HAMMING = 10  # of 64 bits (a copy with noise of sd 8 grey levels measured up to 10)
MIN_CORR = 0.992  # just above the closest pair of different clean digits scans (0.9912)
MAX_EXAMPLES = 10
SPLIT_PAIRS = (("train", "test"), ("train", "val"), ("val", "test"))
_CHUNK_PAIRS = 8_000_000  # bound on one Hamming block (n_a x n_b uint64)


def _check(images, name: str) -> np.ndarray:
    a = np.asarray(images)
    if a.ndim != 4 or a.shape[-1] not in (1, 3) or a.dtype != np.uint8:
        raise DataError(f"{name} must be uint8 images (N, H, W, C) with C in 1 or 3, got {a.dtype} {a.shape}")
    return a


def perceptual_hash(images: np.ndarray) -> np.ndarray:
    """pHash of uint8 images (N, H, W, C) -> (N,) uint64."""
    import torch
    import torch.nn.functional as F
    from scipy.fft import dctn

    a = _check(images, "images")
    if len(a) == 0:
        return np.zeros(0, np.uint64)
    x = torch.from_numpy(np.ascontiguousarray(a)).float().mean(-1, keepdim=True).permute(0, 3, 1, 2)  # grey (N, 1, H, W)
    x = F.interpolate(x, size=(HASH_INPUT, HASH_INPUT), mode="bilinear", antialias=True, align_corners=False)
    low = dctn(x[:, 0].double().numpy(), type=2, axes=(1, 2), norm="ortho")[:, :HASH_SIZE, :HASH_SIZE].reshape(len(a), -1)
    # Median of the AC terms only: the DC term (mean brightness) would otherwise decide the cut.
    bits = low > np.median(low[:, 1:], axis=1, keepdims=True)
    return np.packbits(bits, axis=1, bitorder="little").view("<u8").reshape(-1)


def _exact_pairs(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int]]:
    """(i, j) with a[i] == b[j] byte for byte: b's images looked up in buckets of a's pixel hashes."""
    buckets: dict[bytes, list[int]] = {}
    for i in range(len(a)):
        buckets.setdefault(hashlib.blake2b(a[i].tobytes(), digest_size=16).digest(), []).append(i)
    out = []
    for j in range(len(b)):
        for i in buckets.get(hashlib.blake2b(b[j].tobytes(), digest_size=16).digest(), ()):
            if np.array_equal(a[i], b[j]):  # a 128-bit collision is not a duplicate
                out.append((i, j))
    return out


def _hash_candidates(ha: np.ndarray, hb: np.ndarray, max_hamming: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs whose hashes differ in at most ``max_hamming`` bits (vectorised, chunked)."""
    ii, jj = [], []
    step = max(1, _CHUNK_PAIRS // max(1, len(hb)))
    for s in range(0, len(ha), step):
        d = np.bitwise_count(ha[s : s + step, None] ^ hb[None, :])
        i, j = np.nonzero(d <= max_hamming)
        ii.append(i + s)
        jj.append(j)
    if not ii:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(ii).astype(np.int64), np.concatenate(jj).astype(np.int64)


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of the pixels of matching pairs of uint8 images (n, H, W, C); two flat
    images correlate 1 when equal, else 0."""
    x = a.reshape(len(a), -1).astype(np.float64)
    y = b.reshape(len(b), -1).astype(np.float64)
    x -= x.mean(1, keepdims=True)
    y -= y.mean(1, keepdims=True)
    den = np.sqrt((x * x).sum(1) * (y * y).sum(1))
    flat_equal = (a.reshape(len(a), -1) == b.reshape(len(b), -1)).all(1).astype(np.float64)
    return np.where(den > 0, (x * y).sum(1) / np.where(den > 0, den, 1.0), flat_equal)


@dataclass(frozen=True)
class Duplicates:
    """Duplicates of images of split ``b`` in split ``a``.

    ``exact`` / ``near``: how many images of ``b`` have a pixel-identical / a near copy (and no
    exact one) in ``a``; ``*_pairs``: up to ``MAX_EXAMPLES`` example (index in a, index in b[, correlation]);
    ``copied``: every index of ``b`` with a copy in ``a`` (e.g. to leave them out of a held-out reference).
    """

    a: str
    b: str
    n_a: int
    n_b: int
    exact: int
    near: int
    exact_pairs: list[tuple[int, int]] = field(default_factory=list)
    near_pairs: list[tuple[int, int, float]] = field(default_factory=list)
    copied: tuple[int, ...] = ()

    @property
    def total(self) -> int:
        return self.exact + self.near

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "n_a": self.n_a, "n_b": self.n_b, "exact": self.exact, "near": self.near,
                "exact_pairs": [list(p) for p in self.exact_pairs], "near_pairs": [[i, j, round(s, 4)] for i, j, s in self.near_pairs], "copied": list(self.copied)}  # fmt: skip


def find_duplicates(a_images: np.ndarray, b_images: np.ndarray, *, a: str = "train", b: str = "test", max_hamming: int = MAX_HAMMING,
                    min_corr: float = MIN_CORR, max_examples: int = MAX_EXAMPLES) -> Duplicates:  # fmt: skip
    """Exact and near duplicates of ``b_images`` in ``a_images`` (uint8 (N, H, W, C), same shape)."""
    xa, xb = _check(a_images, f"{a} images"), _check(b_images, f"{b} images")
    if len(xa) and len(xb) and xa.shape[1:] != xb.shape[1:]:
        raise DataError(f"{a} and {b} images differ in shape: {xa.shape[1:]} vs {xb.shape[1:]}")
    if not (0 <= max_hamming <= 64) or not (0.0 < min_corr <= 1.0):
        raise DataError(f"max_hamming must be in 0..64 and min_corr in (0, 1], got {max_hamming} and {min_corr}")
    if len(xa) == 0 or len(xb) == 0:
        return Duplicates(a, b, len(xa), len(xb), 0, 0)
    exact = _exact_pairs(xa, xb)
    exact_b = {j for _, j in exact}
    i, j = _hash_candidates(perceptual_hash(xa), perceptual_hash(xb), max_hamming)
    keep = np.array([jj not in exact_b for jj in j.tolist()], dtype=bool) if len(j) else np.zeros(0, bool)
    i, j = i[keep], j[keep]
    sim = _correlation(xa[i], xb[j]) if len(i) else np.zeros(0)
    ok = sim >= min_corr
    i, j, sim = i[ok], j[ok], sim[ok]
    # One record per b image: its most similar a image.
    best: dict[int, tuple[int, float]] = {}
    for ii, jj, s in zip(i.tolist(), j.tolist(), sim.tolist(), strict=True):
        if jj not in best or s > best[jj][1]:
            best[jj] = (ii, s)
    near = sorted(((ii, jj, s) for jj, (ii, s) in best.items()), key=lambda t: -t[2])
    exact_ex = sorted(exact, key=lambda p: p[1])[:max_examples]
    copied = tuple(sorted(exact_b | set(best)))
    return Duplicates(a, b, len(xa), len(xb), len(exact_b), len(best), exact_ex, near[:max_examples], copied)


@dataclass(frozen=True)
class SplitDuplicates:
    """Duplicates between every pair of a dataset's non-empty splits (train/test, train/val, val/test)."""

    pairs: list[Duplicates]
    max_hamming: int = MAX_HAMMING
    min_corr: float = MIN_CORR

    @property
    def exact(self) -> int:
        return sum(p.exact for p in self.pairs)

    @property
    def near(self) -> int:
        return sum(p.near for p in self.pairs)

    def get(self, a: str, b: str) -> Duplicates | None:
        return next((p for p in self.pairs if (p.a, p.b) == (a, b)), None)

    def warnings(self) -> list[str]:
        """One line per split pair with duplicates (empty when there are none)."""
        out = []
        for p in self.pairs:
            if p.total:
                what = " and ".join(x for x in (f"{p.exact} exact" if p.exact else "", f"{p.near} near" if p.near else "") if x)
                out.append(f"{p.total} of {p.n_b} {p.b} images have a copy in {p.a} ({what}; near = perceptual hash within "
                           f"{self.max_hamming} bits and pixel correlation >= {self.min_corr:g}): {p.b} figures are optimistic and copying is "
                           "harder to see; remove them or re-split by patient / plant")  # fmt: skip
        return out

    def to_dict(self) -> dict:
        return {"exact": self.exact, "near": self.near, "max_hamming": self.max_hamming, "min_corr": self.min_corr,
                "pairs": [p.to_dict() for p in self.pairs], "warnings": self.warnings()}  # fmt: skip


def split_duplicates(
    ds, *, max_hamming: int = MAX_HAMMING, min_corr: float = MIN_CORR, max_examples: int = MAX_EXAMPLES
) -> SplitDuplicates:
    """Duplicates between the splits of a ``Dataset`` (pairs with an empty split are left out)."""
    out = []
    for a, b in SPLIT_PAIRS:
        xa, xb = ds.split(a)[0], ds.split(b)[0]
        if len(xa) and len(xb):
            out.append(find_duplicates(xa, xb, a=a, b=b, max_hamming=max_hamming, min_corr=min_corr, max_examples=max_examples))
    return SplitDuplicates(out, max_hamming, min_corr)


def held_out_without_copies(ds, dups: SplitDuplicates | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """The validation and test images (uint8 NHWC) and labels less those with a copy in train, and
    how many were left out: the held-out reference of the memorisation audit, where a copied
    "held-out" image would raise the threshold and hide copying."""
    dups = dups if dups is not None else split_duplicates(ds)
    xs, ys, dropped = [], [], 0
    for name in ("val", "test"):
        x, y = ds.split(name)
        p = dups.get("train", name)
        keep = np.ones(len(y), bool)
        if p is not None and p.copied:
            keep[list(p.copied)] = False
        xs.append(x[keep])
        ys.append(y[keep])
        dropped += int((~keep).sum())
    return np.concatenate(xs), np.concatenate(ys), dropped


__all__ = ["Duplicates", "SplitDuplicates", "find_duplicates", "held_out_without_copies", "perceptual_hash", "split_duplicates"]
