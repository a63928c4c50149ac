"""Privacy: SSIM (Wang et al. 2004) of every synthetic image to its nearest training image, exact.

SSIM here matches ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)``: Gaussian window 11 x 11 (sigma 1.5, truncate 3.5),
K1 = 0.01, K2 = 0.03, population covariance, and the SSIM map averaged over the *valid* region
(skimage filters the full image and then crops ``(11 - 1) // 2`` pixels from every border, which
leaves exactly the windows that never touch the padding). RGB: mean over channels.

Speed: for an output position p, the weighted covariance of images x and y is an inner product of
their 11 x 11 patches, sigma_xy[p] = sum_q g(q) (x(p+q) - mu_x[p]) (y(p+q) - mu_y[p]). Patches are
unfolded once per image (centred on their local mean, which also avoids the float32 cancellation
of ``E[xy] - mu_x mu_y``), so all pairs of a chunk come from one batched matmul
(P, n, 121) @ (P, 121, m); the rest of the formula is elementwise on (P, n, m). Every pair is
computed: nothing is sampled or pre-filtered.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import Cancelled, ConfigError

WIN = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03
DATA_RANGE = 1.0
C1 = (K1 * DATA_RANGE) ** 2
C2 = (K2 * DATA_RANGE) ** 2
DEFAULT_MEMORY_BYTES = 256 << 20  # budget for one chunk's (P, n, m) pair tensors


def gaussian_window(win: int = WIN, sigma: float = SIGMA, dtype=torch.float64) -> torch.Tensor:
    """Normalised 1-D Gaussian of ``win`` taps (as scipy.ndimage's gaussian_filter1d)."""
    r = win // 2
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).to(dtype)


