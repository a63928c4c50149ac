"""Evaluation at scale: time and peak memory of the k-NN and nearest-SSIM metrics up to 50k x 50k.

    .venv/bin/python -m bench.bench_scale [--device auto] [--threads N] [--quick]

Each case runs in a fresh subprocess so its peak resident memory (ru_maxrss; on CUDA also
torch.cuda.max_memory_allocated) is its own. Cases: precision/recall/density/coverage of
N real x N synthetic 128-d features for N in 10k, 50k; nearest SSIM of S synthetic 28x28 images
against T training images (T up to 50k; S kept small on CPU, where 50k x 50k SSIM pairs would
take hours, full 50k x 50k on a GPU). The point is that memory stays flat as N grows (chunked
distances / pair blocks), not the absolute time on a shared CPU. Writes
bench/results/scale_<device>.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, time
import torch
if {threads}:
    torch.set_num_threads({threads})
from gda_core.runtime import resolve_device
dev = resolve_device({device!r})
kind, a, b = {kind!r}, {a}, {b}
g = torch.Generator().manual_seed(0)
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if kind == "prdc":
    from gda_core.metrics.manifold import prdc
    real = torch.randn(a, 128, generator=g)
    fake = torch.randn(b, 128, generator=g) + 0.1
    t = time.perf_counter(); res = prdc(real, fake, device=dev)
else:
    from gda_core.metrics.privacy import nearest_ssim
    syn = torch.randint(0, 256, (a, 1, 28, 28), generator=g, dtype=torch.uint8)
    train = torch.randint(0, 256, (b, 1, 28, 28), generator=g, dtype=torch.uint8)
    t = time.perf_counter(); v = nearest_ssim(syn, train, device=dev); res = {{"mean_nearest_ssim": float(v.mean())}}
if dev.type == "cuda":
    torch.cuda.synchronize()
dt = time.perf_counter() - t
out = {{"seconds": round(dt, 2), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
       "rss_before_mb": round(rss0 / 1024), **res}}
if dev.type == "cuda":
    out["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
print(json.dumps(out))
"""


def run_case(kind: str, a: int, b: int, device: str, threads: int) -> dict:
    code = CHILD.format(threads=threads, device=device, kind=kind, a=a, b=b)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)  # cwd: the same gda_core as this run
    if r.returncode != 0:
        raise SystemExit(f"case {kind} {a}x{b} failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    return {"kind": kind, "a": a, "b": b, **json.loads(r.stdout.strip().splitlines()[-1])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    import torch

    from gda_core.runtime import atomic_write_json, device_name, resolve_device

    dev = resolve_device(args.device)
    gpu = dev.type == "cuda"
    cases = [("prdc", 2000, 2000), ("prdc", 10000, 10000)] if args.quick else [("prdc", 10000, 10000), ("prdc", 50000, 50000)]
    if gpu:
        cases += [("ssim", 5000, 50000), ("ssim", 50000, 50000)]
    else:
        cases += [("ssim", 100, 5000), ("ssim", 100, 50000)] if not args.quick else [("ssim", 50, 2000)]
    rows = []
    for kind, a, b in cases:
        print(f"{kind} {a} x {b} ...", file=sys.stderr, flush=True)
        rows.append(run_case(kind, a, b, args.device, args.threads))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    env = {"device": device_name(dev), "torch": torch.__version__, "threads": args.threads or torch.get_num_threads(), "cpu_count": os.cpu_count()}
    out = {"env": env, "cases": rows}
    atomic_write_json(ROOT / "bench" / "results" / f"scale_{dev.type}{'_quick' if args.quick else ''}.json", out)
    print(f"device: {env['device']}, threads {env['threads']}\n")
    print("| metric | sizes | time | peak RSS | result |")
    print("|---|---|---|---|---|")
    for r in rows:
        what = "P/R/D/C (128-d features)" if r["kind"] == "prdc" else "nearest SSIM (28x28)"
        res_s = (
            f"P {r['precision']:.3f} R {r['recall']:.3f}" if r["kind"] == "prdc" else f"mean nearest SSIM {r['mean_nearest_ssim']:.3f}"
        )
        mem = f"{r['peak_rss_mb']} MB" + (f" (GPU {r['cuda_peak_mb']} MB)" if "cuda_peak_mb" in r else "")
        print(f"| {what} | {r['a']:,} x {r['b']:,} | {r['seconds']:.1f} s | {mem} | {res_s} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
