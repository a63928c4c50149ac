"""Euler's method for the flow ODE dx/dt = v(x, t) (Lipman et al. 2023, "Flow Matching for
Generative Modeling", eq. 1)."""

from __future__ import annotations

import torch

from .registry import FlowSampler, VelocityFn, register_sampler


@register_sampler
class Euler(FlowSampler):
    """x_{i+1} = x_i + h v(x_i, t_i), h = t_{i+1} - t_i. First order: global error O(h); one
    velocity evaluation per step."""

    name = "euler"
    help = "Euler's 1st-order ODE solver: 1 pass per step, needs many more steps for the same result"
    evals_per_step = 1

    def step(self, velocity: VelocityFn, x: torch.Tensor, t: float, t_next: float, v: torch.Tensor) -> torch.Tensor:
        return x + (t_next - t) * v
