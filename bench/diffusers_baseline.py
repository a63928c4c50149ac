"""The reference implementation our DDPM is benchmarked against: diffusers' UNet2DModel, matched.

Used by bench_speed.py and bench_time_to_quality.py (benchmark-only: diffusers is in
bench/requirements.txt, never imported by gda_core). ``matched_unet`` builds the UNet2DModel with
the same architecture as our default UNet for a given DDPMConfig: same block widths and depth, one
ResNet block per level (+1 on the way up), GroupNorm(8), scale-shift conditioning, self-attention
with 4 heads in the middle block, and class conditioning through ``num_class_embeds`` (classes +
one null label for classifier-free guidance, as ours). Its parameter count comes out within 0.1% of
ours. Training follows diffusers' train_unconditional example (``noise_scheduler.add_noise``, MSE on
the noise, AdamW, gradient clipping at 1.0) with our hyper-parameters; sampling uses DDIMScheduler
with the same 'trailing' timesteps and starting noise as ours and its default x0 handling
(clip_sample: clip x0 to [-1, 1], keep the network's eps).

``reference_unet`` is the other baseline: UNet2DModel in the layout diffusers' own
train_unconditional example uses, shrunk to our parameter count, i.e. what a practitioner who
starts from that example would train. Same parameters, different FLOPs per image.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch.nn import functional as F

from gda_core.models.ddpm import DDPMConfig
from gda_core.runtime import generators_for, randn_per_seed


def matched_unet(cfg: DDPMConfig):
    """diffusers.UNet2DModel with our UNet's architecture for ``cfg`` (see the module docstring)."""
    from diffusers import UNet2DModel

    levels = len(cfg.channel_mults)
    widths = tuple(cfg.base_channels * m for m in cfg.channel_mults)
    return UNet2DModel(
        sample_size=cfg.image_size,
        in_channels=cfg.channels,
        out_channels=cfg.channels,
        block_out_channels=widths,
        layers_per_block=cfg.blocks_per_level,
        down_block_types=("DownBlock2D",) * levels,
        up_block_types=("UpBlock2D",) * levels,
        norm_num_groups=8,
        attention_head_dim=max(1, widths[-1] // 4),
        add_attention=cfg.attention,
        num_class_embeds=cfg.num_classes + 1,
        resnet_time_scale_shift="scale_shift",
        dropout=cfg.dropout,
    )


# diffusers examples/unconditional_image_generation/train_unconditional.py builds UNet2DModel with these
# widths, layers_per_block=2, DownBlock2D everywhere except AttnDownBlock2D at the second-lowest
# resolution, and the mirror image on the way up (AttnUpBlock2D second).
TRAIN_UNCONDITIONAL_WIDTHS = (128, 128, 256, 256, 512, 512)


def reference_levels(image_size: int) -> int:
    """How many of train_unconditional's six levels an image_size supports: each level but the last
    halves the image, and diffusers' UNet needs every halving to be exact (28 -> 14 -> 7: 3 levels)."""
    levels, size = 1, image_size
    while levels < len(TRAIN_UNCONDITIONAL_WIDTHS) and size % 2 == 0:
        levels, size = levels + 1, size // 2
    return levels


def reference_unet(cfg: DDPMConfig, target_params: int, *, levels: int | None = None):
    """diffusers.UNet2DModel in train_unconditional's layout, shrunk to about ``target_params``.

    The layout is the example's (see TRAIN_UNCONDITIONAL_WIDTHS), cut to the levels the resolution
    supports (``reference_levels``) by dropping the lowest resolutions, as a practitioner must; all
    widths are scaled by one factor w / 128 with w a multiple of 4 (GroupNorm(8) as ours, GroupNorm(4)
    where w is not a multiple of 8), the one whose parameter count is closest to ``target_params``. Class conditioning, scale-shift time
    conditioning and dropout as ``matched_unet``. Raises ValueError if no width lands within 10%."""
    from diffusers import UNet2DModel

    n = levels or reference_levels(cfg.image_size)
    down = ["DownBlock2D"] * n
    up = ["UpBlock2D"] * n
    if n >= 2:
        down[n - 2] = "AttnDownBlock2D"
        up[1] = "AttnUpBlock2D"

    def build(w: int):
        widths = tuple(w * c // 128 for c in TRAIN_UNCONDITIONAL_WIDTHS[:n])
        return UNet2DModel(
            sample_size=cfg.image_size,
            in_channels=cfg.channels,
            out_channels=cfg.channels,
            block_out_channels=widths,
            layers_per_block=2,
            down_block_types=tuple(down),
            up_block_types=tuple(up),
            norm_num_groups=math.gcd(8, w),
            attention_head_dim=8,
            num_class_embeds=cfg.num_classes + 1,
            resnet_time_scale_shift="scale_shift",
            dropout=cfg.dropout,
        )

    def count(w: int) -> int:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Initializing zero-element tensors is a no-op" from meta init
            return sum(p.numel() for p in build(w).parameters())

    best = min(range(4, 513, 4), key=lambda w: abs(count(w) - target_params))
    got = count(best)
    if abs(got - target_params) > 0.1 * target_params:
        raise ValueError(f"no train_unconditional width within 10% of {target_params:,} parameters (closest {got:,})")
    return build(best)


def noise_scheduler(cfg: DDPMConfig):
    """DDPMScheduler with our schedule ('squaredcos_cap_v2' is the cosine schedule of Nichol & Dhariwal)."""
    from diffusers import DDPMScheduler

    kind = {"cosine": "squaredcos_cap_v2", "linear": "linear"}[cfg.schedule]
    return DDPMScheduler(num_train_timesteps=cfg.num_timesteps, beta_schedule=kind)


def ddim_scheduler(cfg: DDPMConfig):
    from diffusers import DDIMScheduler

    kind = {"cosine": "squaredcos_cap_v2", "linear": "linear"}[cfg.schedule]
    return DDIMScheduler(
        num_train_timesteps=cfg.num_timesteps, beta_schedule=kind, clip_sample=True, set_alpha_to_one=True, timestep_spacing="trailing"
    )


def make_optimizer(unet, lr: float = 5e-4) -> torch.optim.Optimizer:
    """AdamW as ours (same lr and betas; diffusers' example uses torch's AdamW the same way)."""
    return torch.optim.AdamW(unet.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)


def train_step(
    unet, sched, opt, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, cond_drop: float = 0.1, amp_dtype: torch.dtype | None = None
) -> float:
    """One step of the DDPM epsilon objective on images x in [0, 1] with labels y (null-label dropout as ours).
    ``amp_dtype``: autocast the forward pass and loss (as ours and accelerate's mixed_precision do)."""
    x0 = x * 2 - 1
    b = x0.shape[0]
    noise = torch.randn_like(x0)
    t = torch.randint(0, sched.config.num_train_timesteps, (b,), device=x0.device)
    drop = torch.rand(b, device=x0.device) < cond_drop
    y_in = torch.where(drop, torch.full_like(y, num_classes), y)
    with torch.autocast(x0.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        pred = unet(sched.add_noise(x0, noise, t), t, class_labels=y_in).sample
        loss = F.mse_loss(pred, noise)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
    opt.step()
    return float(loss.detach())


@torch.inference_mode()
def sample(unet, sched, labels: torch.Tensor, seeds: list[int], *, steps: int, guidance: float, num_classes: int) -> torch.Tensor:
    """DDIM (eta 0) from the same per-seed starting noise as ours; guidance 1.0 = one pass per step,
    else classifier-free guidance eps_u + w (eps_c - eps_u) in one batched pass (as ours)."""
    dev = next(unet.parameters()).device
    c, s = unet.config.in_channels, unet.config.sample_size
    x = randn_per_seed((c, s, s), generators_for(seeds), dev)
    labels = labels.to(dev)
    null = torch.full_like(labels, num_classes)
    sched.set_timesteps(steps)
    for t in sched.timesteps:
        if guidance == 1.0:
            eps = unet(x, t, class_labels=labels).sample
        else:
            e_c, e_u = unet(torch.cat([x, x]), t, class_labels=torch.cat([labels, null])).sample.chunk(2)
            eps = e_u + guidance * (e_c - e_u)
        x = sched.step(eps, t, x, eta=0.0).prev_sample
    return ((x.clamp(-1, 1) + 1) / 2).float()
