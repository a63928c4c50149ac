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
    """Encode uint8 images (N, H, W, C) to the posterior mean and decode: uint8 (N, H, W, C).
    For the autoencoding families (VAE, VAE-GAN): an encoder into a vector latent."""
    from .latent import has_encoder

    if not (getattr(model, "has_latent", False) and has_encoder(model) and len(model.latent_shape()) == 1):
        raise ConfigError(f"reconstructions are shown for autoencoders (VAE, VAE-GAN); this is a {model.family}")
    x = images_to_tensor(np.asarray(images), model.device)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long, device=model.device)
    return tensor_to_images(model.decode(model.encode(x, y), y))


def reconstruction_figures(real: np.ndarray, rec: np.ndarray) -> dict[str, float]:
    """How far reconstructions are from their originals (``mse``, pixels in [0, 1]) and how sharp they
    are: ``sharpness`` = mean absolute difference between neighbouring pixels, as a fraction of the
    originals' (1 = as crisp as the real images; a blurry reconstruction scores well below 1)."""
    r = np.asarray(real, dtype=np.float64) / 255.0
    x = np.asarray(rec, dtype=np.float64) / 255.0
    if r.shape != x.shape or r.ndim != 4 or len(r) == 0:
        raise ConfigError(f"need real and reconstructed images of one shape (N, H, W, C), got {r.shape} and {x.shape}")

    def edges(a: np.ndarray) -> float:
        return float(np.abs(np.diff(a, axis=1)).mean() + np.abs(np.diff(a, axis=2)).mean())

    return {"mse": float(((r - x) ** 2).mean()), "sharpness": edges(x) / max(edges(r), 1e-12)}


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


@dataclass
class GANSteps:
    """A denoising-diffusion GAN's few large steps for one sample, each shown."""

    levels: list[int]  # the step's noise level t (T-1 = the noisiest .. 0)
    signal: list[float]  # sqrt(abar_t) of the step's input: how much image is left in it
    x_t: np.ndarray  # uint8 (T, H, W, C): the step's noisy input
    x0_pred: np.ndarray  # uint8 (T, H, W, C): the generator's proposed clean image
    x_prev: np.ndarray  # uint8 (T, H, W, C): the input of the next step (the proposal re-noised), the image after the last


@torch.inference_mode()
def ddgan_steps(model, label: int, *, seed: int = 0, temperature: float = 1.0) -> GANSteps:
    """Run a DDGAN from the seed's noise (exactly as ``sample`` does) and record every step."""
    if not hasattr(model, "denoise"):
        raise ConfigError(f"the denoising steps are shown for denoising-diffusion GANs; this is a {model.family}")
    from .schedulers import initial_noise

    rec: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    x, gens = initial_noise(model.latent_shape(), [int(seed)], model.device, temperature)
    labels = model.resolve_labels(1, int(label))
    model.denoise(x, labels, gens, temperature=temperature, callback=lambda t, xt, x0, prev: rec.append((t, xt.clone(), x0.clone(), prev.clone())))
    to_img = lambda t: tensor_to_images(((t.float() + 1) / 2).clamp(0, 1))  # noqa: E731
    ab = model.schedule.alphas_cumprod
    return GANSteps(levels=[r[0] for r in rec], signal=[float(ab[r[0]].sqrt()) for r in rec], x_t=to_img(torch.cat([r[1] for r in rec])),
                    x0_pred=to_img(torch.cat([r[2] for r in rec])), x_prev=to_img(torch.cat([r[3] for r in rec])))  # fmt: skip


@dataclass
class StudentAndTeacher:
    """A distilled student beside its teacher at one seed (the same starting noise)."""

    student_steps: np.ndarray  # uint8 (K, H, W, C): the student's state after each of its steps
    student_guesses: np.ndarray  # uint8 (K, H, W, C): its estimate of the final image at each step
    student: np.ndarray  # uint8 (H, W, C): the student's image
    teacher: np.ndarray  # uint8 (H, W, C): the teacher's image (its full solve the student learnt)
    teacher_few: np.ndarray  # uint8 (H, W, C): the teacher's own sampler at the student's step count
    teacher_passes: int  # network passes of the teacher's image
    distance: dict[str, float]  # mean squared pixel distance to the teacher's image: student, teacher_few


@torch.inference_mode()
def student_and_teacher(student, teacher, label: int, *, seed: int = 0) -> StudentAndTeacher:
    """The student's steps and image, the teacher's image and the teacher's own few-step image, at ``seed``."""
    from .distill import TeacherSolver, teacher_images

    if not hasattr(student, "attach_teacher"):
        raise ConfigError(f"teacher and student are shown for distilled students; this is a {student.family}")
    c = student.config
    rec: list[tuple[torch.Tensor, torch.Tensor]] = []
    z = student.initial_latents([int(seed)])
    labels = student.resolve_labels(1, int(label))
    img = student.decode(z, labels, callback=lambda i, t, x, d: rec.append((x.clone(), d.clone())))
    solver = TeacherSolver(teacher, c.teacher_guidance, c.teacher_sampler)
    ref = teacher_images(student, solver, z, labels)
    few = teacher.decode(z.to(teacher.device), labels.to(teacher.device), steps=c.steps, guidance=c.teacher_guidance)
    to_img = lambda t: tensor_to_images(((t.float() + 1) / 2).clamp(0, 1))  # noqa: E731
    passes = c.steps * c.teacher_substeps * teacher.nfe_per_image(steps=1, guidance=c.teacher_guidance)
    return StudentAndTeacher(
        student_steps=to_img(torch.cat([r[0] for r in rec])), student_guesses=to_img(torch.cat([r[1] for r in rec])),
        student=tensor_to_images(img)[0], teacher=tensor_to_images(ref)[0], teacher_few=tensor_to_images(few)[0], teacher_passes=int(passes),
        distance={"student": float((img - ref).pow(2).mean()), "teacher_few": float((few - ref).pow(2).mean())},
    )  # fmt: skip
