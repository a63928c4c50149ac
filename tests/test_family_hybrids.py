"""The hybrid families (ddgan, vaegan) and few-step distillation (the distilled family).

The interface tests (shape sweep, save -> load, determinism per seed) run for them in
tests/test_models.py through their TINY configs; here: the maths they rest on, that each learns
(class-conditional digits recognised by a classifier that never saw a generated image), the latent
tools on the VAE-GAN, the distill command's refusals, and that a student tracks its teacher at the
same seed more closely than the teacher's own sampler does at the student's step count.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gda_core import checkpoints as ck
from gda_core import latent
from gda_core.cli import main as cli_main
from gda_core.data import load_dataset
from gda_core.errors import CheckpointError, ConfigError
from gda_core.models import TrainConfig
from gda_core.schedulers import NoiseSchedule, initial_noise
from gda_core.training import train

from .test_models import tiny

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"


@pytest.fixture(scope="module")
def digit_classifier():
    """Logistic regression on the digits TEST split: images no generative model trained on."""
    from sklearn.linear_model import LogisticRegression

    ds = load_dataset("digits")
    return LogisticRegression(max_iter=2000, C=0.5).fit(ds.test_images.reshape(len(ds.test_images), -1) / 255.0, ds.test_labels)


def class_accuracy(model, classifier, per_class: int = 10, seed: int = 0) -> float:
    labels = np.repeat(np.arange(10), per_class)
    imgs = model.sample(len(labels), torch.as_tensor(labels), seed=seed)
    u8 = (imgs.permute(0, 2, 3, 1).cpu().numpy() * 255).round()
    return float((classifier.predict(u8.reshape(len(labels), -1) / 255.0) == labels).mean())


# -- DDGAN ----------------------------------------------------------------------------------------


def test_vp_schedule_is_the_ddgan_papers():
    s = NoiseSchedule(4, "vp")
    expected = [math.exp(-0.5 * (k / 4) ** 2 * 19.9 - 0.1 * k / 4) for k in range(1, 5)]
    assert np.allclose(s.alphas_cumprod.numpy(), expected, rtol=1e-9)
    assert float(s.alphas_cumprod[-1]) < 1e-4  # the last level is pure noise
    with pytest.raises(ConfigError, match="beta_min"):
        NoiseSchedule(4, "vp", beta_min=5.0, beta_max=1.0)


@pytest.mark.parametrize("t", [0, 1, 3])
def test_posterior_draws_have_the_forward_marginal(t):
    """x_t ~ q(x_t | x_0) then x_{t-1} ~ q(x_{t-1} | x_t, x_0) must be distributed as q(x_{t-1} | x_0):
    mean sqrt(abar_{t-1}) x_0 and variance 1 - abar_{t-1} (x_0 itself at t = 0); and one forward
    step from q(x_{t-1} | x_0) must give q(x_t | x_0)."""
    s = NoiseSchedule(4, "vp")
    g = torch.Generator().manual_seed(0)
    n = 200_000
    x0 = torch.full((n, 1), 0.7, dtype=torch.float64)
    tt = torch.full((n,), t)
    xt = s.add_noise(x0, torch.randn(n, 1, generator=g, dtype=torch.float64), tt)
    mean, std = s.posterior(x0, xt, tt)
    prev = mean + std * torch.randn(n, 1, generator=g, dtype=torch.float64)
    ab_prev = 1.0 if t == 0 else float(s.alphas_cumprod[t - 1])
    assert abs(float(prev.mean()) - math.sqrt(ab_prev) * 0.7) < 0.01
    assert abs(float(prev.var()) - (1 - ab_prev)) < 0.01
    again = s.add_step_noise(prev, torch.randn(n, 1, generator=g, dtype=torch.float64), tt)
    assert abs(float(again.mean()) - float(xt.mean())) < 0.01 and abs(float(again.var()) - float(xt.var())) < 0.01


def test_ddgan_takes_its_few_steps_each_shown():
    m = tiny("ddgan", image_size=8, channels=1, num_classes=3, denoising_steps=3).eval()
    assert m.nfe_per_image() == 3
    seen = []
    z, gens = initial_noise(m.latent_shape(), [5, 6], "cpu")  # x_T, then the steps' draws, from each image's generator
    out = m.denoise(z, torch.tensor([0, 1]), gens, callback=lambda t, x, x0, prev: seen.append((t, x.shape, x0.shape, prev.shape)))
    assert [s[0] for s in seen] == [2, 1, 0] and out.shape == (2, 1, 8, 8)
    a = m.sample(2, [0, 1], seed=5)
    assert torch.allclose(a, out, atol=1e-6), "sample() is denoise() from the seed's noise"
    with pytest.raises(ConfigError, match="denoising_steps"):
        tiny("ddgan", denoising_steps=9)


@pytest.mark.slow
def test_ddgan_learns_class_conditional_digits(tmp_path, digits, digit_classifier):
    # Two large steps (the paper's choice for its high-resolution sets): measured on digits, 4 steps
    # reach 0.29 after 300 steps, 2 steps 0.85 after 400 and 1.00 after 500.
    cfg = {"base_channels": 16, "channel_mults": (1, 2), "attention": False, "latent_dim": 16, "d_channels": 32, "denoising_steps": 2}
    out = train("ddgan", digits, out=tmp_path / "ddgan", steps=500, model_config=cfg, train_config=TrainConfig(batch_size=32), seed=0)
    model = ck.load_run(out, device="cpu").model
    acc = class_accuracy(model, digit_classifier)
    assert acc >= 0.5, f"only {acc:.2f} of DDGAN samples recognised as the requested digit (chance 0.10)"


# -- VAE-GAN --------------------------------------------------------------------------------------


def test_vaegan_latent_tools_work_as_on_the_vae(small_digits):
    m = tiny("vaegan", image_size=16, channels=1, num_classes=10).eval()
    x = small_digits.train_images[:2]
    frames = latent.interpolate_images(m, x[0], int(small_digits.train_labels[0]), x[1], int(small_digits.train_labels[1]), frames=5)
    assert frames.shape == (5, 16, 16, 1)
    assert latent.has_encoder(m)
    assert latent.traverse(m, 0, 3, dims=[0, 1]).shape == (2, 7, 16, 16, 1)
    z = m.encode(torch.rand(3, 1, 16, 16), torch.tensor([0, 1, 2]))
    assert z.shape == (3, 8)
    logs = m.train_step(torch.rand(4, 1, 16, 16), torch.tensor([0, 1, 2, 3]), m.configure_optimizers(TrainConfig()), step=0, amp_dtype=None)
    assert {"llike", "kl", "pixel", "g_loss", "d_loss"} <= set(logs), "the reconstruction is measured in the critic's features"


@pytest.mark.slow
def test_vaegan_learns_class_conditional_digits(tmp_path, digits, digit_classifier):
    out = train("vaegan", digits, out=tmp_path / "vaegan", steps=300, train_config=TrainConfig(batch_size=32), seed=0)
    model = ck.load_run(out, device="cpu").model
    acc = class_accuracy(model, digit_classifier)
    assert acc >= 0.5, f"only {acc:.2f} of VAE-GAN samples recognised as the requested digit (chance 0.10)"
    x = torch.from_numpy(digits.test_images[:64]).permute(0, 3, 1, 2).float() / 255
    y = torch.as_tensor(digits.test_labels[:64])
    with torch.no_grad():
        rec = model.decode(model.encode(x, y), y)
    # The decoder knows the class, so its class's mean image is what it could draw with no code at all;
    # the encoder must carry more than the label (measured: 0.030 against 0.039 after 300 steps).
    train_x = torch.from_numpy(digits.train_images).permute(0, 3, 1, 2).float() / 255
    class_means = torch.stack([train_x[torch.as_tensor(digits.train_labels) == c].mean(0) for c in range(10)])
    assert float((rec - x).pow(2).mean()) < float((class_means[y] - x).pow(2).mean()), "reconstructions no better than the class's mean image"


# -- distillation ---------------------------------------------------------------------------------


def _cli(args: list[str], capsys) -> tuple[int, str]:
    rc = cli_main(args)
    return rc, capsys.readouterr().err.strip()


def test_distill_refuses_bad_input_with_one_line_and_writes_nothing(tmp_path, capsys):
    teacher = SHIPPED / "ddpm-digits"
    gan = SHIPPED / "gan-digits"
    if not (teacher / ck.WEIGHTS).is_file() or not (gan / ck.WEIGHTS).is_file():
        pytest.skip("needs the shipped ddpm-digits and gan-digits checkpoints")
    out = tmp_path / "student"
    cases = [
        (["--checkpoint", str(gan), "--steps", "2"], "cannot distil a gan checkpoint"),
        (["--checkpoint", str(teacher), "--steps", "0"], "1..4 steps, got 0"),
        (["--checkpoint", str(teacher), "--steps", "5"], "1..4 steps, got 5"),
        (["--checkpoint", str(tmp_path / "nowhere"), "--steps", "2"], "does not exist"),
    ]
    tampered = tmp_path / "tampered"
    shutil.copytree(teacher, tampered, ignore=shutil.ignore_patterns("eval", "*.png", "history.json"))
    cfg = json.loads((tampered / ck.CONFIG).read_text())
    cfg["model_config"]["base_channels"] = 48
    (tampered / ck.CONFIG).write_text(json.dumps(cfg))
    cases.append((["--checkpoint", str(tampered), "--steps", "2"], "has shape"))
    cut = tmp_path / "cut"  # a weights file cut short (an interrupted copy)
    shutil.copytree(teacher, cut, ignore=shutil.ignore_patterns("eval", "*.png", "history.json"))
    (cut / ck.WEIGHTS).write_bytes((teacher / ck.WEIGHTS).read_bytes()[:5000])
    cases.append((["--checkpoint", str(cut), "--steps", "2"], "unreadable safetensors file"))
    cases.append((["--checkpoint", str(teacher), "--steps", "2", "--minutes", "-1"], "minutes"))
    for args, needle in cases:
        rc, err = _cli(["distill", *args, "--train-steps", "2", "--out", str(out)], capsys)
        assert rc == 2 and err.startswith("error: ") and needle in err and len(err.splitlines()) == 1, (args, err)
        assert not out.exists(), f"{args}: something was written"


def test_train_refuses_a_student_without_its_teacher(tmp_path, small_digits):
    with pytest.raises(ConfigError, match="distill"):
        train("distilled", small_digits, out=tmp_path / "s", steps=2)
    assert not (tmp_path / "s").exists()


def _tiny_teacher(tmp_path, ds) -> Path:
    cfg = {"base_channels": 8, "channel_mults": (1, 2), "attention": False, "num_timesteps": 100, "default_steps": 8}
    return train("ddpm", ds, out=tmp_path / "teacher", steps=2, model_config=cfg, train_config=TrainConfig(batch_size=8), seed=0)


def test_distill_resumes_and_refuses_a_changed_teacher(tmp_path, small_digits):
    from gda_core.distill import distill

    teacher = _tiny_teacher(tmp_path, small_digits)
    out = distill(teacher, steps=2, out=tmp_path / "student", train_steps=2, batch_size=8)
    run = ck.load_run(out, device="cpu")
    assert run.family == "distilled" and run.config["model_config"]["teacher"] == "teacher"
    assert run.config["model_config"]["teacher_sha256"] == ck.file_sha256(teacher / ck.WEIGHTS)
    assert run.model.sample(2, seed=0).shape == (2, 1, 16, 16) and run.model.nfe_per_image() == 2
    card = (out / "MODEL_CARD.md").read_text()
    assert "Teacher: `teacher`, a ddpm checkpoint" in card and ck.file_sha256(teacher / ck.WEIGHTS) in card
    assert "distilled from the ddpm checkpoint teacher" in run.model.provenance()
    distill(teacher, steps=2, out=out, train_steps=3, batch_size=8, resume=True)
    assert ck.read_config(out)["step"] == 3
    with pytest.raises(ConfigError, match="distils to 2 steps"):
        distill(teacher, steps=3, out=out, train_steps=4, resume=True)
    state = ck.load_run(teacher).model  # the teacher changes: its weights no longer match the record
    with torch.no_grad():
        next(state.parameters()).add_(0.1)
    ck.save_weights(teacher, state)
    before = (out / ck.WEIGHTS).read_bytes()
    with pytest.raises(CheckpointError, match="other teacher weights"):
        distill(teacher, steps=2, out=out, train_steps=4, resume=True)
    assert (out / ck.WEIGHTS).read_bytes() == before


def _tracking(student, teacher, n: int = 32) -> tuple[float, float]:
    """The student's distance to the teacher's solve, and the best of the teacher's own samplers at its step count."""
    from gda_core.distill import tracking

    t = tracking(student, teacher, n)
    return t["student"], t["teacher_few_best"]


