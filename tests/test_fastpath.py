"""Fast paths give the plain path's images: channels_last, sub-pixel upsampling, torch.compile, autocast.

Tolerances (images in [0, 1]): float32 execution changes (channels_last, the sub-pixel form of
upsample + conv, compiled kernels) only reorder float sums, so samples agree to 1e-4 after a few
sampling steps; bf16 autocast (CUDA, and CPUs with native bf16 under fast=True) to a mean of 0.02.
"""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path

import pytest
import torch

from gda_core import fastpath
from gda_core.checkpoints import load_run
from gda_core.errors import ConfigError
from gda_core.models import build_model
from gda_core.models.layers import UpsampleConv
from gda_core.sampling import generate

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "vae": {"latent_dim": 8, "base_channels": 8, "class_dim": 4},
    "gan": {"latent_dim": 8, "g_channels": 16, "d_channels": 16, "class_dim": 4},
    "ddpm": {"base_channels": 8, "channel_mults": (1, 2), "num_timesteps": 50, "default_steps": 4},
}
ATOL = 1e-4


def tiny(family: str, **kw):
    torch.manual_seed(0)
    m = build_model(family, **{**TINY[family], "image_size": 16, "channels": 1, "num_classes": 3, **kw})
    with torch.no_grad():  # away from init (zero-initialised layers, e.g. RealNVP's, would hide errors)
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("size", [(4, 4), (7, 9), (1, 1)])
def test_upsample_conv_matches_upsample_then_conv(fmt, size):
    torch.manual_seed(0)
    layer = UpsampleConv(6, 10).to(memory_format=fmt)
    x = torch.randn(3, 6, *size).contiguous(memory_format=fmt).requires_grad_()
    fast, ref = layer(x), layer.reference(x)
    assert fast.shape == ref.shape == (3, 10, 2 * size[0], 2 * size[1])
    if size != (1, 1):  # a 1x1 map is both layouts at once
        assert fast.is_contiguous(memory_format=fmt), "the output keeps the input's memory format"
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(ref)
    params = [x, layer[1].weight, layer[1].bias]
    for a, b in zip(torch.autograd.grad(fast, params, g), torch.autograd.grad(ref, params, g), strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_unet_state_dict_layout_unchanged_and_shipped_checkpoint_loads():
    run = load_run(REPO / "checkpoints" / "ddpm-digits", device="cpu")
    from safetensors.torch import load_file

    saved = load_file(str(REPO / "checkpoints" / "ddpm-digits" / "model.safetensors"))
    live = run.model.state_dict()
    assert sorted(saved) == sorted(live)
    assert all(tuple(saved[k].shape) == tuple(live[k].shape) for k in saved)
    # The upsampling convs keep their nn.Sequential(Upsample, Conv2d) keys ("up.N.1.weight").
    ups = [m for m in run.model.unet.up if isinstance(m, UpsampleConv)]
    assert ups and all(k.endswith((".1.weight", ".1.bias")) for k in saved if k.startswith("unet.up.2."))


@pytest.mark.parametrize("family", sorted(TINY))
def test_channels_last_matches_plain_and_restore_is_exact(family):
    m = tiny(family)
    labels = [0, 1, 2, 0, 1]
    plain = m.sample(5, labels, seed=3)
    plan = fastpath.accelerate(m, compile=False)
    assert plan.channels_last and not plan.compile and plan.dtype is None  # CPU: no autocast
    assert any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in m.parameters())
    fast = m.sample(5, labels, seed=3)
    torch.testing.assert_close(fast, plain, atol=ATOL, rtol=0)
    assert fastpath.accelerate(m, compile=False) is plan, "same settings: nothing re-applied"
    # state_dict values are untouched by the layout change.
    fastpath.restore(m)
    assert fastpath.current_plan(m) is None
    assert all(p.is_contiguous() for p in m.parameters())
    assert torch.equal(m.sample(5, labels, seed=3), plain), "restore gives the plain path back exactly"


def test_ddpm_fast_sampling_all_samplers_and_guidance():
    m = tiny("ddpm")
    for sampler, guidance in (("ddim", 1.0), ("ddim", 2.0), ("dpmpp", 1.5)):
        plain = m.sample(4, seed=0, steps=5, sampler=sampler, guidance=guidance)
        with fastpath.fast_sampling(m, compile=False):
            fast = m.sample(4, seed=0, steps=5, sampler=sampler, guidance=guidance)
        fastpath.restore(m)
        torch.testing.assert_close(fast, plain, atol=ATOL, rtol=0)


