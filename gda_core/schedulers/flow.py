"""The flow-matching ODE loop: the time grid and ``integrate``, shared by sampling and inversion.

A flow model learns a velocity field v(x, t) whose ODE dx/dt = v(x, t) carries noise (t = 1) to
data (t = 0) (Lipman et al. 2023, "Flow Matching for Generative Modeling", eq. 1; Liu et al. 2023,
"Flow Straight and Fast", eq. 1). Sampling integrates from t = 1 down to t = 0; inversion (image ->
noise) integrates the same ODE from t = 0 up to t = 1 on the reversed grid (``time_grid``). The
step is the solver's: ``euler``, ``heun`` or any registered ``VELOCITY`` sampler (``registry``).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

import torch

from ..errors import ConfigError
from .registry import VELOCITY, VelocityFn, get_sampler

MAX_STEPS = 1000

StepCallback = Callable[[int, float, torch.Tensor, torch.Tensor], None]


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
    return get_sampler(method, VELOCITY).evals_per_step * check_steps(steps)


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
    solver = get_sampler(method, VELOCITY)()
    ts = [float(t) for t in t_grid]
    if len(ts) < 2:
        raise ConfigError(f"a time grid needs at least 2 points, got {len(ts)}")
    x = x.float()
    for i in range(len(ts) - 1):
        v = velocity_fn(x, ts[i]).float()
        if callback is not None:
            callback(i, ts[i], x, v)
        x = solver.step(velocity_fn, x, ts[i], ts[i + 1], v)
    return x
