"""Few-step distillation: a trained DDPM or flow checkpoint -> a 1-4 step ``distilled`` student.

    python -m gda_core distill --checkpoint RUN --steps 4 --minutes M --out RUN2 [--resume]

The student is a run folder like any other (``model.safetensors`` + ``config.json``), loaded by
``checkpoints.load_run`` with the same validation, and sampled, evaluated and compared everywhere a
checkpoint is. Its model config records the teacher (folder name, family, weights SHA-256, guidance,
sampler, sub-steps, method); the teacher's weights are not copied. Training is the normal trainer
(``training.train``) with the teacher attached to the student before the first step, so a
distillation checkpoints, cancels and resumes as training does; a resume re-reads the teacher and
refuses one whose weights changed.

Every refusal (a family that cannot be distilled, a student step count outside 1..4, a tampered or
missing teacher, a changed teacher on resume) is one ConfigError / CheckpointError raised before
anything is written.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from pathlib import Path

import torch

from . import checkpoints as ck
from .data import load_spec
from .errors import CheckpointError, ConfigError
from .models import GenerativeModel, TrainConfig
from .models.distilled import MAX_STUDENT_STEPS, METHODS
from .runtime import atomic_write_text
from .schedulers.diffusion import solve_segment
from .schedulers.flow import integrate

# Families with a deterministic guided sampler whose solve a student can learn, and their process.
DISTILLABLE = {"ddpm": "vp", "flow": "flow"}
# The teacher's solver between two student times: DPM-Solver++ is the DDPM's most accurate per pass
# (docs/benchmarks.md, sampler table); the flow model's own default (Heun) for the flow.
SUB_SAMPLER = {"ddpm": "dpmpp", "flow": "heun"}
CARD = "MODEL_CARD.md"


class TeacherSolver:
    """A loaded teacher's guided deterministic solve between two times of a student's grid."""

    def __init__(self, model: GenerativeModel, guidance: float, sampler: str):
        self.model = model.eval().requires_grad_(False)
        self.guidance, self.sampler = float(guidance), sampler

    @torch.no_grad()
    def solve(self, x: torch.Tensor, labels: torch.Tensor, t_from: float, t_to: float, steps: int) -> torch.Tensor:
        m = self.model
        if m.family == "ddpm":
            eps = m.eps_fn(labels, self.guidance)
            return solve_segment(eps, x, m.schedule, int(round(t_from)), int(round(t_to)), steps=steps, sampler=self.sampler,
                                 x0_clip=m.config.x0_clip)  # fmt: skip
        return integrate(m.velocity_fn(labels, self.guidance), x, torch.linspace(t_from, t_to, steps + 1).tolist(), self.sampler)


def teacher_images(student, teacher: TeacherSolver, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """What the student is trained to reproduce: the teacher's solve from noise z over the student's
    grid, ``teacher_substeps`` steps per student step. Images in [0, 1]."""
    g, x = student.grid(), z.to(student.device).float()
    for i in range(len(g) - 1):
        x = teacher.solve(x, labels.to(student.device), g[i], g[i + 1], student.config.teacher_substeps)
    return (x.clamp(-1, 1) + 1) / 2


@torch.no_grad()
def tracking(student, teacher: GenerativeModel, n: int = 32) -> dict:
    """How closely a student follows its teacher: mean squared pixel distance (images in [0, 1]) at
    seeds 0..n-1 to the teacher's solve it was trained on (``teacher_images``), of the student's
    images (``student``) and of each of the teacher's own samplers cut to the student's step count
    (``teacher_few``, by sampler, and the best of them, ``teacher_few_best``)."""
    c = student.config
    labels = torch.arange(n) % c.num_classes
    z = student.initial_latents(list(range(n)))
    ref = teacher_images(student, TeacherSolver(teacher, c.teacher_guidance, c.teacher_sampler), z, labels)
    dist = lambda img: float((img.to(ref.device) - ref).pow(2).mean())  # noqa: E731
    few = {s: dist(teacher.decode(z, labels, steps=c.steps, guidance=c.teacher_guidance, sampler=s)) for s in teacher.samplers}
    return {"student": dist(student.decode(z, labels)), "teacher_few": few, "teacher_few_best": min(few.values())}


def check_student_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STUDENT_STEPS:
        raise ConfigError(f"a student takes 1..{MAX_STUDENT_STEPS} steps, got {steps!r}")
    return steps


def load_teacher(checkpoint: str | os.PathLike, device: str = "auto"):
    """The teacher run, validated as any checkpoint, and refused when its family cannot be distilled."""
    run = ck.load_run(checkpoint, device=device)
    if run.family not in DISTILLABLE:
        raise ConfigError(
            f"cannot distil a {run.family} checkpoint: a student learns a DDPM's or a flow model's few-step path "
            f"({', '.join(DISTILLABLE)}); a {run.family} already samples in {int(run.model.nfe_per_image())} pass(es) or has no such path"
        )
    return run


def student_config(teacher_run, steps: int, method: str, substeps: int | None) -> dict:
    """The student's model config: the teacher's UNet and process, and its record."""
    t = teacher_run.model.config
    fam = teacher_run.family
    unet = {k: getattr(t, k) for k in ("image_size", "channels", "num_classes", "base_channels", "channel_mults", "blocks_per_level", "attention", "dropout")}
    proc = {"num_timesteps": t.num_timesteps, "schedule": t.schedule} if fam == "ddpm" else {"time_scale": t.time_scale, "grid_rho": t.grid_rho}
    return {
        **unet, **proc, "process": DISTILLABLE[fam], "steps": steps, "method": method,
        "teacher": teacher_run.name, "teacher_family": fam, "teacher_sha256": teacher_run.weights_hash,
        "teacher_guidance": float(t.default_guidance), "teacher_sampler": SUB_SAMPLER[fam],
        "teacher_substeps": int(substeps) if substeps is not None else max(2, math.ceil(t.default_steps / steps)),
    }  # fmt: skip


def _check_resume(out: Path, teacher_run, steps: int) -> None:
    saved = ck.read_config(out)["model_config"]
    if saved.get("teacher_sha256") != teacher_run.weights_hash:
        raise CheckpointError(f"{out} was distilled from other teacher weights than {teacher_run.run_dir}'s (SHA-256 differs); resume with its own teacher")
    if saved.get("steps") != steps:
        raise ConfigError(f"{out} distils to {saved.get('steps')} steps, not {steps}; resume with --steps {saved.get('steps')}")


def distill(
    checkpoint: str | os.PathLike,
    *,
    steps: int,
    out: str | os.PathLike,
    minutes: float | None = None,
    train_steps: int | None = None,
    method: str = "progressive",
    teacher_substeps: int | None = None,
    batch_size: int = 64,
    lr: float | None = None,
    seed: int = 0,
    device: str = "auto",
    resume: bool = False,
    callback: Callable | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Distil the DDPM or flow run ``checkpoint`` into a ``steps``-step student in the run folder ``out``.

    Budget: ``minutes`` of wall-clock time and / or ``train_steps`` optimisation steps. The student
    trains on the teacher's own training data (its recorded DataSpec), starts from its weights, and
    learns its sampler at its default guidance. Returns ``out``.
    """
    from .training import train

    check_student_steps(steps)
    if method not in METHODS:
        raise ConfigError(f"unknown distillation method {method!r}; choose one of {', '.join(METHODS)}")
    if minutes is None and train_steps is None:
        raise ConfigError("give a distillation budget: minutes or training steps")
    teacher_run = load_teacher(checkpoint, device)
    out = Path(out).expanduser()
    if resume:
        _check_resume(out, teacher_run, steps)
    cfg = student_config(teacher_run, steps, method, teacher_substeps)
    dataset = load_spec(teacher_run.data_spec)

    def prepare(student, fresh: bool) -> None:
        c = student.config  # on a resume, the saved config: the teacher runs as it did
        student.attach_teacher(TeacherSolver(teacher_run.model, c.teacher_guidance, c.teacher_sampler))
        if fresh:  # start from the teacher's sampling weights (a resume restores the student's own)
            ema = teacher_run.model.unet_ema.state_dict()
            student.unet.load_state_dict(ema)
            student.unet_ema.load_state_dict(ema)

    out = train("distilled", dataset, out=out, steps=train_steps, minutes=minutes, model_config=cfg,
                train_config=TrainConfig(batch_size=batch_size, lr=lr), seed=seed, device=device, resume=resume,
                callback=callback, cancel=cancel, prepare=prepare)  # fmt: skip
    write_card(out, teacher_run)
    return out


