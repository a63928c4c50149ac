"""Small building blocks shared by the families."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def group_norm(ch: int) -> nn.GroupNorm:
    groups = 8 if ch % 8 == 0 else (4 if ch % 4 == 0 else 1)
    return nn.GroupNorm(groups, ch)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps t (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv residual block with an additive conditioning embedding (scale-shift)."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = group_norm(out_ch)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention over spatial positions (used at the lowest resolution)."""

    def __init__(self, ch: int, heads: int = 4):
        super().__init__()
        self.heads = heads if ch % heads == 0 else 1
        self.norm = group_norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj(out)


def make_adamw(params, lr: float, betas=(0.9, 0.999), weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """AdamW; the fused CUDA kernel when the parameters live on a GPU, the default (foreach) path elsewhere."""
    params = [p for p in params if p.requires_grad]
    fused = bool(params) and params[0].is_cuda
    try:
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=fused or None)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)


def optimizer_step(opt: torch.optim.Optimizer, params=None, max_norm: float | None = None) -> None:
    """Clip (optional) and step ``opt``: every family steps its optimisers through this.

    The trainer may hand a family wrapped optimisers (gradient accumulation, data-parallel
    all-reduce; see ``gda_core.training.distributed``). Such a wrapper's ``sync()`` averages
    the gradients over micro-batches and processes and returns False while it is still
    accumulating; clipping then applies to the gradient of the whole effective batch, exactly
    as in a single process.
    """
    sync = getattr(opt, "sync", None)
    if sync is not None and not sync():
        return
    if max_norm is not None:
        if params is None:
            params = [p for g in opt.param_groups for p in g["params"]]
        torch.nn.utils.clip_grad_norm_(params, max_norm)
    opt.step()
