"""The hybrids against the DDPM on digits, on CPU: which distillation method, speed and quality.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_hybrids methods [--train-steps 60] [--steps 2] [--consistency-steps 180]
    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_hybrids speed [--ddgan-steps 600] [--n 500]

``methods``: the shipped digits DDPM (checkpoints/ddpm-digits) distilled into a ``--steps``-step
student by each method (progressive, consistency, reflow) with the same optimisation-step budget,
batch 16, seed 0, and by consistency once more with ``--consistency-steps`` (about progressive's
training time on a quiet machine: its steps are cheaper). Figure: the mean squared pixel distance of the student's images to the teacher's
own solve at the same 64 seeds (what the student is trained to reproduce), beside the teacher's
best own sampler cut to the student's step count, and the training wall time. Writes
bench/results/distill_methods_cpu.json. The winner is the method the ``distill`` command uses by
default (docs/hybrids.md).

``speed``: milliseconds per batch of 16 (``generate`` as the Sample page calls it, median of 5
after a warm-up) and FID / precision / recall (domain-CNN features, ``--n`` samples against the
digits training split) of: a small DDGAN trained here for ``--ddgan-steps`` steps (two large
steps), the progressive student from ``methods`` (re-distilled when absent), and the shipped DDPM
with DDIM at 25 steps and DPM-Solver++ at 10 steps (its default guidance 2: two passes a step).
Writes bench/results/hybrids_cpu.json. Targets: the fast ones under 100 ms per batch and at least
10x faster than DDIM-25. On a shared 2-core machine the wall times move with the load; every
variant is timed in the same rounds, interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
TEACHER = ROOT / "checkpoints" / "ddpm-digits"
WORK = ROOT / "bench" / "runs" / "hybrids"  # ignored by git


def methods(args) -> dict:
    from gda_core import checkpoints as ck
    from gda_core.distill import distill, tracking
    from gda_core.models.distilled import METHODS

    teacher = ck.load_run(TEACHER, device="cpu").model
    rows = []
    # Consistency distillation runs one teacher sub-step per training step where progressive runs a
    # whole segment's solve: a second consistency row with more steps puts it at about equal time.
    plan = [(m, args.train_steps) for m in METHODS] + [("consistency", args.consistency_steps)]
    for method, budget in plan:
        out = WORK / (f"student-{method}-{args.steps}" + ("" if budget == args.train_steps else f"-{budget}"))
        t = time.perf_counter()
        _ensure(out, lambda resume, m=method, o=out, b=budget: distill(TEACHER, steps=args.steps, out=o, train_steps=b, method=m, batch_size=16,
                                                                      seed=0, device="cpu", resume=resume))  # fmt: skip
        wall = time.perf_counter() - t
        cfg = ck.read_config(out)
        row = {"method": method, "train_steps": cfg["step"], "train_time_s": cfg.get("train_time_s", wall),
               **tracking(ck.load_run(out, device="cpu").model, teacher, 64)}  # fmt: skip
        rows.append(row)
        print(f"{method:12s} steps {row['train_steps']:4d}  {row['train_time_s']:6.0f} s  student {row['student']:.4f}  "
              f"teacher's best {args.steps}-step {row['teacher_few_best']:.4f}", flush=True)  # fmt: skip
    return {"teacher": TEACHER.name, "student_steps": args.steps, "batch_size": 16, "rows": rows,
            "best": min(rows, key=lambda r: r["student"])["method"]}  # fmt: skip


def _ensure(out: Path, make) -> None:
    """Make the run folder ``out`` unless it holds a finished run; an interrupted one is resumed."""
    from gda_core import checkpoints as ck

    if (out / ck.CONFIG).exists() and ck.read_config(out).get("finished"):
        return
    make((out / ck.STATE).exists())


def _quality(images: np.ndarray, extractor, real_feats) -> dict[str, float]:
    from gda_core.metrics import fid, precision_recall

    f = extractor(images)
    p, r = precision_recall(real_feats, f)
    return {"fid": fid(real_feats, f), "precision": p, "recall": r}


def speed(args) -> dict:
    from gda_core import checkpoints as ck
    from gda_core.data import load_dataset
    from gda_core.distill import distill
    from gda_core.metrics import get_extractor
    from gda_core.models import TrainConfig
    from gda_core.sampling import generate
    from gda_core.training import train

    ds = load_dataset("digits")
    dg = WORK / f"ddgan-{args.ddgan_steps}"
    cfg = {"base_channels": 16, "channel_mults": (1, 2), "attention": False, "latent_dim": 16, "d_channels": 32, "denoising_steps": 2}
    _ensure(dg, lambda resume: train("ddgan", ds, out=dg, steps=args.ddgan_steps, model_config=cfg, train_config=TrainConfig(batch_size=32), seed=0,
                                     device="cpu", resume=resume))  # fmt: skip
    st = WORK / "student-progressive-2"
    _ensure(st, lambda resume: distill(TEACHER, steps=2, out=st, train_steps=60, method="progressive", batch_size=16, seed=0, device="cpu", resume=resume))
    ddpm = ck.load_run(TEACHER, device="cpu")
    variants = {
        "ddgan": (ck.load_run(dg, device="cpu"), {}),  # two large steps
        "student": (ck.load_run(st, device="cpu"), {}),  # two steps, progressive, from the shipped DDPM
        "ddim25": (ddpm, {"steps": 25, "sampler": "ddim"}),
        "dpmpp10": (ddpm, {"steps": 10, "sampler": "dpmpp"}),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    cpu_times: dict[str, list[float]] = {k: [] for k in variants}  # process CPU time: steadier than wall time on a shared machine
    for _ in range(1):  # warm-up
        for run, kw in variants.values():
            generate(run, 16, seed=0, **kw)
    for r in range(args.rounds):  # interleaved: a load change hits every variant alike
        for name, (run, kw) in variants.items():
            t, c = time.perf_counter(), time.process_time()
            generate(run, 16, seed=r, **kw)
            times[name].append(1000 * (time.perf_counter() - t))
            cpu_times[name].append(1000 * (time.process_time() - c))
    ext = get_extractor("domain-cnn", ds, device="cpu")
    real_feats = ext(ds.train_images)
    out = {}
    for name, (run, kw) in variants.items():
        imgs = generate(run, args.n, seed=0, **kw).images
        out[name] = {"ms_per_batch16": statistics.median(times[name]), "ms_all": [round(t, 1) for t in times[name]],
                     "cpu_ms_per_batch16": statistics.median(cpu_times[name]),
                     "nfe_per_image": run.model.nfe_per_image(**({"steps": kw["steps"]} if kw else {})),
                     **_quality(imgs, ext, real_feats)}  # fmt: skip
        print(f"{name:10s} {out[name]['ms_per_batch16']:8.1f} ms  FID {out[name]['fid']:.2f}  P {out[name]['precision']:.3f}  R {out[name]['recall']:.3f}", flush=True)
    base = out["ddim25"]["ms_per_batch16"]
    for v in out.values():
        v["speedup_vs_ddim25"] = base / v["ms_per_batch16"]
    return {"n_samples": args.n, "ddgan_train_steps": args.ddgan_steps, "variants": out,
            "targets": {name: {"under_100ms": v["ms_per_batch16"] < 100, "under_100ms_cpu_time": v["cpu_ms_per_batch16"] < 100,
                               "at_least_10x": v["speedup_vs_ddim25"] >= 10}
                        for name, v in out.items() if name in ("ddgan", "student")}}  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=["methods", "speed"])
    ap.add_argument("--train-steps", type=int, default=60, help="methods: distillation steps per method")
    ap.add_argument("--steps", type=int, default=2, help="methods: the students' step count")
    ap.add_argument("--consistency-steps", type=int, default=180, help="methods: steps of the second, longer consistency run")
    ap.add_argument("--ddgan-steps", type=int, default=600)
    ap.add_argument("--n", type=int, default=500, help="speed: samples for FID / precision / recall")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    from bench.bench_speed import _cpu_model  # the CPU named as the other result files name it
    from gda_core.runtime import atomic_write_json

    before, t = os.getloadavg(), time.perf_counter()
    res = methods(args) if args.part == "methods" else speed(args)
    res["meta"] = {"command": " ".join(["python -m bench.bench_hybrids", *sys.argv[1:]]), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   "cpu": _cpu_model(), "threads": torch.get_num_threads(), "loadavg_before": list(before),
                   "loadavg_after": list(os.getloadavg()), "wall_s": time.perf_counter() - t}  # fmt: skip
    name = "distill_methods_cpu.json" if args.part == "methods" else "hybrids_cpu.json"
    atomic_write_json(ROOT / "bench" / "results" / name, res)
    print(json.dumps({k: v for k, v in res.items() if k not in ("rows", "variants")}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
