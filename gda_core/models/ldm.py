"""Conditional latent diffusion (LDM, Rombach et al. 2022): a KL autoencoder, then a diffusion model in its latent space.

Two phases inside the one trainer (``train_step`` switches on the step count):

1. Steps ``0 .. ae_steps-1`` train the autoencoder (Sec. 3.1 of the paper, the "f-KL" variant): the
   encoder maps an image to the mean and log-variance of a Gaussian over a spatial latent of
   ``latent_channels`` x (image_size / f)^2 (f = ``downsample``); the decoder maps a sample back.
   Loss per image: reconstruction (L1 or MSE, summed over pixels) + ``kl_weight`` x KL(q(z|x) || N(0, I))
   (summed over latent elements), the paper's balance (their f-KL models use 1e-6); both are divided by
   the number of pixels so the logged value is a per-pixel error. The paper adds a perceptual (LPIPS)
   and a patch-GAN term; neither is used here (no pretrained network is available offline), so
   reconstructions are a little softer, which matters little at f = 2..4 on 16-64 px images.
2. From step ``ae_steps`` on, the autoencoder is frozen and a class-conditional UNet (``gda_core.models.unet.UNet``,
   as the DDPM's) learns the "simple" noise-prediction loss (Ho et al. 2020, eq. 14) on the latents, with
   label dropout for classifier-free guidance (Ho & Salimans 2022) and an EMA copy for sampling. The
   latents are multiplied by ``scale_factor`` = 1 / std of the first phase-2 batch's latents (the paper's
   rescaling of KL-regularised latents, Sec. 4.3.2; ``scale_by_std`` in its code), a buffer saved with the
   weights so a loaded run reproduces it. The loss is weighted per timestep by min(SNR, gamma) / SNR
   (Min-SNR-gamma, Hang et al. 2023; ``min_snr_gamma``, 0 = off). Measured on 16 px digits (share of 200
   samples a held-out classifier recognises, 250 / 500 UNet steps): 65 / 89 % plain at lr 1e-3, 82 / 95 %
   with Min-SNR, 89 / 97 % with Min-SNR at lr 2e-3 (the default), so short CPU runs give usable images sooner.

Latent scaling and the shared sampler. ``gda_core.schedulers.sample_loop`` clips its x0 prediction to
[-1, 1] (right for pixels, wrong for unit-variance latents, 30 % of which lie outside). The diffusion
therefore runs on y = scale_factor * z / c (c = ``latent_clip``) with the cosine schedule's
signal-to-noise ratio multiplied by c^2. Two Gaussian diffusions with the same SNR at every step are the
same process up to a per-step rescaling of x_t (Kingma et al. 2021, "Variational Diffusion Models"), so
this is exactly the paper's diffusion on unit-variance latents: the training loss, DDIM (any eta) and
DPM-Solver++ are unchanged (tests/test_family_ldm.py checks the samplers against an exact noise
predictor), and the sampler's clipping becomes a clip of the predicted clean latent at +-c standard
deviations.

A run stopped before phase 2 (e.g. a short or cancelled run) still loads and samples; its images come
from the untrained latent UNet (scale_factor 1), so they look like decoded noise, not data.

Sampling cost: ``steps`` UNet passes (x2 with guidance != 1), plus one decoder pass; ``nfe_per_image``
counts both (the decoder as one evaluation).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn

from ..errors import ConfigError
from ..runtime import atomic_path, atomic_write_json
from ..schedulers import VP_EPS, Guidance, NoiseSchedule, ddim_invert, get_sampler, initial_noise, sample_loop
from .base import GenerativeModel, ModelConfig, TrainConfig, register_model
from .controls import SampleConfig
from .layers import group_norm, make_adamw, optimizer_step
from .unet import UNet, UNetConfig

AE_DIR = "autoencoder"
AE_FORMAT = "gda-ldm-autoencoder/1"
RECON_LOSSES = ("l1", "mse")


# Sampling starts from pure noise, so the (latent-scaled) schedule must end with (almost) no signal.
MAX_LAST_STEP_SNR = 0.05


def _last_step_snr(num_timesteps: int, kind: str) -> float:
    """SNR abar / (1 - abar) at the last timestep of ``NoiseSchedule(num_timesteps, kind)``, computed the same
    way in plain Python (configs are also validated while a model is built on the meta device, where tensors
    hold no values)."""
    log_abar = 0.0
    for i in range(num_timesteps):
        if kind == "cosine":
            f0, f1 = (math.cos((j / num_timesteps + 0.008) / 1.008 * math.pi / 2) ** 2 for j in (i, i + 1))
            beta = min(1 - f1 / f0, 0.999)
        else:
            beta = 1e-4 + (0.02 - 1e-4) * i / max(num_timesteps - 1, 1)
        log_abar += math.log1p(-beta)
    abar = math.exp(log_abar)
    return abar / max(1 - abar, 1e-12)


@dataclass(frozen=True)
class LDMConfig(ModelConfig):
    # -- phase 1: KL autoencoder --
    latent_channels: int = 4
    downsample: int = 0  # f in {2, 4}; 0 = auto: 4 from 32 px up (when the latent still fits the UNet), else 2
    ae_channels: int = 16
    ae_steps: int = 300
    ae_lr: float = 1e-3
    kl_weight: float = 1e-6
    recon_loss: str = "l1"
    # -- phase 2: latent UNet (models.unet.UNet on the latent shape) --
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2)
    blocks_per_level: int = 1
    attention: bool = True
    dropout: float = 0.0
    num_timesteps: int = 1000
    schedule: str = "cosine"
    cond_drop: float = 0.1
    min_snr_gamma: float = 5.0
    latent_clip: float = 4.0  # the sampler clips predicted clean latents at +- this many standard deviations
    default_steps: int = 25
    default_guidance: float = 2.0

    @property
    def factor(self) -> int:
        """The autoencoder's downsampling factor f (``downsample``, or the automatic choice)."""
        if self.downsample:
            return self.downsample
        unet_div = 2 ** (len(self.channel_mults) - 1) if self.channel_mults else 1
        # 16 px -> 8x8 latents (f = 2); 32..64 px -> 8x8..16x16 (f = 4), if the UNet can halve that latent.
        if self.image_size >= 32 and self.image_size % (4 * unet_div) == 0:
            return 4
        return 2

    @property
    def latent_size(self) -> int:
        return self.image_size // self.factor

    def validate(self) -> None:
        super().validate()
        if self.downsample not in (0, 2, 4):
            raise ConfigError(f"downsample must be 2 or 4 (or 0 for automatic), got {self.downsample}")
        if self.image_size % self.factor:
            raise ConfigError(f"image_size {self.image_size} is not divisible by the autoencoder's downsample factor {self.factor}")
        if not self.channel_mults or any((not isinstance(m, int)) or isinstance(m, bool) or m < 1 for m in self.channel_mults):
            raise ConfigError(f"channel_mults must be positive integers, got {self.channel_mults}")
        div = 2 ** (len(self.channel_mults) - 1)
        if self.latent_size % div:
            raise ConfigError(
                f"latent size {self.latent_size} (image_size {self.image_size} / downsample {self.factor}) must be divisible by {div} "
                f"for {len(self.channel_mults)} UNet levels; use fewer channel_mults or another downsample"
            )
        for name in ("latent_channels", "ae_channels", "base_channels", "blocks_per_level", "num_timesteps", "default_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_timesteps > 10_000:
            raise ConfigError(f"num_timesteps must be at most 10000, got {self.num_timesteps}")
        if self.ae_steps < 0:
            raise ConfigError(f"ae_steps must be >= 0, got {self.ae_steps}")
        if not (self.ae_lr > 0 and math.isfinite(self.ae_lr)):
            raise ConfigError(f"ae_lr must be a positive number, got {self.ae_lr}")
        if not (0 <= self.kl_weight < math.inf):
            raise ConfigError(f"kl_weight must be >= 0, got {self.kl_weight}")
        if self.recon_loss not in RECON_LOSSES:
            raise ConfigError(f"recon_loss must be one of {', '.join(RECON_LOSSES)}, got {self.recon_loss!r}")
        if not (0 <= self.min_snr_gamma < math.inf):
            raise ConfigError(f"min_snr_gamma must be >= 0 (0 = off), got {self.min_snr_gamma}")
        if not (0 < self.latent_clip < math.inf):
            raise ConfigError(f"latent_clip must be a positive number, got {self.latent_clip}")
        snr_end = _last_step_snr(self.num_timesteps, self.schedule) * self.latent_clip**2
        if snr_end > MAX_LAST_STEP_SNR:
            raise ConfigError(
                f"latent_clip {self.latent_clip} is too large for {self.num_timesteps} {self.schedule} timesteps: the last step would keep "
                f"signal (SNR {snr_end:.2g}) and sampling could not start from pure noise; lower latent_clip or use more timesteps"
            )
        if not (0 <= self.cond_drop < 1):
            raise ConfigError(f"cond_drop must be in [0, 1), got {self.cond_drop}")
        if not (0 <= self.dropout < 1):
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.schedule not in ("cosine", "linear"):
            raise ConfigError(f"schedule must be cosine or linear, got {self.schedule!r}")
        if not isinstance(self.attention, bool):
            raise ConfigError(f"attention must be true or false, got {self.attention!r}")
        if self.default_guidance < 0:
            raise ConfigError(f"default_guidance must be >= 0, got {self.default_guidance}")

    def unet_config(self) -> UNetConfig:
        """The UNet's config for the latent shape (latents have ``latent_channels`` channels and may be
        smaller than 8 px; ``validate`` checks the levels against the latent size with its own message)."""
        return UNetConfig.of(self, image_size=self.latent_size, channels=self.latent_channels)

    def autoencoder_config(self) -> dict:
        """The fields that define the autoencoder (written to ``autoencoder/config.json``)."""
        return {
            "image_size": self.image_size,
            "channels": self.channels,
            "latent_channels": self.latent_channels,
            "downsample": self.factor,
            "latent_size": self.latent_size,
            "ae_channels": self.ae_channels,
            "kl_weight": self.kl_weight,
            "recon_loss": self.recon_loss,
            "ae_steps": self.ae_steps,
        }


# ---------------------------------------------------------------------------------------------
# Phase 1: the KL autoencoder
# ---------------------------------------------------------------------------------------------


class _AEBlock(nn.Module):
    """GroupNorm-SiLU-Conv residual block without conditioning (the autoencoder is unconditional, as in the paper)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.net = nn.Sequential(
            group_norm(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1), group_norm(cout), nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1)
        )
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.net(x)


class Encoder(nn.Module):
    """Image in [-1, 1] -> (mean, logvar) of the latent, each (B, latent_channels, s/f, s/f)."""

    def __init__(self, channels: int, ch: int, latent_channels: int, levels: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, ch, 3, padding=1)]
        cur = ch
        for i in range(levels):
            nxt = ch * min(2, i + 2)
            layers += [_AEBlock(cur, cur), nn.Conv2d(cur, nxt, 3, stride=2, padding=1)]
            cur = nxt
        layers += [_AEBlock(cur, cur), group_norm(cur), nn.SiLU(), nn.Conv2d(cur, 2 * latent_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.net(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)  # the paper's DiagonalGaussianDistribution clamp


class Decoder(nn.Module):
    """Latent (B, latent_channels, s/f, s/f) -> image in [-1, 1] (unbounded output, clamped when sampling)."""

    def __init__(self, channels: int, ch: int, latent_channels: int, levels: int):
        super().__init__()
        cur = ch * min(2, levels + 1)
        layers: list[nn.Module] = [nn.Conv2d(latent_channels, cur, 3, padding=1), _AEBlock(cur, cur)]
        for i in reversed(range(levels)):
            nxt = ch * min(2, i + 1)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cur, nxt, 3, padding=1), _AEBlock(nxt, nxt)]
            cur = nxt
        layers += [group_norm(cur), nn.SiLU(), nn.Conv2d(cur, channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class AutoencoderKL(nn.Module):
    def __init__(self, cfg: LDMConfig):
        super().__init__()
        levels = int(math.log2(cfg.factor))
        self.encoder = Encoder(cfg.channels, cfg.ae_channels, cfg.latent_channels, levels)
        self.decoder = Decoder(cfg.channels, cfg.ae_channels, cfg.latent_channels, levels)


class _LatentSchedule(NoiseSchedule):
    """The base schedule with every SNR multiplied by c^2: the schedule of data y = z / c that gives the
    same diffusion as the base schedule on z (see the module docstring)."""

    def __init__(self, num_timesteps: int, kind: str, c: float):
        super().__init__(num_timesteps, kind)
        ab = self.alphas_cumprod
        snr = ab / (1 - ab) * float(c) ** 2
        self.alphas_cumprod = snr / (1 + snr)


def _global_std(z: torch.Tensor) -> torch.Tensor:
    """Std of all elements of z, pooled over data-parallel processes when torch.distributed runs, so
    every process measures the same scale factor."""
    z = z.detach().double()
    stats = torch.stack([z.new_tensor(float(z.numel())), z.sum(), (z * z).sum()])
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(stats)
    n, s, ss = stats.unbind()
    var = (ss - s * s / n) / (n - 1).clamp_min(1)
    return var.clamp_min(1e-12).sqrt()


@register_model
class LDM(GenerativeModel):
    family = "ldm"
    Config = LDMConfig
    controls = ("temperature", "guidance", "steps", "eta", "sampler")
    sampler_process = VP_EPS
    default_lr = 2e-3
    has_latent = True
    description = "Latent diffusion: an autoencoder, then diffusion in its small latent space; several times faster than pixel diffusion."
    display_name = "LDM"
    how_it_works = (
        "Latent diffusion works in two stages. First an autoencoder learns to compress each image into a small grid of "
        "numbers (a latent, here 4 or 16 times fewer positions than pixels) and to rebuild the image from it; its "
        "reconstruction error on held-out images is reported with the run. Then the autoencoder is frozen and a diffusion "
        "model learns, in that compressed space, to undo noise given the class, exactly as the DDPM family does on pixels. "
        "To generate, we start from random noise in the latent space, remove predicted noise in a few dozen steps "
        "(with classifier-free guidance pulling toward the class), and let the decoder turn the clean latent into an image. "
        "Each step is cheaper than pixel diffusion because the grid is smaller; image detail is limited by how well the "
        "autoencoder reconstructs."
    )

    def __init__(self, config: LDMConfig):
        super().__init__(config)
        self.autoencoder = AutoencoderKL(config)
        self.unet = UNet(config.unet_config())
        self.unet_ema = copy.deepcopy(self.unet).requires_grad_(False)
        self.schedule = _LatentSchedule(config.num_timesteps, config.schedule, config.latent_clip)
        self.guide = Guidance(null_label=config.num_classes)
        # 1 / std of the autoencoder latents, measured on the first phase-2 batch (1 before that).
        self.register_buffer("scale_factor", torch.ones(()))
        self.register_buffer("phase2_started", torch.zeros((), dtype=torch.bool))
        # EMA updates done in phase 2 (drives the EMA warm-up; the trainer's counts from step 0).
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))

    # -- modules ----------------------------------------------------------------------------------
    def sampling_modules(self) -> nn.Module:
        return nn.ModuleList([self.unet_ema, self.autoencoder.decoder])

    def ema_modules(self):
        return {"unet": (self.unet, self.unet_ema)}

    @property
    def phase(self) -> int:
        """1 while the autoencoder trains, 2 once the latent diffusion has started."""
        return 2 if bool(self.phase2_started) else 1

    # -- autoencoder ------------------------------------------------------------------------------
    def encode_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images in [0, 1] -> the posterior's (mean, logvar) over the unscaled latent."""
        return self.autoencoder.encoder(x * 2 - 1)

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Unscaled autoencoder latents -> images in [0, 1]."""
        return ((self.autoencoder.decoder(z) + 1) / 2).clamp(0, 1)

    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Encode (posterior mean) and decode images in [0, 1]. ``labels`` are accepted for the family
        interface but unused: the autoencoder is unconditional (the class conditions the latent UNet)."""
        with torch.inference_mode():
            return self.decode_latent(self.encode_stats(x.to(self.device).float())[0])

    def reconstruction_report(self, images: torch.Tensor, batch_size: int = 256) -> dict:
        """Held-out reconstruction quality of images (N, C, H, W) in [0, 1]: mean per-image MSE (on [0, 1]),
        mean per-image PSNR in dB (peak 1; per-image MSE floored at 1e-10), the number of images, and for
        scale the MSE of predicting every image by their mean image (what a useless autoencoder scores)."""
        images = torch.as_tensor(images)
        if images.dim() != 4 or tuple(images.shape[1:]) != (self.config.channels, self.config.image_size, self.config.image_size):
            c = self.config
            raise ConfigError(
                f"reconstruction_report expects images (N, {c.channels}, {c.image_size}, {c.image_size}), got {tuple(images.shape)}"
            )
        n = len(images)
        if n == 0:
            return {"images": 0, "mse": None, "psnr_db": None, "mean_image_mse": None}
        mses = []
        for start in range(0, n, batch_size):
            x = images[start : start + batch_size].to(self.device).float()
            mses.append((self.reconstruct(x) - x).pow(2).flatten(1).mean(1).double().cpu())
        mse = torch.cat(mses)
        x_all = images.double()
        baseline = (x_all - x_all.mean(0, keepdim=True)).pow(2).flatten(1).mean(1)
        return {
            "images": n,
            "mse": float(mse.mean()),
            "psnr_db": float((-10 * torch.log10(mse.clamp_min(1e-10))).mean()),
            "mean_image_mse": float(baseline.mean()),
        }

    def autoencoder_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().contiguous().cpu() for k, v in self.autoencoder.state_dict().items()}

    def write_artifacts(self, run_dir: Path, dataset: Any, step: int) -> None:
        """Once the autoencoder phase is over (``step >= ae_steps``), write ``run_dir/autoencoder/``:
        ``model.safetensors`` (autoencoder weights only), ``recon.json`` (held-out reconstruction report on
        the dataset's test split, or val / train when that is empty) and ``config.json`` (its config, the
        step and the weights' SHA-256). Written again only when the weights changed (they are frozen in
        phase 2, so normally once). config.json goes last: an interrupted write is redone next time."""
        if step < self.config.ae_steps and not bool(self.phase2_started):
            return
        state = self.autoencoder_state()
        data = safetensors_bytes(state, metadata={"format": AE_FORMAT, "family": self.family, "step": str(step)})
        digest = hashlib.sha256(
            b"".join(k.encode() + v.reshape(-1).view(torch.uint8).numpy().tobytes() for k, v in sorted(state.items()))
        ).hexdigest()
        out = Path(run_dir) / AE_DIR
        cfg_path = out / "config.json"
        if cfg_path.is_file():
            try:
                if json.loads(cfg_path.read_text(encoding="utf-8")).get("weights_sha256") == digest:
                    return
            except (ValueError, OSError, AttributeError):
                pass  # unreadable: rewrite it
        split = "test"
        for name in ("test", "val", "train"):
            split = name
            if len(dataset.split(name)[1]):
                break
        images, _ = dataset.tensors(split, device=self.device)
        report = {"split": split, "step": int(step), **self.reconstruction_report(images)}
        with atomic_path(out / "model.safetensors") as tmp:
            tmp.write_bytes(data)
        atomic_write_json(out / "recon.json", report)
        atomic_write_json(
            out / "config.json",
            {
                "format": AE_FORMAT,
                "family": self.family,
                "config": self.config.autoencoder_config(),
                "step": int(step),
                "weights_sha256": digest,
            },
        )

    # -- training ---------------------------------------------------------------------------------
    def configure_optimizers(self, train: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        """Both phases' optimisers. ``train.lr``, when given, sets both; otherwise the autoencoder uses
        ``ae_lr`` and the UNet the family default. The autoencoder's optimiser always holds all its
        parameters (even when frozen) so a saved optimiser state loads on either side of the switch."""
        ae_params = list(self.autoencoder.parameters())
        frozen = [p for p in ae_params if not p.requires_grad]
        for p in frozen:
            p.requires_grad_(True)
        ae_opt = make_adamw(ae_params, train.lr or self.config.ae_lr, betas=(0.5, 0.9))  # the paper's autoencoder betas
        for p in frozen:
            p.requires_grad_(False)
        unet_opt = make_adamw(self.unet.parameters(), train.lr or self.default_lr, betas=(0.9, 0.99))
        return {"ae": ae_opt, "unet": unet_opt}

    def autoencoder_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Phase-1 loss on images x in [0, 1] (see the module docstring)."""
        target = x * 2 - 1
        mean, logvar = self.encode_stats(x)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        xr = self.autoencoder.decoder(z)
        err = (xr - target).abs() if self.config.recon_loss == "l1" else (xr - target).pow(2)
        pixels = x[0].numel()
        recon = err.flatten(1).sum(1)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1)
        loss = (recon + self.config.kl_weight * kl) / pixels
        return {"loss": loss.mean(), "recon": recon.mean() / pixels, "kl": kl.mean()}

    @torch.no_grad()
    def start_phase2(self, x: torch.Tensor) -> None:
        """Freeze the autoencoder and set ``scale_factor`` = 1 / std of the latents of the batch x."""
        self.autoencoder.requires_grad_(False)
        mean, logvar = self.encode_stats(x)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        self.scale_factor.copy_(1.0 / _global_std(z).to(self.scale_factor.dtype))
        self.phase2_started.fill_(True)

    def latent_targets(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> the diffusion's data y = scale_factor * z / latent_clip (z: a posterior sample, as the paper)."""
        with torch.no_grad():
            mean, logvar = self.encode_stats(x)
            z = (mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)).float()  # float even under autocast: it is the target's scale
        return z * (self.scale_factor / self.config.latent_clip)

    def diffusion_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y0 = self.latent_targets(x)
        b = y0.shape[0]
        t = torch.randint(0, self.config.num_timesteps, (b,), device=y0.device)
        noise = torch.randn_like(y0)
        drop = torch.rand(b, device=y0.device) < self.config.cond_drop
        y_in = torch.where(drop, torch.full_like(y, self.config.num_classes), y)
        err = (self.unet(self.schedule.add_noise(y0, noise, t), t, y_in).float() - noise).pow(2).flatten(1).mean(1)
        gamma = self.config.min_snr_gamma
        if gamma > 0:
            # Min-SNR-gamma weighting (Hang et al. 2023) for eps-prediction: min(SNR, gamma) / SNR, with the SNR
            # of the unit-variance latents (the schedule's SNR / latent_clip^2, see the module docstring).
            snr = self.schedule.snr(t, y0.device) / self.config.latent_clip**2
            err = err * snr.clamp(max=gamma) / snr
        return err.mean()

    def train_step(self, x, y, optimizers, *, step, amp_dtype):
        autocast = torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
        if step < self.config.ae_steps:
            opt = optimizers["ae"]
            with autocast:
                out = self.autoencoder_loss(x)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            optimizer_step(opt, self.autoencoder.parameters(), 10.0)
            logs = {k: float(v.detach()) for k, v in out.items()}
            return {**logs, "ae_loss": logs["loss"], "phase": 1.0}
        if not bool(self.phase2_started):
            self.start_phase2(x)
        elif self.autoencoder.encoder.net[0].weight.requires_grad:
            self.autoencoder.requires_grad_(False)  # rebuilt from a phase-2 snapshot (resume): stay frozen
        opt = optimizers["unet"]
        with autocast:
            loss = self.diffusion_loss(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        optimizer_step(opt, self.unet.parameters(), 1.0)
        v = float(loss.detach())
        return {"loss": v, "diffusion_loss": v, "phase": 2.0}

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        """EMA of the latent UNet, only in phase 2, with its own warm-up counted from the phase switch
        (the trainer's warm-up counts from step 0, when this UNet was not training yet)."""
        if not bool(self.phase2_started):
            return
        n = int(self.ema_updates)
        super().update_ema(min(decay, (1 + n) / (10 + n)))
        self.ema_updates += 1

    # -- sampling ---------------------------------------------------------------------------------
    def max_steps(self) -> int:
        return self.config.num_timesteps

    def eps_fn(self, labels: torch.Tensor, guidance: float, net: nn.Module | None = None):
        """The guided noise prediction eps(y_t, t) in the scaled latent space."""
        return self.guide.predictor(net or self.unet_ema, labels, guidance)

    def _to_images(self, y: torch.Tensor) -> torch.Tensor:
        """Diffusion data y -> images: undo the latent scaling, then the autoencoder decoder."""
        return self.decode_latent(y.float() * (self.config.latent_clip / self.scale_factor))

    def latent_shape(self) -> tuple[int, ...]:
        c = self.config
        return (c.latent_channels, c.latent_size, c.latent_size)

    def decode(self, z, labels, *, steps=None, guidance=None, sampler=None, callback=None) -> torch.Tensor:
        """Deterministic (eta = 0) diffusion in latent space from initial noise z, then the autoencoder decoder."""
        c = self.resolve_controls(SampleConfig(steps=steps, guidance=guidance, sampler=sampler))
        return self._denoise(z.to(self.device).float(), labels.to(self.device), c, callback=callback)

    def encode(self, x, labels, *, steps=None) -> torch.Tensor:
        """Images in [0, 1] -> the autoencoder's posterior mean -> DDIM inversion (eta = 0, no guidance) -> noise
        that ``decode`` maps back (approximately)."""
        c = self.resolve_controls(SampleConfig(steps=steps))
        y0 = self.encode_stats(x.to(self.device).float())[0] * (self.scale_factor / self.config.latent_clip)
        return ddim_invert(self.eps_fn(labels.to(self.device), 1.0), y0, self.schedule, steps=c.steps)

    def _sample_batch(self, labels, seeds, controls):
        z, gens = initial_noise(self.latent_shape(), seeds, self.device, controls.temperature)
        return self._denoise(z, labels, controls, generators=gens)

    def _denoise(self, z, labels, c: SampleConfig, generators=None, callback=None) -> torch.Tensor:
        # x0_clip "static": the +-latent_clip std clip of the module docstring.
        eps = self.eps_fn(labels, c.guidance)
        y = sample_loop(eps, z, self.schedule, steps=c.steps, sampler=c.sampler, eta=c.eta, generators=generators, callback=callback, x0_clip="static")
        return self._to_images(y)

    def nfe_per_image(self, steps: int | None = None, guidance: float | None = None, sampler: str | None = None) -> float:
        """UNet passes (steps, doubled with guidance != 1) plus one for the autoencoder decoder."""
        c = self.resolve_controls(SampleConfig(steps=steps, guidance=guidance, sampler=sampler))
        return float(c.steps * get_sampler(c.sampler).evals_per_step * self.guide.passes(c.guidance) + 1)
