"""Which average of the weights to sample from after a short CPU run: EMA schedules on ONE trajectory.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_ema [--minutes 10] [--n 1000] [--seeds 0 1]
        [--schedules const power:0.75 none] [--out ema_cpu]

Trains our DDPM (default config, the trainer's default precision, batch 64, the trainer's batch
order and EMA) once per seed, one process and one thread per seed, all seeds at once, and keeps
several exponential moving averages of the same weights side by side. Then it samples --n images
from each average with the same sample seeds (DDIM 25, guidance 2, as bench_time_to_quality) and
scores them on the domain features against the training split. Every average is taken over the
SAME sequence of weights, so the differences between schedules within a seed are not training
noise (which, at this budget, moves FID more than most settings do: docs/benchmarks.md, "Time to quality on pneumoniamnist").

Schedules (decay d_n applied after optimisation step n = 0, 1, ...: ema <- d ema + (1 - d) w):
- ``const``: d = min(0.999, (1 + n) / (10 + n)), the trainer's (``TrainConfig.ema_decay``) and the
  one bench_time_to_quality gives both libraries;
- ``const:D``: the same warm-up, capped at D;
- ``power:P``: d = min(0.9999, 1 - (1 + n)^-P), diffusers' EMAModel with ``use_ema_warmup`` and
  inv_gamma 1 (its train_unconditional example: P = 3/4); the average spans a fixed fraction of
  the run, so it stays short on a short run;
- ``none``: the raw weights of the last step.

Writes bench/results/<--out>.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.bench_time_to_quality import DEFAULT_DATA, _labels, _rel, sample_u8, scores

ROOT = Path(__file__).resolve().parents[1]


def decay(schedule: str, n: int) -> float:
    """The decay a schedule applies after optimisation step n (see the module docstring)."""
    kind, _, arg = schedule.partition(":")
    if kind == "const":
        return min(float(arg or 0.999), (1 + n) / (10 + n))
    if kind == "power":
        return min(0.9999, 1 - (1 + n) ** -float(arg))
    if kind == "none":
        return 0.0
    raise SystemExit(f"error: unknown EMA schedule {schedule!r} (const, const:D, power:P, none)")


def worker(args) -> int:
    torch.set_num_threads(1)
    from gda_core.data import load_dataset
    from gda_core.models import TrainConfig, build_model
    from gda_core.runtime import set_global_seed
    from gda_core.training import train_precision
    from gda_core.training.trainer import _batch_indices

    work = Path(args.work)
    ds = load_dataset(args.data)
    images, ys = ds.tensors("train")
    labels = torch.as_tensor(_labels(ds.split("train")[1], args.n))
    set_global_seed(args.seed)
    tc = TrainConfig()
    model = build_model("ddpm", image_size=ds.image_size, channels=ds.channels, num_classes=ds.num_classes).train()
    opts = model.configure_optimizers(tc)
    amp = train_precision(torch.device("cpu"), tc, "ddpm")
    live = list(model.unet.parameters())
    averages = {s: [p.detach().clone() for p in live] for s in args.schedules}
    step, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.minutes * 60:
        idx = _batch_indices(step, len(ys), tc.batch_size, args.seed)
        model.train_step(images[idx], ys[idx], opts, step=step, amp_dtype=amp)
        with torch.no_grad():
            for s, avg in averages.items():
                torch._foreach_lerp_(avg, [p.detach() for p in live], 1.0 - decay(s, step))
        step += 1
    train_wall = time.perf_counter() - t0
    model.eval()
    stats = {"seed": args.seed, "train_steps": step, "train_wall_s": round(train_wall, 1),
             "train_precision": "bfloat16" if amp is not None else "float32"}  # fmt: skip
    for i, avg in enumerate(averages.values()):
        with torch.no_grad():
            for p_ema, a in zip(model.unet_ema.parameters(), avg, strict=True):
                p_ema.copy_(a)
        u8 = sample_u8(args.n, lambda a, b: model.sample(b - a, labels[a:b], seed=a, steps=25, guidance=args.guidance, sampler="ddim"))
        np.save(work / f"{args.seed}_{i}_samples.npy", u8, allow_pickle=False)
    (work / f"{args.seed}_stats.json").write_text(json.dumps(stats))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget of each seed (wall clock)")
    ap.add_argument("--n", type=int, default=1000, help="images sampled from each average")
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="dataset .npz (MedMNIST layout); default: the shared pneumoniamnist")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds, trained at the same time")
    ap.add_argument("--schedules", nargs="+", default=["const", "power:0.75", "none"], help="EMA schedules (module docstring)")
    ap.add_argument("--out", default="ema_cpu", help="result file name under bench/results (no extension)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    for s in args.schedules:
        decay(s, 0)
    if args.worker:
        return worker(args)
    if not Path(args.data).is_file():
        print(f"skipped: {args.data} not found (pass --data PATH)")
        return 0
    from bench import bench_speed
    from gda_core.data import load_dataset
    from gda_core.metrics import get_extractor
    from gda_core.runtime import atomic_write_json

    ds = load_dataset(args.data)
    ext = get_extractor("domain-cnn", ds, device="cpu")  # trained (or read from its cache) before the timed runs
    train_u8, _ = ds.split("train")
    f_real = ext(torch.from_numpy(np.ascontiguousarray(train_u8)).permute(0, 3, 1, 2).contiguous())
    rows = []
    with tempfile.TemporaryDirectory(prefix="gda-ema-") as tmp:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        base = [sys.executable, "-m", "bench.bench_ema", "--worker", "--minutes", str(args.minutes), "--n", str(args.n), "--guidance", str(args.guidance),
                "--data", args.data, "--work", tmp, "--schedules", *args.schedules]  # fmt: skip
        load_before = os.getloadavg()
        procs = {s: subprocess.Popen([*base, "--seed", str(s)], env=env, cwd=ROOT) for s in args.seeds}
        codes = {s: p.wait() for s, p in procs.items()}
        if any(codes.values()):
            print(f"error: worker exit codes {codes}", file=sys.stderr)
            return 1
        for s in args.seeds:
            stats = json.loads((Path(tmp) / f"{s}_stats.json").read_text())
            for i, sched in enumerate(args.schedules):
                f_fake = ext(torch.from_numpy(np.load(Path(tmp) / f"{s}_{i}_samples.npy", allow_pickle=False)))
                rows.append({**stats, "schedule": sched, **scores(f_real, f_fake)})
    lines = ["| seed | EMA schedule | train steps | FID (lower better) | precision | recall | density | coverage |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['schedule']} | {r['train_steps']} | {r['fid']} | {r['precision']} | {r['recall']} | {r['density']} | {r['coverage']} |")
    for sched in args.schedules:
        mine = [r for r in rows if r["schedule"] == sched]
        means = {k: round(float(np.mean([r[k] for r in mine])), 3) for k in ("fid", "precision", "recall", "density", "coverage")}
        lines.append(f"| mean | {sched} | | {means['fid']} | {means['precision']} | {means['recall']} | {means['density']} | {means['coverage']} |")
    table = "\n".join(lines)
    meta = {
        "dataset": f"{ds.name} {ds.image_size}x{ds.image_size}x{ds.channels}",
        "minutes": args.minutes,
        "n_samples": args.n,
        "sampler": f"DDIM 25 steps, eta 0, guidance {args.guidance}",
        "cpu": bench_speed._cpu_model(),
        "torch": torch.__version__,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d"),
        "command": f"OMP_NUM_THREADS=1 python -m bench.bench_ema --data {_rel(args.data)} --minutes {args.minutes:g} --n {args.n} "
        f"--seeds {' '.join(map(str, args.seeds))} --schedules {' '.join(args.schedules)} --out {args.out}",
    }
    out = ROOT / "bench" / "results" / f"{Path(args.out).name}.json"
    atomic_write_json(out, {"meta": meta, "rows": rows, "markdown": table})
    print(table)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
