"""Training and sampling throughput of every registered family at 28x28x1 and 32x32x3.

    .venv/bin/python -m bench.bench_engine [--device auto] [--quick]

Training images/s: median over timed steps (after warm-up) of batch 64 / step time, default
model configs, in the precision the trainer uses by default on the device (the DDPM in bf16 on a
CPU with native bf16, every family in bf16 on CUDA). Sampling images/s: batch 64 after one warm-up batch, median of 3 runs (DDPM with
the default 25 DDIM steps and guidance 2.0, i.e. 50 network evaluations per image). Results go
to bench/results/engine_<device>.json and a markdown table on stdout (pasted into the README).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from bench.bench_speed import _cpu_model
from gda_core.models import TrainConfig, build_model, list_models
from gda_core.runtime import device_name, resolve_device
from gda_core.training import train_precision

ROOT = Path(__file__).resolve().parents[1]


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def bench_family(family: str, size: int, channels: int, dev: torch.device, train_steps: int) -> dict:
    torch.manual_seed(0)
    m = build_model(family, image_size=size, channels=channels, num_classes=10).to(dev)
    opt = m.configure_optimizers(TrainConfig())
    amp = train_precision(dev, TrainConfig(), family)  # what the trainer runs by default here
    x = torch.rand(64, channels, size, size, device=dev)
    y = torch.randint(0, 10, (64,), device=dev)
    m.train()
    for _ in range(3):
        m.train_step(x, y, opt, step=0, amp_dtype=amp)
    times = []
    for _ in range(train_steps):
        sync(dev)
        t = time.perf_counter()
        m.train_step(x, y, opt, step=0, amp_dtype=amp)
        sync(dev)
        times.append(time.perf_counter() - t)
    m.eval()
    m.sample(64, seed=0)
    stimes = []
    for r in range(3):
        sync(dev)
        t = time.perf_counter()
        m.sample(64, seed=r)
        sync(dev)
        stimes.append(time.perf_counter() - t)
    return {
        "family": family,
        "shape": f"{size}x{size}x{channels}",
        "params": m.num_parameters(),
        "train_images_per_s": round(64 / statistics.median(times), 1),
        "sample_images_per_s": round(64 / statistics.median(stimes), 1),
        "nfe_per_image": m.nfe_per_image(),
        "train_precision": "bfloat16" if amp is not None else "float32",
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    dev = resolve_device(args.device)
    rows = [bench_family(f, s, c, dev, args.steps) for s, c in ((28, 1), (32, 3)) for f in list_models()]
    meta = {"device": device_name(dev), "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
            "cpu": _cpu_model(), "loadavg": [round(x, 2) for x in os.getloadavg()], "date": time.strftime("%Y-%m-%d"),
            "command": " ".join(["python", "bench/bench_engine.py", *sys.argv[1:]])}  # fmt: skip
    out = ROOT / "bench" / "results" / f"engine_{dev.type}.json"
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"Device: {meta['device']}, torch {meta['torch']}, {meta['threads']} threads\n")
    print("| family | shape | parameters | train precision | train img/s | sample img/s | NFE/img |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['family']} | {r['shape']} | {r['params']:,} | {r['train_precision']} | {r['train_images_per_s']} | {r['sample_images_per_s']} | "
              f"{r['nfe_per_image']:.0f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