def _as_images(x, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ConfigError(f"{name} must be a 4-D batch (N, C, H, W), got {getattr(x, 'shape', type(x).__name__)}")
    if x.dtype == torch.uint8:
        if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            x = x.permute(0, 3, 1, 2)
        x = x.float() / 255.0
    if x.shape[2] < WIN or x.shape[3] < WIN:
        raise ConfigError(f"SSIM with an {WIN}x{WIN} window needs images of at least {WIN} px, got {tuple(x.shape[2:])}")
    return x


def _local_stats(x: torch.Tensor, g2: torch.Tensor, dtype, *, side: str) -> tuple[torch.Tensor, ...]:
    """Per-image statistics of x (n, C, H, W) in the layout ``_pair_chunk`` multiplies.

    Returns (mu (C, P, n, 1) or (C, P, 1, m), lum2, var2, patches) where lum2 / var2 are the two
    halves of the outer sums mu_x^2 + mu_y^2 + C1 and var_x + var_y + C2 written as K = 2 matmul
    operands, and patches are the centred patches, g-weighted on the synthetic side.
    """
    n, c, h, w = x.shape
    patches = F.unfold(x.to(dtype).reshape(n * c, 1, h, w), WIN)  # (n*C, K, P)
    patches = patches.reshape(n, c, WIN * WIN, -1).permute(1, 3, 0, 2)  # (C, P, n, K)
    mu = patches @ g2  # (C, P, n)
    centred = patches - mu[..., None]
    var = (centred * centred) @ g2
    one = torch.ones_like(mu)
    if side == "x":
        lum2 = torch.stack([mu * mu + C1, one], -1)  # (C, P, n, 2)
        var2 = torch.stack([var + C2, one], -1)
        return mu[..., None], lum2, var2, (centred * g2).contiguous()
    lum2 = torch.stack([one, mu * mu], -2)  # (C, P, 2, m)
    var2 = torch.stack([one, var], -2)
    return mu[..., None, :], lum2, var2, centred.transpose(-1, -2).contiguous()  # patches (C, P, K, m)


def _pair_chunk(sx, sy, dtype) -> torch.Tensor:
    """Mean SSIM (n, m) of every pair of a synthetic chunk and a train chunk.

    SSIM = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2)),
    each factor of shape (P, n, m) written by one batched matmul.
    """
    mu_x, lum_x, var_x, px = sx
    mu_y, lum_y, var_y, py = sy
    n_ch = mu_x.shape[0]
    dev = mu_x.device
    c1 = torch.full((1, 1, 1), C1, dtype=dtype, device=dev)
    c2 = torch.full((1, 1, 1), C2, dtype=dtype, device=dev)
    total = None
    for c in range(n_ch):
        num = torch.baddbmm(c2, px[c], py[c], alpha=2.0)  # 2 sigma_xy + C2
        num.mul_(torch.baddbmm(c1, mu_x[c], mu_y[c], alpha=2.0))  # * (2 mu_x mu_y + C1)
        den = torch.bmm(lum_x[c], lum_y[c])
        den.mul_(torch.bmm(var_x[c], var_y[c]))
        s = num.div_(den).mean(0)
        total = s if total is None else total.add_(s)
    return total / n_ch


def _chunk_sizes(p: int, n_syn: int, n_train: int, memory_bytes: int, itemsize: int) -> tuple[int, int]:
    # About 3 live (P, n, m) tensors per chunk; square-ish chunks keep the matmuls efficient.
    pairs = max(1, memory_bytes // (3 * p * itemsize))
    side = max(1, math.isqrt(pairs))
    m = int(min(n_train, side))
    n = int(min(n_syn, max(1, pairs // m)))
    return n, m


def ssim_matrix(
    a: torch.Tensor | np.ndarray,
    b: torch.Tensor | np.ndarray,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    reduce: str = "none",
    progress: Callable[[float], None] | None = None,
    cancel: threading.Event | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """SSIM of every image of ``a`` (n, C, H, W) against every image of ``b`` (m, C, H, W), in [0, 1]
    floats or uint8.

    reduce='none' returns the (n, m) matrix (float64 CPU); reduce='max' returns (max over b (n,),
    argmax (n,)) without ever holding the whole matrix.
    """
    a = _as_images(a, "synthetic images")
    b = _as_images(b, "train images")
    if a.shape[1:] != b.shape[1:]:
        raise ConfigError(f"image shapes differ: {tuple(a.shape[1:])} vs {tuple(b.shape[1:])}")
    if reduce not in ("none", "max"):
        raise ConfigError(f"reduce must be 'none' or 'max', got '{reduce}'")
    dev = torch.device(device) if device is not None else a.device
    if dev.type == "mps" and dtype == torch.float64:
        dtype = torch.float32
    g1 = gaussian_window(dtype=torch.float64)
    g2 = torch.outer(g1, g1).reshape(-1).to(dev, dtype)
    h, w = a.shape[2:]
    p = (h - WIN + 1) * (w - WIN + 1)
    itemsize = torch.finfo(dtype).bits // 8
    cn, cm = _chunk_sizes(p, len(a), len(b), memory_bytes, itemsize)
    n, m = len(a), len(b)
    full = torch.empty(n, m, dtype=torch.float64) if reduce == "none" else None
    best = torch.full((n,), -math.inf, dtype=torch.float64)
    best_idx = torch.zeros(n, dtype=torch.long)
    total_steps = math.ceil(n / cn) * math.ceil(m / cm)
    done = 0
    # Train-side statistics are reused for every synthetic chunk; keep them when they fit.
    train_stats_bytes = b.shape[1] * p * m * (WIN * WIN + 2) * itemsize
    cached_train = None
    if train_stats_bytes <= 4 * memory_bytes:
        cached_train = [_local_stats(b[j : j + cm].to(dev), g2, dtype, side="y") for j in range(0, m, cm)]
    with torch.no_grad():
        for i in range(0, n, cn):
            sx = _local_stats(a[i : i + cn].to(dev), g2, dtype, side="x")
            for jj, j in enumerate(range(0, m, cm)):
                if cancel is not None and cancel.is_set():
                    raise Cancelled("SSIM computation cancelled")
                sy = cached_train[jj] if cached_train is not None else _local_stats(b[j : j + cm].to(dev), g2, dtype, side="y")
                s = _pair_chunk(sx, sy, dtype).double().cpu()
                if full is not None:
                    full[i : i + cn, j : j + cm] = s
                else:
                    v, k = s.max(1)
                    upd = v > best[i : i + cn]
                    best[i : i + cn] = torch.where(upd, v, best[i : i + cn])
                    best_idx[i : i + cn] = torch.where(upd, k + j, best_idx[i : i + cn])
                done += 1
                if progress is not None:
                    progress(done / total_steps)
    if full is not None:
        return full
    return best, best_idx


def ssim(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray, **kw) -> torch.Tensor:
    """SSIM of matching pairs a[i], b[i] (both (n, C, H, W)) -> (n,) float64."""
    a = _as_images(a, "images a")
    b = _as_images(b, "images b")
    if a.shape != b.shape:
        raise ConfigError(f"image batches differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    return torch.stack([ssim_matrix(a[i : i + 1], b[i : i + 1], **kw)[0, 0] for i in range(len(a))])


def nearest_ssim(
    synthetic: torch.Tensor | np.ndarray,
    train: torch.Tensor | np.ndarray,
    *,
    device: torch.device | str | None = None,
    batch: int | None = None,
    dtype: torch.dtype = torch.float32,
    return_index: bool = False,
    progress: Callable[[float], None] | None = None,
    cancel: threading.Event | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """For every synthetic image (N, C, H, W), its maximum SSIM over ALL ``train`` images, exact.

    Returns (N,) float64 on CPU (and the index of the nearest training image when
    ``return_index``). ``batch`` optionally overrides the memory budget as a pair-chunk size
    (n * m pairs per chunk).
    """
    mem = DEFAULT_MEMORY_BYTES
    if batch is not None:
        if batch < 1:
            raise ConfigError(f"batch must be >= 1, got {batch}")
        s = synthetic if isinstance(synthetic, torch.Tensor) else torch.as_tensor(synthetic)
        h = s.shape[2] if s.shape[1] in (1, 3) else s.shape[1]
        mem = 3 * batch * max(1, (h - WIN + 1)) ** 2 * 4
    best, idx = ssim_matrix(synthetic, train, device=device, dtype=dtype, memory_bytes=mem, reduce="max", progress=progress, cancel=cancel)
    return (best, idx) if return_index else best
