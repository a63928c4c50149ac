"""The paper's protocol end to end on real data, with wall time and peak memory.

    .venv/bin/python -m bench.bench_protocol [--data breastmnist,plantvillage_corn] [--seeds 3]
        [--budget-steps 150,300,600] [--models vae,gan,ddpm]

For each dataset (../shared/data/<name>/<name>.npz): vae, gan and ddpm generators trained per
scarcity level and seed on exactly the classifier's real subset (10 and 50 per class, all), the
downstream classifier on real + 0/1/2/3x synthetic images, 3 seeds; claims checked. Writes
bench/results/protocol_<dataset>.json (the study plus how it ran) and assets/protocol_<dataset>.png
(the chart). Generators and stage outputs are kept in bench/runs/protocol-cache, so a re-run or an
interrupted run reuses what finished. docs/benchmarks.md is generated from the results
(``python -m bench.make_docs``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from bench.bench_speed import _cpu_model
from gda_core.augment import run_study
from gda_core.data import load_dataset
from gda_core.runtime import atomic_write_bytes, atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="breastmnist,plantvillage_corn")
    ap.add_argument("--models", default="vae,gan,ddpm")
    ap.add_argument("--per-class", default="10,50,all")
    ap.add_argument("--ratios", default="0,1,2,3")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget-steps", default="150,300,600", help="generator training steps per level (10/class, 50/class, all)")
    ap.add_argument("--scope", choices=("per-level", "shared"), default="per-level",
                    help="shared: one generator per seed on all training images (the leaky design, for comparison)")  # fmt: skip
    ap.add_argument("--steps", type=int, default=None, help="sampling steps of iterative generators (default: the family's)")
    ap.add_argument("--sampler", default=None, help="sampler of iterative generators (default: the family's)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default=str(ROOT / "bench" / "runs" / "protocol-cache"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.data.split(","):
        path = SHARED / name / f"{name}.npz"
        if not path.is_file():
            print(f"skip {name}: {path} not found")
            continue
        ds = load_dataset(str(path))
        levels = [x if x == "all" else int(x) for x in args.per_class.split(",")]
        steps = [int(s) for s in args.budget_steps.split(",")]
        t0, load0 = time.time(), os.getloadavg()[0]
        res = run_study(ds, models=args.models.split(","), per_class_levels=levels, ratios=[float(r) for r in args.ratios.split(",")],
                        seeds=args.seeds, budget_steps=steps, scope=args.scope, device="cpu", cache_dir=args.cache,
                        sampling={k: v for k, v in (("steps", args.steps), ("sampler", args.sampler)) if v is not None},
                        progress=lambda f, m: print(f"[{f:5.1%}] {m}", flush=True) if not m.startswith("training ") else None)  # fmt: skip
        meta = {
            "command": f"python -m bench.bench_protocol --data {name} --models {args.models} --per-class {args.per_class} --ratios {args.ratios} "
            f"--seeds {args.seeds} --budget-steps {args.budget_steps} --scope {args.scope} --threads {args.threads}"
            + (f" --steps {args.steps}" if args.steps else "") + (f" --sampler {args.sampler}" if args.sampler else ""),
            "date": datetime.now(UTC).isoformat(timespec="seconds"), "cpu": _cpu_model(), "threads": args.threads,
            "wall_s": round(time.time() - t0, 1), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "load_start": round(load0, 2), "load_end": round(os.getloadavg()[0], 2),
            "generator_train_s": round(sum(float(json.loads((Path(g["checkpoint"]) / "config.json").read_text()).get("train_time_s", 0))
                                           for g in res.generators), 1),
        }  # fmt: skip
        out = res.to_dict()
        out["bench"] = meta
        tag = name if args.scope == "per-level" else f"{name}_shared"
        atomic_write_json(ROOT / "bench" / "results" / f"protocol_{tag}.json", out)
        atomic_write_bytes(ROOT / "assets" / f"protocol_{tag}.png", res.png())
        print(json.dumps(meta, indent=1))
        for line in res.reading():
            print("-", line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
