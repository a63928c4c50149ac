"""Latent diffusion (ldm): config checks, the phase switch, the latent-scaling identity, the autoencoder's
own checkpoint with its held-out reconstruction report, save/load and resume across the switch."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from gda_core import checkpoints as ck
from gda_core.data import load_dataset
from gda_core.errors import ConfigError
from gda_core.models import TrainConfig, build_model
from gda_core.models.ldm import LDM, LDMConfig
from gda_core.schedulers import NoiseSchedule, sample_loop
from gda_core.training import train

from .test_models import TINY

# Held-out reconstruction bound after AE_STEPS autoencoder steps (batch 32, default autoencoder) on 16 px
# digits (359 test images). Measured with seeds 0 / 1 / 2: MSE 0.0015 / 0.0010 / 0.0011 (PSNR 28.4 / 30.5 /
# 30.0 dB), while predicting every image by the mean image scores MSE 0.058. The bound leaves 3x margin.
AE_STEPS = 150
RECON_MSE_BOUND = 0.005


def tiny(**kw) -> LDM:
    return build_model("ldm", **{**TINY["ldm"], "image_size": 16, "channels": 1, "num_classes": 3, **kw})  # type: ignore[return-value]


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, p) for a, p in zip(before, module.parameters(), strict=True))


def test_config_latent_size_and_validation():
    # Automatic downsampling: 16 px -> 8x8 latents, 32 -> 8x8, 64 -> 16x16; explicit values are kept.
    for size, f in ((8, 2), (16, 2), (28, 2), (32, 4), (48, 4), (64, 4)):
        assert LDMConfig(image_size=size).factor == f
    assert LDMConfig(image_size=64, downsample=2).latent_size == 32
    m = tiny(image_size=32, channels=3, num_classes=2, latent_channels=3)
    assert m.latent_shape() == (3, 8, 8) and m.initial_latents([0, 1]).shape == (2, 3, 8, 8)
    bad = [
        ({"downsample": 3}, "downsample must be 2 or 4"),
        ({"image_size": 12, "downsample": 4}, r"latent size 3 .* must be divisible by 2"),
        ({"image_size": 24, "downsample": 4, "channel_mults": [1, 2, 2]}, r"latent size 6 .* divisible by 4"),
        ({"recon_loss": "l2"}, "recon_loss must be one of l1, mse"),
        ({"latent_clip": 0.0}, "latent_clip must be a positive number"),
        ({"kl_weight": -1e-6}, "kl_weight must be >= 0"),
        ({"ae_steps": -1}, "ae_steps must be >= 0"),
        ({"latent_channels": 0}, "latent_channels must be >= 1"),
        ({"channel_mults": [1, 0]}, "channel_mults must be positive"),
        ({"num_timesteps": 20_000}, "num_timesteps must be at most 10000"),
        # A linear schedule over 100 steps ends with signal left (SNR 0.57, x latent_clip^2): no pure-noise start.
        ({"schedule": "linear", "num_timesteps": 100}, r"latent_clip 4.0 is too large for 100 linear timesteps"),
    ]
    for kw, msg in bad:
        with pytest.raises(ConfigError, match=msg):
            build_model("ldm", **kw)
    # JSON lists (CLI --set, config.json) become the tuple the frozen config holds.
    assert LDMConfig.from_dict({"channel_mults": [1, 2]}).channel_mults == (1, 2)


def test_latent_scaling_is_the_unit_variance_diffusion():
    """The identity the family rests on: DDIM (eta 1) and DPM-Solver++ run by the shared sampler on y = z / c
    with the SNR x c^2 schedule give c x the result of the same samplers on z with the base schedule.
    Checked with the exact noise predictor of Gaussian data z ~ N(0, v) (eps* = s x_t / (a^2 v + s^2)), with v
    small so that the base run's clip to [-1, 1] never binds, on the same initial noise and eta noise."""
    c, v, steps = 4.0, 0.04, 12
    base = NoiseSchedule(1000, "cosine")
    model = tiny(latent_clip=c, num_timesteps=1000)
    shifted = model.schedule
    ab_base, ab_shift = base.alphas_cumprod, shifted.alphas_cumprod

    def exact_eps(ab: torch.Tensor, var: float):
        def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            a2 = ab[t].float().view(-1, 1, 1, 1)
            return (1 - a2).sqrt() * x / (a2 * var + 1 - a2)

        return eps

    t_top = base.timesteps(steps)[0]
    z = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    # The two processes differ by the factor k_t = s'_t / s_t at each t (k ~ 1 at the top).
    k_top = float(((1 - ab_shift[t_top]) / (1 - ab_base[t_top])).sqrt())
    for sampler, eta in (("ddim", 0.0), ("ddim", 1.0), ("dpmpp", 0.0)):
        gens = [torch.Generator().manual_seed(i) for i in range(3)]
        x = sample_loop(exact_eps(ab_base, v), z.clone(), base, steps=steps, sampler=sampler, eta=eta, generators=gens)
        gens = [torch.Generator().manual_seed(i) for i in range(3)]
        y = sample_loop(exact_eps(ab_shift, v / c**2), z * k_top, shifted, steps=steps, sampler=sampler, eta=eta, generators=gens)
        assert x.abs().max() < 1, "the base run must not clip for this comparison"
        assert torch.allclose(c * y, x, atol=1e-4), (sampler, eta, (c * y - x).abs().max())


