"""ODE integrators for flow-matching models: pure functions, shared by sampling and inversion.

A flow model learns a velocity field v(x, t) whose ODE dx/dt = v(x, t) carries noise (t = 1) to
data (t = 0) (Lipman et al. 2023, "Flow Matching for Generative Modeling", eq. 1; Liu et al. 2023,
"Flow Straight and Fast", eq. 1). Sampling integrates from t = 1 down to t = 0; inversion (image ->
noise) integrates the same ODE from t = 0 up to t = 1 on the reversed grid (``time_grid``).

Methods (h = t_{i+1} - t_i, negative when sampling):
- ``euler``: x_{i+1} = x_i + h v(x_i, t_i). First order: global error O(h). One evaluation per step.
- ``heun``: Heun's method (explicit trapezoidal rule, 2nd-order Runge-Kutta; Karras et al. 2022,
  Algorithm 1): predictor x' = x_i + h v(x_i, t_i), corrector x_{i+1} = x_i + h/2 (v(x_i, t_i) +
  v(x', t_{i+1})). Global error O(h^2); two evaluations per step, the last step included: EDM
  falls back to Euler on its last step because its ODE's slope (x - D(x)) / sigma is undefined
  at sigma = 0, whereas a flow's velocity is finite and trained at t = 0 (x_t is then clean data),
  so the corrector is valid there too and the method stays second order to the end.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

import torch

from ..errors import ConfigError

FLOW_SAMPLERS = ("heun", "euler")
# Velocity evaluations per step of each method.
EVALS_PER_STEP = {"euler": 1, "heun": 2}
MAX_STEPS = 1000

VelocityFn = Callable[[torch.Tensor, float], torch.Tensor]
StepCallback = Callable[[int, float, torch.Tensor, torch.Tensor], None]


def check_method(method: str) -> str:
    if method not in FLOW_SAMPLERS:
        raise ConfigError(f"unknown sampler '{method}'; choose one of {', '.join(FLOW_SAMPLERS)}")
    return method


def check_steps(steps: int) -> int:
    """``steps`` as an int in 1..MAX_STEPS (NumPy integers accepted; floats and bools refused)."""
    try:
        n = operator.index(steps) if not isinstance(steps, bool) else None
    except TypeError:
        n = None
    if n is None or not (1 <= n <= MAX_STEPS):
        raise ConfigError(f"steps must be an integer in 1..{MAX_STEPS}, got {steps!r}")
    return n


def time_grid(steps: int, rho: float = 1.0) -> list[float]:
    """``steps + 1`` times from 1 (noise) down to 0 (data): t_i = (1 - i / steps) ** rho.

    rho = 1 is uniform; rho > 1 takes smaller steps near the data, where a learned flow curves most
    (the posterior mean of the image resolves fine detail there). It is EDM's grid (Karras et al.
    2022, eq. 5) with sigma_max = 1 and sigma_min = 0. Inversion (data -> noise) uses the same
    list reversed, so it visits exactly the times sampling does.
    """
    check_steps(steps)
    if not (1.0 <= rho <= 8.0):
        raise ConfigError(f"grid rho must be in 1..8, got {rho}")
    return [(1.0 - i / steps) ** rho for i in range(steps + 1)]


def evaluations(method: str, steps: int) -> int:
    """Velocity evaluations ``integrate`` makes for ``steps`` steps of ``method``."""
    return EVALS_PER_STEP[check_method(method)] * check_steps(steps)


def integrate(
    velocity_fn: VelocityFn,
    x: torch.Tensor,
    t_grid: Sequence[float],
    method: str = "heun",
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Integrate dx/dt = velocity_fn(x, t) from t_grid[0] to t_grid[-1] and return the end state.

    ``velocity_fn(x, t)`` takes the state (B, ...) and a Python float time. ``callback(i, t, x, v)``
    is called before step i with the state x at time t = t_grid[i] and the velocity v evaluated
    there (so a caller can show e.g. the straight-line extrapolation x - t v to t = 0).
    The state is kept in float32 whatever the network's output dtype.
    """
    check_method(method)
    ts = [float(t) for t in t_grid]
    if len(ts) < 2:
        raise ConfigError(f"a time grid needs at least 2 points, got {len(ts)}")
    x = x.float()
    for i in range(len(ts) - 1):
        t, t_next = ts[i], ts[i + 1]
        h = t_next - t
        v = velocity_fn(x, t).float()
        if callback is not None:
            callback(i, t, x, v)
        x_pred = x + h * v
        if method == "euler":
            x = x_pred
        else:
            v_next = velocity_fn(x_pred, t_next).float()
            x = x + (0.5 * h) * (v + v_next)
    return x
