"""Class-conditional multi-scale normalising flow: RealNVP (Dinh et al. 2017) with Glow's steps (Kingma & Dhariwal 2018).

A flow is an invertible network f with a tractable Jacobian, so the density of an image is exact
(change of variables, Dinh et al. 2017 eq. 3): log p(x) = log N(f(x); 0, I) + log |det df/dx|.

Pipeline, data -> latent (``_forward``; ``_inverse`` runs it backwards):

1. Dequantisation (Dinh et al. 2017 sec. 4.1; Theis et al. 2016): 8-bit levels k in 0..255 become
   x = (k + u) / 256 with u ~ U(0, 1), a continuous density on [0, 1)^D. Then
   bits/dim = -(log p(x) - D log 256) / (D ln 2), and a uniform density scores exactly 8.
2. Logit preprocessing (Dinh et al. 2017 sec. 4.1): y = logit(a + (1 - 2a) x), a = ``logit_alpha``,
   so the flow works on an unbounded space; its log-det sum(log(1 - 2a) - log s - log(1 - s)),
   s = a + (1 - 2a) x, is part of the likelihood.
3. Multi-scale architecture (Dinh et al. 2017 sec. 3.6): at each of ``levels`` levels, squeeze
   (2x2 pixels -> 4 channels), ``steps_per_level`` Glow steps, then factor out half the channels
   (all of them at the last level).
4. Glow step (Kingma & Dhariwal 2018 table 1): actnorm (per-channel affine with data-dependent
   initialisation), an invertible 1x1 convolution in LU form (log-det = H W sum log|s|), and an
   affine coupling layer (Dinh et al. 2017 eq. 7-8): half the channels pass unchanged and set a
   scale and shift for the other half, y_b = x_b * exp(log_s(x_a, c)) + t(x_a, c). The scale is
   tanh-bounded, log_s = 2 tanh(raw / 2), so no single layer can blow up in float32.
5. Class-conditional Gaussian prior: every factored-out part is N(mu, sigma) with mu, log sigma
   from a zero-initialised convolution of the channels that stay plus a class bias (Glow's
   learned split prior); the top level's prior is a class-dependent mean and log-std per position.
   The class also modulates every coupling network (scale-shift of a class embedding).

Latents: the standardised noise eps = (z - mu) / sigma of every level, put back into image
layout (C, H, W) by undoing the squeezes. eps ~ N(0, I) under the model, so ``initial_latents``
is a standard normal draw per seed, ``decode`` is the exact inverse of ``encode``, and
temperature T scales eps, i.e. the prior's standard deviation (Kingma & Dhariwal 2018 sec. 5.3).
T = 1 (the default) draws exactly from the trained density; T ~ 0.7 trades variety for cleaner
images, as in Glow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from .base import GenerativeModel, ModelConfig, TrainConfig, register_model
from .layers import ResBlock, group_norm, make_adamw, optimizer_step, zero_

LN2 = math.log(2.0)
# Fixed seed of the dequantisation noise in ``bits_per_dim``: the same images always score the same.
BPD_NOISE_SEED = 0
SPLIT_LOGS_BOUND = 5.0


@dataclass(frozen=True)
class RealNVPConfig(ModelConfig):
    levels: int = 2
    steps_per_level: int = 4
    hidden_channels: int = 32
    blocks_per_coupling: int = 1
    class_dim: int = 32
    logit_alpha: float = 0.05

    def validate(self) -> None:
        super().validate()
        if not (1 <= self.levels <= 4):
            raise ConfigError(f"levels must be in 1..4, got {self.levels}")
        if self.image_size % (2**self.levels):
            raise ConfigError(f"image_size {self.image_size} must be divisible by {2**self.levels} for {self.levels} flow levels")
        if not (1 <= self.steps_per_level <= 64):
            raise ConfigError(f"steps_per_level must be in 1..64, got {self.steps_per_level}")
        if not (1 <= self.hidden_channels <= 4096):
            raise ConfigError(f"hidden_channels must be in 1..4096, got {self.hidden_channels}")
        if not (0 <= self.blocks_per_coupling <= 16):
            raise ConfigError(f"blocks_per_coupling must be in 0..16, got {self.blocks_per_coupling}")
        if not (1 <= self.class_dim <= 4096):
            raise ConfigError(f"class_dim must be in 1..4096, got {self.class_dim}")
        if not (0.0 < self.logit_alpha < 0.5):
            raise ConfigError(f"logit_alpha must be in (0, 0.5), got {self.logit_alpha}")


# ---------------------------------------------------------------------------------------------
# Bijections. Each returns its output and the per-image log |det J| (B,); ``inverse`` undoes it.
# ---------------------------------------------------------------------------------------------


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2): each 2x2 block of pixels becomes 4 channels (volume-preserving)."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    """Exact inverse of ``squeeze``."""
    b, c, h, w = x.shape
    x = x.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c // 4, 2 * h, 2 * w)


class ActNorm(nn.Module):
    """Per-channel affine y = (x + b) * exp(logs) (Kingma & Dhariwal 2018 sec. 3.1).

    Data-dependent initialisation: on the first training batch b and logs are set so that the
    output has zero mean and unit variance per channel. They are ordinary parameters, so the
    initialised values live in the state dict (and the checkpoint) like every other weight.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))

    @torch.no_grad()
    def data_init(self, x: torch.Tensor) -> None:
        x = x.float()
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
        self.bias.copy_(-mean)
        # A floor on the std: a (nearly) constant channel must not get a huge scale.
        self.logs.copy_(-torch.log(std.clamp_min(1e-2)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = (x + self.bias) * torch.exp(self.logs)
        ld = self.logs.sum() * (x.shape[2] * x.shape[3])
        return y, ld.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.logs) - self.bias


class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution in LU form, W = P L (U + diag(sign(s) exp(log|s|)))
    (Kingma & Dhariwal 2018 sec. 3.2): log-det = H W sum(log|s|), initialised to a random rotation.
    P and sign(s) are fixed buffers (saved in the state dict)."""

    def __init__(self, channels: int):
        super().__init__()
        w = torch.linalg.qr(torch.randn(channels, channels))[0]
        p, lower, upper = torch.linalg.lu(w)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.lower = nn.Parameter(torch.tril(lower, -1))
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(torch.abs(s)))

    def weight(self) -> torch.Tensor:
        c = self.log_s.shape[0]
        eye = torch.eye(c, device=self.log_s.device, dtype=self.log_s.dtype)
        lower = torch.tril(self.lower, -1) + eye
        upper = torch.triu(self.upper, 1) + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Float32 even under autocast: bf16 would break exact invertibility.
        with torch.autocast(x.device.type, enabled=False):
            w = self.weight()
            y = F.conv2d(x.float(), w[:, :, None, None])
        ld = self.log_s.sum() * (x.shape[2] * x.shape[3])
        return y, ld.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast(y.device.type, enabled=False):
            # The inverse in float64 keeps encode -> decode round trips at float32 precision.
            w_inv = torch.linalg.inv(self.weight().double()).to(y.dtype)
            return F.conv2d(y.float(), w_inv[:, :, None, None])


class CouplingNet(nn.Module):
    """Small conditional ResNet (conv -> ResBlocks with class scale-shift -> zero-init conv):
    the last layer starts at zero, so every coupling layer starts as the identity."""

    def __init__(self, cin: int, cout: int, hidden: int, blocks: int, emb_dim: int):
        super().__init__()
        self.inp = nn.Conv2d(cin, hidden, 3, padding=1)
        self.blocks = nn.ModuleList(ResBlock(hidden, hidden, emb_dim, zero_init=True) for _ in range(blocks))
        self.norm = group_norm(hidden)
        self.out = zero_(nn.Conv2d(hidden, cout, 3, padding=1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for blk in self.blocks:
            h = blk(h, emb)
        return self.out(F.silu(self.norm(h))).float()


class AffineCoupling(nn.Module):
    """y_a = x_a, y_b = x_b * exp(log_s) + t with (log_s, t) = NN(x_a, class) (Dinh et al. 2017 eq. 7)."""

    def __init__(self, channels: int, hidden: int, blocks: int, emb_dim: int):
        super().__init__()
        self.ca = channels // 2
        self.cb = channels - self.ca
        self.net = CouplingNet(self.ca, 2 * self.cb, hidden, blocks, emb_dim)

    def _scale_shift(self, xa: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw, t = self.net(xa, emb).chunk(2, dim=1)
        # Bounded log-scale (|log_s| < 2): a tanh-scaled scale as in Dinh et al. 2017, stable in float32.
        return 2.0 * torch.tanh(raw / 2.0), t

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xa, xb = x[:, : self.ca], x[:, self.ca :]
        log_s, t = self._scale_shift(xa, emb)
        yb = xb * torch.exp(log_s) + t
        return torch.cat([xa, yb], dim=1), log_s.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        ya, yb = y[:, : self.ca], y[:, self.ca :]
        log_s, t = self._scale_shift(ya, emb)
        return torch.cat([ya, (yb - t) * torch.exp(-log_s)], dim=1)


class FlowStep(nn.Module):
    """actnorm -> invertible 1x1 conv -> affine coupling (one Glow step)."""

    def __init__(self, channels: int, hidden: int, blocks: int, emb_dim: int):
        super().__init__()
        self.actnorm = ActNorm(channels)
        self.invconv = InvConv1x1(channels)
        self.coupling = AffineCoupling(channels, hidden, blocks, emb_dim)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, init: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        if init:
            self.actnorm.data_init(x)
        x, ld1 = self.actnorm(x)
        x, ld2 = self.invconv(x)
        x, ld3 = self.coupling(x, emb)
        return x, ld1 + ld2 + ld3

    def inverse(self, y: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        y = self.coupling.inverse(y, emb)
        y = self.invconv.inverse(y)
        return self.actnorm.inverse(y)


class SplitPrior(nn.Module):
    """N(mu, sigma) of the factored-out channels given the channels that stay and the class
    (Glow's split prior): zero-initialised, so it starts as N(0, I)."""

    def __init__(self, cond_channels: int, out_channels: int, num_classes: int):
        super().__init__()
        self.conv = zero_(nn.Conv2d(cond_channels, 2 * out_channels, 3, padding=1))
        self.class_bias = zero_(nn.Embedding(num_classes, 2 * out_channels))

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.conv(h).float() + self.class_bias(y)[:, :, None, None]
        mean, raw = out.chunk(2, dim=1)
        # Soft-bounded log-std (|log sigma| < 5): it depends on the input, and an unbounded one can
        # overflow exp() in float32 for unusual images; sigma in [0.007, 150] is ample (the flow
        # steps before the split can rescale freely).
        return mean, SPLIT_LOGS_BOUND * torch.tanh(raw / SPLIT_LOGS_BOUND)


class Level(nn.Module):
    """One scale: its flow steps (after the squeeze) and, except at the top, the prior of the half factored out."""

    def __init__(self, channels: int, cfg: RealNVPConfig, last: bool):
        super().__init__()
        self.steps = nn.ModuleList(
            FlowStep(channels, cfg.hidden_channels, cfg.blocks_per_coupling, cfg.class_dim) for _ in range(cfg.steps_per_level)
        )
        self.last = last
        self.split = None if last else SplitPrior(channels // 2, channels // 2, cfg.num_classes)


# ---------------------------------------------------------------------------------------------
# The family
# ---------------------------------------------------------------------------------------------


@register_model
class RealNVP(GenerativeModel):
    family = "realnvp"
    Config = RealNVPConfig
    controls = ("temperature",)
    default_lr = 1e-3
    has_latent = True
    has_likelihood = True
    description = "Normalising flow (RealNVP/Glow): exact likelihood in bits/dim, one-pass sampling, noisier images."
    display_name = "RealNVP"
    how_it_works = (
        "A normalising flow is a chain of reversible steps that turns an image into a cloud of standard random numbers "
        "of the same size, and back again without losing anything. Each step leaves half the pixel values unchanged "
        "and uses them to stretch and shift the other half; because every step can be undone exactly and its stretching "
        "is known, the model can say exactly how probable any image is. That probability is reported as bits per "
        "dimension: how many bits the model would need, on average, to store one pixel value. A model that has learned "
        "nothing needs 8 bits (all 256 grey levels equally likely); fewer bits mean the model has learned what images "
        "of your data look like. This is useful for trust: a new scan that gets far more bits per dimension than the "
        "held-out images is unusual for this model (possibly out of distribution); the reverse does not hold, since "
        "flows can give plain, simple images a high probability, so a low score alone does not prove an image is "
        "typical (Nalisnick et al. 2019). To make a new image we draw random "
        "numbers (for the wanted class) and run the chain backwards, in one pass. The 'temperature' scales those random "
        "numbers: 1 samples exactly what was learned, about 0.7 gives cleaner but less varied images."
    )

    def __init__(self, config: RealNVPConfig):
        super().__init__(config)
        c = config.channels
        self.class_emb = nn.Embedding(config.num_classes, config.class_dim)
        self.levels = nn.ModuleList()
        size = config.image_size
        for i in range(config.levels):
            c, size = 4 * c, size // 2  # squeeze
            last = i == config.levels - 1
            self.levels.append(Level(c, config, last))
            if not last:
                c //= 2  # half the channels are factored out
        self.top_shape = (c, size, size)
        # Class-dependent mean and log-std of the top latent, per position (zero-init: N(0, I)).
        self.top_prior = zero_(nn.Embedding(config.num_classes, 2 * c * size * size))
        # Whether actnorm's data-dependent initialisation has run (saved with the weights, so a
        # loaded or resumed model never re-initialises).
        self.register_buffer("initialized", torch.zeros((), dtype=torch.uint8))

    # -- the bijection x (continuous, in [0, 1)) <-> eps ------------------------------------------
    def _preprocess(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x in [0, 1] -> logit(a + (1 - 2a) x) and its log-det (B,)."""
        a = self.config.logit_alpha
        s = a + (1 - 2 * a) * x.float()
        h = torch.log(s) - torch.log1p(-s)
        ld = (math.log(1 - 2 * a) - torch.log(s) - torch.log1p(-s)).flatten(1).sum(1)
        return h, ld

    def _postprocess(self, h: torch.Tensor) -> torch.Tensor:
        a = self.config.logit_alpha
        return (torch.sigmoid(h) - a) / (1 - 2 * a)

    def _forward(self, x: torch.Tensor, y: torch.Tensor, init: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Continuous x in [0, 1] (B, C, H, W) -> (eps (B, C, H, W), log |det d eps / dx| (B,))."""
        h, ld = self._preprocess(x)
        emb = self.class_emb(y)
        eps, ld_flow = self._encode_level(0, h, y, emb, init)
        return eps, ld + ld_flow

    def _encode_level(self, i: int, h: torch.Tensor, y: torch.Tensor, emb: torch.Tensor, init: bool) -> tuple[torch.Tensor, torch.Tensor]:
        level = self.levels[i]
        h = squeeze(h)
        ld = torch.zeros(h.shape[0], device=h.device)
        for step in level.steps:
            h, d = step(h, emb, init)
            ld = ld + d
        if level.last:
            mean, logs = self._top_stats(y)
            out = (h - mean) * torch.exp(-logs)
            ld = ld - logs.flatten(1).sum(1)
        else:
            z, h = h.chunk(2, dim=1)
            mean, logs = level.split(h, y)
            ez = (z - mean) * torch.exp(-logs)
            eh, d = self._encode_level(i + 1, h, y, emb, init)
            out = torch.cat([ez, eh], dim=1)
            ld = ld - logs.flatten(1).sum(1) + d
        return unsqueeze(out), ld

    def _inverse(self, eps: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Exact inverse of ``_forward``: eps -> continuous x (before clamping)."""
        emb = self.class_emb(y)
        return self._postprocess(self._decode_level(0, eps.float(), y, emb))

    def _decode_level(self, i: int, eps: torch.Tensor, y: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        level = self.levels[i]
        e = squeeze(eps)
        if level.last:
            mean, logs = self._top_stats(y)
            h = mean + torch.exp(logs) * e
        else:
            ez, eh = e.chunk(2, dim=1)
            rest = self._decode_level(i + 1, eh, y, emb)
            mean, logs = level.split(rest, y)
            h = torch.cat([mean + torch.exp(logs) * ez, rest], dim=1)
        for step in reversed(level.steps):
            h = step.inverse(h, emb)
        return unsqueeze(h)

    def _top_stats(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logs = self.top_prior(y).view(-1, 2, *self.top_shape).unbind(1)
        return mean, logs

    def log_prob(self, x_cont: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Exact log density (nats, (B,)) of continuous images x_cont in [0, 1) (change of variables)."""
        eps, ld = self._forward(x_cont, y)
        log_base = -0.5 * (eps.pow(2) + math.log(2 * math.pi)).flatten(1).sum(1)
        return log_base + ld

    # -- likelihood ------------------------------------------------------------------------------
    @staticmethod
    def dequantize(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """8-bit images x in [0, 1] + noise U(0, 1) -> continuous (k + u) / 256 in [0, 1)."""
        levels = torch.round(x.float().clamp(0, 1) * 255.0)
        return (levels + noise) / 256.0

    def _bpd(self, x_cont: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        d = x_cont[0].numel()
        return -(self.log_prob(x_cont, y) - d * math.log(256.0)) / (d * LN2)

    def bits_per_dim(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-image bits/dim (B,) of 8-bit images x in [0, 1], as documented in
        ``GenerativeModel.bits_per_dim``. The dequantisation noise comes from a generator with a
        fixed seed (drawn on the CPU, so the score does not depend on the device): the same batch
        always gets the same score."""
        x = x.to(self.device)
        g = torch.Generator().manual_seed(BPD_NOISE_SEED)
        noise = torch.rand(x.shape, generator=g).to(x.device)
        return self._bpd(self.dequantize(x, noise), labels.to(self.device))

    # -- training --------------------------------------------------------------------------------
    def configure_optimizers(self, train: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        return {"flow": make_adamw(self.parameters(), train.lr or self.default_lr, betas=(0.9, 0.999))}

    @torch.no_grad()
    def data_init(self, x_cont: torch.Tensor, y: torch.Tensor) -> None:
        """Actnorm's data-dependent initialisation on one batch (Kingma & Dhariwal 2018 sec. 3.1).

        Deterministic for a given batch. Under torch.distributed every process initialises on its
        own shard and then takes process 0's values, so the replicas stay identical."""
        self._forward(x_cont, y, init=True)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for m in self.modules():
                if isinstance(m, ActNorm):
                    torch.distributed.broadcast(m.bias.data, src=0)
                    torch.distributed.broadcast(m.logs.data, src=0)
        self.initialized.fill_(1)

    def train_step(self, x, y, optimizers, *, step, amp_dtype):
        opt = optimizers["flow"]
        x_cont = self.dequantize(x, torch.rand_like(x, dtype=torch.float32))
        if not bool(self.initialized):
            self.data_init(x_cont, y)
        # Coupling networks may run in bf16 on a GPU; log-dets, actnorm and 1x1 convs stay float32.
        with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = self._bpd(x_cont, y).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        optimizer_step(opt, self.parameters(), 50.0)
        return {"loss": float(loss.detach())}

    # -- sampling / latent ---------------------------------------------------------------------
    def latent_shape(self) -> tuple[int, ...]:
        c = self.config
        return (c.channels, c.image_size, c.image_size)

    def decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Latents eps -> images in [0, 1]: the inverse flow, then the continuous value's 8-bit level
        (x = k/255 with k + 1/2 = 256 x_cont), so that ``decode(encode(x)) == x``."""
        x_cont = self._inverse(z.to(self.device), labels.to(self.device))
        return ((x_cont * 256.0 - 0.5) / 255.0).clamp(0, 1)

    def encode(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> latents eps, deterministically: each value is placed at the centre of
        its dequantisation bin, (255 x + 1/2) / 256, instead of a random point in it."""
        x = x.to(self.device).float()
        eps, _ = self._forward((x * 255.0 + 0.5) / 256.0, labels.to(self.device))
        return eps

    def _sample_batch(self, labels, seeds, controls):
        return self.decode(self.initial_latents(seeds, temperature=controls.temperature), labels)