def write_card(out: Path, teacher_run) -> None:
    """MODEL_CARD.md of a student: what it is, and its teacher (a student is only as good as it)."""
    saved = ck.read_config(out)
    c = saved["model_config"]
    text = (
        f"# Distilled {c['steps']}-step student of {c['teacher']}\n\n"
        f"- Teacher: `{c['teacher']}`, a {c['teacher_family']} checkpoint (weights SHA-256 `{c['teacher_sha256']}`), "
        f"sampled with {c['teacher_sampler']} at guidance {c['teacher_guidance']:g}, {c['teacher_substeps']} teacher steps per student step.\n"
        f"- Student: {c['steps']} network pass(es) per image, the teacher's guidance built in; {c['method']} distillation, "
        f"{saved.get('step', 0)} steps, batch {saved['train_config']['batch_size']}, seed {saved.get('seed', 0)}.\n"
        f"- Data: {saved.get('dataset_name', '?')} (the teacher's training data).\n"
        f"- Re-make: `python -m gda_core distill --checkpoint {_shown(teacher_run.run_dir)} --steps {c['steps']} --method {c['method']} "
        f"--train-steps {saved.get('step', 0)} --out {_shown(out)}`\n"
    )  # fmt: skip
    atomic_write_text(out / CARD, text)


def _shown(path: str | os.PathLike) -> str:
    """A path as a card shows it: relative to the working folder when under it (a shipped card then reads
    the same on every clone), else as given."""
    p = Path(path).resolve()
    return str(p.relative_to(Path.cwd().resolve())) if p.is_relative_to(Path.cwd().resolve()) else str(path)


def find_teacher(student_run, *roots: str | os.PathLike) -> Path | None:
    """The student's teacher among the run folders under ``roots`` (default: the runs folder) and the
    shipped checkpoints: the folder its record names, holding the weights of the recorded SHA-256."""
    c = student_run.model.config
    for info in ck.list_runs(*roots):
        if info.path.name == c.teacher and info.family == c.teacher_family and ck.file_sha256(info.path / ck.WEIGHTS) == c.teacher_sha256:
            return info.path
    return None
