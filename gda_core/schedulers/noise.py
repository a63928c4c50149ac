"""The seeded starting noise every family samples from (its ``initial_latents``)."""

from __future__ import annotations

import torch

from ..runtime import randn_per_seed


def initial_noise(shape: tuple[int, ...], generators: list[torch.Generator], device: torch.device | str, temperature: float = 1.0) -> torch.Tensor:
    """N(0, temperature^2 I) of ``shape`` per image, image i from generators[i] (``runtime.generators_for``),
    so it depends only on its own seed. A caller that draws more per image afterwards (DDIM's eta
    noise) goes on with the same generators."""
    return randn_per_seed(shape, generators, device) * float(temperature)
