"""GPU tests: training steps and sampling on CUDA, bf16 autocast close to fp32, the compiled path correct.

Skipped (with the reason) on machines without a CUDA device; CI has none, so run them by hand on
a GPU machine: ``python -m pytest -m gpu``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gda_core import fastpath
from gda_core.checkpoints import load_run
from gda_core.models import TrainConfig, build_model
from gda_core.sampling import generate

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: GPU tests need torch.cuda.is_available()")]

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "vae": {"latent_dim": 8, "base_channels": 8, "class_dim": 4},
    "gan": {"latent_dim": 8, "g_channels": 16, "d_channels": 16, "class_dim": 4},
    "ddpm": {"base_channels": 16, "channel_mults": (1, 2), "num_timesteps": 100, "default_steps": 6},
}


def tiny(family: str, device: str = "cuda", **kw):
    torch.manual_seed(0)
    m = build_model(family, **{**TINY[family], "image_size": 16, "channels": 1, "num_classes": 3, **kw}).to(device)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


@pytest.mark.parametrize("family", sorted(TINY))
@pytest.mark.parametrize("amp", [None, torch.bfloat16])
def test_training_steps_on_cuda(family, amp):
    if amp is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    m = tiny(family).train()
    opt = m.configure_optimizers(TrainConfig())
    before = [p.detach().clone() for p in m.parameters() if p.requires_grad]
    x = torch.rand(8, 1, 16, 16, device="cuda")
    y = torch.randint(0, 3, (8,), device="cuda")
    for step in range(3):
        logs = m.train_step(x, y, opt, step=step, amp_dtype=amp)
        assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    after = [p.detach() for p in m.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True)), "the optimiser moved the weights"
    assert all(p.device.type == "cuda" for p in m.parameters())


@pytest.mark.parametrize("family", sorted(TINY))
def test_sampling_on_cuda_deterministic_per_seed(family):
    m = tiny(family).eval()
    a = m.sample(6, [0, 1, 2, 0, 1, 2], seed=4)
    assert a.device.type == "cuda" and a.shape == (6, 1, 16, 16)
    assert 0 <= float(a.min()) and float(a.max()) <= 1
    b = m.sample(6, [0, 1, 2, 0, 1, 2], seed=4, batch_size=4)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_cuda_matches_cpu_for_the_same_seed():
    cpu = tiny("ddpm", device="cpu").eval()
    gpu = tiny("ddpm").eval()
    a = cpu.sample(4, seed=1, steps=6, guidance=1.0)
    b = gpu.sample(4, seed=1, steps=6, guidance=1.0).cpu()
    # cuDNN convolutions run in TF32 by default (torch.backends.cudnn.allow_tf32): looser than float32.
    assert (a - b).abs().mean() < 5e-3 and (a - b).abs().max() < 5e-2


@pytest.mark.parametrize("family", sorted(TINY))
def test_bf16_autocast_close_to_fp32(family):
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    m = tiny(family).eval()
    plain = m.sample(8, seed=0)
    with fastpath.fast_sampling(m, compile=False, dtype="bf16") as plan:
        fast = m.sample(8, seed=0)
    fastpath.restore(m)
    assert plan.dtype == torch.bfloat16 and plan.channels_last
    assert fast.dtype == torch.float32
    assert (fast - plain).abs().mean() < 0.02, "bf16 sampling drifts from fp32"


def test_compiled_path_matches_eager():
    ok, why = fastpath.compile_available()
    if not ok:
        pytest.skip(why)
    m = tiny("ddpm").eval()
    plain = m.sample(8, seed=0, guidance=2.0)
    plan = fastpath.accelerate(m, compile=True, dtype=None)
    out = m.sample(8, seed=0, guidance=2.0)
    assert plan.compile and not fastpath.compile_failed(m), "compile fell back to eager"
    # TF32 convolutions (cuDNN's default) in a different layout and fused kernels: 1e-2 on [0, 1].
    torch.testing.assert_close(out, plain, atol=1e-2, rtol=0)
    fastpath.restore(m)
    torch.testing.assert_close(m.sample(8, seed=0, guidance=2.0), plain, atol=1e-5, rtol=0)


def test_generate_defaults_to_fast_path_on_cuda_and_compile_auto_is_measured():
    run = load_run(REPO / "checkpoints" / "ddpm-digits", device="cuda")
    res = generate(run, 16, seed=0, steps=10)
    assert res.settings["fast"] and res.settings["fast"]["dtype"] in ("bfloat16", "float16")
    plain = generate(run, 16, seed=0, steps=10, fast=False)
    assert plain.settings["fast"] is False
    diff = abs(res.images.astype(int) - plain.images.astype(int))
    assert diff.mean() < 5, "bf16 sampling on the shipped checkpoint: a few uint8 levels at most on average"
    full = generate(run, 64, seed=0, steps=10, fast=True)
    notes = full.settings["fast"]["notes"]
    assert any(n.startswith("compile: measured") or n.startswith("compile: skipped") for n in notes), notes


def test_shipped_checkpoints_sample_on_cuda():
    for name in ("vae-digits", "gan-digits", "ddpm-digits"):
        run = load_run(REPO / "checkpoints" / name, device="cuda")
        res = generate(run, 8, seed=0)
        assert res.images.shape[0] == 8 and res.images.dtype.name == "uint8"
