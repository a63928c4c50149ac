"""Conditional VAE-GAN (Larsen, Sønderby, Larochelle & Winther 2016, "Autoencoding beyond pixels
using a learned similarity metric"), class-conditional as the VAE here (Sohn et al. 2015).

A VAE's pixel-wise reconstruction loss treats every pixel as independent, so the decoder hedges
with the average of the plausible images: blur. The VAE-GAN keeps the VAE's encoder, latent prior
and decoder, but measures the reconstruction in the feature space of a GAN discriminator (its
penultimate layer, Dis_l): two images are close when the discriminator sees the same things in them,
whatever their pixel-wise distance. The decoder is also the GAN's generator, trained to make its
reconstructions and its prior samples pass as real. Losses (their Algorithm 1):

    encoder:  beta * KL(q(z|x,y) || N(0, I)) + L_llike
    decoder:  gamma * L_llike + L_GAN(generator)
    critic:   L_GAN(discriminator) on real x, reconstructions x~ and prior samples x_p

with L_llike = squared distance of Dis_l(x) and Dis_l(x~), summed over features (their Gaussian observation model
in feature space). The encoder gets no GAN gradient (their Sec. 2.2). A small pixel term
(``pixel_weight`` x the VAE's per-pixel cross-entropy) keeps the first steps, when the critic's features
are still random, from wandering; hinge loss and spectral norm as the GAN family. Sampling decodes z ~
N(0, temperature^2 I) with the EMA decoder; ``encode`` returns the posterior mean, so the latent tools
(real-image interpolation, traversal) work as on the VAE.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm

from ..errors import ConfigError
from .base import GenerativeModel, ModelConfig, TrainConfig, register_model
from .layers import down_block, make_adamw, optimizer_step, up_block


@dataclass(frozen=True)
class VAEGANConfig(ModelConfig):
    latent_dim: int = 32
    base_channels: int = 32
    class_dim: int = 16
    d_channels: int = 64
    beta: float = 0.5  # KL weight (the VAE family's, per-pixel-sum scale)
    gamma: float = 1.0  # decoder: weight of the feature-space reconstruction against the GAN loss
    pixel_weight: float = 0.05  # decoder and encoder: weight of the pixel cross-entropy (summed over pixels)
    training_only: ClassVar[tuple[str, ...]] = ("beta", "gamma", "pixel_weight")

    def validate(self) -> None:
        super().validate()
        for name in ("latent_dim", "base_channels", "class_dim", "d_channels"):
            if not 1 <= getattr(self, name) <= 4096:
                raise ConfigError(f"{name} must be in 1..4096, got {getattr(self, name)}")
        for name in ("beta", "gamma", "pixel_weight"):
            if not 0 <= getattr(self, name) <= 1000:
                raise ConfigError(f"{name} must be a number in 0..1000, got {getattr(self, name)}")


class Encoder(nn.Module):
    def __init__(self, cfg: VAEGANConfig):
        super().__init__()
        b = cfg.base_channels
        self.class_emb = nn.Embedding(cfg.num_classes, cfg.class_dim)
        self.inp = nn.Conv2d(cfg.channels + cfg.class_dim, b, 3, 1, 1)
        self.net = nn.Sequential(down_block(b, b), down_block(b, 2 * b))
        self.to_stats = nn.Linear(2 * b * (cfg.image_size // 4) ** 2, 2 * cfg.latent_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.class_emb(y)[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
        mu, logvar = self.to_stats(self.net(self.inp(torch.cat([x * 2 - 1, e], 1))).flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 8)


class Decoder(nn.Module):
    """z, y -> logits of images in [0, 1]."""

    def __init__(self, cfg: VAEGANConfig):
        super().__init__()
        b, self.s4 = cfg.base_channels, cfg.image_size // 4
        self.b = b
        self.class_emb = nn.Embedding(cfg.num_classes, cfg.class_dim)
        self.fc = nn.Linear(cfg.latent_dim + cfg.class_dim, 2 * b * self.s4 * self.s4)
        self.net = nn.Sequential(up_block(2 * b, 2 * b), up_block(2 * b, b), nn.Conv2d(b, cfg.channels, 3, 1, 1))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.class_emb(y)], 1)).view(-1, 2 * self.b, self.s4, self.s4)
        return self.net(h)


class FeatureCritic(nn.Module):
    """Spectral-normalised conv critic with projection conditioning; ``features`` is Dis_l, the
    pooled penultimate layer the reconstruction is measured in."""

    def __init__(self, cfg: VAEGANConfig):
        super().__init__()
        d, sn = cfg.d_channels, spectral_norm
        self.net = nn.Sequential(
            sn(nn.Conv2d(cfg.channels, d // 2, 3, 1, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(d // 2, d, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(d, 2 * d, 4, 2, 1)), nn.LeakyReLU(0.2),
        )  # fmt: skip
        self.feat = sn(nn.Conv2d(2 * d, 2 * d, 3, 1, 1))
        self.out = sn(nn.Linear(2 * d, 1))
        self.embed = sn(nn.Embedding(cfg.num_classes, 2 * d))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Dis_l(x): the feature map before the last nonlinearity (B, 2d, s/4, s/4), x in [-1, 1]."""
        return self.feat(self.net(x))

    def score(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(f, 0.2).sum(dim=(2, 3))
        return self.out(h).squeeze(1) + (self.embed(y) * h).sum(1)


@register_model
class VAEGAN(GenerativeModel):
    family = "vaegan"
    Config = VAEGANConfig
    controls = ("temperature",)
    default_lr = 2e-4
    has_latent = True
    description = "VAE-GAN: a VAE whose reconstructions are judged by a GAN critic; the VAE's latent space with sharper images."
    display_name = "VAE-GAN"
    how_it_works = (
        "A VAE-GAN is a variational autoencoder whose decoder is also a GAN generator. The encoder maps each image to a "
        "small cloud of codes and the decoder turns codes back into images, as in a VAE. But instead of comparing a "
        "reconstruction with its original pixel by pixel (which rewards a safe, blurry average), the comparison is made "
        "in the eyes of a discriminator: two images count as close when the discriminator's internal features agree. "
        "The discriminator is trained at the same time to tell real images from reconstructions and from images decoded "
        "from random codes, so the decoder learns to draw sharp, realistic strokes. Sampling is one decoder pass, as fast "
        "as a VAE, and the encoder still places real images in the latent space for interpolation and traversal."
    )

    def __init__(self, config: VAEGANConfig):
        super().__init__(config)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.decoder_ema = copy.deepcopy(self.decoder).requires_grad_(False)
        self.discriminator = FeatureCritic(config)

    def sampling_modules(self) -> nn.Module:
        return self.decoder_ema

    def ema_modules(self):
        return {"decoder": (self.decoder, self.decoder_ema)}

    # -- training ------------------------------------------------------------------------------
    def configure_optimizers(self, train: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        lr = train.lr or self.default_lr
        return {
            "enc": make_adamw(self.encoder.parameters(), lr, betas=(0.5, 0.999)),
            "dec": make_adamw(self.decoder.parameters(), lr, betas=(0.5, 0.999)),
            "d": make_adamw(self.discriminator.parameters(), 2 * lr, betas=(0.5, 0.999)),
        }

    def _critic_step(self, real, rec, prior, y, opt) -> dict[str, float]:
        """Hinge loss on real images against reconstructions and prior samples (half weight each)."""
        D = self.discriminator
        s_real = D.score(D.features(real), y)
        loss = F.relu(1 - s_real).mean() + 0.5 * (F.relu(1 + D.score(D.features(rec), y)).mean() + F.relu(1 + D.score(D.features(prior), y)).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        optimizer_step(opt)
        return {"d_loss": float(loss.detach()), "d_real": float(s_real.detach().mean())}

    def train_step(self, x, y, optimizers, *, step, amp_dtype):
        c, D = self.config, self.discriminator
        ac = dict(device_type=x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
        with torch.autocast(**ac):
            mu, logvar = self.encoder(x, y)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            rec_logits = self.decoder(z, y)
            prior = torch.sigmoid(self.decoder(torch.randn_like(mu), y)) * 2 - 1
            rec = torch.sigmoid(rec_logits) * 2 - 1
        with torch.autocast(**ac):
            logs = self._critic_step(x * 2 - 1, rec.detach(), prior.detach(), y, optimizers["d"])
        D.requires_grad_(False)
        with torch.autocast(**ac):
            f_real = D.features(x * 2 - 1).detach()
            f_rec = D.features(rec)
            llike = (f_rec.float() - f_real.float()).pow(2).flatten(1).sum(1).mean()
            pixel = F.binary_cross_entropy_with_logits(rec_logits.float(), x, reduction="none").flatten(1).sum(1).mean()
            kl = (0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)).mean()
            gan = -(D.score(f_rec, y).mean() + D.score(D.features(prior), y).mean()) / 2
        enc_loss = c.beta * kl + llike + c.pixel_weight * pixel
        dec_loss = c.gamma * llike + gan + c.pixel_weight * pixel
        enc_params, dec_params = list(self.encoder.parameters()), list(self.decoder.parameters())
        optimizers["enc"].zero_grad(set_to_none=True)
        optimizers["dec"].zero_grad(set_to_none=True)
        # Two losses on one graph: each network gets only its own loss's gradient (the encoder no GAN term).
        enc_loss.backward(inputs=enc_params, retain_graph=True)
        dec_loss.backward(inputs=dec_params)
        optimizer_step(optimizers["enc"], enc_params, 10.0)
        optimizer_step(optimizers["dec"], dec_params, 10.0)
        D.requires_grad_(True)
        return {"loss": float(enc_loss.detach() + dec_loss.detach()), "llike": float(llike.detach()), "kl": float(kl.detach()),
                "pixel": float(pixel.detach()), "g_loss": float(gan.detach()), **logs}  # fmt: skip

    # -- sampling / latent ---------------------------------------------------------------------
    def latent_shape(self) -> tuple[int, ...]:
        return (self.config.latent_dim,)

    def decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder_ema(z.to(self.device), labels.to(self.device)))

    def encode(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The posterior mean of images x in [0, 1]."""
        return self.encoder(x.to(self.device), labels.to(self.device))[0]

    def _sample_batch(self, labels, seeds, controls):
        return self.decode(self.initial_latents(seeds, temperature=controls.temperature), labels)
