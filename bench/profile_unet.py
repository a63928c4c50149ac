"""Where a DDPM sampling pass spends its time: torch.profiler over one UNet forward, by operator.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.profile_unet [--size 28] [--channels 1] [--batch 128]

Batch 128 = one guided DDIM step of 64 images (conditional + unconditional in one pass), our
default UNet in the fast path's channels_last layout, one thread. Prints the operator table and
writes bench/results/profile_unet_cpu.json (share of self CPU time per operator). This is the
evidence behind the README's "why not 1.5x on CPU": convolutions (oneDNN, the kernels diffusers
calls too) take most of the pass.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from torch.profiler import ProfilerActivity, profile

    from gda_core.models import build_model
    from gda_core.runtime import atomic_write_json

    model = build_model("ddpm", image_size=args.size, channels=args.channels, num_classes=10)
    net = model.unet_ema.eval().to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.channels, args.size, args.size, generator=g).contiguous(memory_format=torch.channels_last)
    t = torch.randint(0, 1000, (args.batch,), generator=g)
    y = torch.randint(0, 11, (args.batch,), generator=g)
    with torch.inference_mode():
        for _ in range(2):
            net(x, t, y)
        t0 = time.perf_counter()
        for _ in range(3):
            net(x, t, y)
        pass_s = (time.perf_counter() - t0) / 3
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            net(x, t, y)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    shares = sorted(((e.key, e.self_cpu_time_total / total) for e in events), key=lambda kv: -kv[1])
    top = {k: round(v, 4) for k, v in shares[:10]}
    print(events.table(sort_by="self_cpu_time_total", row_limit=12))
    print(f"pass: {pass_s * 1000:.0f} ms; shares: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in top.items()))
    atomic_write_json(
        ROOT / "bench" / "results" / "profile_unet_cpu.json",
        {"shape": f"{args.size}x{args.size}x{args.channels}", "batch": args.batch, "threads": args.threads, "pass_ms": round(pass_s * 1000, 1),
         "self_cpu_share": top, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
         "command": f"python -m bench.profile_unet --size {args.size} --channels {args.channels} --batch {args.batch} --threads {args.threads}"},
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
