"""The seeded starting noise every family samples from (its ``initial_latents``)."""

from __future__ import annotations

import torch

from ..runtime import generators_for, randn_per_seed


def initial_noise(
    shape: tuple[int, ...], seeds: list[int], device: torch.device | str, temperature: float = 1.0
) -> tuple[torch.Tensor, list[torch.Generator]]:
    """N(0, temperature^2 I) of ``shape`` per image, image i drawn from its own generator seeded with
    seeds[i], so it depends only on its seed whatever the batch; and those generators, for a
    sampler that draws more per image afterwards (DDIM's eta noise)."""
    generators = generators_for(seeds)
    return randn_per_seed(shape, generators, device) * float(temperature), generators
