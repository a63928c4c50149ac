"""The sampling controls, validated once: ``SampleConfig``.

Every family samples through ``GenerativeModel.sample(n, labels, *, temperature, guidance, steps,
seed, eta, sampler, ...)``; the controls are checked there, once, by building a SampleConfig, so
every family refuses the same values with the same one-line ConfigError:

- temperature: a finite number in 0..10 (1 = as trained);
- guidance: None (the family default) or a finite number >= 0 (NaN and inf refused);
- steps: None (the family default) or an integer >= 1 (0 is an error, not "the default"); a family
  may cap it (``GenerativeModel.max_steps``);
- eta: a number in 0..1;
- sampler: None (the family default) or the name of a registered sampler (``gda_core.schedulers``);
  a family accepts those of the process it samples;
- seed: an integer.

A control the family does not list in ``controls`` must be left at its neutral value (``NEUTRAL``):
it would change nothing, and a caller who set it believes it did. Callers that pass one set of
controls to any family (``sampling.generate``, the trainer's preview) keep only the applicable ones
with ``GenerativeModel.split_controls``.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from dataclasses import dataclass
from numbers import Real
from typing import Any

from ..errors import ConfigError
from ..schedulers.registry import get_sampler

# Controls a family may honour (``GenerativeModel.controls``); the app shows only those it lists.
CONTROLS = ("temperature", "guidance", "steps", "eta", "sampler")
CONTROL_HELP = {
    "temperature": "scales the randomness of the starting noise / latent (1 = as trained)",
    "guidance": "classifier-free guidance scale: higher follows the class more, with less variety",
    "steps": "number of denoising steps: more is slower and usually cleaner",
    "eta": "DDIM stochasticity: 0 = deterministic, 1 = DDPM-like",
    "sampler": "the numerical sampler used to integrate the reverse process",
}
# The value of each control that asks for nothing: what a family that does not use it accepts.
NEUTRAL: dict[str, Any] = {"temperature": 1.0, "guidance": None, "steps": None, "eta": 0.0, "sampler": None}
MAX_TEMPERATURE = 10.0


def _number(name: str, v: Any, lo: float, hi: float, what: str) -> float:
    if not isinstance(v, Real) or isinstance(v, bool) or not math.isfinite(v) or not lo <= v <= hi:
        raise ConfigError(f"{name} must be {what}, got {v!r}")
    return float(v)


def _integer(name: str, v: Any, what: str, minimum: int | None = None) -> int:
    try:
        n = None if isinstance(v, bool) else operator.index(v)  # NumPy integers accepted; floats and bools refused
    except TypeError:
        n = None
    if n is None or (minimum is not None and n < minimum):
        raise ConfigError(f"{name} must be {what}, got {v!r}")
    return n


@dataclass(frozen=True)
class SampleConfig:
    """One set of sampling controls, validated (and normalised to Python floats / ints) when built.
    None means "the family's default"; ``GenerativeModel.resolve_controls`` fills those in."""

    temperature: float = 1.0
    guidance: float | None = None
    steps: int | None = None
    eta: float = 0.0
    sampler: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen: normalise in place once
        fix("temperature", _number("temperature", self.temperature, 0.0, MAX_TEMPERATURE, f"a finite number in 0..{MAX_TEMPERATURE:g}"))
        if self.guidance is not None:
            fix("guidance", _number("guidance", self.guidance, 0.0, math.inf, "a finite number >= 0, or None for the family default"))
        if self.steps is not None:
            fix("steps", _integer("steps", self.steps, "an integer >= 1, or None for the family default", minimum=1))
        fix("eta", _number("eta", self.eta, 0.0, 1.0, "a number in 0..1"))
        if self.sampler is not None:
            if not isinstance(self.sampler, str):
                raise ConfigError(f"sampler must be a sampler's name or None for the family default, got {self.sampler!r}")
            get_sampler(self.sampler)
        fix("seed", _integer("seed", self.seed, "an integer"))

    @classmethod
    def from_kwargs(cls, **controls: Any) -> "SampleConfig":
        """A SampleConfig from keyword controls, refusing (rather than ignoring) a name that is none."""
        known = [f.name for f in dataclasses.fields(cls)]
        for name in controls:
            if name not in known:
                raise ConfigError(f"unknown sampling control {name!r}; the controls are {', '.join(known)}")
        return cls(**controls)

    def replace(self, **changes: Any) -> "SampleConfig":
        return dataclasses.replace(self, **changes)

    def set_controls(self) -> list[str]:
        """The controls (of ``CONTROLS``) set to something other than their neutral value."""
        return [name for name in CONTROLS if getattr(self, name) != NEUTRAL[name]]
