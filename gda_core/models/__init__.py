"""Generative model families behind one interface, and their registry."""

from __future__ import annotations

from . import ddpm, gan, vae  # noqa: F401  (register the built-in families)
from .base import CONTROL_HELP, GenerativeModel, ModelConfig, TrainConfig, build_model, get_model_class, list_models, register_model

__all__ = ["CONTROL_HELP", "GenerativeModel", "ModelConfig", "TrainConfig", "build_model", "get_model_class", "list_models", "register_model"]
