"""StyleGAN2 family: truncation toward the class mean, style mixing, R1, DiffAugment, and a short real run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gda_core import checkpoints as ck
from gda_core import latent
from gda_core.data import load_dataset
from gda_core.errors import ConfigError
from gda_core.models import TrainConfig, build_model
from gda_core.models.stylegan2 import ModulatedConv2d, class_spread_penalty, diff_augment, minibatch_stddev, resolution_plan
from gda_core.training import train

from .test_models import TINY


def _model(**kw):
    torch.manual_seed(0)
    m = build_model("stylegan2", **{**TINY["stylegan2"], "image_size": 16, "channels": 1, "num_classes": 3, **kw})
    with torch.no_grad():  # away from init (noise strengths start at 0, styles at 1) so every part matters
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m.eval()


def test_resolution_plan_and_config_validation():
    assert resolution_plan(8) == (4, 1) and resolution_plan(16) == (4, 2) and resolution_plan(64) == (4, 4)
    assert resolution_plan(28) == (7, 2) and resolution_plan(12) == (6, 1) and resolution_plan(100) == (25, 2)
    with pytest.raises(ConfigError, match="unknown DiffAugment 'flip'"):
        build_model("stylegan2", diffaug="translation,flip")
    with pytest.raises(ConfigError, match="r1_gamma"):
        build_model("stylegan2", r1_gamma=-1.0)
    with pytest.raises(ConfigError, match="diversity_weight"):
        build_model("stylegan2", diversity_weight=-0.1)
    with pytest.raises(ConfigError, match="r1_gamma must be a finite"):
        build_model("stylegan2", r1_gamma=float("nan"))
    assert build_model("stylegan2", **TINY["stylegan2"], diffaug="").config.diffaug == ""


def test_truncation_toward_the_class_mean():
    m = _model(mean_w_samples=2000)
    seeds = dict(seed=5)
    at0 = m.sample(4, 1, temperature=0.0, **seeds)
    # psi = 0: every seed of a class gives the same image, the image of that class's mean w.
    assert torch.equal(at0, at0[:1].expand_as(at0))
    mean_img = m._synthesise(m.class_mean_w(torch.tensor([1]))[:, None].expand(-1, m.num_style_layers, -1))
    assert torch.allclose(at0[:1], mean_img, atol=1e-6)
    # ... and the class mean really is the average of many mapped z for that class.
    with torch.no_grad():
        z = torch.randn(4000, m.config.z_dim, generator=torch.Generator().manual_seed(1))
        mc_mean = m.generator_ema.mapping(z, torch.full((4000,), 1)).mean(0)
    assert torch.allclose(m.class_mean_w(torch.tensor([1]))[0], mc_mean, atol=0.1 * mc_mean.abs().mean() + 1e-3)
    # Different classes have different means; psi = 1 is untruncated and varies per seed.
    assert (m.sample(1, 2, temperature=0.0, **seeds) - at0[:1]).abs().mean() > 1e-3
    at1 = m.sample(4, 1, temperature=1.0, **seeds)
    assert (at1[0] - at1[1]).abs().mean() > 1e-3 and (at1 - at0).abs().mean() > 1e-3
    half = m.sample(4, 1, temperature=0.5, **seeds)
    assert (half - at0).abs().mean() < (at1 - at0).abs().mean()
    with pytest.raises(ConfigError, match="temperature must be a finite number"):  # refused by SampleConfig, as in every family
        m.sample(1, 0, temperature=float("nan"))
    with pytest.raises(ConfigError, match="truncation psi"):  # decode (the latent pages) checks psi itself
        m.decode(m.initial_latents([0]), torch.tensor([0]), temperature=float("nan"))


def test_class_mean_cache_is_invalidated_when_weights_change(tmp_path):
    m = _model()
    lab = torch.tensor([0])
    before = m.class_mean_w(lab).clone()
    assert torch.equal(m.class_mean_w(lab), before)  # cached and deterministic
    # An EMA update (what the trainer does after every step) changes the mapping: the mean must follow.
    with torch.no_grad():
        for p in m.generator.mapping.parameters():
            p.add_(0.5)
    m.update_ema(0.5)
    after = m.class_mean_w(lab)
    assert not torch.allclose(after, before)
    fresh = build_model("stylegan2", **m.config.to_dict())
    fresh.load_state_dict(m.state_dict())
    assert torch.allclose(fresh.class_mean_w(lab), after, atol=1e-6)
    # Loading other weights into an existing model drops its cache too.
    other = _model()
    other.class_mean_w(lab)
    other.load_state_dict(m.state_dict())
    assert torch.allclose(other.class_mean_w(lab), after, atol=1e-6)


def test_style_mixing_ends_and_grid():
    m = _model()
    za, zb = m.initial_latents([1, 2]), m.initial_latents([3, 4])
    labels = torch.tensor([0, 2])
    n = m.num_style_layers
    assert n == 6  # 16 px: 4, 8, 16 px, two styles each
    a, b = m.decode(za, labels), m.decode(zb, labels)
    with torch.inference_mode():
        assert torch.equal(m.style_mix(za, zb, labels, 0), b)
        assert torch.equal(m.style_mix(za, zb, labels, n), a)
        mid = m.style_mix(za, zb, labels, n // 2, temperature=0.7)
    assert (mid - a).abs().mean() > 1e-4 and (mid - b).abs().mean() > 1e-4
    for bad in (-1, n + 1, 1.5, True):
        with pytest.raises(ConfigError, match="crossover"):
            m.style_mix(za, zb, labels, bad)
    grid = latent.style_mixing_grid(m, 1, [1, 2, 3], [4, 5], 2, temperature=0.8)
    assert grid.shape == (3 * 17 + 1, 4 * 17 + 1, 1) and grid.dtype == np.uint8
    assert (grid[1:17, 1:17] == 255).all(), "top-left corner is blank"
    tops = latent.style_mixing_grid(m, 1, [1, 2, 3], [4, 5], m.num_style_layers, temperature=0.8)
    # Crossover = all layers: every cell equals the A image at the top of its column.
    np.testing.assert_array_equal(tops[18:34, 18:], tops[1:17, 18:])
    with pytest.raises(ConfigError, match="no per-layer styles"):
        latent.style_mixing_grid(build_model("vae", **TINY["vae"]), 0, [0], [1], 1)
    np.testing.assert_array_equal(latent.style_mixing_grid(m, 1, [1], [4], np.int64(2)), latent.style_mixing_grid(m, 1, [1], [4], 2))
    with pytest.raises(ConfigError, match="crossover must be an integer"):
        latent.style_mixing_grid(m, 1, [1], [4], 1.5)
    with pytest.raises(ConfigError, match="1..16 seeds"):
        latent.style_mixing_grid(m, 0, [], [1], 1)


def test_temperature_reaches_decode_through_the_latent_helpers():
    m = _model()
    f0 = latent.interpolate_seeds(m, 0, 1, 2, frames=3, temperature=0.0)
    f1 = latent.interpolate_seeds(m, 0, 1, 2, frames=3, temperature=1.0)
    assert np.array_equal(f0[0], f0[-1]) and not np.array_equal(f1[0], f1[-1])


def test_grouped_conv_equals_activation_scaling_and_noise_modes():
    torch.manual_seed(0)
    conv = ModulatedConv2d(5, 7, 3, 16, up=True)
    x, w = torch.randn(3, 5, 6, 6), torch.randn(3, 16)
    assert torch.allclose(conv(x, w, fused=True), conv(x, w, fused=False), atol=1e-5)
    m = _model()
    z, y = torch.randn(2, m.config.z_dim), torch.tensor([0, 1])
    with torch.no_grad():
        ws = m.generator.ws(z, y)
        r1, r2 = (m.generator.synthesis(ws, noise="random") for _ in range(2))
        c1, c2 = (m.generator.synthesis(ws, noise="const", fused=True) for _ in range(2))
    assert (r1 - r2).abs().mean() > 1e-4, "training noise is random"
    assert torch.equal(c1, c2), "sampling noise is fixed"
    # The whole synthesis network agrees between the grouped-conv (GPU sampling) and activation-scaling forms.
    with torch.no_grad():
        assert torch.allclose(c1, m.generator.synthesis(ws, noise="const", fused=False), atol=1e-5)


def test_r1_penalty_is_finite_and_trains_d():
    m = _model().train()
    x, y = torch.rand(6, 1, 16, 16) * 2 - 1, torch.tensor([0, 1, 2, 0, 1, 2])
    logits, r1 = m.r1_penalty(x, y)
    assert logits.shape == (6,) and torch.isfinite(r1) and r1 > 0
    r1.backward()
    grads = [p.grad for p in m.discriminator.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    opt = m.configure_optimizers(TrainConfig())
    assert "r1" in m.train_step(x, y, opt, step=0, amp_dtype=None)
    assert "r1" not in m.train_step(x, y, opt, step=1, amp_dtype=None)
    # Minibatch stddev works for batch sizes the group does not divide.
    assert minibatch_stddev(torch.randn(5, 3, 4, 4), 4).shape == (5, 4, 4, 4)


def test_r1_and_spread_terms_change_the_updates():
    """The regularisers are really in the losses that are stepped, not only logged."""
    # Each class holds a black and a white image: the real spread is the largest possible, so generated
    # images are less varied than the real ones and the spread penalty is active.
    x, y = torch.tensor([0.0, 1.0] * 3).view(6, 1, 1, 1).expand(6, 1, 16, 16), torch.tensor([0, 0, 1, 1, 2, 2])

    def after(step: int, **kw) -> tuple[torch.Tensor, torch.Tensor]:
        m = _model(**kw).train()
        torch.manual_seed(1)
        logs = m.train_step(x, y, m.configure_optimizers(TrainConfig()), step=step, amp_dtype=None)
        return (
            torch.cat([p.flatten() for p in m.discriminator.parameters()]),
            torch.cat([p.flatten() for p in m.generator.parameters()]),
            logs,
        )

    d0, _, _ = after(0, r1_gamma=0.0)
    d1, _, _ = after(0, r1_gamma=10.0)
    d2, _, _ = after(1, r1_gamma=10.0)  # not an R1 step
    d3, _, _ = after(1, r1_gamma=0.0)
    assert not torch.allclose(d0, d1) and torch.equal(d2, d3)
    _, g0, _ = after(1, diversity_weight=0.0)
    _, g1, logs = after(1, diversity_weight=5.0)
    assert logs["spread"] > 0 and not torch.allclose(g0, g1)


def test_class_spread_penalty_pushes_collapsed_classes_apart_and_switches_off():
    y = torch.tensor([0, 0, 1])
    real = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [5.0, 5.0, 5.0, 5.0]]).view(3, 1, 2, 2)
    fake = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25], [9.0, 9.0, 9.0, 9.0]]).view(3, 1, 2, 2).requires_grad_(True)
    # One same-class pair (0, 1): generated spread 1 (L1 over 4 pixels) vs real 4 -> 1 - 1/4.
    pen = class_spread_penalty(fake, real, y)
    assert torch.allclose(pen, torch.tensor(0.75))
    pen.backward()
    assert fake.grad[2].abs().sum() == 0, "images of other classes are not compared"
    assert (fake.grad[0] > 0).all() and (fake.grad[1] < 0).all(), "descending the penalty moves the pair apart"
    # As varied as the real images (or more): no penalty, no push.
    assert class_spread_penalty(real * 2, real, y) == 0
    assert class_spread_penalty(fake, real, torch.tensor([0, 1, 2])) is None
    m = _model().train()
    logs = m.train_step(torch.rand(4, 1, 16, 16), torch.tensor([0, 0, 1, 1]), m.configure_optimizers(TrainConfig()), step=1, amp_dtype=None)
    assert 0 <= logs["spread"] <= 1
    off = _model(diversity_weight=0.0).train()
    assert "spread" not in off.train_step(
        torch.rand(4, 1, 16, 16), torch.tensor([0, 0, 1, 1]), off.configure_optimizers(TrainConfig()), step=1, amp_dtype=None
    )


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout", ""])
def test_diffaugment_keeps_shapes_and_gradients(policy):
    torch.manual_seed(0)
    x = (torch.rand(8, 3, 12, 12) * 2 - 1).requires_grad_(True)
    out = diff_augment(x, policy)
    assert out.shape == x.shape
    out.square().sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    if policy == "":
        assert torch.equal(out, x)
    else:
        assert not torch.equal(out, x)
    if policy == "translation":
        # A shifted image keeps a centred dot whole (shifts are at most 1/8 of the size).
        dot = torch.zeros(8, 1, 16, 16)
        dot[:, :, 8, 8] = 1.0
        moved = diff_augment(dot, policy)
        assert torch.equal(moved.sum(dim=(1, 2, 3)), torch.ones(8)) and not torch.equal(moved, dot)


def test_short_run_on_digits_is_loadable_and_class_conditional(tmp_path):
    digits = load_dataset("digits", per_class=40)
    out = train(
        "stylegan2",
        digits,
        out=tmp_path / "sg2",
        steps=100,
        model_config=TINY["stylegan2"],
        train_config=TrainConfig(batch_size=16),
        log_every=10,
    )
    hist = json.loads((out / "history.json").read_text())
    assert any("r1" in h and np.isfinite(h["r1"]) for h in hist)
    # An adversarial loss need not fall; D must separate real from fake on average.
    assert np.mean([h["d_real"] - h["d_fake"] for h in hist[-4:]]) > 0, hist[-4:]
    run = ck.load_run(out, device="cpu")
    assert run.family == "stylegan2" and run.model.num_style_layers == 6
    same_seeds = torch.stack([run.model.sample(4, c, seed=0) for c in range(10)])  # (class, seed, C, H, W)
    assert same_seeds.shape == (10, 4, 1, 16, 16)
    per_class = same_seeds.mean(1)
    diffs = [(per_class[a] - per_class[b]).abs().mean() for a in range(10) for b in range(a + 1, 10)]
    assert min(diffs) > 1e-3, "the same seeds must give different images for different classes"


def test_temperature_help_says_truncation_for_stylegan2_only():
    from gda_core.models import CONTROL_HELP, get_model_class

    assert "truncation" in get_model_class("stylegan2").control_help("temperature")
    assert get_model_class("gan").control_help("temperature") == CONTROL_HELP["temperature"]
    assert get_model_class("ddpm").control_help("steps") == CONTROL_HELP["steps"]
