"""DDIM: Song et al. 2021, "Denoising Diffusion Implicit Models"."""

from __future__ import annotations

import math

import torch

from .registry import DiffusionSampler, register_sampler


@register_sampler
class DDIM(DiffusionSampler):
    """Eq. (12): x_{t-1} = sqrt(abar') x0 + sqrt(1 - abar' - sigma^2) eps + sigma z, with eq. (16)'s
    sigma scaled by ``eta``: 0 is the deterministic sampler (what inversion and ``decode`` run), 1
    the DDPM posterior's variance."""

    name = "ddim"
    help = "DDIM (eta 0: deterministic)"

    def step(self, x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, ab: float, ab_next: float, last: bool) -> torch.Tensor:
        sigma = 0.0 if last else self.eta * math.sqrt((1 - ab_next) / (1 - ab) * (1 - ab / ab_next))
        x = math.sqrt(ab_next) * x0 + math.sqrt(max(1 - ab_next - sigma**2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * self.noise(x)
        return x