def test_phase_switch_freezes_autoencoder_and_sets_scale(tmp_path):
    torch.manual_seed(0)
    m = tiny(ae_steps=2)
    opts = m.configure_optimizers(TrainConfig())
    assert set(opts) == {"ae", "unet"}
    x, y = torch.rand(16, 1, 16, 16), torch.randint(0, 3, (16,))
    ae0, unet0 = _params(m.autoencoder), _params(m.unet)
    for step in (0, 1):
        logs = m.train_step(x, y, opts, step=step, amp_dtype=None)
        m.update_ema(0.999)
        assert logs["phase"] == 1 and logs["loss"] == logs["ae_loss"] and {"recon", "kl"} <= set(logs)
    assert m.phase == 1 and float(m.scale_factor) == 1.0 and int(m.ema_updates) == 0
    assert _changed(ae0, m.autoencoder) and not _changed(unet0, m.unet), "phase 1 trains only the autoencoder"

    ae1, unet1 = _params(m.autoencoder), _params(m.unet)
    for step in (2, 3, 4):
        logs = m.train_step(x, y, opts, step=step, amp_dtype=None)
        m.update_ema(0.999)
        assert logs["phase"] == 2 and logs["loss"] == logs["diffusion_loss"] and math.isfinite(logs["loss"])
    assert m.phase == 2 and int(m.ema_updates) == 3
    assert not _changed(ae1, m.autoencoder), "the autoencoder is frozen in phase 2"
    assert all(not p.requires_grad for p in m.autoencoder.parameters())
    assert _changed(unet1, m.unet) and _changed(unet1, m.unet_ema)
    # scale_factor = 1 / std of the latents: the scaled latents of a batch have unit variance.
    with torch.no_grad():
        mean, logvar = m.encode_stats(x)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
    assert float(m.scale_factor) != 1.0 and abs(float((z * m.scale_factor).std()) - 1) < 0.1
    # configure_optimizers again (a resumed run builds them before loading) still covers every AE parameter.
    again = m.configure_optimizers(TrainConfig())
    assert sum(p.numel() for g in again["ae"].param_groups for p in g["params"]) == sum(p.numel() for p in m.autoencoder.parameters())
    assert all(not p.requires_grad for p in m.autoencoder.parameters())

    # Save -> load reproduces the phase-2 model exactly, scale factor included.
    m.eval()
    ck.save_weights(tmp_path, m)
    ck.write_config(tmp_path, ck.base_config(m, class_names=["a", "b", "c"]))
    run = ck.load_run(tmp_path, device="cpu")
    assert float(run.model.scale_factor) == float(m.scale_factor) and run.model.phase == 2
    a = m.sample(5, seed=3, steps=4, eta=0.5)
    assert torch.equal(a, run.model.sample(5, seed=3, steps=4, eta=0.5))
    assert torch.allclose(a, m.sample(5, seed=3, steps=4, eta=0.5, batch_size=2), atol=1e-5)
    for sampler in ("ddim", "dpmpp"):
        assert m.sample(2, [0, 2], seed=0, steps=3, sampler=sampler, guidance=1.5).shape == (2, 1, 16, 16)


