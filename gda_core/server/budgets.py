"""The server owner's budgets, applied where the work happens.

Dataset budgets (pixels, decoded bytes) are the data loaders' own limits
(:mod:`gda_core.data.safety`), set from the server's settings in every process that decodes data.
Model size and training length are checked before a training job is queued and again in its
process. Each refusal is one line naming the limit and its value.
"""

from __future__ import annotations

from ..errors import ConfigError
from .config import ServerConfig


def apply_data_limits(cfg: ServerConfig) -> None:
    """Lower the data loaders' whole-dataset limits to the server's budgets in this process."""
    from ..data import safety

    safety.MAX_DATASET_PIXELS = min(safety.MAX_DATASET_PIXELS, cfg.max_dataset_pixels)
    safety.MAX_DATASET_BYTES = min(safety.MAX_DATASET_BYTES, cfg.max_dataset_bytes)


def model_parameters(family: str, model_config: dict) -> int:
    """Parameters of the model a config describes, counted on the meta device (nothing allocated)."""
    import warnings

    import torch

    from ..models import build_model

    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            model = build_model(family, **model_config)
    except (RuntimeError, ValueError, TypeError, OverflowError) as exc:
        msg = str(exc).strip().splitlines()
        raise ConfigError(f"{family} config cannot be built ({msg[0][:120] if msg else type(exc).__name__})") from None
    return sum(p.numel() for p in model.parameters())


def check_training(cfg: ServerConfig, family: str, model_config: dict, *, steps: int | None, minutes: float | None) -> int:
    """Refuse a training over the step, time or model-size budget; return the model's parameters."""
    if steps is not None and steps > cfg.max_steps:
        raise ConfigError(f"step budget: {steps:,} steps asked, over the limit max_steps = {cfg.max_steps:,}")
    if minutes is not None and minutes > cfg.max_minutes:
        raise ConfigError(f"time budget: {minutes:g} minutes asked, over the limit max_minutes = {cfg.max_minutes:g}")
    n = model_parameters(family, model_config)
    if n > cfg.max_model_params:
        raise ConfigError(f"model budget: this {family} has {n:,} parameters, over the limit max_model_params = {cfg.max_model_params:,}; "
                          "use a smaller width or fewer levels")  # fmt: skip
    return n
