"""Conditional flow matching on the straight (rectified-flow) path, with a UNet, CFG and EMA weights.

Path and target (Lipman et al. 2023, "Flow Matching for Generative Modeling", eq. 20-23 with
sigma_min = 0, the optimal-transport conditional path; Liu et al. 2023, "Flow Straight and Fast:
Rectified Flow", eq. 1). Convention here: t = 0 is data and t = 1 is noise,

    x_t = (1 - t) x_0 + t eps,    eps ~ N(0, I),    x_0 = image scaled to [-1, 1],

so the velocity dx_t/dt along the straight line is v = eps - x_0, and the conditional flow-matching
loss is || v_theta(x_t, t, y) - (eps - x_0) ||^2 with t ~ U(0, 1) (or logit-normal, Esser et al.
2024, "Scaling Rectified Flow Transformers", sec. 3.1, which spends more training on mid-path t).
The network is the diffusion families' UNet (``gda_core.models.unet``) fed t * ``time_scale`` (default 5,
not DDPM's 0..999 range: see ``FlowConfig.time_scale``). Labels are dropped to a null class with
probability ``cond_drop`` so one network is both conditional and unconditional; guidance w mixes
v_u + w (v_c - v_u) (Ho & Salimans 2022).

Sampling solves dx/dt = v(x, t) from noise at t = 1 to t = 0 with Euler or Heun
(``gda_core.schedulers.flow``); ``encode`` solves the same ODE backwards (t = 0 -> 1), so real
images map to noises that ``decode`` maps back: the ODE is a deterministic, invertible map.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from ..schedulers import VELOCITY, Guidance, get_sampler
from ..schedulers.flow import MAX_STEPS, check_steps, integrate, time_grid
from .base import GenerativeModel, ModelConfig, TrainConfig, register_model
from .controls import SampleConfig
from .layers import make_adamw, optimizer_step
from .unet import UNet, UNetConfig

TIME_SAMPLING = ("uniform", "logit_normal")


@dataclass(frozen=True)
class FlowConfig(ModelConfig):
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    blocks_per_level: int = 1
    attention: bool = True
    dropout: float = 0.0
    cond_drop: float = 0.1
    time_sampling: str = "uniform"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    # The UNet embeds its time input with sinusoids of frequencies 1 .. 1e-4 rad per unit, made for
    # DDPM's integer timesteps 0..999. Fed t * 1000, the fastest ones oscillate with a period of
    # 0.006 in t and a short-trained network's velocity wiggles between solver steps, which defeats
    # a 2nd-order solver. With t * 5 every feature varies slowly across [0, 1] (EDM feeds its
    # embedding a noise level of similar range); measured on a 300-step digits run, the loss is
    # the same and Heun-20's error vs a fine solve is 1.6x lower than with t * 1000 (uniform grid).
    time_scale: float = 5.0
    # Sampling grid t_i = (1 - i / steps) ** grid_rho: smaller steps near the data, where the flow
    # curves (gda_core.schedulers.flow.time_grid). Measured on the same run: rho 1.5 cuts Heun-20's
    # error 5x vs a uniform grid and leaves Euler's unchanged.
    grid_rho: float = 1.5
    default_steps: int = 20
    default_guidance: float = 2.0
    default_sampler: str = "heun"

    def unet_config(self) -> UNetConfig:
        return UNetConfig.of(self)

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.attention, bool):
            raise ConfigError(f"attention must be true or false, got {self.attention!r}")
        if not isinstance(self.channel_mults, (tuple, list)):
            raise ConfigError(f"channel_mults must be a list of positive integers, got {self.channel_mults!r}")
        if self.base_channels < 4:
            raise ConfigError(f"base_channels must be >= 4, got {self.base_channels}")
        if self.blocks_per_level < 1:
            raise ConfigError(f"blocks_per_level must be >= 1, got {self.blocks_per_level}")
        self.unet_config().validate()  # channel_mults and the image size / level count
        if not (0.0 <= self.dropout < 1.0):
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not (0.0 <= self.cond_drop < 1.0):
            raise ConfigError(f"cond_drop must be in [0, 1), got {self.cond_drop}")
        if self.time_sampling not in TIME_SAMPLING:
            raise ConfigError(f"time_sampling must be one of {', '.join(TIME_SAMPLING)}, got {self.time_sampling!r}")
        if not (0.0 < self.time_scale <= 1000.0):
            raise ConfigError(f"time_scale must be in (0, 1000], got {self.time_scale}")
        if not (1.0 <= self.grid_rho <= 8.0):
            raise ConfigError(f"grid_rho must be in 1..8, got {self.grid_rho}")
        if not (0.0 < self.logit_std <= 10.0) or not (abs(self.logit_mean) <= 10.0):
            raise ConfigError(f"logit_std must be in (0, 10] and |logit_mean| <= 10, got {self.logit_std}, {self.logit_mean}")
        check_steps(self.default_steps)
        if not (0.0 <= self.default_guidance < math.inf):  # also refuses NaN
            raise ConfigError(f"default_guidance must be a finite number >= 0, got {self.default_guidance}")
        get_sampler(self.default_sampler, VELOCITY)


@register_model
class Flow(GenerativeModel):
    family = "flow"
    Config = FlowConfig
    controls = ("temperature", "guidance", "steps", "sampler")
    sampler_process = VELOCITY
    default_lr = 5e-4
    has_latent = True
    # bf16 training on CPUs with native bf16: 1.4x the steps of float32 in the same 10 minutes and a better
    # FID on both measured seeds, recall within 0.01 (docs/benchmarks.md, "Training in bfloat16 on CPU").
    cpu_bf16_default = True
    description = "Conditional flow matching (rectified flow): diffusion-like fidelity, straight paths, fewer sampling steps."
    display_name = "Flow matching"
    how_it_works = (
        "A flow-matching model learns to move noise into images along straight lines. During training, a real "
        "image and a pure-noise image are mixed in a random proportion, and a UNet learns which direction (a "
        "'velocity') points from the noise toward the image at that point, given the class. To generate, we start "
        "from pure noise and follow the predicted direction in a number of small steps until an image appears; "
        "because the paths are nearly straight, few steps are needed, and Heun's method (which checks each step "
        "with a second look) gets there in about 20. Running the same steps backwards turns a real image into its "
        "noise, so two real images can be blended smoothly. Classifier-free guidance runs the network with and "
        "without the class and pushes toward the class: stronger guidance gives clearer class features, less variety."
    )

    def __init__(self, config: FlowConfig):
        super().__init__(config)
        self.unet = UNet(config.unet_config())
        self.unet_ema = copy.deepcopy(self.unet).requires_grad_(False)
        self.guide = Guidance(null_label=config.num_classes, zero_is_unconditional=True, mix_in_float32=True)

    def sampling_modules(self) -> nn.Module:
        return self.unet_ema

    def ema_modules(self):
        return {"unet": (self.unet, self.unet_ema)}

    # -- training ------------------------------------------------------------------------------
    def configure_optimizers(self, train: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        return {"unet": make_adamw(self.unet.parameters(), train.lr or self.default_lr, betas=(0.9, 0.99))}

    def sample_times(self, n: int, device: torch.device) -> torch.Tensor:
        """Training times t in [0, 1]: uniform, or logit-normal sigmoid(m + s n), n ~ N(0, 1)."""
        c = self.config
        if c.time_sampling == "logit_normal":
            return torch.sigmoid(c.logit_mean + c.logit_std * torch.randn(n, device=device))
        return torch.rand(n, device=device)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Conditional flow-matching loss on images x in [0, 1] (module docstring)."""
        x0 = x * 2 - 1
        b = x0.shape[0]
        t = self.sample_times(b, x0.device)
        eps = torch.randn_like(x0)
        tb = t.view(-1, *([1] * (x0.dim() - 1)))
        xt = (1 - tb) * x0 + tb * eps
        drop = torch.rand(b, device=x0.device) < self.config.cond_drop
        y_in = torch.where(drop, torch.full_like(y, self.config.num_classes), y)
        return F.mse_loss(self.unet(xt, t * self.config.time_scale, y_in), eps - x0)

    def train_step(self, x, y, optimizers, *, step, amp_dtype):
        opt = optimizers["unet"]
        with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = self.loss(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        optimizer_step(opt, self.unet.parameters(), 1.0)
        return {"loss": float(loss.detach())}

    # -- sampling ------------------------------------------------------------------------------
    def velocity_fn(self, labels: torch.Tensor, guidance: float, net: nn.Module | None = None):
        """v(x, t) for the ODE solvers (t a float in [0, 1]), guided: w = 1 is the plain conditional
        model and w = 0 the unconditional one (one pass each); any other w runs both in one batched pass."""
        predict = self.guide.predictor(net or self.unet_ema, labels, guidance)
        scale = self.config.time_scale
        return lambda x, t: predict(x, torch.full((x.shape[0],), t * scale, device=x.device))

    def max_steps(self) -> int:
        return MAX_STEPS

    def latent_shape(self) -> tuple[int, ...]:
        c = self.config
        return (c.channels, c.image_size, c.image_size)

    def decode(self, z, labels, *, steps=None, guidance=None, sampler=None, callback=None) -> torch.Tensor:
        """Noise z (the state at t = 1) -> images in [0, 1]: the deterministic ODE from t = 1 to 0.

        ``callback(i, t, x_t, v)`` sees each step (``gda_core.schedulers.flow.integrate``).
        """
        c = self.resolve_controls(SampleConfig(steps=steps, guidance=guidance, sampler=sampler))
        return self._solve(z.to(self.device), labels.to(self.device), c, callback)

    def encode(self, x, labels, *, steps=None, sampler=None) -> torch.Tensor:
        """Images in [0, 1] -> the noise that ``decode`` maps back to them: the same ODE integrated
        forward from t = 0 to 1 on the reversed grid, unguided (guidance 1, the conditional model),
        so ``decode(..., guidance=1)`` of the result reconstructs x up to the solver's error."""
        c = self.resolve_controls(SampleConfig(steps=steps, sampler=sampler))
        x0 = x.to(self.device).float() * 2 - 1
        return integrate(self.velocity_fn(labels.to(self.device), 1.0), x0, time_grid(c.steps, self.config.grid_rho)[::-1], c.sampler)

    def _sample_batch(self, labels, seeds, controls):
        return self._solve(self.initial_latents(seeds, temperature=controls.temperature), labels, controls)

    def _solve(self, z, labels, c: SampleConfig, callback=None) -> torch.Tensor:
        x = integrate(self.velocity_fn(labels, c.guidance), z, time_grid(c.steps, self.config.grid_rho), c.sampler, callback)
        return (x.clamp(-1, 1) + 1) / 2

    def nfe_per_image(self, steps: int | None = None, guidance: float | None = None, sampler: str | None = None) -> float:
        """Network passes per image: steps x (1 Euler, 2 Heun) x (2 with guidance other than 0 or 1)."""
        c = self.resolve_controls(SampleConfig(steps=steps, guidance=guidance, sampler=sampler))
        return float(c.steps * get_sampler(c.sampler).evals_per_step * self.guide.passes(c.guidance))
