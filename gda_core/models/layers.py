"""Small building blocks shared by the families."""

from __future__ import annotations

import math
import time

import torch
from torch import nn
from torch.nn import functional as F

# Which layout a low-precision GroupNorm on CPU runs in, per (shape, dtype, groups): True = NCHW.
_GN_NCHW: dict[tuple, bool] = {}


def _median_ms(fn, repeats: int = 3) -> float:
    fn()  # warm-up (allocations, kernel selection)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` (same parameters, same state_dict) that picks the faster memory layout for
    bf16 / fp16 inputs on CPU in channels_last, the fast path's bf16 sampling.

    ATen's channels_last GroupNorm kernel in bf16 is several times slower than its NCHW kernel for
    some shapes and faster for others, with no rule simple enough to write down (timings in
    docs/benchmarks.md), enough to halve what bf16 gains on a 28x28 UNet pass. So the first
    inference call of each shape times both layouts
    and every later call takes the faster one (cuDNN's benchmark mode, for one op). Both compute
    the same normalisation (statistics accumulated in float32, float32 affine weights); only the
    summation order differs. Float32, CUDA, NCHW inputs and training run ``nn.GroupNorm`` as is."""

    def _nchw(self, x: torch.Tensor) -> torch.Tensor:
        out = F.group_norm(x.contiguous(), self.num_groups, self.weight, self.bias, self.eps)
        return out.contiguous(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type != "cpu"
            or x.dtype not in (torch.bfloat16, torch.float16)
            or x.dim() != 4
            or x.requires_grad
            or x.is_contiguous()
            or not x.is_contiguous(memory_format=torch.channels_last)
        ):
            return super().forward(x)
        key = (tuple(x.shape), x.dtype, self.num_groups)
        choice = _GN_NCHW.get(key)
        if choice is None:
            native_ms = _median_ms(lambda: super(GroupNorm, self).forward(x))
            choice = _GN_NCHW[key] = _median_ms(lambda: self._nchw(x)) < 0.9 * native_ms
        return self._nchw(x) if choice else super().forward(x)


def group_norm(ch: int) -> GroupNorm:
    groups = 8 if ch % 8 == 0 else (4 if ch % 4 == 0 else 1)
    return GroupNorm(groups, ch)


def down_block(cin: int, cout: int) -> nn.Sequential:
    """Halve the resolution: strided 4x4 conv, then a 3x3 conv, each GroupNorm-SiLU (the VAE
    encoders' stage; its layout is the state_dict of every saved VAE)."""
    return nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1), group_norm(cout), nn.SiLU(), nn.Conv2d(cout, cout, 3, 1, 1), group_norm(cout), nn.SiLU())


def up_block(cin: int, cout: int) -> nn.Sequential:
    """Double the resolution: nearest upsampling and two 3x3 convs, each GroupNorm-SiLU (the VAE decoders' stage)."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, 1, 1), group_norm(cout), nn.SiLU(), nn.Conv2d(cout, cout, 3, 1, 1), group_norm(cout), nn.SiLU()
    )


def zero_(module: nn.Module) -> nn.Module:
    """Set every parameter of ``module`` to zero (a layer that starts as "no contribution")."""
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
    return module


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
    """GroupNorm-SiLU-Conv residual block with an additive conditioning embedding (scale-shift).

    ``zero_init`` starts the residual branch at zero (ADM style), so the block begins as its skip
    path. The diffusion UNets leave it off by default (``DDPMConfig.zero_init``): with PyTorch's
    default init a DDPM learns much faster in the minutes a CPU user trains for (README, "Time to
    quality"). RealNVP's coupling nets keep it (the blocks were tuned with it)."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float = 0.0, zero_init: bool = False):
        super().__init__()
        self.norm1 = group_norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = group_norm(out_ch)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        if zero_init:
            zero_(self.conv2)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        # In place when no gradient is recorded (sampling): SiLU's backward needs its input, and
        # the normalised map is a fresh tensor, so overwriting it only saves an allocation.
        h = self.conv1(F.silu(h, inplace=not h.requires_grad))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = torch.addcmul(shift, self.norm2(h), 1 + scale)  # norm2(h) * (1 + scale) + shift, one pass
        h = self.conv2(self.drop(F.silu(h, inplace=not h.requires_grad)))
        return h + self.skip(x)