def test_sampling_before_phase2_and_interface():
    m = tiny().eval()  # never trained: samples come from an untrained latent UNet, but must not fail
    assert m.phase == 1
    out = m.sample(4, seed=0)
    assert out.shape == (4, 1, 16, 16) and out.min() >= 0 and out.max() <= 1
    assert m.nfe_per_image(steps=10, guidance=1.0) == 11 and m.nfe_per_image(steps=10, guidance=2.0) == 21
    with pytest.raises(ConfigError, match="unknown sampler"):
        m.sample(1, steps=2, sampler="euler")
    with pytest.raises(ConfigError, match="guidance must be a finite number >= 0"):
        m.sample(1, steps=2, guidance=-1.0)
    with pytest.raises(ConfigError, match=r"expects images \(N, 1, 16, 16\)"):
        m.reconstruction_report(torch.rand(2, 3, 16, 16))
    assert m.reconstruct(torch.rand(2, 1, 16, 16), torch.tensor([0, 1])).shape == (2, 1, 16, 16)
    # Latent interface. With the UNet's output layer zeroed it predicts eps = 0, so DDIM inversion and
    # decoding are exact inverses and encode -> decode must return the autoencoder's reconstruction:
    # this checks that both undo the same latent scaling (here one that puts the largest scaled latent at 0.9
    # latent_clip, inside the sampler's clip).
    torch.manual_seed(0)
    x, labels = torch.rand(4, 1, 16, 16), torch.tensor([0, 2, 1, 1])
    with torch.inference_mode():
        m.unet_ema.out[-1].weight.zero_()
        m.unet_ema.out[-1].bias.zero_()
        m.scale_factor.fill_(0.9 * m.config.latent_clip / float(m.encode_stats(x)[0].abs().max()))
        assert float(m.scale_factor) > 1.5  # an untrained encoder's means are small
        z = m.encode(x, labels, steps=20)
        assert z.shape == (4, *m.latent_shape())
        assert (m.decode(z, labels, steps=20, guidance=1.0) - m.reconstruct(x)).abs().max() < 1e-4
    # decode(initial_latents(seeds)) is what sample() draws for those seeds (eta 0), with a non-trivial UNet.
    with torch.no_grad():
        for p in m.unet_ema.parameters():
            p.add_(0.02 * torch.randn_like(p))
    with torch.inference_mode():
        a = m.decode(m.initial_latents([5, 6], temperature=0.8), torch.tensor([1, 2]), steps=4, sampler="dpmpp")
    assert torch.allclose(a, m.sample(2, [1, 2], seed=5, steps=4, sampler="dpmpp", temperature=0.8), atol=1e-6)


def test_scale_factor_pooled_over_processes(tmp_path):
    """With torch.distributed running, the scale factor is the std over all processes' latents (here one
    gloo process: the same value as without)."""
    torch.manual_seed(0)
    x = torch.rand(8, 1, 16, 16)
    a, b = tiny(), tiny()
    b.load_state_dict(a.state_dict())
    torch.manual_seed(1)
    a.start_phase2(x)
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        torch.manual_seed(1)
        b.start_phase2(x)
    finally:
        torch.distributed.destroy_process_group()
    assert torch.allclose(a.scale_factor, b.scale_factor) and float(a.scale_factor) != 1.0