def test_training_gradients_unchanged_by_upsample_form():
    """The DDPM loss and its gradients with the sub-pixel upsampling equal the plain upsample + conv ones.
    (Gradients, not post-AdamW weights: Adam's first step divides by |g|, amplifying rounding.)"""
    a = tiny("ddpm")
    b = tiny("ddpm")
    a.train()
    b.train()
    for mod in b.modules():  # the reference computation for every upsampling conv of b
        if isinstance(mod, UpsampleConv):
            mod.forward = mod.reference
    x, y = torch.rand(4, 1, 16, 16), torch.tensor([0, 1, 2, 0])
    grads = []
    for m in (a, b):
        torch.manual_seed(5)  # same timesteps, noise and label dropout
        loss = m.loss(x, y)
        grads.append((loss.item(), torch.autograd.grad(loss, list(m.unet.parameters()))))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    scale = max(float(g.abs().max()) for g in grads[1][1])  # rounding noise is relative to the largest gradients
    for ga, gb in zip(grads[0][1], grads[1][1], strict=True):
        torch.testing.assert_close(ga, gb, atol=1e-5 * scale, rtol=1e-3)


def test_generate_fast_flag_on_cpu():
    m = tiny("ddpm")
    plain = generate(m, 6, seed=1, steps=4, fast=False)
    assert plain.settings["fast"] is False and fastpath.current_plan(m) is None
    default = generate(m, 6, seed=1, steps=4)
    assert default.settings["fast"]["channels_last"] and not default.settings["fast"]["compile"], "CPU default: channels_last, no compile"
    assert default.settings["fast"]["dtype"] is None, "CPU default: float32 on every CPU, so images match the plain path"
    fast = generate(m, 6, seed=1, steps=4, fast=True)
    assert fast.settings["fast"]["channels_last"] and not fast.settings["fast"]["compile"]
    assert any("compile: off on cpu" in n for n in fast.settings["fast"]["notes"])
    assert abs(default.images.astype(int) - plain.images.astype(int)).max() <= 1, "uint8 images equal up to one rounding level"
    if fastpath.cpu_native_bf16():  # fast=True asks for the fastest: bf16 autocast on this CPU
        assert fast.settings["fast"]["dtype"] == "bfloat16"
        assert abs(fast.images.astype(int) - plain.images.astype(int)).mean() < 3, "bf16: a few uint8 levels on average"
    else:
        assert fast.settings["fast"]["dtype"] is None
        assert any("no native bf16" in n for n in fast.settings["fast"]["notes"])
        assert abs(fast.images.astype(int) - plain.images.astype(int)).max() <= 1
    again = generate(m, 6, seed=1, steps=4, fast=False)
    assert (again.images == plain.images).all() and fastpath.current_plan(m) is None


def test_every_registered_family_samples_on_the_fast_path():
    from gda_core.models import list_models
    from tests.test_models import TINY as MODEL_TINY

    for family in list_models():
        torch.manual_seed(0)
        m = build_model(family, **{**MODEL_TINY.get(family, {}), "image_size": 16, "channels": 1, "num_classes": 3}).eval()
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.02 * torch.randn_like(p))
        plain = generate(m, 4, seed=0, steps=2, fast=False)
        fast = generate(m, 4, seed=0, steps=2)  # the default: fast path on CPU
        assert fast.settings["fast"], family
        assert not any("fast path failed" in n for n in fast.notes), (family, fast.notes)
        assert abs(fast.images.astype(int) - plain.images.astype(int)).max() <= 1, family


def test_a_broken_fast_path_falls_back_to_the_plain_path():
    m = tiny("gan")
    plain = generate(m, 4, seed=0, fast=False)
    conv = next(mod for mod in m.generator_ema.modules() if isinstance(mod, torch.nn.Conv2d))

    def needs_nchw(module, args):  # a family that .view()s its weights would fail like this on NHWC weights
        if not module.weight.is_contiguous():
            raise RuntimeError("view size is not compatible with input tensor's size and stride")

    handle = conv.register_forward_pre_hook(needs_nchw)
    try:
        res = generate(m, 4, seed=0, fast=True)
    finally:
        handle.remove()
    assert any("the fast path failed (RuntimeError)" in n for n in res.notes)
    assert res.settings["fast"] is False and fastpath.current_plan(m) is None
    assert (res.images == plain.images).all()


def test_cli_sample_fast_flag(tmp_path, capsys):
    import numpy as np

    from gda_core.cli import main

    ck = str(REPO / "checkpoints" / "gan-digits")
    assert main(["sample", "--checkpoint", ck, "--n", "6", "--fast", "--device", "cpu", "--out", str(tmp_path / "f.npz")]) == 0
    assert main(["sample", "--checkpoint", ck, "--n", "6", "--no-fast", "--device", "cpu", "--out", str(tmp_path / "p.npz")]) == 0
    fast, plain = np.load(tmp_path / "f.npz")["images"], np.load(tmp_path / "p.npz")["images"]
    assert fast.shape == plain.shape == (6, 16, 16, 1)
    if fastpath.cpu_native_bf16():  # --fast runs bf16 autocast on this CPU
        assert np.abs(fast.astype(int) - plain.astype(int)).mean() < 3
    else:
        assert np.abs(fast.astype(int) - plain.astype(int)).max() <= 1
    assert "wrote 6 images" in capsys.readouterr().out


