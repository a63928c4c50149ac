"""Latent-space exploration: interpolation, traversal, style mixing, 2-D maps and nearest training neighbours.

Every function takes a loaded model (``Run.model`` or any :class:`GenerativeModel`) and returns
uint8 images (N, H, W, C) or plain arrays, so the app shows them without touching torch.
"""

from __future__ import annotations

import io
import operator
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .data.base import images_to_tensor, tensor_to_images
from .errors import ConfigError

INTERPOLATIONS = ("slerp", "lerp")
MAP_METHODS = ("umap", "pca")
NEAR_COPY_THRESHOLD = 0.9


# ---------------------------------------------------------------------------------------------
# Interpolation
# ---------------------------------------------------------------------------------------------


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of two latents (one of shape S) at fractions t (T,) -> (T, *S)."""
    t = t.to(a.dtype).view(-1, *([1] * a.dim()))
    return (1 - t) * a + t * b


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985): keeps the norm of Gaussian latents, so every frame
    looks like a typical draw (a straight line through the middle of a high-dimensional Gaussian
    passes through unusually short latents). Falls back to lerp for (anti)parallel vectors."""
    af, bf = a.flatten().double(), b.flatten().double()
    cos = torch.dot(af, bf) / (af.norm() * bf.norm()).clamp_min(eps)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if float(torch.sin(omega)) < 1e-4:
        return lerp(a, b, t)
    t64 = t.double().view(-1, 1)
    so = torch.sin(omega)
    out = torch.sin((1 - t64) * omega) / so * af + torch.sin(t64 * omega) / so * bf
    return out.to(a.dtype).view(len(t), *a.shape)


def _mix(a: torch.Tensor, b: torch.Tensor, frames: int, method: str) -> torch.Tensor:
    if method not in INTERPOLATIONS:
        raise ConfigError(f"unknown interpolation '{method}'; choose one of {', '.join(INTERPOLATIONS)}")
    if not (2 <= frames <= 64):
        raise ConfigError(f"frames must be in 2..64, got {frames}")
    t = torch.linspace(0, 1, frames, device=a.device)
    return (slerp if method == "slerp" else lerp)(a, b, t)


def _decode_kwargs(model, steps: int | None, guidance: float | None) -> dict:
    kw = {}
    if "steps" in model.controls and steps is not None:
        kw["steps"] = int(steps)
    if "guidance" in model.controls and guidance is not None:
        kw["guidance"] = float(guidance)
    return kw


def _label_tensor(model, label: int, n: int) -> torch.Tensor:
    return model.resolve_labels(n, int(label))


def _truncation_kwargs(model, temperature: float) -> dict:
    """Families whose temperature is a truncation applied while decoding (StyleGAN2 truncates in W,
    after the mapping network, so scaling the initial latent would change nothing) get it in decode."""
    return {"temperature": float(temperature)} if getattr(model, "truncation_in_decode", False) else {}


@torch.inference_mode()
def interpolate_seeds(
    model,
    seed_a: int,
    seed_b: int,
    label: int,
    *,
    frames: int = 8,
    method: str = "slerp",
    temperature: float = 1.0,
    steps: int | None = None,
    guidance: float | None = None,
) -> np.ndarray:
    """Frames between the starting latents of two seeds, decoded with class ``label``.

    For diffusion the latent is the initial noise and decoding is deterministic DDIM, so the path
    between two noises is a smooth path between two images. Returns uint8 (frames, H, W, C).
    """
    z = model.initial_latents([int(seed_a), int(seed_b)], temperature=temperature)
    zs = _mix(z[0], z[1], frames, method)
    kw = {**_decode_kwargs(model, steps, guidance), **_truncation_kwargs(model, temperature)}
    return tensor_to_images(model.decode(zs, _label_tensor(model, label, frames), **kw))


def has_encoder(model) -> bool:
    """True when the family maps images back to latents (VAE encoder, DDIM inversion)."""
    return type(model).encode is not _base_encode()


def _base_encode():
    from .models.base import GenerativeModel

    return GenerativeModel.encode