# Sub-pixel form of "nearest x2 upsample, then 3x3 conv (padding 1)". Output pixel (2i + a, 2j + b)
# sees the upsampled rows 2i + a - 1 .. 2i + a + 1, i.e. only two distinct input rows: (i - 1, i) for
# a = 0 with row taps (w0, w1 + w2), and (i, i + 1) for a = 1 with taps (w0 + w1, w2); columns alike.
# _PHASE[a] maps the 3 kernel taps to those 2 (Shi et al. 2016 use the same phase decomposition).
_PHASE = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])


class UpsampleConv(nn.Sequential):
    """Nearest x2 upsampling followed by a 3x3 convolution (padding 1), computed without upsampling.

    The children (``0``: ``nn.Upsample``, ``1``: ``nn.Conv2d``) and so the state_dict are those of
    ``nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(ch, ch, 3, padding=1))``; only the
    arithmetic differs. The four output phases are one 2x2 convolution of the low-resolution input
    with 4x the output channels (weights folded from the 3x3 kernel), then interleaved: 16 instead of
    36 multiply-adds per output channel and input pixel, i.e. 2.25x fewer FLOPs than convolving the
    upsampled map, and no 4x upsampled copy of the input. Equal to the plain form up to float
    rounding (tests/test_fastpath.py checks it, forward and backward).
    """

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(in_ch, out_ch, 3, padding=1))

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The plain computation (upsample, then convolve), for tests and comparisons."""
        return super().forward(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv: nn.Conv2d = self[1]
        w, bias = conv.weight, conv.bias
        m = _PHASE.to(device=w.device, dtype=w.dtype)
        # (a, b, out, in, 2, 2) -> (4 * out, in, 2, 2), output channels ordered (a, b, out).
        w4 = torch.einsum("akr,bls,oirs->aboikl", m, m, w).reshape(4 * w.shape[0], w.shape[1], 2, 2)
        b4 = bias.repeat(4) if bias is not None else None
        nhwc = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        if nhwc:
            w4 = w4.contiguous(memory_format=torch.channels_last)
        bsz, _, h, wd = x.shape
        co = w.shape[0]
        # Phase (a, b) at low-res pixel (i, j) is output position (i + a, j + b) of the padded 2x2 conv.
        o = F.conv2d(F.pad(x, (1, 1, 1, 1)), w4, b4)
        if nhwc:  # interleave in NHWC so the result stays channels_last without a layout change
            o = o.permute(0, 2, 3, 1).unflatten(-1, (2, 2, co))
            rows = [torch.stack([o[:, a : a + h, b : b + wd, a, b] for b in (0, 1)], dim=3) for a in (0, 1)]
            return torch.stack(rows, dim=2).reshape(bsz, 2 * h, 2 * wd, co).permute(0, 3, 1, 2)
        o = o.unflatten(1, (2, 2, co))
        rows = [torch.stack([o[:, a, b, :, a : a + h, b : b + wd] for b in (0, 1)], dim=-1) for a in (0, 1)]
        return torch.stack(rows, dim=-3).reshape(bsz, co, 2 * h, 2 * wd)


class SelfAttention(nn.Module):
    """Multi-head self-attention over spatial positions (used at the lowest resolution)."""

    def __init__(self, ch: int, heads: int = 4, zero_init: bool = False):
        super().__init__()
        self.heads = heads if ch % heads == 0 else 1
        self.norm = group_norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        if zero_init:  # as ResBlock's zero_init: the block starts as the identity
            zero_(self.proj)

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