@pytest.mark.slow
def test_training_run_writes_autoencoder_checkpoint(digits, tmp_path):
    out = train("ldm", digits, out=tmp_path / "run", steps=AE_STEPS + 30, checkpoint_every=50, log_every=10,
                model_config={"ae_steps": AE_STEPS, "base_channels": 16}, train_config=TrainConfig(batch_size=32))  # fmt: skip
    hist = json.loads((out / "history.json").read_text())
    assert [h["phase"] for h in hist if h["step"] <= AE_STEPS] == [1.0] * (AE_STEPS // 10)
    assert all(h["phase"] == 2.0 and "diffusion_loss" in h for h in hist if h["step"] > AE_STEPS + 10)
    ae_dir = out / "autoencoder"
    cfg = json.loads((ae_dir / "config.json").read_text())
    recon = json.loads((ae_dir / "recon.json").read_text())
    # Written once, at the first checkpoint after the autoencoder phase; later checkpoints see unchanged weights.
    assert cfg["step"] == AE_STEPS and recon["step"] == AE_STEPS and cfg["config"]["latent_size"] == 8
    assert recon["split"] == "test" and recon["images"] == len(digits.test_labels)
    assert recon["mse"] < RECON_MSE_BOUND, recon
    assert recon["mse"] < 0.1 * recon["mean_image_mse"], recon  # far better than predicting the mean image
    assert recon["psnr_db"] > 10 * math.log10(1 / RECON_MSE_BOUND)
    # The autoencoder's own weights are the ones inside the full run.
    run = ck.load_run(out, device="cpu")
    ae = load_file(str(ae_dir / "model.safetensors"))
    assert set(ae) == set(run.model.autoencoder.state_dict())
    assert all(torch.equal(ae[k], v) for k, v in run.model.autoencoder.state_dict().items())
    x, _ = digits.tensors("test")
    assert run.model.reconstruction_report(x)["mse"] == pytest.approx(recon["mse"], rel=1e-5)
    # The loaded run samples exactly as the trained in-memory model (rebuilt from the final training state).
    state = ck.load_train_state(out)
    mem = build_model("ldm", **run.config["model_config"])
    mem.load_state_dict(state["model"])
    mem.eval()
    assert mem.phase == 2 and float(mem.scale_factor) != 1.0
    assert torch.equal(mem.sample(6, seed=5, steps=5), run.model.sample(6, seed=5, steps=5))


def test_resume_across_the_phase_switch(digits, tmp_path):
    small = load_dataset("digits", per_class=10)
    kw = dict(model_config={**TINY["ldm"], "ae_steps": 6}, train_config=TrainConfig(batch_size=8), seed=1, log_every=2)
    ref = train("ldm", small, out=tmp_path / "ref", steps=12, **kw)
    # Stopped before the switch, resumed across it; and stopped after it, resumed.
    train("ldm", small, out=tmp_path / "a", steps=4, **kw)
    train("ldm", small, out=tmp_path / "a", steps=12, resume=True, **kw)
    train("ldm", small, out=tmp_path / "b", steps=9, **kw)
    assert json.loads((tmp_path / "b" / "autoencoder" / "config.json").read_text())["step"] == 9
    train("ldm", small, out=tmp_path / "b", steps=12, resume=True, **kw)
    want = ck.load_run(ref, device="cpu").model.state_dict()
    for name in ("a", "b"):
        got = ck.load_run(tmp_path / name, device="cpu").model.state_dict()
        assert all(torch.allclose(got[k].float(), want[k].float(), atol=1e-5) for k in want), name
        assert (tmp_path / name / "autoencoder" / "recon.json").is_file()
    assert float(want["scale_factor"]) != 1.0 and bool(want["phase2_started"]) and int(want["ema_updates"]) == 6
