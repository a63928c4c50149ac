"""Discrete-time Gaussian diffusion: the noise schedule, and the loop that runs a reverse sampler.

Notation follows Ho et al. 2020 (DDPM): x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps. The loop
predicts x_0 at each step and keeps it in the data range [-1, 1] (``x0_clip``): "dynamic"
thresholding (Saharia et al. 2022, Imagen, Sec. 2.3) or a "static" clip, with eps re-derived from
the kept x0; the step itself is the sampler's (``ddim``, ``dpmpp`` or any registered ``VP_EPS``
sampler, see ``registry``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..errors import ConfigError
from .registry import VP_EPS, NoiseFn, get_sampler

X0_CLIPS = ("dynamic", "static")
DYNAMIC_PERCENTILE = 0.995  # Imagen's p


class NoiseSchedule:
    """A discrete variance-preserving schedule over ``num_timesteps`` steps: ``cosine`` (Nichol &
    Dhariwal 2021), ``linear`` (Ho et al. 2020), or ``vp``, the continuous VP SDE's
    abar(s) = exp(-s^2 (beta_max - beta_min) / 2 - s beta_min) read at s = (t + 1) / T (Song et al.
    2021; the few-step schedule of the denoising-diffusion GAN, Xiao et al. 2022, with its
    beta_min = 0.1 and beta_max = 20, so that abar at the last step is ~4e-5, pure noise)."""

    def __init__(self, num_timesteps: int = 1000, kind: str = "cosine", *, beta_min: float = 0.1, beta_max: float = 20.0):
        self.num_timesteps = int(num_timesteps)
        t = torch.arange(self.num_timesteps + 1, dtype=torch.float64) / self.num_timesteps
        if kind == "cosine":
            s = 0.008
            f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
            abar = f / f[0]
            betas = (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
        elif kind == "linear":
            betas = torch.linspace(1e-4, 0.02, self.num_timesteps, dtype=torch.float64)
        elif kind == "vp":
            if not (0 <= beta_min < beta_max <= 100):
                raise ConfigError(f"the vp schedule needs 0 <= beta_min < beta_max <= 100, got {beta_min} and {beta_max}")
            abar = torch.exp(-0.5 * t**2 * (beta_max - beta_min) - t * beta_min)
            betas = 1 - abar[1:] / abar[:-1]
        else:
            raise ConfigError(f"unknown noise schedule '{kind}'; choose cosine, linear or vp")
        self.kind = kind
        self.alphas_cumprod = torch.cumprod(1 - betas, 0)  # float64, index t = 0..T-1

    def abar(self, t: torch.Tensor, device, dtype=torch.float32) -> torch.Tensor:
        return self.alphas_cumprod.to(device)[t.long()].to(dtype)

    def snr(self, t: torch.Tensor, device) -> torch.Tensor:
        """Signal-to-noise ratio abar_t / (1 - abar_t) of timesteps t, float32."""
        ab = self.alphas_cumprod.to(device)[t.long()]
        return (ab / (1 - ab)).float()

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """q(x_t | x_0) (eq. 4 of DDPM)."""
        ab = self.abar(t, x0.device, x0.dtype).view(-1, *([1] * (x0.dim() - 1)))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def _abar_prev(self, t: torch.Tensor, device) -> torch.Tensor:
        """abar at t - 1 (1 before the first step: the data), float64."""
        ab = self.alphas_cumprod.to(device)
        return torch.where(t > 0, ab[(t.long() - 1).clamp(min=0)], torch.ones((), dtype=ab.dtype, device=device))

    def add_step_noise(self, x_prev: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I): one forward step (DDPM eq. 2)."""
        beta = 1 - self.alphas_cumprod.to(x_prev.device)[t.long()] / self._abar_prev(t, x_prev.device)
        beta = beta.to(x_prev.dtype).view(-1, *([1] * (x_prev.dim() - 1)))
        return (1 - beta).sqrt() * x_prev + beta.sqrt() * noise

    def posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of q(x_{t-1} | x_t, x_0) (DDPM eq. 6-7); at t = 0 the mean is
        x_0 and the deviation 0 (x_{-1} is the data)."""
        view = (-1, *([1] * (x0.dim() - 1)))
        ab = self.alphas_cumprod.to(x0.device)[t.long()]
        ab_prev = self._abar_prev(t, x0.device)
        beta = 1 - ab / ab_prev
        c0 = (ab_prev.sqrt() * beta / (1 - ab)).to(x0.dtype).view(view)
        ct = ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)).to(x0.dtype).view(view)
        std = (beta * (1 - ab_prev) / (1 - ab)).clamp(min=0).sqrt().to(x0.dtype).view(view)
        return c0 * x0 + ct * xt, std

    def timesteps(self, steps: int) -> list[int]:
        """``steps`` decreasing timesteps from T-1 to 0, evenly spaced ('trailing' spacing)."""
        if not (1 <= steps <= self.num_timesteps):
            raise ConfigError(f"steps must be in 1..{self.num_timesteps}, got {steps}")
        ts = torch.linspace(self.num_timesteps - 1, 0, steps + 1)[:-1].round().long().tolist()
        return ts


EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _pred_x0(x: torch.Tensor, eps: torch.Tensor, ab: float, x0_clip: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The data prediction kept in [-1, 1], and the eps consistent with it.

    "static": clip x0 to [-1, 1]. "dynamic" (Imagen): per image, s = max(1, the 99.5th percentile of
    |x0|), then clip to [-s, s] and divide by s, so an over-saturated prediction (guidance pushes x0
    beyond the data range) is pulled back as a whole instead of flattened at +-1. In both, eps is
    re-derived from the kept x0 so the step moves consistently between x_t and it (keeping the raw
    eps instead, diffusers' default, measured far worse). Dynamic is the default because it was the
    only choice good on both datasets measured (bench/bench_x0_clip.py; figures in docs/benchmarks)."""
    x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
    if x0_clip == "dynamic":
        flat = x0.abs().flatten(1)
        k = max(1, math.ceil(DYNAMIC_PERCENTILE * flat.shape[1]))
        s = flat.kthvalue(k, dim=1).values.clamp_min(1.0).view(-1, *([1] * (x0.dim() - 1)))
        x0 = torch.maximum(torch.minimum(x0, s), -s) / s
    else:
        x0 = x0.clamp(-1, 1)
    return x0, (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)