def test_bad_options_are_config_errors_and_leave_the_model_plain():
    m = tiny("vae")
    with pytest.raises(ConfigError, match="dtype must be one of"):
        fastpath.accelerate(m, dtype="int8")
    with pytest.raises(ConfigError, match="compile must be"):
        fastpath.accelerate(m, compile="sometimes")
    with pytest.raises(ConfigError, match="channels_last must be"):
        fastpath.accelerate(m, channels_last="yes")
    assert fastpath.current_plan(m) is None and all(p.is_contiguous() for p in m.parameters())


def _exploding_backend(gm, example_inputs):
    raise RuntimeError("backend exploded on purpose")


def test_compile_failure_falls_back_to_eager_with_one_warning():
    m = tiny("ddpm")
    plain = m.sample(3, seed=0)
    plan = fastpath.accelerate(m, channels_last=False, compile=True, compile_options={"backend": _exploding_backend})
    assert plan.compile
    with pytest.warns(RuntimeWarning, match="torch.compile failed, sampling continues in eager mode") as rec:
        out = m.sample(3, seed=0)
    assert len([w for w in rec if "torch.compile failed" in str(w.message)]) == 1, "one warning, not one per step"
    assert fastpath.compile_failed(m)
    assert torch.equal(out, plain)
    # A backend torch.compile refuses at once: a warning, no compiled forward, no crash.
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        plan = fastpath.accelerate(m, channels_last=False, compile=True, compile_options={"backend": "no-such-backend"})
    assert not plan.compile and torch.equal(m.sample(3, seed=0), plain)


def test_deepcopy_of_an_accelerated_model_is_a_plain_independent_copy():
    import copy

    m = tiny("ddpm")
    plain = m.sample(3, seed=0)
    fastpath.accelerate(m, channels_last=True, compile=True, compile_options={"backend": "eager"})
    dup = copy.deepcopy(m)
    assert fastpath.current_plan(dup) is None and "forward" not in dup.unet_ema.__dict__
    assert all(p.is_contiguous() for p in dup.parameters())
    assert fastpath.current_plan(m) is not None and "forward" in m.unet_ema.__dict__, "the original stays accelerated"
    with torch.no_grad():
        for p in dup.unet_ema.parameters():
            p.mul_(0.5)
    # The copy runs its own (changed) weights, not the original's through a copied closure.
    assert not torch.allclose(dup.sample(3, seed=0), plain, atol=1e-3)
    torch.testing.assert_close(m.sample(3, seed=0), plain, atol=ATOL, rtol=0)


def test_compile_auto_is_off_on_cpu_and_measured_probe_decides():
    m = tiny("gan")
    plan = fastpath.accelerate(m, compile="auto")
    assert not plan.compile and any("off on cpu" in n for n in plan.notes)


@pytest.mark.slow
def test_torch_compile_inductor_matches_eager_on_tiny_ddpm():
    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("no C++ compiler: torch.compile's CPU backend (inductor) cannot build kernels here")
    ok, why = fastpath.compile_available()
    if not ok:
        pytest.skip(why)
    m = tiny("ddpm", base_channels=8, channel_mults=(1,))
    plain = m.sample(4, seed=2, steps=3)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager would not test compile
        plan = fastpath.accelerate(m, channels_last=True, compile=True)
        fast = m.sample(4, seed=2, steps=3)
    assert plan.compile and not fastpath.compile_failed(m)
    torch.testing.assert_close(fast, plain, atol=ATOL, rtol=0)
    assert time.perf_counter() - t < 600, "compiling a tiny UNet should not take 10 minutes"


def test_fastest_dtype_is_bf16_exactly_on_cpus_with_native_bf16():
    m = tiny("vae")
    plan = fastpath.accelerate(m, dtype="fastest")
    assert plan.dtype == (torch.bfloat16 if fastpath.cpu_native_bf16() else None)
    assert fastpath.accelerate(m, dtype="auto").dtype is None, "the default never switches a CPU to bf16"
    fastpath.restore(m)


