"""Teaching helpers: what each family does, shown on real data and on the run's own history.

- diffusion: the forward process q(x_t | x_0) on a real image (DDPM eq. 4) and the reverse
  trajectory of one sample (x_t and the predicted x_0 at each step);
- VAE: reconstructions (encode to the posterior mean, decode) and the recon / KL balance;
- GAN / StyleGAN2: discriminator / generator losses and the critic's scores on real and fake images;
- flow matching: the ODE trajectory of one sample (x_t and the straight-line guess x_t - t v of
  the image at each step);
- LDM: the autoencoder's reconstructions, which bound what the latent diffusion can draw;
- likelihood models: the real images the model finds most and least probable (bits/dim).
All images come back as uint8 (N, H, W, C).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .data.base import images_to_tensor, tensor_to_images
from .errors import ConfigError
from .runtime import generators_for, randn_per_seed


def _require(model, attr: str, what: str) -> None:
    if not hasattr(model, attr):
        raise ConfigError(f"{what} needs a diffusion model; {model.family} has no noise schedule")


def default_timesteps(model, n: int = 7) -> list[int]:
    """``n`` timesteps from 0 (clean) to T-1 (pure noise), evenly spaced."""
    _require(model, "schedule", "forward noising")
    T = model.schedule.num_timesteps
    return sorted({int(round(v)) for v in np.linspace(0, T - 1, n)})


@torch.inference_mode()
def forward_noising(model, image: np.ndarray, timesteps: list[int], *, seed: int = 0) -> np.ndarray:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps for one real uint8 image (H, W, C) at each t,
    with the same noise eps throughout (so only the mixing changes). Returns uint8 (len(t), H, W, C)."""
    _require(model, "schedule", "forward noising")
    T = model.schedule.num_timesteps
    ts = [int(t) for t in timesteps]
    if not ts or any(not (0 <= t < T) for t in ts):
        raise ConfigError(f"timesteps must be in 0..{T - 1}, got {timesteps}")
    x0 = images_to_tensor(np.asarray(image)[None]) * 2 - 1  # (1, C, H, W) in [-1, 1]
    eps = randn_per_seed(tuple(x0.shape[1:]), generators_for([seed]), "cpu")
    x0 = x0.expand(len(ts), -1, -1, -1)
    xt = model.schedule.add_noise(x0, eps.expand_as(x0), torch.tensor(ts))
    return tensor_to_images((xt + 1) / 2)


def signal_fraction(model, timesteps: list[int]) -> list[float]:
    """sqrt(abar_t) for each t: how much of the clean image is left (1 = all, 0 = none)."""
    _require(model, "schedule", "the noise schedule")
    ab = model.schedule.alphas_cumprod
    return [float(ab[int(t)].sqrt()) for t in timesteps]


@dataclass
class Trajectory:
    """The reverse process of one sample: x_t and the predicted clean image at chosen steps."""

    steps: list[int]  # sampler step index (0 = first, noisiest)
    timesteps: list[int]  # diffusion timestep t of each shown step
    x_t: np.ndarray  # uint8 (K, H, W, C): the noisy image after the step
    x0_pred: np.ndarray  # uint8 (K, H, W, C): the network's guess of the final image
    start: np.ndarray  # uint8 (H, W, C): the initial noise


@torch.inference_mode()
def denoising_trajectory(
    model, label: int, *, seed: int = 0, steps: int | None = None, guidance: float | None = None, show: int = 8, temperature: float = 1.0
) -> Trajectory:
    """Run deterministic DDIM from the seed's noise and record ``show`` evenly spaced steps."""
    _require(model, "schedule", "the denoising trajectory")
    steps = int(steps or model.config.default_steps)
    rec: list[tuple[int, torch.Tensor, torch.Tensor]] = []

    def cb(i: int, x_t: torch.Tensor, x0: torch.Tensor) -> None:
        rec.append((i, x_t.detach().clone(), x0.detach().clone()))

    z = model.initial_latents([int(seed)], temperature=temperature)
    labels = model.resolve_labels(1, int(label))
    model.decode(z, labels, steps=steps, guidance=guidance, callback=cb)
    ts = model.schedule.timesteps(steps)
    pick = sorted({int(round(v)) for v in np.linspace(0, len(rec) - 1, min(show, len(rec)))})
    x_t = torch.cat([rec[k][1] for k in pick])
    x0 = torch.cat([rec[k][2] for k in pick])
    # After the last step the sample is x_0 itself; x_t there is "t = 0".
    shown_t = [ts[k + 1] if k + 1 < len(ts) else 0 for k in pick]
    return Trajectory(
        steps=[rec[k][0] for k in pick],
        timesteps=shown_t,
        x_t=tensor_to_images(((x_t + 1) / 2).clamp(0, 1)),
        x0_pred=tensor_to_images(((x0 + 1) / 2).clamp(0, 1)),
        start=tensor_to_images((z.clamp(-3, 3) / 3 + 1) / 2)[0],
    )


