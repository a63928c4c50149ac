"""A few-step student distilled from a diffusion (DDPM) or flow-matching teacher.

The teacher's deterministic sampler is an ODE solve from noise to image in ~25 guided steps (50
network passes). The student takes ``steps`` (1-4) large steps on a fixed grid of the teacher's own
process, one network pass each, with the teacher's guidance baked in, and is trained so that each of
its steps lands where the teacher's solve between the same two times lands. So image i at seed s is
(approximately) the teacher's image at seed s: the same starting noise, a few times fewer passes.

Every step is "x' = a x + b D(x, t)": the DDIM step (eta 0) of the VP process, or the Euler step of
the flow, written with the student's data prediction D. The network is the teacher's UNet, started
from the teacher's weights. For a flow teacher D = x - t v (the teacher's own velocity output); for a
DDPM teacher D = alpha x - sigma v with the v-parameterisation (Salimans & Ho 2022, Sec. 4), because
the teacher's noise output turns into an image only after division by alpha, ~1e-4 at the first
step, which no few-step student can afford.

Three ways to train it (``method``, ``gda_core.distill``; the choice is measured in
docs/hybrids.md):

- ``progressive``: progressive distillation (Salimans & Ho 2022) done in one round: the target of
  a student step from a noised real image is the teacher's solve over that step in
  ``teacher_substeps`` steps, as a student of 2 teacher steps is in each of their rounds;
- ``consistency``: multistep consistency distillation (Heek et al. 2024; Song et al. 2023): one
  teacher sub-step, then the student's own (stop-gradient) jump to the end of the segment is the target;
- ``reflow``: the teacher's whole solve from fresh noise gives (noise, image) pairs, and the student
  learns the straight path between them (Liu et al. 2023's reflow, in the teacher's process).

The teacher is not part of the model: training attaches it (``attach_teacher``) and nothing of it is
saved but its record in the config (name, family, weights SHA-256, guidance, sampler).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from ..schedulers import VELOCITY, VP_EPS, NoiseSchedule, get_sampler
from ..schedulers.flow import time_grid
from .base import GenerativeModel, ModelConfig, TrainConfig, register_model
from .layers import make_adamw, optimizer_step
from .unet import UNet, UNetConfig

PROCESSES = ("vp", "flow")
METHODS = ("progressive", "consistency", "reflow")
MAX_STUDENT_STEPS = 4


class Teacher(Protocol):
    """What training needs of a teacher: its guided deterministic solve between two times of the
    student's grid (vp: timestep indices, -1 = the data; flow: t in [0, 1])."""

    def solve(self, x: torch.Tensor, labels: torch.Tensor, t_from: float, t_to: float, steps: int) -> torch.Tensor: ...


@dataclass(frozen=True)
class DistilledConfig(ModelConfig):
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    blocks_per_level: int = 1
    attention: bool = True
    dropout: float = 0.0
    process: str = "vp"  # the teacher's: "vp" (a DDPM) or "flow" (a flow-matching model)
    num_timesteps: int = 1000  # vp: the teacher's schedule
    schedule: str = "cosine"
    time_scale: float = 5.0  # flow: the teacher's time input scale
    grid_rho: float = 1.5  # flow: the student's time grid (the teacher's spacing)
    steps: int = 4  # the student's steps (network passes per image)
    # The teacher's record: names it, and how it was run; none of it changes what the weights sample.
    teacher: str = ""
    teacher_family: str = ""
    teacher_sha256: str = ""
    teacher_guidance: float = 2.0
    teacher_sampler: str = ""
    teacher_substeps: int = 6  # teacher steps per student step
    method: str = "progressive"
    training_only: ClassVar[tuple[str, ...]] = (
        "teacher", "teacher_family", "teacher_sha256", "teacher_guidance", "teacher_sampler", "teacher_substeps", "method",
    )  # fmt: skip

    def unet_config(self) -> UNetConfig:
        return UNetConfig.of(self)

    def validate(self) -> None:
        super().validate()
        self.unet_config().validate()
        if self.process not in PROCESSES:
            raise ConfigError(f"process must be one of {', '.join(PROCESSES)}, got {self.process!r}")
        if not 1 <= self.steps <= MAX_STUDENT_STEPS:
            raise ConfigError(f"a student takes 1..{MAX_STUDENT_STEPS} steps, got {self.steps}")
        if self.process == "vp":
            NoiseSchedule(self.num_timesteps, self.schedule)  # checks the kind
            if self.schedule == "vp" or not self.steps <= self.num_timesteps:
                raise ConfigError(f"a vp student needs a cosine or linear schedule of at least {self.steps} timesteps")
        if not (0 < self.time_scale <= 1000) or not (1 <= self.grid_rho <= 8):
            raise ConfigError(f"time_scale must be in (0, 1000] and grid_rho in 1..8, got {self.time_scale}, {self.grid_rho}")
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not 1 <= self.teacher_substeps <= 200 or not (0 <= self.teacher_guidance <= 100):
            raise ConfigError(f"teacher_substeps must be in 1..200 and teacher_guidance in 0..100, got {self.teacher_substeps}, {self.teacher_guidance}")
        if self.teacher_sampler:
            get_sampler(self.teacher_sampler, VP_EPS if self.process == "vp" else VELOCITY)
        for name in ("teacher", "teacher_family", "teacher_sha256"):
            v = getattr(self, name)
            if not isinstance(v, str) or len(v) > 200 or any(ch in v for ch in "\n\r\0"):
                raise ConfigError(f"{name} must be a one-line string of at most 200 characters")