def test_low_precision_group_norm_takes_either_layout_with_the_same_result():
    from gda_core.models import layers

    gn = layers.group_norm(32)
    assert isinstance(gn, torch.nn.GroupNorm) and set(gn.state_dict()) == {"weight", "bias"}
    with torch.no_grad():
        gn.weight.normal_(1.0, 0.3)
        gn.bias.normal_(0.0, 0.3)
    x = (3 * torch.randn(4, 32, 14, 14) + 1).contiguous(memory_format=torch.channels_last).bfloat16()
    key = (tuple(x.shape), x.dtype, gn.num_groups)
    with torch.inference_mode():
        ref = torch.nn.GroupNorm.forward(gn, x).float()
        layers._GN_NCHW.pop(key, None)
        gn(x)
        assert key in layers._GN_NCHW, "the first low-precision channels_last call times both layouts"
        for nchw in (True, False):
            layers._GN_NCHW[key] = nchw
            out = gn(x)
            assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)
            torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=0)
        plain = x.float().contiguous()
        torch.testing.assert_close(gn(plain), torch.nn.GroupNorm.forward(gn, plain), atol=0, rtol=0)  # float32: untouched
    layers._GN_NCHW.pop(key, None)


def test_bf16_autocast_close_to_fp32_on_cpu():
    # Correct on every CPU (slow where bf16 is emulated); fast=True only picks it where it is native.
    m = tiny("ddpm")
    plain = m.sample(8, seed=0, steps=6, guidance=1.0)
    with fastpath.fast_sampling(m, compile=False, dtype="bf16") as plan:
        fast = m.sample(8, seed=0, steps=6, guidance=1.0)
    assert plan.dtype == torch.bfloat16 and fast.dtype == torch.float32
    assert 0 < (fast - plain).abs().mean() < 0.02, "bf16 sampling drifts from fp32 (or did not run in bf16)"
    fastpath.restore(m)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_bf16_autocast_close_to_fp32_on_cuda():
    m = tiny("ddpm").cuda()
    plain = m.sample(8, seed=0, steps=6, guidance=1.0)
    with fastpath.fast_sampling(m, compile=False, dtype="bf16") as plan:
        fast = m.sample(8, seed=0, steps=6, guidance=1.0)
    assert plan.dtype == torch.bfloat16
    assert (fast - plain).abs().mean() < 0.02


def test_threads_with_different_fast_settings_on_one_shared_model_do_not_see_each_other():
    """The app caches one model for every session; two sessions sampling it at once with different
    "Faster" settings must each get their own images, and the cached model must stay as loaded."""
    import threading

    m = fastpath.mark_shared(tiny("ddpm"))
    kw = dict(seed=0, steps=4, guidance=1.5)
    settings = {"bf16": {"compile": False, "dtype": "bf16"}, "nhwc": {"compile": False}, "plain": {"enabled": False}}
    alone = {}
    for name, options in settings.items():  # each setting on its own, one after the other
        with fastpath.fast_sampling(m, **options):
            alone[name] = m.sample(4, **kw)
    assert torch.equal(alone["plain"], m.sample(4, **kw)) and not torch.equal(alone["bf16"], alone["plain"])

    barrier, seen, errors = threading.Barrier(len(settings)), {}, []

    def session(name: str) -> None:
        try:
            with fastpath.fast_sampling(m, **settings[name]) as plan:
                barrier.wait(timeout=60)  # every block is open at once
                seen[name] = (plan, m.sample(4, **kw))
                barrier.wait(timeout=60)  # ... and stays open until all have sampled
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(name,)) for name in settings]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for name in settings:
        assert torch.equal(seen[name][1], alone[name]), f"the {name} session saw another session's setting"
    assert seen["plain"][0] is None and seen["bf16"][0].dtype == torch.bfloat16 and seen["nhwc"][0].dtype is None
    # The shared model itself never changed, and cannot be changed in place.
    assert fastpath.current_plan(m) is None and all(p.is_contiguous() for p in m.parameters())
    assert fastpath.active_copy(m) is None and torch.equal(m.sample(4, **kw), alone["plain"])
    with pytest.raises(ConfigError, match="shared"):
        fastpath.accelerate(m)


def test_accelerated_copy_is_reused_and_follows_weight_changes():
    m = tiny("gan")
    a, plan = fastpath.accelerated(m, compile=False)
    assert a is not m and plan.channels_last and fastpath.current_plan(m) is None
    assert fastpath.accelerated(m, compile=False)[0] is a, "same model, settings and weights: the same copy"
    assert fastpath.accelerated(m, compile=False, channels_last=False)[0] is not a, "other settings: another copy"
    with torch.no_grad():
        next(m.generator_ema.parameters()).mul_(0.5)
    b, _ = fastpath.accelerated(m, compile=False)
    assert b is not a, "changed weights: a fresh copy"
    with fastpath.fast_sampling(m, compile=False):
        fast = m.sample(3, seed=0)
    torch.testing.assert_close(fast, m.sample(3, seed=0), atol=ATOL, rtol=0)
