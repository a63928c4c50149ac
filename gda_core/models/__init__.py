"""Generative model families behind one interface, and their registry."""

from __future__ import annotations

# Register the built-in families (import order = display order).
from . import vae  # noqa: F401, I001
from . import gan  # noqa: F401
from . import ddpm  # noqa: F401
from .base import CONTROL_HELP, GenerativeModel, ModelConfig, TrainConfig, build_model, get_model_class, list_models, register_model

__all__ = ["CONTROL_HELP", "GenerativeModel", "ModelConfig", "TrainConfig", "build_model", "get_model_class", "list_models", "register_model"]
