"""Training: one loop for every family, with callbacks, budgets, checkpoints and resume."""

from .trainer import TrainEvent, cpu_bf16_offered, train, train_precision

__all__ = ["TrainEvent", "cpu_bf16_offered", "train", "train_precision"]
