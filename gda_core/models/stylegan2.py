"""Compact conditional StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN").

Generator: a mapping network turns z (+ a class embedding; both normalised to unit second moment and
concatenated, as in StyleGAN2-ADA's conditional models) into an intermediate latent w. The synthesis
network starts from a learned constant at ``image_size / 2**k`` px (4x4 for powers of two, 7x7 for
28 px) and doubles the resolution k times. Every 3x3 convolution is *modulated* by a per-layer style
s = A(w) and *demodulated* (paper eq. 1-3: w'_ijk = s_i w_ijk, w''_ijk = w'_ijk / sqrt(sum w'^2 + eps)),
implemented as one grouped convolution with a per-image weight (Sec. 2.2; used for sampling on GPUs)
or, identically, by scaling activations (training, and sampling on CPU where it is faster); noise inputs
with learned strength add stochastic detail; every resolution adds its toRGB output to the
upsampled image of the previous one (the "skip" generator, Fig. 7). Output in [0, 1].

Discriminator: the residual architecture of Fig. 7 with an optional minibatch-stddev channel
(Karras et al. 2018) and projection conditioning (Miyato & Koyama 2018): D(x, y) = psi(h) + <e_y, h>.

Training: non-saturating logistic loss (Goodfellow et al. 2014), lazy R1 on reals (Mescheder et
al. 2018; every ``r1_every`` D steps, scaled by ``r1_every``, Sec. 3.1), style-mixing regularisation,
a within-class spread penalty (after the mode-seeking term of Mao et al. 2019) against collapse within a class,
equalised learning rate (weights scaled at run time), EMA generator for sampling, and DiffAugment
(Zhao et al. 2020): the same random, differentiable colour / translation / cutout applied to real and
generated images before D, so D cannot overfit a small dataset. Path-length regularisation is left
out (StyleGAN2-ADA's small-data configurations disable it too).

Sampling: temperature is the truncation psi in W toward the *class* mean w (Sec. C of the paper):
w' = w_c + psi (w - w_c); psi = 1 keeps w, psi = 0 gives the class-mean image for every seed. Noise
inputs use fixed per-layer maps when sampling, so an image depends only on its own seed and
``decode`` is deterministic.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from ..runtime import generators_for, randn_per_seed
from .base import GenerativeModel, ModelConfig, TrainConfig, register_model
from .layers import make_adamw, optimizer_step

AUGMENTS = ("color", "translation", "cutout")
# Fixed seeds: the z used to estimate the class-mean w, and the sampling-time noise maps.
_MEAN_W_SEED = 0x5747
_NOISE_SEED = 0x4E01
_SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class StyleGAN2Config(ModelConfig):
    """Defaults are sized for 16-64 px and a few CPU minutes (measured on digits, 16 px).

    Widths are the channels at the lowest resolutions; they halve per doubling above 8 px (at least 16).
    Two mapping layers with a 0.01 learning-rate multiplier follow StyleGAN2-ADA's small-image setting.
    ``diffaug`` is translation only: on digits, translation + cutout gave no better samples than
    translation alone after 800 steps; add cutout (and color for RGB) for datasets of a few hundred
    images trained for longer, where D overfits. The learning rate (6e-3, above StyleGAN2's 2.5e-3) gave
    recognisable digits soonest among 2e-3, 4e-3 and 6e-3 at 400 steps (8e-3 was no better and its losses
    started to swing). Without help, each class collapses onto a few images as training goes on (per-class pixel
    spread 0.29 of the real data's after 1500 steps, with 100% of samples classified as their class by a pixel
    classifier that scores 95.5% on real test digits). ``diversity_weight`` = 1 brings the spread to 0.90 at 93%
    (0.5 was too weak: 0.45 at 99.6%). MSGAN's own unbounded term at weight 0.1 gave 0.70 / 98% after 1500 steps
    but kept growing (0.92 / 95% after 2475), which is why the penalty switches off at the real spread.
    """

    z_dim: int = 64
    w_dim: int = 128
    class_dim: int = 64  # class embedding, concatenated to z before the mapping network
    mapping_layers: int = 2
    mapping_lr_mul: float = 0.01
    g_channels: int = 32
    d_channels: int = 32
    mbstd_group: int = 4  # minibatch-stddev group size; 0 disables
    r1_gamma: float = 0.05  # R1 weight gamma (the penalty is gamma / 2 * ||grad D(x)||^2)
    r1_every: int = 16  # lazy regularisation interval (D steps)
    style_mix_prob: float = 0.5  # fraction of training images generated from two w (mixing regularisation)
    diffaug: str = "translation"  # DiffAugment policy: comma-separated subset of color, translation, cutout; '' = off
    mean_w_samples: int = 1000  # z per class averaged for the truncation centre
    diversity_weight: float = 1.0  # weight of the within-class spread penalty (0 = off), see class_spread_penalty

    def validate(self) -> None:
        super().validate()
        for name in ("z_dim", "w_dim", "class_dim", "g_channels", "d_channels", "mapping_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (0 < self.mapping_lr_mul <= 1):
            raise ConfigError(f"mapping_lr_mul must be in (0, 1], got {self.mapping_lr_mul}")
        if self.mbstd_group < 0:
            raise ConfigError(f"mbstd_group must be >= 0 (0 disables minibatch stddev), got {self.mbstd_group}")
        if not (0 <= self.r1_gamma < math.inf) or self.r1_every < 1:
            raise ConfigError(f"r1_gamma must be a finite number >= 0 and r1_every >= 1, got {self.r1_gamma} and {self.r1_every}")
        if not (0 <= self.style_mix_prob <= 1):
            raise ConfigError(f"style_mix_prob must be in 0..1, got {self.style_mix_prob}")
        if not (0 <= self.diversity_weight < math.inf):
            raise ConfigError(f"diversity_weight must be a finite number >= 0, got {self.diversity_weight}")
        if not (1 <= self.mean_w_samples <= 100_000):
            raise ConfigError(f"mean_w_samples must be in 1..100000, got {self.mean_w_samples}")
        parse_policy(self.diffaug)


def parse_policy(policy: str) -> tuple[str, ...]:
    """'color,translation,cutout' -> its augmentations ('' = none); unknown names are a ConfigError."""
    if not isinstance(policy, str):
        raise ConfigError(f"diffaug must be a comma-separated string, got {policy!r}")
    ops = tuple(p.strip() for p in policy.split(",") if p.strip())
    bad = [p for p in ops if p not in AUGMENTS]
    if bad:
        raise ConfigError(f"unknown DiffAugment '{bad[0]}'; use a comma-separated subset of {', '.join(AUGMENTS)} or '' for none")
    return ops


def resolution_plan(image_size: int) -> tuple[int, int]:
    """(start resolution, number of doublings): halve while even and still >= 4 px.

    16 -> 4x4 and 2 doublings, 28 -> 7x7 and 2, 12 -> 6x6 and 1, 64 -> 4x4 and 4."""
    start, k = image_size, 0
    while start % 2 == 0 and start // 2 >= 4:
        start //= 2
        k += 1
    return start, k


def _width(base: int, res: int) -> int:
    # Full width up to 8 px, then halve per doubling (StyleGAN's channel_base / res): most of the compute
    # is at the highest resolutions. Never below 16 channels (or base, if smaller).
    return max(min(base, 16), min(base, base * 8 // res))


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    # Leaky ReLU with gain sqrt(2) so activations keep unit variance (StyleGAN's bias_act 'lrelu').
    return F.leaky_relu(x, 0.2) * _SQRT2


def _normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


# ---------------------------------------------------------------------------------------------
# Equalised-learning-rate layers (Karras et al. 2018): N(0, 1) weights scaled by He's constant at
# run time, so Adam's per-parameter step is the same relative size for every layer.
# ---------------------------------------------------------------------------------------------


class EqualLinear(nn.Module):
    def __init__(self, cin: int, cout: int, *, bias_init: float = 0.0, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr_mul)
        self.bias = nn.Parameter(torch.full((cout,), float(bias_init) / lr_mul))
        self.w_gain = lr_mul / math.sqrt(cin)
        self.b_gain = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.w_gain, self.bias * self.b_gain)


class EqualConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, *, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.gain = 1 / math.sqrt(cin * k * k)
        self.pad = k // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.gain, self.bias, padding=self.pad)


# ---------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------


class ModulatedConv2d(nn.Module):
    """Style-modulated k x k convolution (paper eq. 1-3), optionally demodulated and 2x upsampling.

    ``fused=True`` is the paper's grouped convolution: one weight per image, batch folded into
    the channel axis, ``groups=B``. ``fused=False`` is the mathematically identical form that scales
    the activations instead (x * s, shared conv, * d), which StyleGAN2's own code uses in training.
    """

    def __init__(self, cin: int, cout: int, k: int, w_dim: int, *, demodulate: bool = True, up: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.affine = EqualLinear(w_dim, cin, bias_init=1.0)  # styles start at 1: an unmodulated conv
        self.demodulate, self.up, self.pad = demodulate, up, k // 2
        self.gain = 1 / math.sqrt(cin * k * k)

    def forward(self, x: torch.Tensor, w: torch.Tensor, *, fused: bool) -> torch.Tensor:
        b, cin = x.shape[:2]
        s = self.affine(w)  # (B, cin)
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        h, wd = x.shape[2:]
        weight = self.weight * self.gain
        if self.demodulate:
            # d_j = 1 / sqrt(sum_{i,k} (s_i w_ijk)^2 + eps), eq. 3, without building per-image weights.
            d = (s.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8).rsqrt()  # (B, cout)
        if fused:
            wgt = weight[None] * s[:, None, :, None, None]  # (B, cout, cin, k, k)
            if self.demodulate:
                wgt = wgt * d[:, :, None, None, None]
            out = F.conv2d(x.reshape(1, b * cin, h, wd), wgt.reshape(-1, cin, *weight.shape[2:]).to(x.dtype), padding=self.pad, groups=b)
            return out.reshape(b, -1, h, wd)
        out = F.conv2d(x * s[:, :, None, None].to(x.dtype), weight.to(x.dtype), padding=self.pad)
        return out * d[:, :, None, None].to(out.dtype) if self.demodulate else out


class SynthesisLayer(nn.Module):
    """Modulated conv + noise (learned per-layer strength) + bias + leaky ReLU."""

    def __init__(self, cin: int, cout: int, w_dim: int, res: int, *, up: bool, layer_index: int):
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, 3, w_dim, up=up)
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(cout))
        # Fixed noise map for sampling (StyleGAN2's noise_mode='const'): a pure function of the layer
        # index, so decode is deterministic and an image depends only on its latent.
        g = torch.Generator().manual_seed(_NOISE_SEED + layer_index)
        self.register_buffer("noise_const", torch.randn(res, res, generator=g))

    def forward(self, x: torch.Tensor, w: torch.Tensor, *, noise: str, fused: bool) -> torch.Tensor:
        x = self.conv(x, w, fused=fused)
        if noise == "random":
            x = x + torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype) * self.noise_strength
        else:
            x = x + self.noise_const.to(x.dtype) * self.noise_strength
        return _lrelu(x + self.bias[None, :, None, None].to(x.dtype))


class ToRGB(nn.Module):
    def __init__(self, cin: int, channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(cin, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor, *, fused: bool) -> torch.Tensor:
        return self.conv(x, w, fused=fused) + self.bias[None, :, None, None].to(x.dtype)


class MappingNetwork(nn.Module):
    """(z, class) -> w: both normalised to unit second moment, concatenated, then an MLP."""

    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        self.embed = nn.Parameter(torch.randn(cfg.num_classes, cfg.class_dim))
        dims = [cfg.z_dim + cfg.class_dim] + [cfg.w_dim] * cfg.mapping_layers
        self.layers = nn.ModuleList(EqualLinear(a, b, lr_mul=cfg.mapping_lr_mul) for a, b in zip(dims[:-1], dims[1:], strict=True))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = torch.cat([_normalize_2nd_moment(z), _normalize_2nd_moment(self.embed[y])], dim=1)
        for layer in self.layers:
            x = _lrelu(layer(x))
        return x


class SynthesisNetwork(nn.Module):
    """Learned constant -> [modulated conv x2, toRGB] per resolution; skip connections between toRGBs.

    Style (w) indices follow the official layout: the first block uses w[0] for its conv and w[1]
    for its toRGB; block i > 0 uses w[2i-1], w[2i] for its two convs and w[2i+1] for its toRGB.
    """

    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        self.start, k = resolution_plan(cfg.image_size)
        res = [self.start * 2**i for i in range(k + 1)]
        ch = [_width(cfg.g_channels, r) for r in res]
        self.const = nn.Parameter(torch.randn(ch[0], self.start, self.start))
        self.first = SynthesisLayer(ch[0], ch[0], cfg.w_dim, res[0], up=False, layer_index=0)
        self.rgbs = nn.ModuleList([ToRGB(ch[0], cfg.channels, cfg.w_dim)])
        self.blocks = nn.ModuleList()
        for i in range(1, k + 1):
            self.blocks.append(nn.ModuleList([
                SynthesisLayer(ch[i - 1], ch[i], cfg.w_dim, res[i], up=True, layer_index=2 * i - 1),
                SynthesisLayer(ch[i], ch[i], cfg.w_dim, res[i], up=False, layer_index=2 * i),
            ]))  # fmt: skip
            self.rgbs.append(ToRGB(ch[i], cfg.channels, cfg.w_dim))
        self.num_ws = 2 * (k + 1)

    def forward(self, ws: torch.Tensor, *, noise: str = "random", fused: bool = False) -> torch.Tensor:
        x = self.const[None].expand(ws.shape[0], -1, -1, -1).to(ws.dtype)
        x = self.first(x, ws[:, 0], noise=noise, fused=fused)
        img = self.rgbs[0](x, ws[:, 1], fused=fused)
        for i, (conv0, conv1) in enumerate(self.blocks, start=1):
            x = conv0(x, ws[:, 2 * i - 1], noise=noise, fused=fused)
            x = conv1(x, ws[:, 2 * i], noise=noise, fused=fused)
            img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False) + self.rgbs[i](x, ws[:, 2 * i + 1], fused=fused)
        return img  # about [-1, 1]


class Generator(nn.Module):
    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        self.mapping = MappingNetwork(cfg)
        self.synthesis = SynthesisNetwork(cfg)

    @property
    def num_ws(self) -> int:
        return self.synthesis.num_ws

    def ws(self, z: torch.Tensor, y: torch.Tensor, *, mix_prob: float = 0.0) -> torch.Tensor:
        """(B, num_ws, w_dim): the same w broadcast to every layer; with probability ``mix_prob`` per
        image, layers from a random crossover on take the w of a second z (style-mixing regularisation, Sec. 3.1 of StyleGAN)."""
        w = self.mapping(z, y)
        ws = w[:, None].expand(-1, self.num_ws, -1)
        if mix_prob > 0 and self.num_ws > 1:
            w2 = self.mapping(torch.randn_like(z), y)
            cut = torch.randint(1, self.num_ws, (z.shape[0], 1), device=z.device)
            cut = torch.where(torch.rand(z.shape[0], 1, device=z.device) < mix_prob, cut, torch.full_like(cut, self.num_ws))
            mask = (torch.arange(self.num_ws, device=z.device)[None] < cut)[:, :, None]
            ws = torch.where(mask, ws, w2[:, None].expand(-1, self.num_ws, -1))
        return ws

    def forward(self, z: torch.Tensor, y: torch.Tensor, *, mix_prob: float = 0.0) -> torch.Tensor:
        return self.synthesis(self.ws(z, y, mix_prob=mix_prob), noise="random", fused=False)


# ---------------------------------------------------------------------------------------------
# Discriminator
# ---------------------------------------------------------------------------------------------


class DBlock(nn.Module):
    """Residual block: two 3x3 convs then 2x average-pool downsampling, plus a 1x1 skip; sum scaled by 1/sqrt(2)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv0 = EqualConv2d(cin, cin, 3)
        self.conv1 = EqualConv2d(cin, cout, 3)
        self.skip = EqualConv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(F.avg_pool2d(x, 2))
        x = F.avg_pool2d(_lrelu(self.conv1(_lrelu(self.conv0(x)))), 2)
        return (x + skip) * math.sqrt(0.5)


def minibatch_stddev(x: torch.Tensor, group: int) -> torch.Tensor:
    """Append the mean standard deviation over groups of ``group`` images as one extra channel
    (Karras et al. 2018): D can then see a lack of variety. The group is the largest divisor of the
    batch that is <= ``group``, so any batch size works."""
    b, c, h, w = x.shape
    g = max(d for d in range(1, min(group, b) + 1) if b % d == 0)
    y = x.reshape(g, -1, c, h, w).float()
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (B / g,)
    y = y.to(x.dtype).reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


def class_spread_penalty(fake: torch.Tensor, real: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """Within-class spread penalty: relu(1 - d_fake / d_real), d = mean L1 pixel distance over every same-class
    pair of the batch (real and generated batches share the labels y).

    Like the mode-seeking term of Mao et al. (2019, MSGAN) it pushes images of one class apart, against
    conditional mode collapse; unlike it, it switches off once generated images are as varied as the real
    ones, so long runs do not trade class fidelity for spurious variety. None without same-class pairs."""
    same = (y[:, None] == y[None, :]).triu(diagonal=1)
    if not bool(same.any()):
        return None
    f, r = fake.float().flatten(1), real.float().flatten(1)
    d_fake = torch.cdist(f, f, p=1)[same].mean()
    with torch.no_grad():
        d_real = torch.cdist(r, r, p=1)[same].mean()
    return F.relu(1 - d_fake / d_real.clamp_min(1e-8))


class Discriminator(nn.Module):
    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        start, k = resolution_plan(cfg.image_size)
        res = [start * 2**i for i in range(k, -1, -1)]  # from image_size down to start
        ch = [_width(cfg.d_channels, r) for r in res]
        self.from_rgb = EqualConv2d(cfg.channels, ch[0], 1)
        self.blocks = nn.ModuleList(DBlock(ch[i], ch[i + 1]) for i in range(k))
        self.mbstd_group = cfg.mbstd_group
        c = ch[-1]
        self.conv = EqualConv2d(c + (1 if cfg.mbstd_group > 0 else 0), c, 3)
        self.fc = EqualLinear(c * start * start, c)
        self.out = EqualLinear(c, 1)
        self.embed = nn.Parameter(torch.randn(cfg.num_classes, c))  # projection: D = psi(h) + <e_y, h>
        self.proj_gain = 1 / math.sqrt(c)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = _lrelu(self.from_rgb(x))
        for block in self.blocks:
            x = block(x)
        if self.mbstd_group > 0:
            x = minibatch_stddev(x, self.mbstd_group)
        h = _lrelu(self.fc(_lrelu(self.conv(x)).flatten(1)))
        return self.out(h).squeeze(1) + (self.embed[y].to(h.dtype) * h).sum(1) * self.proj_gain


# ---------------------------------------------------------------------------------------------
# DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training")
# ---------------------------------------------------------------------------------------------


def diff_augment(x: torch.Tensor, policy: str | tuple[str, ...]) -> torch.Tensor:
    """Random, differentiable augmentations of images x (B, C, H, W) in [-1, 1], drawn per image.

    color: brightness +-0.5, saturation x[0, 2], contrast x[0.5, 1.5]; translation: shift by up to
    1/8 of the size with zero padding; cutout: zero a random square of half the size. Gradients
    flow to x (the generator learns through the augmentation)."""
    ops = parse_policy(policy) if isinstance(policy, str) else policy
    if "color" in ops:
        b = x.shape[0]
        x = x + (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
        m = x.mean(dim=1, keepdim=True)
        x = (x - m) * (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + m
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - m) * (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + m
    if "translation" in ops:
        x = _translate(x, 0.125)
    if "cutout" in ops:
        x = _cutout(x, 0.5)
    return x


def _translate(x: torch.Tensor, ratio: float) -> torch.Tensor:
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device)
    gb, gy, gx = torch.meshgrid(
        torch.arange(b, device=x.device), torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij"
    )
    # Index into a 1-px zero-padded copy: source pixels shifted outside the image read the zero border.
    gy = (gy + dy + 1).clamp(0, h + 1)
    gx = (gx + dx + 1).clamp(0, w + 1)
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)
    return padded[gb, gy, gx].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, ratio: float) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    inside = (ys >= cy - ch // 2) & (ys < cy - ch // 2 + ch) & (xs >= cx - cw // 2) & (xs < cx - cw // 2 + cw)
    return x * (~inside)[:, None].to(x.dtype)


# ---------------------------------------------------------------------------------------------
# The family
# ---------------------------------------------------------------------------------------------


@register_model
class StyleGAN2(GenerativeModel):
    family = "stylegan2"
    Config = StyleGAN2Config
    controls = ("temperature",)
    control_notes = {
        "temperature": "truncation psi: pulls each style toward its class's average style "
        "(1 = as trained, below 1 = more typical and less varied, 0 = the class average)"
    }
    default_lr = 6e-3
    has_latent = True
    # Temperature (truncation) acts in W, inside ``decode``: scaling z would do nothing, because the
    # mapping network normalises z. gda_core.latent reads this to pass temperature to decode.
    truncation_in_decode = True
    description = "Conditional StyleGAN2: style-based generator with truncation and style mixing; sharp, fast sampling."
    display_name = "StyleGAN2"
    how_it_works = (
        "StyleGAN2 is a generative adversarial network (a generator and a discriminator trained against each other) "
        "whose generator is built around 'styles'. A small mapping network first turns random noise plus the class "
        "label into a style code. The generator then grows the image from a small learned block up to full size, and "
        "at every resolution the style code tunes its filters: the coarse, low-resolution layers set the overall shape "
        "and the fine layers set strokes and texture; a little random noise adds fine detail. Because styles enter "
        "per layer, two images can be mixed (shape from one, detail from the other). Temperature is truncation: below 1 "
        "pulls each style toward the average style of its class, giving more typical, less varied images (0 gives the "
        "class average); a small extra training term rewards different random inputs for giving visibly different "
        "images of a class, so the generator does not settle on one image per class. Two tricks make it train on "
        "small datasets: an R1 penalty keeps the discriminator smooth on real images, and every image the discriminator sees (real or generated) is randomly shifted (optionally also "
        "recoloured and partly cut out), so it cannot simply memorise the few training images."
    )

    def __init__(self, config: StyleGAN2Config):
        super().__init__(config)
        self.generator = Generator(config)
        self.discriminator = Discriminator(config)
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        self._augment = parse_policy(config.diffaug)
        self._w_mean: dict[int, torch.Tensor] = {}
        self._w_mean_key: tuple | None = None

    def sampling_modules(self) -> nn.Module:
        return self.generator_ema

    def ema_modules(self):
        return {"generator": (self.generator, self.generator_ema)}

    @property
    def num_style_layers(self) -> int:
        """Number of per-layer style vectors w the synthesis network takes (2 per resolution)."""
        return self.generator_ema.num_ws

    # -- training ------------------------------------------------------------------------------
    def configure_optimizers(self, train: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        lr = train.lr or self.default_lr
        # Adam with beta1 = 0, beta2 = 0.99 as in StyleGAN2. The lazy R1 term is added to D's ordinary
        # step (not a separate step), so the paper's lr / beta rescaling for extra steps does not apply.
        return {
            "g": make_adamw(self.generator.parameters(), lr, betas=(0.0, 0.99)),
            "d": make_adamw(self.discriminator.parameters(), lr, betas=(0.0, 0.99)),
        }

    def _d(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.discriminator(diff_augment(x, self._augment) if self._augment else x, y)

    def r1_penalty(self, real: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(D logits on reals, R1 = mean_i ||grad_x D(x_i)||^2) for reals in [-1, 1]; the gradient is taken
        through the augmentation, as StyleGAN2-ADA does, and keeps its graph so the penalty trains D."""
        real = real.detach().requires_grad_(True)
        logits = self._d(real, y)
        (grad,) = torch.autograd.grad(logits.float().sum(), real, create_graph=True)
        return logits, grad.float().square().sum(dim=(1, 2, 3)).mean()

    def train_step(self, x, y, optimizers, *, step, amp_dtype):
        cfg = self.config
        b, dev = x.shape[0], x.device
        real = x * 2 - 1
        ac = dict(device_type=dev.type, dtype=amp_dtype, enabled=amp_dtype is not None)
        do_r1 = cfg.r1_gamma > 0 and step % cfg.r1_every == 0
        logs: dict[str, float] = {}
        # Discriminator: softplus(D(G(z))) + softplus(-D(x)) (+ lazy R1 every r1_every steps).
        # One generator pass per step: D trains on the detached fakes, then G is scored on the same fakes by
        # the updated D (as in the PyTorch DCGAN reference loop); this saves a second synthesis pass.
        with torch.autocast(**ac):
            z = torch.randn(b, cfg.z_dim, device=dev)
            fake = self.generator(z, y, mix_prob=cfg.style_mix_prob)
            if do_r1:
                d_real, r1 = self.r1_penalty(real, y)
            else:
                d_real = self._d(real, y)
            d_fake = self._d(fake.detach(), y)
            d_loss = F.softplus(d_fake.float()).mean() + F.softplus(-d_real.float()).mean()
        total = d_loss + r1 * (cfg.r1_gamma / 2 * cfg.r1_every) if do_r1 else d_loss
        optimizers["d"].zero_grad(set_to_none=True)
        total.backward()
        optimizer_step(optimizers["d"])
        if do_r1:
            logs["r1"] = float(r1.detach())
        # Generator: non-saturating softplus(-D(G(z))).
        self.discriminator.requires_grad_(False)
        with torch.autocast(**ac):
            g_loss = F.softplus(-self._d(fake, y).float()).mean()
        g_total = g_loss
        if cfg.diversity_weight > 0:
            ms = class_spread_penalty(fake, real, y)
            if ms is not None:
                g_total = g_loss + cfg.diversity_weight * ms
                logs["spread"] = float(ms.detach())
        optimizers["g"].zero_grad(set_to_none=True)
        g_total.backward()
        optimizer_step(optimizers["g"])
        self.discriminator.requires_grad_(True)
        return {"loss": float(d_loss.detach() + g_loss.detach()), "d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach()),
                "d_real": float(d_real.detach().float().mean()), "d_fake": float(d_fake.detach().float().mean()), **logs}  # fmt: skip

    # -- truncation ------------------------------------------------------------------------------
    def class_mean_w(self, labels: torch.Tensor) -> torch.Tensor:
        """Per-class mean w of the EMA mapping network, (B, w_dim) for labels (B,).

        Averaged over ``mean_w_samples`` fixed z (the same for every class: deterministic), computed on
        first use per class and cached; the cache is dropped whenever the mapping weights change
        (training, EMA update, load_state_dict, moving device or dtype), detected by their tensor versions."""
        mapping = self.generator_ema.mapping
        key = tuple((p.device, p.dtype, p.data_ptr(), p._version) for p in mapping.parameters())
        if key != self._w_mean_key:
            self._w_mean, self._w_mean_key = {}, key
        wanted = sorted({int(c) for c in labels.tolist()} - set(self._w_mean))
        if wanted:
            # Outside inference mode so the cached tensors are ordinary ones, usable later with autograd.
            with torch.inference_mode(False), torch.no_grad():
                n = self.config.mean_w_samples
                z = torch.randn(n, self.config.z_dim, generator=torch.Generator().manual_seed(_MEAN_W_SEED)).to(mapping.embed)
                for c in wanted:
                    w = mapping(z, torch.full((n,), c, dtype=torch.long, device=z.device))
                    self._w_mean[c] = w.mean(dim=0)
        return torch.stack([self._w_mean[int(c)] for c in labels.tolist()]) if len(labels) else torch.zeros(0, self.config.w_dim)

    def styles(self, z: torch.Tensor, labels: torch.Tensor, *, temperature: float = 1.0) -> torch.Tensor:
        """(B, num_style_layers, w_dim) styles of the EMA generator, truncated toward the class mean by psi = temperature."""
        psi = float(temperature)
        if not math.isfinite(psi) or psi < 0:
            raise ConfigError(f"temperature (truncation psi) must be a finite number >= 0, got {temperature}")
        z, labels = z.to(self.device), labels.to(self.device)
        if z.ndim != 2 or z.shape[1] != self.config.z_dim or len(labels) != len(z):
            raise ConfigError(f"expected latents (N, {self.config.z_dim}) and N labels, got {tuple(z.shape)} and {len(labels)} labels")
        w = self.generator_ema.mapping(z, labels)
        if psi != 1.0:
            w = torch.lerp(self.class_mean_w(labels).to(w), w, psi)
        return w[:, None].expand(-1, self.num_style_layers, -1)

    def _synthesise(self, ws: torch.Tensor) -> torch.Tensor:
        # The grouped convolution (one launch for the whole batch) on GPUs; on CPU the equivalent activation-scaling
        # form measured faster (16 px, batch 64, one thread: 2958 vs 2453 images/s on a quiet machine, 531 vs 254
        # on a busy one), so it is used there.
        img = self.generator_ema.synthesis(ws, noise="const", fused=ws.device.type != "cpu")
        return ((img + 1) / 2).clamp(0, 1)

    # -- latent interface ----------------------------------------------------------------------
    def latent_shape(self) -> tuple[int, ...]:
        return (self.config.z_dim,)

    def initial_latents(self, seeds: list[int], *, temperature: float = 1.0) -> torch.Tensor:
        """z for each seed. Temperature is not applied here: it is the truncation in W, applied by ``decode``."""
        return randn_per_seed(self.latent_shape(), generators_for(seeds), self.device)

    def decode(self, z: torch.Tensor, labels: torch.Tensor, *, temperature: float = 1.0) -> torch.Tensor:
        """z (N, z_dim) -> images in [0, 1]: mapping, truncation (psi = temperature), synthesis with fixed noise."""
        return self._synthesise(self.styles(z, labels, temperature=temperature))

    def style_mix(
        self, z_a: torch.Tensor, z_b: torch.Tensor, labels: torch.Tensor, crossover: int, *, temperature: float = 1.0
    ) -> torch.Tensor:
        """Images whose styles come from z_a for layers < ``crossover`` (coarse: shape, pose) and from z_b
        from ``crossover`` on (fine: strokes, texture). crossover 0 reproduces B, ``num_style_layers`` reproduces A."""
        n = self.num_style_layers
        if isinstance(crossover, bool) or not isinstance(crossover, int) or not (0 <= crossover <= n):
            raise ConfigError(f"crossover must be an integer in 0..{n}, got {crossover!r}")
        if z_a.shape != z_b.shape:
            raise ConfigError(f"latents A {tuple(z_a.shape)} and B {tuple(z_b.shape)} must have the same shape")
        wa = self.styles(z_a, labels, temperature=temperature)
        wb = self.styles(z_b, labels, temperature=temperature)
        return self._synthesise(torch.cat([wa[:, :crossover], wb[:, crossover:]], dim=1))

    def _sample_batch(self, labels, seeds, controls):
        return self.decode(self.initial_latents(seeds), labels, temperature=controls.temperature)