@torch.inference_mode()
def interpolate_images(
    model,
    image_a: np.ndarray,
    label_a: int,
    image_b: np.ndarray,
    label_b: int,
    *,
    label: int | None = None,
    frames: int = 8,
    method: str = "slerp",
    steps: int | None = None,
    guidance: float | None = 1.0,
) -> np.ndarray:
    """Encode two real uint8 images (H, W, C), interpolate their latents, decode.

    VAE: the encoder's mean. Diffusion: DDIM inversion (deterministic, unguided) and guidance 1 by
    default when decoding so the end frames reconstruct the inputs. ``label`` (default: A's)
    conditions the decoder. GANs have no encoder: raises ConfigError.
    """
    if not has_encoder(model):
        raise ConfigError(
            f"{model.family} has no encoder, so real images cannot be placed in its latent space; interpolate between seeds instead"
        )
    x = images_to_tensor(np.stack([image_a, image_b]), model.device)
    kw = _decode_kwargs(model, steps, guidance)
    enc_kw = {"steps": kw["steps"]} if "steps" in kw else {}
    z = model.encode(x, torch.tensor([int(label_a), int(label_b)], device=model.device), **enc_kw)
    zs = _mix(z[0], z[1], frames, method)
    lab = int(label_a if label is None else label)
    return tensor_to_images(model.decode(zs, _label_tensor(model, lab, frames), **kw))


@torch.inference_mode()
def traverse(
    model,
    seed: int,
    label: int,
    *,
    dims: list[int] | None = None,
    values: np.ndarray | list[float] | None = None,
    temperature: float = 1.0,
) -> np.ndarray:
    """Per-dimension traversal of a vector latent: for each dimension i in ``dims`` set z[i] to each
    value (default -3..3 in 7 steps) around the seed's latent. Returns uint8 (len(dims), len(values), H, W, C)."""
    shape = tuple(model.latent_shape())
    if len(shape) != 1:
        raise ConfigError(f"{model.family} has an image-shaped latent {shape}; traversal needs a vector latent (VAE or GAN)")
    dim = shape[0]
    dims = list(range(min(8, dim))) if dims is None else [int(d) for d in dims]
    if not dims or any(not (0 <= d < dim) for d in dims):
        raise ConfigError(f"latent dimensions must be in 0..{dim - 1}, got {dims}")
    vals = torch.as_tensor(np.linspace(-3, 3, 7) if values is None else np.asarray(values, dtype=np.float32), dtype=torch.float32)
    base = model.initial_latents([int(seed)], temperature=temperature)[0]
    z = base.repeat(len(dims) * len(vals), 1)
    for r, d in enumerate(dims):
        z[r * len(vals) : (r + 1) * len(vals), d] = vals.to(z.device)
    imgs = tensor_to_images(model.decode(z, _label_tensor(model, label, len(z)), **_truncation_kwargs(model, temperature)))
    return imgs.reshape(len(dims), len(vals), *imgs.shape[1:])


def latent_dims_by_effect(model, label: int, *, seed: int = 0, top: int = 8, temperature: float = 1.0) -> list[int]:
    """The ``top`` latent dimensions whose -3 -> +3 swing changes the image the most (mean abs
    pixel change), so the traversal shows the dimensions that matter rather than 0..7."""
    shape = tuple(model.latent_shape())
    if len(shape) != 1:
        raise ConfigError(f"{model.family} has no vector latent")
    grid = traverse(model, seed, label, dims=list(range(shape[0])), values=[-3.0, 3.0], temperature=temperature).astype(np.float32)
    effect = np.abs(grid[:, 1] - grid[:, 0]).mean(axis=(1, 2, 3))
    return [int(i) for i in np.argsort(-effect)[:top]]


def gif_bytes(frames: np.ndarray, *, duration_ms: int = 120, upscale: int = 4, boomerang: bool = True) -> bytes:
    """An animated GIF (looping) of uint8 frames (N, H, W, C); ``boomerang`` plays back and forth."""
    from .sampling import to_pil

    seq = list(frames) + (list(frames[-2:0:-1]) if boomerang and len(frames) > 2 else [])
    pil = [to_pil(np.asarray(f), upscale).convert("P" if f.shape[-1] == 3 else "L") for f in seq]
    buf = io.BytesIO()
    pil[0].save(buf, format="GIF", save_all=True, append_images=pil[1:], duration=duration_ms, loop=0, disposal=2)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Style mixing (StyleGAN2)
