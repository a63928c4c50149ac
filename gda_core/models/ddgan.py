"""Class-conditional denoising-diffusion GAN (Xiao, Kreis & Vahdat 2022, "Tackling the Generative
Learning Trilemma with Denoising Diffusion GANs").

A diffusion model with T = 1000 small steps needs ~25 network passes per image because each small
step's denoising distribution is close to Gaussian only when the step is small. With a few (2-4)
large steps the true denoising distribution q(x_{t-1} | x_t) is multimodal, so the DDGAN models
each one with a conditional GAN: the generator G(x_t, z, t, y) predicts a clean image x0', and the
fake x'_{t-1} is drawn from the diffusion posterior q(x_{t-1} | x_t, x0') (the paper's "posterior
sampling" parameterisation, Sec. 4.3). The discriminator D(x_{t-1}, x_t, t, y) tells real pairs
(x_{t-1} ~ q(x_{t-1} | x_0), x_t ~ q(x_t | x_{t-1})) from fake ones; non-saturating loss with an R1
penalty on the real x_{t-1} (lazily, every ``r1_every`` steps, scaled up to match).

The generator is the diffusion families' UNet (``gda_core.models.unet``) with its extra
conditioning vector carrying z; the schedule is the shared ``NoiseSchedule`` with the paper's
few-step VP schedule (``kind="vp"``, beta_min 0.1, beta_max 20). Sampling: x_T ~ N(0, I), then T
generator passes, each followed by a posterior draw; image i's noise and latents come from its own
seeded generator, so it depends only on its seed. Temperature scales x_T and every z.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm

from ..errors import ConfigError
from ..runtime import generators_for, randn_per_seed
from ..schedulers import NoiseSchedule, initial_noise
from .base import GenerativeModel, ModelConfig, TrainConfig, register_model
from .layers import make_adamw, optimizer_step, timestep_embedding
from .unet import UNet, UNetConfig

MAX_DENOISING_STEPS = 8


@dataclass(frozen=True)
class DDGANConfig(ModelConfig):
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    blocks_per_level: int = 1
    attention: bool = True
    dropout: float = 0.0
    denoising_steps: int = 4  # T: the paper's 2-4 large steps (4 is its CIFAR-10 choice)
    beta_min: float = 0.1
    beta_max: float = 20.0
    latent_dim: int = 32  # z of each step (the paper's 100 for 32x32 RGB; digits need less)
    d_channels: int = 64
    r1_gamma: float = 0.05  # R1 weight gamma: gamma / 2 * ||grad_x D||^2 on the real x_{t-1}
    r1_every: int = 4
    training_only: ClassVar[tuple[str, ...]] = ("r1_gamma", "r1_every")

    def unet_config(self) -> UNetConfig:
        return UNetConfig.of(self, cond_dim=self.latent_dim)

    def validate(self) -> None:
        super().validate()
        self.unet_config().validate()
        if not 1 <= self.denoising_steps <= MAX_DENOISING_STEPS:
            raise ConfigError(f"denoising_steps must be in 1..{MAX_DENOISING_STEPS}, got {self.denoising_steps}")
        if not 1 <= self.latent_dim <= 1024 or not 4 <= self.d_channels <= 1024:
            raise ConfigError(f"latent_dim must be in 1..1024 and d_channels in 4..1024, got {self.latent_dim} and {self.d_channels}")
        if not (0 <= self.r1_gamma <= 100) or self.r1_every < 1:
            raise ConfigError(f"r1_gamma must be in 0..100 and r1_every >= 1, got {self.r1_gamma} and {self.r1_every}")
        NoiseSchedule(self.denoising_steps, "vp", beta_min=self.beta_min, beta_max=self.beta_max)  # checks the betas


class PairCritic(nn.Module):
    """D(x_{t-1}, x_t, t, y): the two images stacked as channels, strided spectral-normalised
    convolutions with the step's embedding added after the first, global sum pooling, and projection
    conditioning on the class (Miyato & Koyama 2018)."""

    def __init__(self, cfg: DDGANConfig):
        super().__init__()
        d, sn = cfg.d_channels, spectral_norm
        self.base = d
        self.inp = sn(nn.Conv2d(2 * cfg.channels, d, 3, 1, 1))
        self.t_emb = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.net = nn.Sequential(
            nn.LeakyReLU(0.2), sn(nn.Conv2d(d, d, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(d, 2 * d, 3, 1, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(2 * d, 2 * d, 4, 2, 1)), nn.LeakyReLU(0.2),
        )  # fmt: skip
        self.out = sn(nn.Linear(2 * d, 1))
        self.embed = sn(nn.Embedding(cfg.num_classes, 2 * d))

    def forward(self, x_prev: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.inp(torch.cat([x_prev, x_t], dim=1)) + self.t_emb(timestep_embedding(t, self.base))[:, :, None, None]
        h = self.net(h).sum(dim=(2, 3))
        return self.out(h).squeeze(1) + (self.embed(y) * h).sum(1)


@register_model
class DDGAN(GenerativeModel):
    family = "ddgan"
    Config = DDGANConfig
    controls = ("temperature",)
    control_notes = {"temperature": "scales the starting noise and each step's generator latent z (1 = as trained)"}
    default_lr = 2e-4
    has_latent = True
    description = "Denoising-diffusion GAN: a few large denoising steps, each a conditional GAN; diffusion-like coverage at near-GAN speed."
    display_name = "DDGAN"
    how_it_works = (
        "A denoising-diffusion GAN keeps diffusion's idea (start from noise and remove it step by step) but takes only a few "
        "large steps (here 4 instead of dozens). One large step cannot be learned as a simple average the way a diffusion "
        "model learns its small steps: many different clean images could lie behind a very noisy one. So each step is a "
        "small GAN: a generator (the same UNet the diffusion models use, plus a random code z) proposes a clean image, the "
        "noise that belongs to the next, less noisy level is put back, and a discriminator judges whether the pair (noisier "
        "image, less noisy image) looks like a real pair. Four network passes make an image: far faster than a diffusion "
        "model, while the step-by-step denoising keeps more of the data's variety than a one-shot GAN."
    )

    def __init__(self, config: DDGANConfig):
        super().__init__(config)
        self.generator = UNet(config.unet_config())
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.discriminator = PairCritic(config)
        self.schedule = NoiseSchedule(config.denoising_steps, "vp", beta_min=config.beta_min, beta_max=config.beta_max)

    def sampling_modules(self) -> nn.Module:
        return self.generator_ema

    def ema_modules(self):
        return {"generator": (self.generator, self.generator_ema)}

    # -- training ------------------------------------------------------------------------------
    def configure_optimizers(self, train: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        lr = train.lr or self.default_lr
        # The paper's Adam betas (0.5, 0.9) for both players; D at lr, G at 0.8 lr (its 1.25e-4 / 1.6e-4 reversed
        # ratio measured no better here, and an equal-speed D keeps up with the large UNet generator).
        return {"g": make_adamw(self.generator.parameters(), lr, betas=(0.5, 0.9)),
                "d": make_adamw(self.discriminator.parameters(), lr, betas=(0.5, 0.9))}  # fmt: skip

    def real_pairs(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A random step t per image, x_{t-1} ~ q(x_{t-1} | x_0) (x_0 itself at t = 0), x_t ~ q(x_t | x_{t-1})."""
        b = x0.shape[0]
        t = torch.randint(0, self.config.denoising_steps, (b,), device=x0.device)
        noisy = self.schedule.add_noise(x0, torch.randn_like(x0), (t - 1).clamp(min=0))
        x_prev = torch.where((t > 0).view(-1, 1, 1, 1), noisy, x0)
        return t, x_prev, self.schedule.add_step_noise(x_prev, torch.randn_like(x0), t)

    def fake_prev(self, net: nn.Module, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor, z: torch.Tensor, noise: torch.Tensor):
        """x'_{t-1} ~ q(x_{t-1} | x_t, x0' = G(x_t, z, t, y)), and x0'."""
        x0 = net(x_t, t, y, z)
        mean, std = self.schedule.posterior(x0, x_t, t)
        return mean + std * noise, x0

    def train_step(self, x, y, optimizers, *, step, amp_dtype):
        c = self.config
        ac = dict(device_type=x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
        t, x_prev, x_t = self.real_pairs(x * 2 - 1)
        z = torch.randn(x.shape[0], c.latent_dim, device=x.device)
        noise = torch.randn_like(x_t)
        do_r1 = c.r1_gamma > 0 and step % c.r1_every == 0
        # One generator pass serves both players: D trains on it detached, then G through the updated D.
        with torch.autocast(**ac):
            fake, _ = self.fake_prev(self.generator, x_t, t, y, z, noise)
        # Discriminator: softplus(D(fake)) + softplus(-D(real)), with the lazy R1 penalty.
        with torch.autocast(**ac):
            real = x_prev.detach().requires_grad_(do_r1)
            d_real = self.discriminator(real, x_t, t, y)
            d_loss = F.softplus(-d_real).mean() + F.softplus(self.discriminator(fake.detach(), x_t, t, y)).mean()
        r1 = torch.zeros(())
        if do_r1:
            (grad,) = torch.autograd.grad(d_real.float().sum(), real, create_graph=True)
            r1 = grad.pow(2).flatten(1).sum(1).mean()
        optimizers["d"].zero_grad(set_to_none=True)
        (d_loss + r1 * (c.r1_gamma / 2 * c.r1_every) if do_r1 else d_loss).backward()
        optimizer_step(optimizers["d"])
        # Generator: softplus(-D(fake)).
        self.discriminator.requires_grad_(False)
        with torch.autocast(**ac):
            g_loss = F.softplus(-self.discriminator(fake, x_t, t, y)).mean()
        optimizers["g"].zero_grad(set_to_none=True)
        g_loss.backward()
        optimizer_step(optimizers["g"], self.generator.parameters(), 1.0)
        self.discriminator.requires_grad_(True)
        logs = {"loss": float(d_loss.detach() + g_loss.detach()), "d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach()),
                "d_real": float(d_real.detach().mean())}  # fmt: skip
        if do_r1:
            logs["r1"] = float(r1.detach())
        return logs

    # -- sampling ------------------------------------------------------------------------------
    def latent_shape(self) -> tuple[int, ...]:
        c = self.config
        return (c.channels, c.image_size, c.image_size)

    def decode(self, z: torch.Tensor, labels: torch.Tensor, *, step_seed: int = 0) -> torch.Tensor:
        """Starting noises x_T -> images, every image's step draws (each z and posterior noise) taken
        from one generator seeded ``step_seed``: a deterministic map of x_T alone, so a path between two
        starting noises is a smooth path between images (``sample`` draws them from each image's seed)."""
        return self.denoise(z.to(self.device), labels.to(self.device), generators_for([int(step_seed)] * len(z)))

    def _sample_batch(self, labels, seeds, controls):
        x, gens = initial_noise(self.latent_shape(), seeds, self.device, controls.temperature)
        return self.denoise(x, labels, gens, temperature=controls.temperature)

    def denoise(
        self, x: torch.Tensor, labels: torch.Tensor, generators: list[torch.Generator], *, temperature: float = 1.0,
        callback: Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """From x_T to images in [0, 1]: T generator passes and posterior draws, every draw of image
        i from ``generators[i]``. ``callback(t, x_t, x0', x_{t-1})`` sees each step (t = T-1 .. 0)."""
        c, dev = self.config, self.device
        net = self.generator_ema
        for t in reversed(range(c.denoising_steps)):
            z = randn_per_seed((c.latent_dim,), generators, dev) * float(temperature)
            noise = randn_per_seed(self.latent_shape(), generators, dev) if t > 0 else torch.zeros_like(x)
            tt = torch.full((x.shape[0],), t, device=dev, dtype=torch.long)
            x_prev, x0 = self.fake_prev(net, x, tt, labels, z, noise)
            if callback is not None:
                callback(t, x, x0, x_prev)
            x = x_prev
        return ((x.float().clamp(-1, 1) + 1) / 2)

    def nfe_per_image(self, steps: int | None = None, guidance: float | None = None, sampler: str | None = None) -> float:
        return float(self.config.denoising_steps)
