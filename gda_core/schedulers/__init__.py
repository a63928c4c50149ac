"""Noise schedules and samplers for diffusion models, separate from the networks (diffusers-style)."""

from .diffusion import SAMPLERS, X0_CLIPS, NoiseSchedule, sample_loop

__all__ = ["SAMPLERS", "X0_CLIPS", "NoiseSchedule", "sample_loop"]