@torch.inference_mode()
def vae_reconstructions(model, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Encode uint8 images (N, H, W, C) to the posterior mean and decode: uint8 (N, H, W, C)."""
    if model.family != "vae":
        raise ConfigError(f"reconstructions are shown for VAEs; this is a {model.family}")
    x = images_to_tensor(np.asarray(images), model.device)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long, device=model.device)
    return tensor_to_images(model.decode(model.encode(x, y), y))


def curves(history: list[dict], keys: tuple[str, ...] | list[str]) -> dict[str, list[float]]:
    """Columns ``step`` plus each of ``keys`` present in the history records (missing -> NaN)."""
    present = [k for k in keys if any(k in r for r in history)]
    out: dict[str, list[float]] = {"step": [int(r.get("step", i)) for i, r in enumerate(history)]}
    for k in present:
        out[k] = [float(r[k]) if isinstance(r.get(k), (int, float)) else float("nan") for r in history]
    return out


def vae_curves(history: list[dict], beta: float | None = None) -> dict[str, list[float]]:
    """recon, kl (per image, nats) and beta * kl from a VAE run's history."""
    c = curves(history, ("recon", "kl", "loss"))
    if beta is not None and "kl" in c:
        c["beta_kl"] = [beta * v for v in c["kl"]]
    return c


def gan_curves(history: list[dict]) -> dict[str, list[float]]:
    """d_loss, g_loss, d_real, d_fake from a GAN run's history."""
    return curves(history, ("d_loss", "g_loss", "d_real", "d_fake"))


def loss_keys(history: list[dict]) -> list[str]:
    """Every numeric key of the history records except step and time."""
    keys: list[str] = []
    for r in history:
        for k, v in r.items():
            if k not in ("step", "time_s") and isinstance(v, (int, float)) and k not in keys:
                keys.append(k)
    return keys


@dataclass
class FlowTrajectory:
    times: list[float]  # ODE time t of each shown state (1 = noise, 0 = image)
    x_t: np.ndarray  # uint8 (K, H, W, C): the state at that time
    x0_guess: np.ndarray  # uint8 (K, H, W, C): x_t - t v, where a straight path from there would land


@torch.inference_mode()
def flow_trajectory(
    model, label: int, *, seed: int = 0, steps: int | None = None, guidance: float | None = None, sampler: str | None = None, show: int = 8
) -> FlowTrajectory:
    """Solve a flow-matching model's ODE from the seed's noise and record ``show`` evenly spaced states."""
    if model.family != "flow":
        raise ConfigError(f"the ODE trajectory is shown for flow-matching models; this is a {model.family}")
    rec: list[tuple[float, torch.Tensor, torch.Tensor]] = []

    def cb(i: int, t: float, x: torch.Tensor, v: torch.Tensor) -> None:
        rec.append((t, x.detach().clone(), (x - t * v).detach().clone()))

    z = model.initial_latents([int(seed)])
    labels = model.resolve_labels(1, int(label))
    final = model.decode(z, labels, steps=steps, guidance=guidance, sampler=sampler, callback=cb) * 2 - 1
    rec.append((0.0, final, final))
    pick = sorted({int(round(v)) for v in np.linspace(0, len(rec) - 1, min(show, len(rec)))})
    to_img = lambda t: tensor_to_images(((t + 1) / 2).clamp(0, 1))  # noqa: E731
    return FlowTrajectory(
        times=[rec[k][0] for k in pick],
        x_t=to_img(torch.cat([rec[k][1] for k in pick])),
        x0_guess=to_img(torch.cat([rec[k][2] for k in pick])),
    )


@torch.inference_mode()
def autoencoder_reconstructions(model, images: np.ndarray) -> tuple[np.ndarray, dict]:
    """LDM: encode uint8 images (N, H, W, C) with the autoencoder and decode them back.

    Returns the reconstructions (uint8, same shape) and their quality report (MSE, PSNR and the
    MSE of the mean image for scale): what the latent diffusion model can at best reproduce.
    """
    if not hasattr(model, "reconstruction_report"):
        raise ConfigError(f"autoencoder reconstructions are shown for latent diffusion models; this is a {model.family}")
    x = images_to_tensor(np.asarray(images), model.device)
    return tensor_to_images(model.reconstruct(x)), model.reconstruction_report(x.cpu())


@dataclass
class LikelihoodRanking:
    bits_per_dim: np.ndarray  # (N,) for every image given
    most_likely: np.ndarray  # indices of the lowest bits/dim, best first
    least_likely: np.ndarray  # indices of the highest bits/dim, worst first


@torch.inference_mode()
def likelihood_ranking(model, images: np.ndarray, labels: np.ndarray, *, k: int = 8, batch_size: int = 256) -> LikelihoodRanking:
    """Bits/dim of each uint8 image (N, H, W, C) under a likelihood model, and the k most / least likely.

    Images a model finds improbable (high bits/dim) are the ones it has not learned: unusual
    acquisitions, artefacts, or a class it has seen too little of.
    """
    if not getattr(model, "has_likelihood", False):
        raise ConfigError(f"{model.family} has no exact likelihood; bits/dim needs a family such as realnvp")
    images = np.asarray(images)
    labels = np.asarray(labels)
    if len(images) == 0:
        raise ConfigError("no images to score")
    out = []
    for s in range(0, len(images), batch_size):
        x = images_to_tensor(images[s : s + batch_size], model.device)
        y = torch.as_tensor(labels[s : s + batch_size], dtype=torch.long, device=model.device)
        out.append(model.bits_per_dim(x, y).double().cpu())
    bpd = torch.cat(out).numpy()
    order = np.argsort(bpd, kind="stable")
    k = min(k, len(bpd))
    return LikelihoodRanking(bits_per_dim=bpd, most_likely=order[:k], least_likely=order[::-1][:k])
