"""Generative model families behind one interface, and their registry."""

from __future__ import annotations

import importlib

from .base import GenerativeModel, ModelConfig, TrainConfig, build_model, display_name, get_model_class, list_models, register_model
from .controls import CONTROL_HELP, SampleConfig

# The built-in families, in display order; importing a module registers its family.
BUILTIN_FAMILIES = (
    "vae",
    "gan",
    "stylegan2",
    "ddpm",
    "ldm",
    "flow",
    "realnvp",
    "ddgan",
    "vaegan",
    "distilled",
)
for _name in BUILTIN_FAMILIES:
    importlib.import_module(f".{_name}", __name__)

__all__ = ["CONTROL_HELP", "GenerativeModel", "SampleConfig", "ModelConfig", "TrainConfig", "build_model", "display_name", "get_model_class", "list_models", "register_model"]
