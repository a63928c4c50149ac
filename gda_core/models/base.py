"""The one interface every generative family implements, and the model registry.

A family is a ``GenerativeModel`` subclass with a frozen dataclass ``Config``. It is built from
its config (``Model(Config(**json))``), knows how to train itself one step at a time
(``configure_optimizers`` + ``train_step``; the trainer owns the loop), and samples
class-conditional images in [0, 1] with ``sample``. Sampling is deterministic per image: image i
depends only on ``seed + i`` whatever the batch size.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from .. import fastpath
from ..errors import ConfigError
from ..schedulers.noise import initial_noise
from ..schedulers.registry import get_sampler, list_samplers
from .controls import CONTROL_HELP, CONTROLS, NEUTRAL, SampleConfig


@dataclass(frozen=True)
class ModelConfig:
    """Fields every family's config has; families subclass and add their own."""

    image_size: int = 16
    channels: int = 1
    num_classes: int = 10
    # Fields that only steer training (the loss, the init) and so cannot change what a given set of
    # weights samples: left out of the evaluation cache key, so adding one keeps cached reports valid.
    training_only: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown config keys {sorted(unknown)}")
        # JSON has no tuples: a list where the field's default is a tuple (channel_mults) becomes one.
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        d = {k: tuple(v) if isinstance(v, list) and isinstance(defaults.get(k), tuple) else v for k, v in d.items()}
        try:
            cfg = cls(**d)
        except TypeError as exc:
            raise ConfigError(f"{cls.__name__}: bad config ({exc})") from None
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            expected = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
            if expected in ("int",) and (not isinstance(v, int) or isinstance(v, bool)):
                raise ConfigError(f"config field '{f.name}' must be an integer, got {v!r}")
            if expected in ("float",) and (not isinstance(v, (int, float)) or isinstance(v, bool)):
                raise ConfigError(f"config field '{f.name}' must be a number, got {v!r}")
        if not (8 <= self.image_size <= 256) or self.image_size % 4:
            raise ConfigError(f"image_size must be a multiple of 4 in 8..256, got {self.image_size}")
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {self.channels}")
        if not (1 <= self.num_classes <= 10000):
            raise ConfigError(f"num_classes must be in 1..10000, got {self.num_classes}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by all families (family defaults fill the None fields)."""

    batch_size: int = 64
    lr: float | None = None
    ema_decay: float = 0.999
    grad_accum: int = 1
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    # bf16 autocast on a CPU that does bf16 natively (AVX512-BF16 / AMX), the CPU counterpart of
    # ``amp``. None: the family's ``cpu_bf16_default`` (on for the DDPM and the flow model, whose time to
    # quality in bf16 is measured: README, "Training in bfloat16 on CPU"; off for the others, unmeasured). True asks
    # for it in any family. CPUs without native bf16 train in float32 whatever is set (emulated bf16
    # is slower); an explicit True there is ignored with a note in the run's first message.
    cpu_bf16: bool | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A validated TrainConfig from JSON (a run's config.json), refusing unknown keys."""
        if not isinstance(d, dict):
            raise ConfigError(f"train_config must be a JSON object, got {type(d).__name__}")
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"train_config: unknown keys {sorted(unknown)}")
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise ConfigError (one line) for a value the trainer cannot use."""

        def integer(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def number(v) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        if not integer(self.batch_size) or self.batch_size < 1:
            raise ConfigError(f"batch size must be a positive integer, got {self.batch_size!r}")
        if not integer(self.grad_accum) or self.grad_accum < 1:
            raise ConfigError(f"gradient accumulation must be a positive integer, got {self.grad_accum!r}")
        if self.lr is not None and (not number(self.lr) or self.lr <= 0):
            raise ConfigError(f"learning rate must be a positive number, got {self.lr!r}")
        if not number(self.ema_decay) or not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be a number in [0, 1), got {self.ema_decay!r}")
        if not isinstance(self.amp, bool):
            raise ConfigError(f"amp must be true or false, got {self.amp!r}")
        if self.cpu_bf16 is not None and not isinstance(self.cpu_bf16, bool):
            raise ConfigError(f"cpu_bf16 must be true, false or null (the family's default), got {self.cpu_bf16!r}")


class _RegisteredSamplers:
    """``samplers`` / ``sampler_help`` of a family: the samplers registered for its ``sampler_process``,
    read from the registry at each access, so a sampler registered after the family is offered too."""

    def __init__(self, help_text: bool = False):
        self.help_text = help_text

    def __get__(self, obj, owner):
        names = tuple(list_samplers(owner.sampler_process)) if owner.sampler_process else ()
        return {n: get_sampler(n).help for n in names} if self.help_text else names


class GenerativeModel(nn.Module):
    """Base class: subclasses set ``family``, ``Config``, ``controls`` and implement the hooks."""

    family: ClassVar[str] = ""
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    controls: ClassVar[tuple[str, ...]] = ("temperature",)
    # The process the family's sampling loop integrates (``schedulers.VP_EPS``, ``schedulers.VELOCITY``),
    # or None for one-pass families. ``samplers`` (the names ``sample(sampler=...)`` accepts, the
    # first the default) and ``sampler_help`` (one line each, for the app) are that process's
    # registered samplers.
    sampler_process: ClassVar[str | None] = None
    samplers = _RegisteredSamplers()
    sampler_help = _RegisteredSamplers(help_text=True)
    # What a control means for this family where it differs from CONTROL_HELP (see ``control_help``).
    control_notes: ClassVar[dict[str, str]] = {}
    default_lr: ClassVar[float] = 2e-4
    # Bump when a change to this family's sampling code changes its images for the same weights,
    # config and seed: it is part of the evaluation cache key, so older cached reports are recomputed.
    sampling_version: ClassVar[int] = 1
    description: ClassVar[str] = ""
    # The name the app shows (``family`` is the registry key: "vaegan" reads as a typo to a clinician).
    display_name: ClassVar[str] = ""
    how_it_works: ClassVar[str] = ""
    # Whether ``TrainConfig(cpu_bf16=None)`` trains this family in bf16 autocast on a CPU with native
    # bf16. On only where bf16 training is measured to reach at least float32's quality in the same time.
    cpu_bf16_default: ClassVar[bool] = False
    # False for a family made from another model rather than from data alone (a distilled student needs
    # its teacher: ``gda_core.distill``); the trainer refuses it without the ``prepare`` that provides one.
    trainable_from_scratch: ClassVar[bool] = True

    @classmethod
    def control_help(cls, name: str) -> str:
        """Help text for the sampling control ``name`` as this family uses it."""
        return cls.control_notes.get(name, CONTROL_HELP.get(name, ""))

    def __init__(self, config: ModelConfig):
        super().__init__()
        if not isinstance(config, self.Config):
            raise ConfigError(f"{self.family}: expected {self.Config.__name__}, got {type(config).__name__}")
        config.validate()
        self.config = config

    # -- training ------------------------------------------------------------------------------
    def configure_optimizers(self, train: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def train_step(
        self, x: torch.Tensor, y: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer], *, step: int, amp_dtype: torch.dtype | None
    ) -> dict[str, float]:
        """One optimisation step on a batch x (B, C, H, W) in [0, 1], y (B,) long. Returns losses."""
        raise NotImplementedError

    def write_artifacts(self, run_dir: Path, dataset: Any, step: int) -> None:
        """Called by the trainer after each checkpoint (rank 0 only): families that train a part
        with its own checkpoint (e.g. LDM's autoencoder) write it under ``run_dir`` here, with
        atomic writes. ``dataset`` is the training Dataset (its test split may be used for
        held-out reports). Default: nothing."""

    def ema_modules(self) -> dict[str, tuple[nn.Module, nn.Module]]:
        """Pairs (live, ema) updated by the trainer after each step. Default: none."""
        return {}

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        for live, ema in self.ema_modules().values():
            for p_ema, p in zip(ema.parameters(), live.parameters(), strict=True):
                p_ema.lerp_(p.detach(), 1.0 - decay)
            for b_ema, b in zip(ema.buffers(), live.buffers(), strict=True):
                b_ema.copy_(b)

    # -- sampling ------------------------------------------------------------------------------
    def sample(
        self,
        n: int,
        labels: torch.Tensor | list[int] | int | None = None,
        *,
        temperature: float = 1.0,
        guidance: float | None = None,
        steps: int | None = None,
        seed: int = 0,
        eta: float = 0.0,
        sampler: str | None = None,
        batch_size: int = 64,
        progress: Callable[[int, int], None] | None = None,
        **unknown: Any,
    ) -> torch.Tensor:
        """Generate ``n`` images (n, C, H, W) in [0, 1] on the model's device.

        ``labels``: None (classes cycled 0, 1, 2, ...), an int (all that class), or n ints.
        Image i uses seed ``seed + i`` only, whatever ``batch_size``.

        The controls are validated here, once (``SampleConfig``): a bad value, or a name that is no
        control (``unknown``: a misspelling), is a ConfigError naming it. A control in
        ``self.controls`` left at None takes the family's default. A control the family does not use
        must stay at its neutral value (temperature 1, eta 0, guidance / steps / sampler None): set
        to anything else it is an error, not silently ignored. ``split_controls`` keeps the
        applicable ones for callers that pass one set of controls to every family.
        """
        controls = self.resolve_controls(
            SampleConfig.from_kwargs(temperature=temperature, guidance=guidance, steps=steps, eta=eta, sampler=sampler, seed=seed, **unknown)
        )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        labels_t = self.resolve_labels(n, labels)
        # Inside fastpath.fast_sampling(self), this thread runs the private accelerated copy; self is never changed.
        runner = fastpath.active_copy(self) or self
        out = []
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            seeds = list(range(controls.seed + start, controls.seed + stop))
            with torch.inference_mode():
                imgs = runner._sample_batch(labels_t[start:stop], seeds, controls=controls)
            out.append(imgs.float().clamp(0, 1))
            if progress is not None:
                progress(stop, n)
        if not out:
            c = self.config
            return torch.zeros(0, c.channels, c.image_size, c.image_size, device=self.device)
        return torch.cat(out)

    def _sample_batch(self, labels: torch.Tensor, seeds: list[int], controls: SampleConfig) -> torch.Tensor:
        """Images for these labels and seeds (one per image) with resolved ``controls`` (no None left
        among the family's own controls)."""
        raise NotImplementedError

    def sample_defaults(self) -> dict[str, Any]:
        """The family's value for each of its controls that None asks for: its config's
        ``default_steps`` / ``default_guidance`` / ``default_sampler`` fields where it has them, and
        the first of ``samplers`` when the config names none."""
        c = self.config
        found = {"steps": getattr(c, "default_steps", None), "guidance": getattr(c, "default_guidance", None),
                 "sampler": getattr(c, "default_sampler", None) or (self.samplers[0] if self.samplers else None)}  # fmt: skip
        return {k: v for k, v in found.items() if k in self.controls and v is not None}

    def max_steps(self) -> int | None:
        """The most ``steps`` the family can take (None: no steps control)."""
        return None

    def resolve_controls(self, controls: SampleConfig) -> SampleConfig:
        """``controls`` checked against this family (see ``sample``), with its defaults for None."""
        for name in controls.set_controls():
            if name not in self.controls:
                raise ConfigError(
                    f"{name} does not apply to {self.family} (its controls: {', '.join(self.controls)}); leave it at {NEUTRAL[name]!r}"
                )
        if controls.sampler is not None:
            get_sampler(controls.sampler, self.sampler_process)
        cap = self.max_steps()
        if controls.steps is not None and cap is not None and controls.steps > cap:
            raise ConfigError(f"steps must be an integer in 1..{cap} for this {self.family}, got {controls.steps}")
        defaults = {k: v for k, v in self.sample_defaults().items() if getattr(controls, k) is None}
        return controls.replace(**defaults) if defaults else controls

    def split_controls(self, **controls: Any) -> tuple[dict[str, Any], list[str]]:
        """Validate ``controls`` (keyword arguments of ``sample``) and split them: those this family
        takes, and the names of those set to a non-neutral value that it does not use."""
        SampleConfig.from_kwargs(**controls)
        ignored = [k for k, v in controls.items() if k in CONTROLS and k not in self.controls and v != NEUTRAL[k]]
        used = {k: v for k, v in controls.items() if k not in CONTROLS or k in self.controls}
        return used, ignored

    def resolve_labels(self, n: int, labels: torch.Tensor | list[int] | int | None) -> torch.Tensor:
        k = self.config.num_classes
        if n < 0:
            raise ConfigError(f"number of images must be >= 0, got {n}")
        if labels is None:
            t = torch.arange(n) % k
        elif isinstance(labels, int):
            t = torch.full((n,), labels, dtype=torch.long)
        else:
            t = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
            if len(t) != n:
                raise ConfigError(f"got {len(t)} labels for {n} images")
        if len(t) and (int(t.min()) < 0 or int(t.max()) >= k):
            raise ConfigError(f"class label must be in 0..{k - 1}, got {int(t.min())}..{int(t.max())}")
        return t.to(self.device)

    # -- optional latent interface ----------------------------------------------------------
    has_latent: ClassVar[bool] = False

    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one latent (without batch) that ``decode`` takes."""
        raise NotImplementedError(f"{self.family} has no latent space")

    def initial_latents(self, seeds: list[int], *, temperature: float = 1.0) -> torch.Tensor:
        """The latents ``sample`` would start from for these seeds (for interpolation): by default
        N(0, temperature^2 I) of ``latent_shape()``, image i from seed i."""
        return initial_noise(self.latent_shape(), seeds, self.device, temperature)[0]

    def decode(self, z: torch.Tensor, labels: torch.Tensor, **controls: Any) -> torch.Tensor:
        """Latents -> images in [0, 1] (deterministic)."""
        raise NotImplementedError(f"{self.family} has no decoder")

    def encode(self, x: torch.Tensor, labels: torch.Tensor, **controls: Any) -> torch.Tensor:
        """Images in [0, 1] -> latents that ``decode`` maps back (approximately)."""
        raise NotImplementedError(f"{self.family} has no encoder")

    # -- optional exact likelihood ----------------------------------------------------------
    has_likelihood: ClassVar[bool] = False

    def bits_per_dim(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-image negative log-likelihood in bits per dimension of 8-bit images x in [0, 1].

        Only for families with an exact likelihood (``has_likelihood``); the data are
        dequantised as usual (uniform noise on the 256 levels), so a model that knows nothing
        scores 8 bits/dim.
        """
        raise NotImplementedError(f"{self.family} has no exact likelihood")

    # -- misc ------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self) -> int:
        """Parameters of the sampling network(s) only (EMA copies and critics excluded)."""
        return sum(p.numel() for p in self.sampling_modules().parameters())

    def sampling_modules(self) -> nn.Module:
        return self

    def nfe_per_image(self, steps: int | None = None, guidance: float | None = None, sampler: str | None = None) -> float:
        """Network evaluations needed per image (for the speed report)."""
        return 1.0

    def provenance(self) -> str:
        """One line on what this model was made from, beyond data (a distilled student: its teacher); "" when nothing."""
        return ""

    def clone(self) -> "GenerativeModel":
        return copy.deepcopy(self)


# ---------------------------------------------------------------------------------------------
# Registry (torchvision-style): families register under a name; callers never hard-code a list.
# ---------------------------------------------------------------------------------------------

_MODELS: dict[str, type[GenerativeModel]] = {}


def register_model(cls: type[GenerativeModel]) -> type[GenerativeModel]:
    name = cls.family
    if not name:
        raise ValueError(f"{cls.__name__} has no family name")
    if name in _MODELS:
        raise ValueError(f"model family '{name}' is already registered")
    _MODELS[name] = cls
    return cls


def list_models() -> list[str]:
    return list(_MODELS)


def get_model_class(name: str) -> type[GenerativeModel]:
    try:
        return _MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model '{name}'; choose one of {', '.join(_MODELS)}") from None


def display_name(family: str) -> str:
    """The name the app shows for a family ("VAE-GAN" for the registry's "vaegan")."""
    cls = _MODELS.get(family)
    return (cls.display_name if cls is not None else "") or family.upper()


def build_model(name: str, **config: Any) -> GenerativeModel:
    """Build a family from keyword config values (unspecified fields take the family defaults)."""
    cls = get_model_class(name)
    return cls(cls.Config.from_dict(config))
