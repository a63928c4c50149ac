"""k-NN manifold metrics on features: improved precision / recall (Kynkaanniemi et al. 2019) and
density / coverage (Naeem et al. 2020).

Conventions (docs METRICS.md): a point's k-NN radius is the distance to its k-th nearest *other*
point of the same set (the (k+1)-th smallest distance counting itself), and a point lies inside a
ball when ``distance <= radius`` (non-strict; the ``prdc`` package uses ``<``, which differs only
on exact ties). Distances are computed in float64 with batched ``torch.cdist`` in row chunks, so a comparison
never holds more than ``chunk`` rows of the distance matrix at once, and fewer when rows are long:
one chunk's distances stay within ``MEMORY_BYTES`` (50k x 50k runs in a few hundred MB, on the
GPU when ``device`` is one).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError

DEFAULT_CHUNK = 1024
MEMORY_BYTES = 128 << 20  # float64 distances of one chunk (plus a same-size temporary)


def _rows(n_cols: int, chunk: int) -> int:
    return max(1, min(chunk, MEMORY_BYTES // (16 * max(1, n_cols))))


def as_features(x: torch.Tensor | np.ndarray, name: str = "features") -> torch.Tensor:
    """Validate a 2-D (N, D) feature matrix with N >= 1 and finite values; return a tensor."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise ConfigError(f"{name} must be a tensor or numpy array, got {type(x).__name__}")
    if x.ndim != 2:
        raise ConfigError(f"{name} must have shape (N, D), got {tuple(x.shape)}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ConfigError(f"{name} is empty: shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ConfigError(f"{name} contains NaN or infinite values")
    return x


def _prep(real, fake, k: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    real = as_features(real, "real features")
    fake = as_features(fake, "fake features")
    if real.shape[1] != fake.shape[1]:
        raise ConfigError(f"real and fake features differ in dimension: {real.shape[1]} vs {fake.shape[1]}")
    if not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k}")
    if min(len(real), len(fake)) < k + 1:
        raise ConfigError(f"need at least k + 1 = {k + 1} points per set, got {len(real)} real and {len(fake)} fake")
    dev = torch.device(device) if device is not None else real.device
    if dev.type == "mps":  # no float64 on MPS
        dev = torch.device("cpu")
    return real.to(dev, torch.float64), fake.to(dev, torch.float64)


def knn_radii(x: torch.Tensor, k: int, *, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Distance from each row of ``x`` (N, D) to its k-th nearest other row: (N,)."""
    out = []
    chunk = _rows(len(x), chunk)
    for s in range(0, len(x), chunk):
        d = torch.cdist(x[s : s + chunk], x)
        out.append(torch.kthvalue(d, k + 1, dim=1).values)
    return torch.cat(out)


def _inside_counts(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int) -> torch.Tensor:
    """For every point, how many balls (centre_i, radius_i) contain it (distance <= radius)."""
    out = []
    chunk = _rows(len(centres), chunk)
    for s in range(0, len(points), chunk):
        d = torch.cdist(points[s : s + chunk], centres)
        out.append((d <= radii[None, :]).sum(1))
    return torch.cat(out)


def _nearest(points: torch.Tensor, others: torch.Tensor, chunk: int) -> torch.Tensor:
    out = []
    chunk = _rows(len(others), chunk)
    for s in range(0, len(points), chunk):
        out.append(torch.cdist(points[s : s + chunk], others).min(1).values)
    return torch.cat(out)


def precision_recall(
    real: torch.Tensor | np.ndarray, fake: torch.Tensor | np.ndarray, k: int = 3, *, device=None, chunk: int = DEFAULT_CHUNK
) -> tuple[float, float]:
    """Improved precision and recall of ``fake`` (M, D) against ``real`` (N, D) features.

    precision = share of fake points inside at least one real k-NN ball;
    recall = share of real points inside at least one fake k-NN ball. Both in [0, 1], higher is better.
    """
    r, f = _prep(real, fake, k, device)
    r_rad = knn_radii(r, k, chunk=chunk)
    f_rad = knn_radii(f, k, chunk=chunk)
    precision = (_inside_counts(f, r, r_rad, chunk) > 0).double().mean().item()
    recall = (_inside_counts(r, f, f_rad, chunk) > 0).double().mean().item()
    return float(precision), float(recall)


def density_coverage(
    real: torch.Tensor | np.ndarray, fake: torch.Tensor | np.ndarray, k: int = 5, *, device=None, chunk: int = DEFAULT_CHUNK
) -> tuple[float, float]:
    """Density (mean number of real k-NN balls holding a fake point, / k; can exceed 1) and coverage
    (share of real points whose k-NN ball holds at least one fake point)."""
    r, f = _prep(real, fake, k, device)
    r_rad = knn_radii(r, k, chunk=chunk)
    density = _inside_counts(f, r, r_rad, chunk).double().mean().item() / k
    coverage = (_nearest(r, f, chunk) <= r_rad).double().mean().item()
    return float(density), float(coverage)


def prdc(real, fake, *, k_pr: int = 3, k_dc: int = 5, device=None, chunk: int = DEFAULT_CHUNK) -> dict[str, float]:
    """All four figures: {'precision', 'recall', 'density', 'coverage'}."""
    p, r = precision_recall(real, fake, k_pr, device=device, chunk=chunk)
    d, c = density_coverage(real, fake, k_dc, device=device, chunk=chunk)
    return {"precision": p, "recall": r, "density": d, "coverage": c}