def test_shipped_student_tracks_its_teacher_better_than_the_teachers_own_few_steps():
    students = [p for p in sorted(SHIPPED.glob("distilled-*")) if (p / ck.WEIGHTS).is_file()]
    if not students:
        pytest.skip("no shipped distilled checkpoint")
    for path in students:
        student = ck.load_run(path, device="cpu").model
        teacher = ck.load_run(SHIPPED / student.config.teacher, device="cpu").model
        own, few = _tracking(student, teacher)
        assert own < few, f"{path.name}: student {own:.4f} vs the teacher's best {student.config.steps}-step sampler {few:.4f}"


@pytest.mark.slow
def test_a_short_distillation_beats_the_teachers_own_few_steps(tmp_path):
    """From the shipped digits DDPM: a 2-step student after a short progressive distillation already
    tracks the teacher's 2 x 13-step solve better than DDIM / DPM-Solver++ at 2 steps."""
    from gda_core.distill import distill

    teacher_dir = SHIPPED / "ddpm-digits"
    if not (teacher_dir / ck.WEIGHTS).is_file():
        pytest.skip("needs the shipped ddpm-digits checkpoint")
    out = distill(teacher_dir, steps=2, out=tmp_path / "student", train_steps=40, batch_size=16, seed=0)
    own, few = _tracking(ck.load_run(out, device="cpu").model, ck.load_run(teacher_dir, device="cpu").model, n=16)
    assert own < few, f"student {own:.4f} vs teacher at 2 steps {few:.4f}"