# ---------------------------------------------------------------------------------------------

MAX_MIX_SEEDS = 16


def has_style_mixing(model) -> bool:
    """True when the family takes per-layer styles that can be mixed (``style_mix``, e.g. StyleGAN2)."""
    return callable(getattr(model, "style_mix", None))


@torch.inference_mode()
def style_mixing_grid(
    model, label: int, row_seeds: list[int], col_seeds: list[int], crossover: int, *, temperature: float = 1.0, pad: int = 1
) -> np.ndarray:
    """The style-mixing figure of StyleGAN (Karras et al. 2019, Fig. 3) as one uint8 (H', W', C) grid.

    Top row: source A images (``row_seeds``); left column: source B images (``col_seeds``); the cell in
    row i, column j takes the styles of A_j for layers < ``crossover`` (coarse: shape) and of B_i from
    ``crossover`` on (fine: strokes, texture). The top-left corner is blank (white). All images are of
    class ``label`` and truncated by psi = ``temperature``.
    """
    if not has_style_mixing(model):
        raise ConfigError(f"{model.family} has no per-layer styles, so style mixing is not available (it needs a StyleGAN2 checkpoint)")
    rows, cols = [int(s) for s in row_seeds], [int(s) for s in col_seeds]
    if not (1 <= len(rows) <= MAX_MIX_SEEDS) or not (1 <= len(cols) <= MAX_MIX_SEEDS):
        raise ConfigError(f"style mixing needs 1..{MAX_MIX_SEEDS} seeds for A and for B, got {len(rows)} and {len(cols)}")
    from .sampling import image_grid

    za = model.initial_latents(rows)
    zb = model.initial_latents(cols)
    a_imgs = model.decode(za, _label_tensor(model, label, len(rows)), temperature=temperature)
    b_imgs = model.decode(zb, _label_tensor(model, label, len(cols)), temperature=temperature)
    # Every (B_i, A_j) pair, row-major: row i is B_i mixed with each A_j.
    za_all = za.repeat(len(cols), 1)
    zb_all = zb.repeat_interleave(len(rows), dim=0)
    try:
        cross = operator.index(crossover)  # integers only (numpy ones too); 1.5 is refused, not truncated
    except TypeError:
        raise ConfigError(f"crossover must be an integer layer index, got {crossover!r}") from None
    mixes = model.style_mix(za_all, zb_all, _label_tensor(model, label, len(za_all)), cross, temperature=temperature)
    a_np, b_np, mix_np = tensor_to_images(a_imgs), tensor_to_images(b_imgs), tensor_to_images(mixes)
    blank = np.full_like(a_np[:1], 255)
    tiles = [blank, a_np]
    for i in range(len(cols)):
        tiles += [b_np[i : i + 1], mix_np[i * len(rows) : (i + 1) * len(rows)]]
    return image_grid(np.concatenate(tiles), nrow=len(rows) + 1, pad=pad)


# ---------------------------------------------------------------------------------------------
# 2-D map of real and synthetic images
# ---------------------------------------------------------------------------------------------


@dataclass
class EmbedMap:
    """2-D coordinates of real then synthetic images (rows 0..n_real-1 real)."""

    coords: np.ndarray  # (N, 2) float32
    labels: np.ndarray  # (N,) int
    synthetic: np.ndarray  # (N,) bool
    method: str
    features: str


