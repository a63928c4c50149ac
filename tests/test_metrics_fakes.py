"""Tiny stand-in generative models for the metrics tests (helpers only; this module holds no tests)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from gda_core.models.base import GenerativeModel, ModelConfig


class _FakeModel(GenerativeModel):
    family = ""  # never registered
    Config = ModelConfig

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.dummy = nn.Parameter(torch.zeros(1))  # gives the model a device

    def nfe_per_image(self, steps=None, guidance=None, sampler=None) -> float:
        return 0.0


class MemorisingModel(_FakeModel):
    """'Generates' exact training images of the requested class (image i <- seed i)."""

    def __init__(self, config: ModelConfig, images: np.ndarray, labels: np.ndarray):
        super().__init__(config)
        self.register_buffer("images", torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0)
        self.by_class = [np.flatnonzero(labels == c) for c in range(config.num_classes)]

    def _sample_batch(self, labels, seeds, **controls):
        idx = []
        for y, s in zip(labels.tolist(), seeds, strict=True):
            pool = self.by_class[y]
            idx.append(int(pool[np.random.default_rng(s).integers(len(pool))]))
        return self.images[idx]


class NoiseModel(_FakeModel):
    """Uniform noise images, one generator per seed."""

    def _sample_batch(self, labels, seeds, **controls):
        c = self.config
        out = [torch.rand(c.channels, c.image_size, c.image_size, generator=torch.Generator().manual_seed(s)) for s in seeds]
        return torch.stack(out).to(self.device)


def config_for(ds) -> ModelConfig:
    return ModelConfig(image_size=ds.image_size, channels=ds.channels, num_classes=ds.num_classes)
