"""Training: one loop for every family, with callbacks, budgets, checkpoints and resume."""

from .trainer import TrainEvent, train

__all__ = ["TrainEvent", "train"]