def _noise_source(generators: list[torch.Generator] | None) -> NoiseFn:
    """Fresh noise shaped like x: image i's from generators[i] (so it depends only on its seed)."""
    if not generators:
        return torch.randn_like
    return lambda x: torch.stack([torch.randn(x.shape[1:], generator=g, device=g.device) for g in generators]).to(x.device)


def sample_loop(
    eps_fn: EpsFn,
    x: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    steps: int,
    sampler: str = "ddim",
    eta: float = 0.0,
    generators: list[torch.Generator] | None = None,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    x0_clip: str = "dynamic",
) -> torch.Tensor:
    """Integrate the reverse process from noise ``x`` (B, C, H, W) and return x_0 in [-1, 1].

    ``eps_fn(x_t, t)`` predicts the noise; ``sampler`` names a registered ``VP_EPS`` sampler;
    ``generators`` (one per image) draw a stochastic sampler's noise (DDIM's eta) so that image i
    depends only on its own generator. ``callback(i, x_t, x0_pred)`` sees each step. ``x0_clip``
    keeps each x0 prediction in [-1, 1] (see ``_pred_x0``).
    """
    solver = get_sampler(sampler, VP_EPS)(eta=eta, noise=_noise_source(generators))
    if x0_clip not in X0_CLIPS:
        raise ConfigError(f"unknown x0_clip '{x0_clip}'; choose one of {', '.join(X0_CLIPS)}")
    ts = schedule.timesteps(steps)
    abars = schedule.alphas_cumprod.tolist()
    for i, t in enumerate(ts):
        last = i + 1 == len(ts)
        ab = abars[t]
        ab_next = 1.0 if last else abars[ts[i + 1]]
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        eps = eps_fn(x, tt).float()
        x0, eps = _pred_x0(x, eps, ab, x0_clip)
        x = solver.step(x, x0, eps, ab, ab_next, last)
        if callback is not None:
            callback(i, x, x0)
    return x.clamp(-1, 1)


def solve_segment(
    eps_fn: EpsFn,
    x: torch.Tensor,
    schedule: NoiseSchedule,
    t_from: int,
    t_to: int,
    *,
    steps: int,
    sampler: str = "dpmpp",
    x0_clip: str = "dynamic",
) -> torch.Tensor:
    """The reverse process from timestep ``t_from`` down to ``t_to`` (-1: the data) in ``steps``
    evenly spaced steps of a registered ``VP_EPS`` sampler, deterministic (eta = 0). A whole
    ``sample_loop`` with trailing spacing is this from T-1 to -1 in its steps; a distilled student's
    teacher runs it between two of the student's timesteps. Returns x at ``t_to`` (x_0 unclamped)."""
    if not (-1 <= t_to < t_from < schedule.num_timesteps) or steps < 1:
        raise ConfigError(f"a segment needs -1 <= t_to < t_from < {schedule.num_timesteps} and steps >= 1, got {t_from}, {t_to}, {steps}")
    solver = get_sampler(sampler, VP_EPS)()
    grid = torch.linspace(t_from, t_to, steps + 1).round().long().tolist()
    abars = schedule.alphas_cumprod.tolist()
    for i, (t, t_next) in enumerate(zip(grid[:-1], grid[1:], strict=True)):
        if t_next == t:  # more steps than timesteps in the segment: rounding repeated one
            continue
        ab, ab_next = abars[t], (1.0 if t_next < 0 else abars[t_next])
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        x0, eps = _pred_x0(x, eps_fn(x, tt).float(), ab, x0_clip)
        x = solver.step(x, x0, eps, ab, ab_next, t_next < 0 and i + 1 == steps)
    return x


def ddim_invert(eps_fn: EpsFn, x: torch.Tensor, schedule: NoiseSchedule, *, steps: int) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) run from data to noise: x_0 in [-1, 1] -> the x_T that
    ``sample_loop(..., sampler="ddim", eta=0)`` maps back to it, up to the error of taking each step's
    eps at its start (Song et al. 2021, eq. 12 with sigma = 0, read from t to the next larger t; the
    timesteps are sampling's, reversed). ``eps_fn`` should be unguided: guidance is not invertible."""
    abars = schedule.alphas_cumprod.tolist()
    ab_prev = 1.0
    for t in schedule.timesteps(steps)[::-1]:
        ab = abars[t]
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        eps = eps_fn(x, tt).float()
        x0 = (x - (1 - ab_prev) ** 0.5 * eps) / ab_prev**0.5
        x = ab**0.5 * x0 + (1 - ab) ** 0.5 * eps
        ab_prev = ab
    return x
