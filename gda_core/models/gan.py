"""Conditional DCGAN-style GAN with hinge loss, spectral norm, projection discriminator and EMA.

Generator: z (+ class embedding) -> s/4 x s/4 feature map -> two nearest-upsample conv stages -> image.
Discriminator: spectral-normalised strided convs, global sum pooling, projection conditioning
(Miyato & Koyama 2018): D(x, y) = psi(phi(x)) + <embed(y), phi(x)>. Hinge loss (Lim & Ye 2017).
Samples come from an exponential moving average of the generator (Yazici et al. 2019).
Temperature is the truncation psi: z is scaled by psi toward the mean of the prior.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm

from ..errors import ConfigError
from .base import GenerativeModel, ModelConfig, TrainConfig, register_model
from .layers import make_adamw, optimizer_step


@dataclass(frozen=True)
class GANConfig(ModelConfig):
    latent_dim: int = 64
    g_channels: int = 64
    d_channels: int = 64
    class_dim: int = 32

    def validate(self) -> None:
        super().validate()
        for name in ("latent_dim", "g_channels", "d_channels", "class_dim"):
            if not 1 <= getattr(self, name) <= 4096:
                raise ConfigError(f"{name} must be in 1..4096, got {getattr(self, name)}")


class Generator(nn.Module):
    def __init__(self, cfg: GANConfig):
        super().__init__()
        g, self.s4 = cfg.g_channels, cfg.image_size // 4
        self.embed = nn.Embedding(cfg.num_classes, cfg.class_dim)
        self.fc = nn.Linear(cfg.latent_dim + cfg.class_dim, 2 * g * self.s4 * self.s4)
        self.g = g

        def up(cin, cout):
            return nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.ReLU(True))

        self.net = nn.Sequential(nn.BatchNorm2d(2 * g), nn.ReLU(True), up(2 * g, g), up(g, g // 2), nn.Conv2d(g // 2, cfg.channels, 3, 1, 1))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.embed(y)], 1)).view(-1, 2 * self.g, self.s4, self.s4)
        return torch.tanh(self.net(h))  # [-1, 1]


class Discriminator(nn.Module):
    def __init__(self, cfg: GANConfig):
        super().__init__()
        d = cfg.d_channels
        sn = spectral_norm
        self.net = nn.Sequential(
            sn(nn.Conv2d(cfg.channels, d // 2, 3, 1, 1)), nn.LeakyReLU(0.2, True),
            sn(nn.Conv2d(d // 2, d, 4, 2, 1)), nn.LeakyReLU(0.2, True),
            sn(nn.Conv2d(d, d, 3, 1, 1)), nn.LeakyReLU(0.2, True),
            sn(nn.Conv2d(d, 2 * d, 4, 2, 1)), nn.LeakyReLU(0.2, True),
            sn(nn.Conv2d(2 * d, 2 * d, 3, 1, 1)), nn.LeakyReLU(0.2, True),
        )  # fmt: skip
        self.out = sn(nn.Linear(2 * d, 1))
        self.embed = sn(nn.Embedding(cfg.num_classes, 2 * d))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.net(x).sum(dim=(2, 3))
        return self.out(h).squeeze(1) + (self.embed(y) * h).sum(1)


@register_model
class GAN(GenerativeModel):
    family = "gan"
    Config = GANConfig
    controls = ("temperature",)
    default_lr = 2e-4
    has_latent = True
    description = "Conditional GAN (hinge loss, spectral norm): sharp and very fast, can miss modes."
    display_name = "GAN"
    how_it_works = (
        "A generative adversarial network trains two networks against each other. The generator turns random "
        "noise plus a class label into an image; the discriminator sees real and generated images and learns to "
        "tell them apart. Each improves by exploiting the other's mistakes, so the generator learns to produce "
        "images the discriminator cannot reject. Sampling is one pass of the generator, so it is as fast as a VAE "
        "and usually sharper, but the adversarial game can collapse onto a few kinds of image (low diversity). "
        "Temperature here is truncation: values below 1 keep the noise near its centre for safer, less varied images."
    )

    def __init__(self, config: GANConfig):
        super().__init__(config)
        self.generator = Generator(config)
        self.discriminator = Discriminator(config)
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)

    def sampling_modules(self) -> nn.Module:
        return self.generator_ema

    def ema_modules(self):
        return {"generator": (self.generator, self.generator_ema)}

    def configure_optimizers(self, train: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        lr = train.lr or self.default_lr
        return {
            "g": make_adamw(self.generator.parameters(), lr, betas=(0.0, 0.9)),
            "d": make_adamw(self.discriminator.parameters(), lr * 2, betas=(0.0, 0.9)),
        }

    def train_step(self, x, y, optimizers, *, step, amp_dtype):
        b, dev = x.shape[0], x.device
        real = x * 2 - 1
        z = torch.randn(b, self.config.latent_dim, device=dev)
        ac = dict(device_type=dev.type, dtype=amp_dtype, enabled=amp_dtype is not None)
        # Discriminator step: hinge loss.
        with torch.autocast(**ac):
            fake = self.generator(z, y).detach()
            d_real = self.discriminator(real, y)
            d_fake = self.discriminator(fake, y)
            d_loss = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
        optimizers["d"].zero_grad(set_to_none=True)
        d_loss.backward()
        optimizer_step(optimizers["d"])
        # Generator step.
        self.discriminator.requires_grad_(False)
        with torch.autocast(**ac):
            g_loss = -self.discriminator(self.generator(z, y), y).mean()
        optimizers["g"].zero_grad(set_to_none=True)
        g_loss.backward()
        optimizer_step(optimizers["g"])
        self.discriminator.requires_grad_(True)
        return {"loss": float(d_loss.detach() + g_loss.detach()), "d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach()),
                "d_real": float(d_real.detach().mean()), "d_fake": float(d_fake.detach().mean())}  # fmt: skip

    def latent_shape(self) -> tuple[int, ...]:
        return (self.config.latent_dim,)

    def decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        g = self.generator_ema
        was_training = g.training
        g.eval()
        out = (g(z.to(self.device), labels.to(self.device)) + 1) / 2
        g.train(was_training)
        return out

    def _sample_batch(self, labels, seeds, controls):
        return self.decode(self.initial_latents(seeds, temperature=controls.temperature), labels)
