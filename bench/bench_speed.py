"""Speed against the reference implementation (diffusers), hardware utilisation and slider latency.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_speed --threads 1
    .venv/bin/python -m bench.bench_speed --threads 2 [--device auto] [--compile] [--quick]

All figures of one run are measured side by side in that run, variants interleaved round by round
(so a load change on a shared machine hits every variant alike); each figure is the median over
rounds after a warm-up. Wall-clock time is the headline; the process CPU time is also recorded
(on a machine shared with other jobs it is the steadier of the two).

a. Sampling images/s, batch 64, DDIM 25 steps, at 28x28x1 and 32x32x3: our DDPM (plain path, and
   the fast path that ``generate(fast=True)`` / ``sample --fast`` runs: channels_last, plus bf16
   autocast on CUDA and on CPUs with native bf16) against diffusers' UNet2DModel + DDIMScheduler
   with the same architecture (bench/diffusers_baseline.py; both parameter counts printed, within
   0.1%), without and with the same fast path. Both are class-conditional and make ONE network pass per step: ours
   at guidance 1.0 (our default 2.0 doubles the passes), diffusers with class labels through
   num_class_embeds. A third baseline, "diffusers, example layout", is UNet2DModel in the layout of
   diffusers' train_unconditional example shrunk to our parameter count (reference_unet: 2 ResNet
   layers per level, widths 1:1:2:2:4:4, as many levels as the resolution halves exactly: 3 at 28 px,
   6 at 32 px): same parameters, different FLOPs, so it says what a practitioner's default costs.
b. Training images/s, batch 64: our ``train_step`` (what the trainer runs) against the diffusers
   epsilon objective (DDPMScheduler.add_noise, MSE, AdamW, clipping) at matched parameters. On a
   CPU with native bf16 also both under bf16 autocast: ours as the trainer runs the DDPM there by
   default (``TrainConfig()``, or ``cpu_bf16=True``), diffusers with the same autocast around its step.
c. Hardware utilisation: the device's matmul peak measured in this run (fp32 on CPU, bf16 on
   CUDA; on CPU the better of MKL's matmul and oneDNN's convolution GEMM, see ``matmul_peak``),
   FLOPs of one training step and of one sampling pass counted with torch.utils.flop_counter.FlopCounterMode, achieved FLOP/s and the fraction of the peak.
d. Slider latency: wall time of one ``gda_core.sampling.generate`` call on the shipped checkpoints
   (VAE, GAN, DDPM with DDIM at 10/25/50 steps and its default guidance), batch 16 and 64, median
   after a warm-up; budget on CPU: VAE and GAN under 100 ms.

Writes bench/results/speed_<device>.json (one entry per CPU model and thread count, so runs on
different machines and thread counts sit side by side) and prints markdown tables.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench import diffusers_baseline as base
from gda_core import fastpath
from gda_core.checkpoints import load_run
from gda_core.models import TrainConfig, build_model
from gda_core.runtime import atomic_write_json, device_name, resolve_device
from gda_core.sampling import generate
from gda_core.training import train_precision

ROOT = Path(__file__).resolve().parents[1]

SHAPES = ((28, 1), (32, 3))
BATCH = 64
SLIDER_BUDGET_S = 0.100


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def interleaved(
    fns: dict[str, Callable[[], object]], dev: torch.device, rounds: int, warmup: int = 1, warm: dict[str, Callable[[], object]] | None = None
) -> dict[str, dict]:
    """Median wall / process-CPU seconds of each fn, timed round-robin after ``warmup`` calls each
    (of ``warm[k]`` instead when given: a shorter call that initialises the same kernels)."""
    for k in fns:
        for _ in range(warmup):
            (warm or fns)[k]()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            _sync(dev)
            t, c = time.perf_counter(), time.process_time()
            f()
            _sync(dev)
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    return {k: {"wall_s": statistics.median(wall[k]), "cpu_s": statistics.median(cpu[k]), "wall_all": [round(x, 4) for x in wall[k]]} for k in fns}


def matmul_peak(dev: torch.device, quick: bool, dtype: torch.dtype | None = None) -> dict:
    """The device's measured matrix-multiply peak: fp32 on CPU, bf16 on CUDA (the tensor-core rate)
    unless ``dtype`` says otherwise (bf16 on a CPU with native bf16, the fast path's rate).

    On CPU the best of two GEMM engines: ``torch.matmul`` (MKL's sgemm for float32) and a large 3x3
    convolution (oneDNN's implicit GEMM, the engine our convolutions run on). MKL takes a slower code
    path on AMD processors (96 GFLOP/s float32 against oneDNN's 215 on a Zen 5 EPYC, one thread), so
    the matmul alone understates the peak there and utilisation would read above 100 %."""
    n = 8192 if dev.type == "cuda" else (1024 if quick else 2048)
    dtype = dtype or (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dev, dtype)
    b = torch.randn(n, n, generator=g).to(dev, dtype)

    def best(fn: Callable[[], object], flops: float) -> float:
        fn()
        t_best = float("inf")
        for _ in range(5 if dev.type == "cpu" else 20):
            _sync(dev)
            t = time.perf_counter()
            fn()
            _sync(dev)
            t_best = min(t_best, time.perf_counter() - t)
        return flops / t_best

    out = {"n": n, "dtype": str(dtype).replace("torch.", ""), "matmul_flops_per_s": best(lambda: a @ b, 2 * n**3)}
    out["flops_per_s"] = out["matmul_flops_per_s"]
    if dev.type == "cpu":
        c, hw, batch = (128, 32, 2) if quick else (256, 64, 8)
        x = torch.randn(batch, c, hw, hw, generator=g).to(dtype)
        w = torch.randn(c, c, 3, 3, generator=g).to(dtype)
        conv = best(lambda: torch.nn.functional.conv2d(x, w, padding=1), 2 * batch * c * c * 9 * hw * hw)
        out["conv3x3_flops_per_s"] = conv
        out["flops_per_s"] = max(out["flops_per_s"], conv)
    return out


def count_flops(fn: Callable[[], object]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    fc = FlopCounterMode(display=False)
    with fc:
        fn()
    return int(fc.get_total_flops())


def _seed_weights(module: torch.nn.Module) -> None:
    """Move the weights off their init (zero-initialised output layers would make eps exactly 0)."""
    g = torch.Generator(device="cpu").manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g).to(p.device, p.dtype))


def bench_shape(size: int, channels: int, dev: torch.device, args) -> dict:
    steps = 5 if args.quick else 25
    amp = torch.bfloat16 if dev.type == "cuda" else None
    torch.manual_seed(0)
    ours = build_model("ddpm", image_size=size, channels=channels, num_classes=10).to(dev)
    _seed_weights(ours)
    ours.unet_ema.load_state_dict(ours.unet.state_dict())
    ours.eval()
    cfg = ours.config
    ref = base.matched_unet(cfg).to(dev)
    _seed_weights(ref)
    ref.eval()
    ours_params, ref_params = ours.num_parameters(), sum(p.numel() for p in ref.parameters())
    std = base.reference_unet(cfg, ours_params).to(dev)
    _seed_weights(std)
    std.eval()
    std_params = sum(p.numel() for p in std.parameters())
    ours_fast = copy.deepcopy(ours)
    ref_fast = copy.deepcopy(ref)
    compile_opt = True if args.compile else False
    # The fast path is what generate(fast=True) / `sample --fast` runs: dtype="fastest" (bf16 autocast
    # on CUDA and on CPUs with native bf16, float32 elsewhere). diffusers gets the very same plan.
    plan_ours = fastpath.accelerate(ours_fast, compile=compile_opt, dtype="fastest")
    plan_ref = fastpath.accelerate(ref_fast, compile=compile_opt, dtype="fastest")
    ddim = base.ddim_scheduler(cfg)
    labels = torch.arange(BATCH, device=dev) % cfg.num_classes
    seeds = list(range(BATCH))

    def ours_sample(m, plan, k=steps):
        def run():
            with plan.autocast() if plan is not None else contextlib.nullcontext():
                return m.sample(BATCH, labels, seed=0, steps=k, guidance=1.0, sampler="ddim")

        return run

    def ref_sample(u, plan, k=steps):
        def run():
            with plan.autocast() if plan is not None else contextlib.nullcontext():
                return base.sample(u, ddim, labels, seeds, steps=k, guidance=1.0, num_classes=cfg.num_classes)

        return run

    # The fast path must give the plain path's images (float tolerance in float32; bf16 is looser).
    fast_diff = (ours_sample(ours_fast, plan_ours, 3)() - ours_sample(ours, None, 3)()).abs()
    fast_err, fast_mean_err = float(fast_diff.max()), float(fast_diff.mean())
    fns = {
        "ours": ours_sample(ours, None),
        "ours_fast": ours_sample(ours_fast, plan_ours),
        "diffusers": ref_sample(ref, None),
        "diffusers_fast": ref_sample(ref_fast, plan_ref),
        "diffusers_ref": ref_sample(std, None),
    }
    warm = {
        "ours": ours_sample(ours, None, 2),
        "ours_fast": ours_sample(ours_fast, plan_ours, 2),
        "diffusers": ref_sample(ref, None, 2),
        "diffusers_fast": ref_sample(ref_fast, plan_ref, 2),
        "diffusers_ref": ref_sample(std, None, 2),
    }
    s = interleaved(fns, dev, rounds=args.rounds, warmup=2 if args.compile else 1, warm=warm)
    sampling = {k: {"images_per_s": BATCH / v["wall_s"], "images_per_cpu_s": BATCH / v["cpu_s"], **v} for k, v in s.items()}

    # b. training
    tr_ours = build_model("ddpm", image_size=size, channels=channels, num_classes=10).to(dev).train()
    tr_ours_cl = copy.deepcopy(tr_ours).to(memory_format=torch.channels_last)
    opt_ours = tr_ours.configure_optimizers(TrainConfig())
    opt_ours_cl = tr_ours_cl.configure_optimizers(TrainConfig())
    tr_ref = base.matched_unet(cfg).to(dev).train()
    opt_ref = base.make_optimizer(tr_ref)
    tr_std = base.reference_unet(cfg, ours_params).to(dev).train()
    opt_std = base.make_optimizer(tr_std)
    sched = base.noise_scheduler(cfg)
    x = torch.rand(BATCH, channels, size, size, device=dev)
    y = torch.randint(0, 10, (BATCH,), device=dev)

    def ref_step(unet=tr_ref, opt=opt_ref, amp=amp):
        return base.train_step(unet, sched, opt, x, y, num_classes=cfg.num_classes, amp_dtype=amp)

    tfns = {
        "ours": lambda: tr_ours.train_step(x, y, opt_ours, step=0, amp_dtype=amp),
        "ours_channels_last": lambda: tr_ours_cl.train_step(x, y, opt_ours_cl, step=0, amp_dtype=amp),
        "diffusers": ref_step,
        "diffusers_ref": lambda: ref_step(tr_std, opt_std),
    }
    # On a CPU with native bf16: what `TrainConfig(cpu_bf16=True)` / `train --cpu-bf16` runs (the
    # trainer's autocast dtype, from train_precision), and diffusers under the same bf16 autocast.
    cpu_amp = train_precision(dev, TrainConfig(cpu_bf16=True)) if dev.type == "cpu" else None
    # What `train` runs for the DDPM with TrainConfig() on this device: bf16 on a CPU with native bf16.
    default_amp = train_precision(dev, TrainConfig(), "ddpm")
    if cpu_amp is not None:
        tr_ours16 = copy.deepcopy(tr_ours)
        opt_ours16 = tr_ours16.configure_optimizers(TrainConfig())
        tr_ref16 = copy.deepcopy(tr_ref)
        opt_ref16 = base.make_optimizer(tr_ref16)
        tfns["ours_bf16"] = lambda: tr_ours16.train_step(x, y, opt_ours16, step=0, amp_dtype=cpu_amp)
        tfns["diffusers_bf16"] = lambda: ref_step(tr_ref16, opt_ref16, cpu_amp)
    t = interleaved(tfns, dev, rounds=args.train_rounds, warmup=2)
    training = {k: {"images_per_s": BATCH / v["wall_s"], "images_per_cpu_s": BATCH / v["cpu_s"], **v} for k, v in t.items()}

    # c. FLOPs (a pass at t = 500 with one label per image; the training step includes backward).
    with torch.inference_mode():
        tt = torch.full((BATCH,), 500, device=dev)
        xin = torch.randn(BATCH, channels, size, size, device=dev)
        pass_flops = count_flops(lambda: ours.unet_ema(xin, tt, labels))
        ref_pass_flops = count_flops(lambda: ref(xin, tt, class_labels=labels))
        std_pass_flops = count_flops(lambda: std(xin, tt, class_labels=labels))
    train_flops = count_flops(lambda: tr_ours.train_step(x, y, opt_ours, step=0, amp_dtype=amp))
    ref_train_flops = count_flops(ref_step)
    std_train_flops = count_flops(lambda: ref_step(tr_std, opt_std))
    return {
        "shape": f"{size}x{size}x{channels}",
        "params": {"ours": ours_params, "diffusers": ref_params, "ratio": ours_params / ref_params, "diffusers_ref": std_params},
        "diffusers_ref_widths": list(std.config.block_out_channels),
        "sampling": sampling,
        "sampling_steps": steps,
        "fast_vs_plain_max_abs_diff": fast_err,
        "fast_vs_plain_mean_abs_diff": fast_mean_err,
        "fast_plan": {"ours": plan_ours.to_json(), "diffusers": plan_ref.to_json()},
        "training": training,
        "training_default_precision": "bfloat16" if default_amp is not None else "float32",
        "flops": {
            "sampling_pass": pass_flops,
            "sampling_pass_diffusers": ref_pass_flops,
            "train_step": train_flops,
            "train_step_diffusers": ref_train_flops,
            "sampling_pass_diffusers_ref": std_pass_flops,
            "train_step_diffusers_ref": std_train_flops,
        },
    }


def slider_latency(dev: torch.device, args) -> list[dict]:
    rows = []
    runs = {name: load_run(ROOT / "checkpoints" / f"{name}-digits", device=dev) for name in ("vae", "gan", "ddpm")}
    cases = [("vae", None), ("gan", None)] + [("ddpm", s) for s in ((10,) if args.quick else (10, 25, 50))]
    copy_of = {fam: copy.deepcopy(runs[fam].model) for fam in runs}  # the fast path converts its model in place
    for n in (16, 64):
        res = {}
        for group in (cases[:2], cases[2:]):  # VAE / GAN: 7 rounds (milliseconds each); DDPM: 3 (seconds)
            fns = {}
            for fam, steps in group:
                key = f"{fam}" + (f" DDIM {steps} steps" if steps else "")
                fns[key] = lambda run=runs[fam], steps=steps, n=n: generate(run, n, seed=0, steps=steps, fast=False)
                fns[key + " (fast)"] = lambda fam=fam, steps=steps, n=n: generate(copy_of[fam], n, seed=0, steps=steps, fast=True)
            res.update(interleaved(fns, dev, rounds=(3 if args.quick else 7) if group[0][1] is None else 3, warmup=1))
        for key, v in res.items():
            fam = key.split()[0]
            budget = SLIDER_BUDGET_S if (fam in ("vae", "gan") and dev.type == "cpu") else None
            rows.append({
                "model": key, "batch": n, "median_ms": round(v["wall_s"] * 1000, 1), "cpu_ms": round(v["cpu_s"] * 1000, 1),
                "budget_ms": budget * 1000 if budget else None, "pass": (v["wall_s"] < budget) if budget else None,
                "guidance": runs[fam].model.config.default_guidance if fam == "ddpm" else None,
            })  # fmt: skip
    return rows


def tables(r: dict) -> str:
    out = []
    meta = r["meta"]
    out.append(f"Device: {meta['device']} ({meta['cpu']}), torch {meta['torch']}, diffusers {meta['diffusers']}, "
               f"{meta['threads']} thread(s), load average {meta['loadavg_before'][0]} -> {meta['loadavg_after'][0]}\n")  # fmt: skip
    plan = r["shapes"][0]["fast_plan"]["ours"]
    what = "channels_last" + (f" + {plan['dtype']} autocast" if plan["dtype"] else ", float32") + (" + torch.compile" if plan["compile"] else "")
    out.append("**Sampling** (batch 64, DDIM 25 steps, one class-conditional network pass per step; images/s, median wall clock; "
               f"fast path = `generate(fast=True)` here: {what})\n")  # fmt: skip
    out.append("| shape | params ours / diffusers | ours | ours fast | diffusers | diffusers + same fast path | ours / diffusers | "
               "ours fast / diffusers | ours fast / diffusers fast | same 3 ratios in CPU time |")  # fmt: skip
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for s in r["shapes"]:
        sp = s["sampling"]
        a, b, c, d = (sp[k]["images_per_s"] for k in ("ours", "ours_fast", "diffusers", "diffusers_fast"))
        ac, bc, cc, dc = (sp[k]["images_per_cpu_s"] for k in ("ours", "ours_fast", "diffusers", "diffusers_fast"))
        out.append(f"| {s['shape']} | {s['params']['ours']:,} / {s['params']['diffusers']:,} | {a:.2f} | {b:.2f} | {c:.2f} | {d:.2f} | "
                   f"{a / c:.2f}x | **{b / c:.2f}x** | {b / d:.2f}x | {ac / cc:.2f}x, {bc / cc:.2f}x, {bc / dc:.2f}x |")  # fmt: skip
    if all("diffusers_ref" in s["sampling"] for s in r["shapes"]):
        out.append("\n**Against diffusers' example layout** (train_unconditional's UNet shrunk to our parameter count; same sampling and "
                   "training work, different FLOPs per image)\n")  # fmt: skip
        out.append("| shape | params ours / example layout (widths) | GFLOP per pass ours / example | sampling img/s ours fast / example | "
                   "ratio | training img/s ours / example | ratio |")  # fmt: skip
        out.append("|---|---|---|---|---|---|---|")
        for s in r["shapes"]:
            sp, t, f = s["sampling"], s["training"], s["flops"]
            so, sr = sp["ours_fast"]["images_per_s"], sp["diffusers_ref"]["images_per_s"]
            to, tr = t["ours"]["images_per_s"], t["diffusers_ref"]["images_per_s"]
            out.append(f"| {s['shape']} | {s['params']['ours']:,} / {s['params']['diffusers_ref']:,} ({', '.join(map(str, s['diffusers_ref_widths']))}) | "
                       f"{f['sampling_pass'] / 1e9:.1f} / {f['sampling_pass_diffusers_ref'] / 1e9:.1f} | {so:.2f} / {sr:.2f} | {so / sr:.2f}x | "
                       f"{to:.1f} / {tr:.1f} | {to / tr:.2f}x |")  # fmt: skip
    out.append("\n**Training** (batch 64, images/s, median wall clock)\n")
    low_train = all("ours_bf16" in s["training"] for s in r["shapes"])
    default16 = all(s.get("training_default_precision") == "bfloat16" for s in r["shapes"])
    if low_train:
        bf16_what = "the DDPM's default here" if default16 else "`--cpu-bf16`"
        out.append("| shape | ours float32 (train_step) | ours, channels_last | diffusers (float32, its default) | ours / diffusers | same in CPU time | "
                   f"ours bf16 ({bf16_what}) | diffusers + same bf16 autocast | ours bf16 / diffusers | ours bf16 / diffusers bf16 |")  # fmt: skip
        out.append("|---|---|---|---|---|---|---|---|---|---|")
    else:
        out.append("| shape | ours (train_step, as the trainer runs it) | ours, channels_last | diffusers | ours / diffusers | same in CPU time |")
        out.append("|---|---|---|---|---|---|")
    for s in r["shapes"]:
        t = s["training"]
        a, b, c = (t[k]["images_per_s"] for k in ("ours", "ours_channels_last", "diffusers"))
        ratio_cpu = t["ours"]["images_per_cpu_s"] / t["diffusers"]["images_per_cpu_s"]
        row = f"| {s['shape']} | {a:.1f} | {b:.1f} | {c:.1f} | **{a / c:.2f}x** | {ratio_cpu:.2f}x |"
        if low_train:
            d, e = t["ours_bf16"]["images_per_s"], t["diffusers_bf16"]["images_per_s"]
            row += f" {d:.1f} | {e:.1f} | **{d / c:.2f}x** | {d / e:.2f}x |"
        out.append(row)
    pk, pk16 = r["peak"], r.get("peak_bf16")
    engines = f"best of a {pk['n']}x{pk['n']} matmul and a 3x3 convolution" if "conv3x3_flops_per_s" in pk else f"{pk['n']}x{pk['n']} matmul"
    peaks = f"{pk['dtype']} {engines} = {pk['flops_per_s'] / 1e9:.1f} GFLOP/s"
    if pk16:
        peaks += f"; {pk16['dtype']} = {pk16['flops_per_s'] / 1e9:.1f} GFLOP/s"
    out.append(f"\n**Hardware utilisation** (peak: {peaks}, measured in this run; each row against the peak of the precision it runs in)\n")
    out.append("| shape | what | GFLOP per call (ours / diffusers) | ours achieved GFLOP/s | % of peak | diffusers achieved GFLOP/s | % of peak |")
    out.append("|---|---|---|---|---|---|---|")
    for s in r["shapes"]:
        f = s["flops"]
        steps = s["sampling_steps"]
        sp, low = s["sampling"], s["fast_plan"]["ours"]["dtype"] is not None and pk16 is not None
        rows = [("sampling pass (batch 64)" + (", float32" if low else ""), f["sampling_pass"], f["sampling_pass_diffusers"],
                 (sp["ours"] if low else sp["ours_fast"])["wall_s"] / steps, sp["diffusers"]["wall_s"] / steps, pk)]
        if low:
            rows.append((f"sampling pass (batch 64), fast path {pk16['dtype']}", f["sampling_pass"], f["sampling_pass_diffusers"],
                         sp["ours_fast"]["wall_s"] / steps, sp["diffusers_fast"]["wall_s"] / steps, pk16))
        rows.append(("training step (batch 64)" + (", float32" if low else ""), f["train_step"], f["train_step_diffusers"],
                     s["training"]["ours"]["wall_s"], s["training"]["diffusers"]["wall_s"], pk))  # fmt: skip
        if "ours_bf16" in s["training"] and pk16 is not None:
            rows.append((f"training step (batch 64), {pk16['dtype']}", f["train_step"], f["train_step_diffusers"],
                         s["training"]["ours_bf16"]["wall_s"], s["training"]["diffusers_bf16"]["wall_s"], pk16))  # fmt: skip
        for what, fo, fd, to, td, p in rows:  # fmt: skip
            ao, ad = fo / to, fd / td
            out.append(f"| {s['shape']} | {what} | {fo / 1e9:.2f} / {fd / 1e9:.2f} | {ao / 1e9:.1f} | {100 * ao / p['flops_per_s']:.0f}% | "
                       f"{ad / 1e9:.1f} | {100 * ad / p['flops_per_s']:.0f}% |")  # fmt: skip
    out.append("\n**Slider latency** (one generate() call on the shipped 16x16 checkpoints, median wall clock; DDPM at its default guidance 2.0)\n")
    out.append("| model | batch | plain ms | fast-path ms | budget | pass |")
    out.append("|---|---|---|---|---|---|")
    rows = {(x["model"], x["batch"]): x for x in r["slider"]}
    for (model, batch), x in rows.items():
        if model.endswith("(fast)"):
            continue
        fx = rows.get((model + " (fast)", batch))
        budget = f"< {x['budget_ms']:.0f} ms" if x["budget_ms"] else "-"
        ok = "-" if x["pass"] is None else ("pass" if x["pass"] else "FAIL")
        out.append(f"| {model} | {batch} | {x['median_ms']:.1f} | {fx['median_ms'] if fx else '-'} | {budget} | {ok} |")
    return "\n".join(out)


def _cpu_model() -> str:
    """The CPU's model name, with its family and model numbers when the name alone does not say
    which generation it is (virtual machines often report just "AMD EPYC")."""
    try:
        info = dict(
            (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines())
        )
        name = info.get("model name", "")
        if name and not any(ch.isdigit() for ch in name) and "cpu family" in info:
            name += f" (family {info['cpu family']} model {info.get('model', '?')})"
        if name:
            return name
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's default)")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per sampling variant")
    ap.add_argument("--train-rounds", type=int, default=5, help="timed training steps per variant")
    ap.add_argument("--compile", action="store_true", help="also torch.compile in the fast paths (minutes of compile time on CPU)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 5 sampling steps, fewer rounds; results not written")
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.rounds, args.train_rounds = 1, 1
    import diffusers

    dev = resolve_device(args.device)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    peak = matmul_peak(dev, args.quick)
    shapes = []
    for size, ch in SHAPES:
        print(f"[{time.perf_counter() - t0:.0f}s] {size}x{size}x{ch} ...", file=sys.stderr, flush=True)
        shapes.append(bench_shape(size, ch, dev, args))
    print(f"[{time.perf_counter() - t0:.0f}s] slider latency ...", file=sys.stderr, flush=True)
    slider = slider_latency(dev, args)
    peak_after = matmul_peak(dev, args.quick)
    peak = {k: max(v, peak_after[k]) if k.endswith("flops_per_s") else v for k, v in peak.items()}
    peak_bf16 = None
    if dev.type == "cpu" and fastpath.cpu_native_bf16():  # the fast path runs bf16 here: its own peak
        peak_bf16 = matmul_peak(dev, args.quick, torch.bfloat16)
    meta = {
        "device": device_name(dev),
        "device_type": dev.type,
        "cpu": _cpu_model(),
        "threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "compile": bool(args.compile),
        "cpu_native_bf16": fastpath.cpu_native_bf16(),
        "wall_s": round(time.perf_counter() - t0, 1),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": " ".join(["python", "bench/bench_speed.py", *sys.argv[1:]]),
    }
    result = {"meta": meta, "peak": peak, "peak_bf16": peak_bf16, "shapes": shapes, "slider": slider}
    md = tables(result)
    result["markdown"] = md
    print(md)
    if args.quick:
        print("\n(--quick: results not written)")
        return 0
    out = ROOT / "bench" / "results" / f"speed_{dev.type}.json"
    try:
        doc = json.loads(out.read_text()) if out.exists() else {}
    except ValueError:
        doc = {}
    doc.setdefault("runs", {})[f"{meta['cpu']}, threads={meta['threads']}" + (", compile" if args.compile else "")] = result
    atomic_write_json(out, doc)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
