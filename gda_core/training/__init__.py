"""Training: one loop for every family, with callbacks, budgets, checkpoints and resume."""

from .cached import ensure_trained, is_finished
from .trainer import TrainEvent, cpu_bf16_offered, train, train_precision

__all__ = ["TrainEvent", "cpu_bf16_offered", "ensure_trained", "is_finished", "train", "train_precision"]
