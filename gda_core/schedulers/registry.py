"""The sampler interface and its registry (as the model registry: samplers register under a name).

A sampler is one numerical method for one generative process. The process says what the network
predicts and so what a step needs:

- ``VP_EPS``: discrete-time variance-preserving diffusion whose network predicts the noise eps
  (DDPM, LDM). The loop (``diffusion.sample_loop``) turns each prediction into a clipped data
  prediction x0 and the eps consistent with it; a sampler maps (x_t, x0, eps) to the next state.
- ``VELOCITY``: an ODE dx/dt = v(x, t) whose velocity the network predicts (flow matching). The
  loop (``flow.integrate``) evaluates v at the start of each step; a sampler advances the state,
  evaluating v again if it needs to.

A family declares the process it samples (``GenerativeModel.sampler_process``) and offers every
sampler registered for it, so a new sampler is one class with ``@register_sampler`` in its own
module; neither the loops, the other samplers nor the families change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch

from ..errors import ConfigError

VP_EPS = "vp-eps"
VELOCITY = "velocity"
PROCESSES = (VP_EPS, VELOCITY)

NoiseFn = Callable[[torch.Tensor], torch.Tensor]
VelocityFn = Callable[[torch.Tensor, float], torch.Tensor]


class Sampler:
    """One method for one process. The loops make a fresh instance per sampling run, so a multistep
    method may keep the previous steps on ``self``."""

    name: ClassVar[str] = ""
    process: ClassVar[str] = ""
    help: ClassVar[str] = ""  # one line for the app's help text
    evals_per_step: ClassVar[int] = 1  # network evaluations per step (for nfe_per_image)


class DiffusionSampler(Sampler):
    """A sampler of the ``VP_EPS`` process. ``eta`` is DDIM's stochasticity (a sampler without
    stochastic steps ignores it); ``noise(x)`` draws fresh noise shaped like x, per image from the
    images' own generators, so image i depends only on its seed."""

    process = VP_EPS

    def __init__(self, *, eta: float = 0.0, noise: NoiseFn | None = None):
        self.eta = eta
        self.noise = noise or torch.randn_like

    def step(self, x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, ab: float, ab_next: float, last: bool) -> torch.Tensor:
        """The state at the next timestep from x_t, the data prediction x0 and the eps consistent with
        it; ``ab`` / ``ab_next`` are abar at this and the next timestep (1.0 after the last step)."""
        raise NotImplementedError


class FlowSampler(Sampler):
    """A sampler of the ``VELOCITY`` process (an ODE solver)."""

    process = VELOCITY

    def step(self, velocity: VelocityFn, x: torch.Tensor, t: float, t_next: float, v: torch.Tensor) -> torch.Tensor:
        """The state at ``t_next`` from the state x at t and the velocity v = velocity(x, t) there."""
        raise NotImplementedError


_SAMPLERS: dict[str, type[Sampler]] = {}


def register_sampler(cls: type[Sampler]) -> type[Sampler]:
    """Class decorator: make ``cls`` available as ``sampler=cls.name`` to the families of its process."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no sampler name")
    if cls.process not in PROCESSES:
        raise ValueError(f"sampler '{cls.name}': unknown process {cls.process!r}; one of {', '.join(PROCESSES)}")
    if cls.name in _SAMPLERS:
        raise ValueError(f"sampler '{cls.name}' is already registered")
    _SAMPLERS[cls.name] = cls
    return cls


def list_samplers(process: str | None = None) -> list[str]:
    """Registered sampler names (of one process), in registration order."""
    return [name for name, cls in _SAMPLERS.items() if process is None or cls.process == process]


def get_sampler(name: str, process: str | None = None) -> type[Sampler]:
    """The sampler class called ``name``; a ConfigError naming the choices when there is none (for ``process``)."""
    allowed = list_samplers(process)
    if name not in allowed:
        raise ConfigError(f"unknown sampler {name!r}; choose one of {', '.join(allowed)}")
    return _SAMPLERS[name]
