"""Heun's method for the flow ODE dx/dt = v(x, t): the explicit trapezoidal rule, 2nd-order
Runge-Kutta (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
Models", Algorithm 1)."""

from __future__ import annotations

import torch

from .registry import FlowSampler, VelocityFn, register_sampler


@register_sampler
class Heun(FlowSampler):
    """Predictor x' = x_i + h v(x_i, t_i), corrector x_{i+1} = x_i + h/2 (v(x_i, t_i) + v(x', t_{i+1})).
    Global error O(h^2); two evaluations per step, the last step included: EDM falls back to Euler
    on its last step because its ODE's slope (x - D(x)) / sigma is undefined at sigma = 0, whereas a
    flow's velocity is finite and trained at t = 0 (x_t is then clean data), so the corrector is
    valid there too and the method stays second order to the end."""

    name = "heun"
    help = "Heun's 2nd-order ODE solver: 2 network passes per step, ~20 steps match 200 Euler steps"
    evals_per_step = 2

    def step(self, velocity: VelocityFn, x: torch.Tensor, t: float, t_next: float, v: torch.Tensor) -> torch.Tensor:
        h = t_next - t
        v_next = velocity(x + h * v, t_next).float()
        return x + (0.5 * h) * (v + v_next)
