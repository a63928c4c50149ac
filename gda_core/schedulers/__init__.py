"""Noise schedules, sampling loops and the samplers they run, separate from the networks (diffusers-style).

Importing the package registers the built-in samplers; a new one is a module with a
``@register_sampler`` class (see ``registry``).
"""

import importlib

from .diffusion import X0_CLIPS, NoiseSchedule, ddim_invert, sample_loop
from .guidance import Guidance
from .noise import initial_noise
from .registry import PROCESSES, VELOCITY, VP_EPS, DiffusionSampler, FlowSampler, Sampler, get_sampler, list_samplers, register_sampler

# The built-in samplers, each in its own module, in the order the app offers them (the first of a
# process is its families' default unless a family's config names another).
BUILTIN_SAMPLERS = ("ddim", "dpmpp", "heun", "euler")
for _name in BUILTIN_SAMPLERS:
    importlib.import_module(f".{_name}", __name__)

__all__ = [
    "PROCESSES",
    "VELOCITY",
    "VP_EPS",
    "X0_CLIPS",
    "DiffusionSampler",
    "FlowSampler",
    "Guidance",
    "NoiseSchedule",
    "Sampler",
    "ddim_invert",
    "get_sampler",
    "initial_noise",
    "list_samplers",
    "register_sampler",
    "sample_loop",
]
