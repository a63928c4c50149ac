"""Frechet distance (Heusel et al. 2017) and kernel inception distance (Binkowski et al. 2018) on
arbitrary (N, D) features (here the domain extractor's, not Inception's: compare figures only
between evaluations that used the same extractor)."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from .manifold import as_features

FID_MIN_SAMPLES = 2000


def _np64(x, name: str) -> np.ndarray:
    return as_features(x, name).detach().cpu().numpy().astype(np.float64)


def fid(real: torch.Tensor | np.ndarray, fake: torch.Tensor | np.ndarray) -> float:
    """||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)), in float64.

    The trace of the matrix square root is computed from the eigenvalues of the symmetric PSD
    matrix S_r^(1/2) S_f S_r^(1/2), which has the same spectrum as S_r S_f and avoids the complex
    round-off of ``scipy.linalg.sqrtm``. Lower is better; 0 for identical distributions.
    """
    r, f = _np64(real, "real features"), _np64(fake, "fake features")
    if r.shape[1] != f.shape[1]:
        raise ConfigError(f"real and fake features differ in dimension: {r.shape[1]} vs {f.shape[1]}")
    if len(r) < 2 or len(f) < 2:
        raise ConfigError("FID needs at least 2 samples per side")
    mu_r, mu_f = r.mean(0), f.mean(0)
    s_r, s_f = np.cov(r, rowvar=False), np.cov(f, rowvar=False)
    s_r, s_f = np.atleast_2d(s_r), np.atleast_2d(s_f)
    w, v = np.linalg.eigh(s_r)
    sqrt_r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = sqrt_r @ s_f @ sqrt_r
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    tr_covmean = np.sqrt(np.clip(ev, 0, None)).sum()
    value = float(((mu_r - mu_f) ** 2).sum() + np.trace(s_r) + np.trace(s_f) - 2.0 * tr_covmean)
    return max(value, 0.0)


def kid(
    real: torch.Tensor | np.ndarray,
    fake: torch.Tensor | np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    *,
    seed: int = 0,
) -> tuple[float, float]:
    """Unbiased MMD^2 with the polynomial kernel k(x, y) = (x.y / D + 1)^3, averaged over
    ``subsets`` random subsets of ``min(subset_size, N_real, N_fake)`` points per side (local RNG).
    Returns (mean, std). Lower is better; about 0 for identical distributions (can be slightly < 0).
    """
    r, f = _np64(real, "real features"), _np64(fake, "fake features")
    if r.shape[1] != f.shape[1]:
        raise ConfigError(f"real and fake features differ in dimension: {r.shape[1]} vs {f.shape[1]}")
    m = min(int(subset_size), len(r), len(f))
    if m < 2:
        raise ConfigError("KID needs at least 2 samples per side")
    if subsets < 1:
        raise ConfigError(f"subsets must be >= 1, got {subsets}")
    d = r.shape[1]
    rng = np.random.default_rng(seed)
    vals = np.empty(subsets)
    for i in range(subsets):
        x = r[rng.choice(len(r), m, replace=False)]
        y = f[rng.choice(len(f), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        vals[i] = (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2.0 * kxy.mean()
    return float(vals.mean()), float(vals.std())