def embed_map(
    real_images: np.ndarray,
    real_labels: np.ndarray,
    synth_images: np.ndarray,
    synth_labels: np.ndarray,
    *,
    method: str = "umap",
    features: str | Callable[[torch.Tensor], torch.Tensor] = "pixels",
    seed: int = 0,
    n_neighbors: int = 15,
) -> EmbedMap:
    """Project real and synthetic uint8 images (N, H, W, C) together to 2-D.

    ``features``: ``"pixels"`` (flattened pixels in [0, 1]) or a callable images (N, C, H, W) in
    [0, 1] -> features (N, D), e.g. ``gda_core.metrics.get_extractor("domain-cnn", dataset)``.
    ``method``: ``umap`` (umap-learn, ``random_state=seed``: deterministic) or ``pca`` (sklearn).
    """
    if method not in MAP_METHODS:
        raise ConfigError(f"unknown map method '{method}'; choose one of {', '.join(MAP_METHODS)}")
    if real_images.shape[1:] != synth_images.shape[1:]:
        raise ConfigError(f"real images {real_images.shape[1:]} and synthetic images {synth_images.shape[1:]} differ in shape")
    images = np.concatenate([real_images, synth_images])
    labels = np.concatenate([np.asarray(real_labels), np.asarray(synth_labels)]).astype(np.int64)
    synthetic = np.r_[np.zeros(len(real_images), bool), np.ones(len(synth_images), bool)]
    if len(images) < 4:
        raise ConfigError(f"a map needs at least 4 images, got {len(images)}")
    if features == "pixels":
        feats = images.reshape(len(images), -1).astype(np.float32) / 255.0
        feat_name = "pixels"
    elif callable(features):
        with torch.inference_mode():
            feats = np.asarray(features(images_to_tensor(images)).float().cpu().numpy(), dtype=np.float32)
        feat_name = getattr(features, "name", "features")
    else:
        raise ConfigError(f"features must be 'pixels' or a feature extractor, got {features!r}")
    if feats.ndim != 2 or len(feats) != len(images):
        raise ConfigError(f"features must be (N, D) with N = {len(images)}, got {feats.shape}")
    if method == "pca":
        from sklearn.decomposition import PCA

        coords = PCA(n_components=2, random_state=seed).fit_transform(feats)
    else:
        import umap

        reducer = umap.UMAP(
            n_components=2, n_neighbors=int(min(n_neighbors, len(feats) - 1)), min_dist=0.1, random_state=int(seed), n_jobs=1
        )
        coords = reducer.fit_transform(feats)
    return EmbedMap(np.asarray(coords, dtype=np.float32), labels, synthetic, method, feat_name)


# ---------------------------------------------------------------------------------------------
# Nearest training neighbours (near-copy gallery)
# ---------------------------------------------------------------------------------------------


@dataclass
class Neighbours:
    """For each synthetic image: index of its nearest training image by SSIM, that SSIM, and
    whether it is above the near-copy ``threshold``."""

    index: np.ndarray  # (N,) int
    ssim: np.ndarray  # (N,) float
    flagged: np.ndarray  # (N,) bool
    threshold: float


def nearest_neighbours(
    synth_images: np.ndarray, train_images: np.ndarray, *, threshold: float = NEAR_COPY_THRESHOLD, device: str | torch.device | None = None
) -> Neighbours:
    """Exact SSIM search of every synthetic uint8 image against every training image.

    Uses ``gda_core.metrics.nearest_ssim`` (the privacy metric's own SSIM), so the gallery and the
    privacy score agree. Images must be at least 11 px (the SSIM window).
    """
    from .metrics import nearest_ssim
    from .metrics.privacy import WIN

    if synth_images.shape[1] < WIN:
        raise ConfigError(f"SSIM uses an {WIN}x{WIN} window; these images are {synth_images.shape[1]} px")
    if not (0.0 < threshold <= 1.0):
        raise ConfigError(f"near-copy threshold must be in (0, 1], got {threshold}")
    a = images_to_tensor(synth_images)
    b = images_to_tensor(train_images)
    best, idx = nearest_ssim(a, b, device=device, return_index=True)
    best_np = best.cpu().numpy().astype(np.float64)
    return Neighbours(idx.cpu().numpy().astype(np.int64), best_np, best_np >= threshold, float(threshold))


def upscale(images: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of uint8 (..., H, W, C) for display."""
    if factor <= 1:
        return images
    return images.repeat(factor, axis=-3).repeat(factor, axis=-2)


def strip(frames: np.ndarray, pad: int = 1) -> np.ndarray:
    """Frames (N, H, W, C) side by side as one uint8 (H, N*(W+pad)+pad, C) image."""
    from .sampling import image_grid

    return image_grid(frames, nrow=len(frames), pad=pad)


def grid_rows(rows: np.ndarray, pad: int = 1) -> np.ndarray:
    """A (R, K, H, W, C) array of images as one grid with R rows of K images."""
    from .sampling import image_grid

    r, k = rows.shape[:2]
    return image_grid(rows.reshape(r * k, *rows.shape[2:]), nrow=k, pad=pad)
