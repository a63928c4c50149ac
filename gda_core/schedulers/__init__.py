"""Noise schedules and samplers for diffusion models, separate from the networks (diffusers-style)."""

from .diffusion import SAMPLERS, NoiseSchedule, sample_loop

__all__ = ["SAMPLERS", "NoiseSchedule", "sample_loop"]
