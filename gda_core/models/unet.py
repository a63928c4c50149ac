"""The class-conditional UNet shared by the DDPM, latent-diffusion and flow-matching families.

One network serves three processes: it maps (x_t, t, y) to a tensor of x_t's shape, which the DDPM
and LDM read as the noise eps and the flow model as a velocity. It lives here, not in one family's
module, so the families are peers over it (none imports another). Its building blocks (ResBlock,
SelfAttention, UpsampleConv) are in ``layers``, shared with RealNVP.

The attribute names below are the state_dict keys of every shipped and saved run ("unet.down.0...",
"unet.up.2.1.weight"): renaming one would stop those checkpoints loading.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .layers import ResBlock, SelfAttention, UpsampleConv, group_norm, timestep_embedding, zero_


@dataclass(frozen=True)
class UNetConfig:
    """What builds a UNet. Families derive it from their own config (``of``); it is never saved, so
    runs keep their family's config.json."""

    image_size: int  # of the UNet's input: the image, or LDM's latent (which may be smaller than 8 px)
    channels: int
    num_classes: int  # the network embeds num_classes + 1 labels: the extra one is the null label of guidance
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    blocks_per_level: int = 1
    attention: bool = True
    dropout: float = 0.0
    zero_init: bool = False  # ADM-style zero init of each residual branch and the output conv (see layers.ResBlock)
    # Size of an extra conditioning vector c added to the time and class embedding (through its own
    # MLP), as DDGAN's generator takes its latent z (Xiao et al. 2022 feed z to every block through
    # AdaGN: here the ResBlocks' scale-shift does that). 0 = none: no extra layer, so the state_dict of
    # every family without one is unchanged.
    cond_dim: int = 0

    @classmethod
    def of(cls, config: Any, **overrides: Any) -> "UNetConfig":
        """The UNet config of a family config that names its UNet fields as these (base_channels,
        channel_mults, ...); ``overrides`` for the rest (e.g. the LDM's latent size and channels).
        A field the family config lacks (the flow model's zero_init) keeps its default."""
        values = {f.name: getattr(config, f.name) for f in dataclasses.fields(cls) if hasattr(config, f.name)}
        values = {**values, **overrides}
        return cls(**{**values, "channel_mults": tuple(values["channel_mults"])})

    def validate(self) -> None:
        """The rules every UNet family shares: positive level widths, and an input the levels can halve."""
        mults = self.channel_mults
        if not mults or any((not isinstance(m, int)) or isinstance(m, bool) or m < 1 for m in mults):
            raise ConfigError(f"channel_mults must be positive integers, got {mults}")
        levels = len(mults) - 1
        if self.image_size % (2**levels):
            raise ConfigError(f"image_size {self.image_size} must be divisible by {2**levels} for {levels + 1} UNet levels")
        if isinstance(self.cond_dim, bool) or not isinstance(self.cond_dim, int) or not 0 <= self.cond_dim <= 4096:
            raise ConfigError(f"the extra conditioning size must be an integer in 0..4096, got {self.cond_dim!r}")


class UNet(nn.Module):
    """Predictor f(x_t, t, y) of x_t's shape; y == num_classes is the null (unconditional) label."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        b = cfg.base_channels
        emb = 4 * b
        self.base = b
        self.time_mlp = nn.Sequential(nn.Linear(b, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.class_emb = nn.Embedding(cfg.num_classes + 1, emb)
        if cfg.cond_dim:
            self.cond_mlp = nn.Sequential(nn.Linear(cfg.cond_dim, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.inp = nn.Conv2d(cfg.channels, b, 3, padding=1)
        chans = [b * m for m in cfg.channel_mults]
        self.down = nn.ModuleList()
        skips = [b]
        cur = b
        for li, ch in enumerate(chans):
            for _ in range(cfg.blocks_per_level):
                self.down.append(ResBlock(cur, ch, emb, cfg.dropout, cfg.zero_init))
                cur = ch
                skips.append(cur)
            if li < len(chans) - 1:
                self.down.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
                skips.append(cur)
        self.mid1 = ResBlock(cur, cur, emb, cfg.dropout, cfg.zero_init)
        self.mid_attn = SelfAttention(cur, zero_init=cfg.zero_init) if cfg.attention else nn.Identity()
        self.mid2 = ResBlock(cur, cur, emb, cfg.dropout, cfg.zero_init)
        self.up = nn.ModuleList()
        for li, ch in reversed(list(enumerate(chans))):
            for _ in range(cfg.blocks_per_level + 1):
                self.up.append(ResBlock(cur + skips.pop(), ch, emb, cfg.dropout, cfg.zero_init))
                cur = ch
            if li > 0:
                self.up.append(UpsampleConv(cur, cur))  # same state_dict as Sequential(Upsample, Conv2d), 2.25x fewer FLOPs
        self.out = nn.Sequential(group_norm(cur), nn.SiLU(), nn.Conv2d(cur, cfg.channels, 3, padding=1))
        if cfg.zero_init:  # off by default: PyTorch's default init learns faster early on, see layers.ResBlock
            zero_(self.out[-1])

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.base)) + self.class_emb(y)
        if c is not None:  # the extra conditioning vector (UNetConfig.cond_dim)
            emb = emb + self.cond_mlp(c)
        h = self.inp(x)
        hs = [h]
        for m in self.down:
            h = m(h, emb) if isinstance(m, ResBlock) else m(h)
            hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for m in self.up:
            if isinstance(m, ResBlock):
                h = m(torch.cat([h, hs.pop()], dim=1), emb)
            else:
                h = m(h)
        return self.out(h)