@register_model
class Distilled(GenerativeModel):
    family = "distilled"
    Config = DistilledConfig
    controls = ("temperature",)
    default_lr = 2e-4
    has_latent = True
    trainable_from_scratch = False
    description = "Few-step student of a DDPM or flow model: the teacher's images in 1-4 network passes instead of dozens."
    display_name = "Distilled student"
    how_it_works = (
        "A diffusion or flow model makes an image by following a path from noise to picture in many small steps, each one "
        "a pass of its network (about 50 with guidance). Distillation trains a second network, the student, to take the same "
        "path in a few large steps: for each of its steps, the teacher walks the same stretch of the path in small steps and "
        "the student learns to land where the teacher landed. The student starts as a copy of the teacher, sees the same "
        "starting noise for the same seed, and bakes the teacher's guidance in, so it draws nearly the teacher's image for "
        "that seed with 1-4 network passes: ten or more times faster. What the teacher never learned, the student cannot either."
    )

    def __init__(self, config: DistilledConfig):
        super().__init__(config)
        self.unet = UNet(config.unet_config())
        self.unet_ema = copy.deepcopy(self.unet).requires_grad_(False)
        self.schedule = NoiseSchedule(config.num_timesteps, config.schedule) if config.process == "vp" else None
        self._teacher: list[Teacher] = []  # a list, so that nn.Module does not register (and save) a teacher

    def sampling_modules(self) -> nn.Module:
        return self.unet_ema

    def ema_modules(self):
        return {"unet": (self.unet, self.unet_ema)}

    # -- the process ---------------------------------------------------------------------------
    def grid(self, steps: int | None = None) -> list[float]:
        """The student's ``steps + 1`` times from noise to data (vp: timestep indices ending at -1;
        flow: t from 1 to 0): the teacher's own sampler's grid at that many steps."""
        k = self.config.steps if steps is None else steps
        if self.config.process == "vp":
            return [float(t) for t in self.schedule.timesteps(k)] + [-1.0]
        return time_grid(k, self.config.grid_rho)

    def _alpha_sigma(self, t: float) -> tuple[float, float]:
        """Signal and noise scale of x_t: vp sqrt(abar), sqrt(1 - abar) (1, 0 at the data); flow 1 - t, t."""
        if self.config.process == "flow":
            return 1.0 - t, t
        if t < 0:
            return 1.0, 0.0
        ab = float(self.schedule.alphas_cumprod[int(round(t))])
        return math.sqrt(ab), math.sqrt(1.0 - ab)

    def step_coeffs(self, t: float, t_next: float) -> tuple[float, float]:
        """(a, b) of the deterministic step x' = a x + b D from t to t_next: DDIM with eta 0 (vp) or
        Euler (flow), both a x + b D with a = sigma' / sigma, b = alpha' - a alpha."""
        a_t, s_t = self._alpha_sigma(t)
        a_n, s_n = self._alpha_sigma(t_next)
        a = s_n / s_t
        return a, a_n - a * a_t

    def noised(self, x0: torch.Tensor, noise: torch.Tensor, t: float) -> torch.Tensor:
        a, s = self._alpha_sigma(t)
        return a * x0 + s * noise

    def data_prediction(self, net: nn.Module, x: torch.Tensor, t: float, labels: torch.Tensor) -> torch.Tensor:
        """D(x, t): the network's estimate of the image at the end of the path (module docstring)."""
        c = self.config
        tt = torch.full((x.shape[0],), t * c.time_scale if c.process == "flow" else round(t), device=x.device, dtype=torch.float32)
        out = net(x, tt if c.process == "flow" else tt.long(), labels).float()
        if c.process == "flow":
            return x - t * out
        a, s = self._alpha_sigma(t)
        return a * x - s * out

    # -- training ------------------------------------------------------------------------------
    def attach_teacher(self, teacher: Teacher) -> None:
        self._teacher[:] = [teacher]

    @property
    def teacher(self) -> Teacher:
        if not self._teacher:
            raise ConfigError("this student has no teacher attached; distil it with `python -m gda_core distill`")
        return self._teacher[0]

    def configure_optimizers(self, train: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        return {"unet": make_adamw(self.unet.parameters(), train.lr or self.default_lr, betas=(0.9, 0.99))}

    def train_step(self, x, y, optimizers, *, step, amp_dtype):
        """One step on every segment of the grid: the batch is split into ``steps`` parts, part i
        trains the student's step i (so each step of the path gets the same share)."""
        opt, k = optimizers["unet"], self.config.steps
        losses = []
        opt.zero_grad(set_to_none=True)
        parts = [p for p in zip(torch.arange(len(y)).tensor_split(k), range(k), strict=True) if len(p[0])]
        for idx, i in parts:
            with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = self.segment_loss(x[idx] * 2 - 1, y[idx], i)
            (loss * len(idx) / len(y)).backward()
            losses.append(float(loss.detach()))
        optimizer_step(opt, self.unet.parameters(), 1.0)
        return {"loss": sum(losses) / len(losses), **{f"loss_step{i + 1}": v for (_, i), v in zip(parts, losses, strict=True)}}

    def segment_loss(self, x0: torch.Tensor, y: torch.Tensor, i: int) -> torch.Tensor:
        """The loss of student step i (grid[i] -> grid[i + 1]) in data-prediction units, by ``method``."""
        g, c = self.grid(), self.config
        t, t_next = g[i], g[i + 1]
        a, b = self.step_coeffs(t, t_next)
        noise = torch.randn_like(x0)
        if c.method == "reflow":  # the teacher's image for fresh noise, and the straight path between them
            with torch.no_grad():
                target = self.teacher.solve(noise, y, g[0], g[-1], c.teacher_substeps * c.steps)
            return F.mse_loss(self.data_prediction(self.unet, self.noised(target, noise, t), t, y), target)
        if c.method == "progressive":
            x_t = self.noised(x0, noise, t)
            with torch.no_grad():
                x_next = self.teacher.solve(x_t, y, t, t_next, c.teacher_substeps)
            return F.mse_loss(self.data_prediction(self.unet, x_t, t, y), (x_next - a * x_t) / b)
        return self._consistency_loss(x0, noise, y, t, t_next)

    def _consistency_loss(self, x0, noise, y, t, t_next) -> torch.Tensor:
        """Multistep consistency: from a random sub-step s of the segment, one teacher sub-step to s',
        then the student's own jump from s' to the segment's end (stop-gradient; the teacher's point
        itself when s' is the end) is the target of its jump from s."""
        m = self.config.teacher_substeps
        sub = torch.linspace(t, t_next, m + 1).tolist()
        if self.config.process == "vp":
            sub = [float(round(s)) for s in sub]
        j = int(torch.randint(0, m, ()))
        s, s_next = sub[j], sub[j + 1]
        x_s = self.noised(x0, noise, s)
        with torch.no_grad():
            x_mid = self.teacher.solve(x_s, y, s, s_next, 1) if s_next != s else x_s
            if j + 1 < m:
                a2, b2 = self.step_coeffs(s_next, t_next)
                x_mid = a2 * x_mid + b2 * self.data_prediction(self.unet, x_mid, s_next, y)
        a, b = self.step_coeffs(s, t_next)
        return F.mse_loss(self.data_prediction(self.unet, x_s, s, y), (x_mid - a * x_s) / b)

    # -- sampling ------------------------------------------------------------------------------
    def latent_shape(self) -> tuple[int, ...]:
        c = self.config
        return (c.channels, c.image_size, c.image_size)

    def decode(self, z: torch.Tensor, labels: torch.Tensor, *, callback: Callable | None = None) -> torch.Tensor:
        """The student's ``steps`` steps from noise z to images in [0, 1]; ``callback(i, t, x_next, D)`` sees each."""
        x, labels = z.to(self.device).float(), labels.to(self.device)
        g = self.grid()
        for i in range(self.config.steps):
            d = self.data_prediction(self.unet_ema, x, g[i], labels)
            a, b = self.step_coeffs(g[i], g[i + 1])
            x = a * x + b * d
            if callback is not None:
                callback(i, g[i + 1], x, d)
        return (x.clamp(-1, 1) + 1) / 2

    def _sample_batch(self, labels, seeds, controls):
        return self.decode(self.initial_latents(seeds, temperature=controls.temperature), labels)

    def nfe_per_image(self, steps: int | None = None, guidance: float | None = None, sampler: str | None = None) -> float:
        return float(self.config.steps)

    def provenance(self) -> str:
        c = self.config
        return (f"distilled from the {c.teacher_family} checkpoint {c.teacher} (weights SHA-256 {c.teacher_sha256[:12]}...) "
                f"by {c.method} distillation into {c.steps} step(s), its guidance {c.teacher_guidance:g} built in")  # fmt: skip
