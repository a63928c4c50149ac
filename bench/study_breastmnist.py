"""Utility study on BreastMNIST: does adding VAE / GAN images help a small classifier?

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.study_breastmnist [--vae-steps 600] [--gan-steps 600] [--seeds 3]

Trains a small VAE (and a GAN with --gan-steps N) on the full BreastMNIST training split (28x28 grey, 2 classes,
546 images; ../shared/data/breastmnist/breastmnist.npz), then runs gda_core.augment.run_study at
10, 50 and all real images per class, ratios 0-3, with and without the classifier's geometric
augmentation, and writes bench/results/study_breastmnist.json, assets/study_breastmnist.png and
a markdown table + reading on stdout. CPU-sized budgets (200 VAE steps, classifier capped at 100 steps): the numbers are
indicative, not a benchmark to quote to two decimals.

Caveat, also in the output: both generators are trained on ALL training images, so at 10 and 50
per class they carry information from real images the downstream classifier is not given.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from gda_core.augment import quick_budget, run_study
from gda_core.data import load_dataset
from gda_core.runtime import atomic_write_bytes, atomic_write_json
from gda_core.training import train

ROOT = Path(__file__).resolve().parents[1]

DATA = ROOT.parent / "shared" / "data" / "breastmnist" / "breastmnist.npz"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vae-steps", type=int, default=200)
    ap.add_argument("--gan-steps", type=int, default=0, help="0 = no GAN (too slow for the 1-thread CPU budget)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--runs-dir", default="/tmp/gda-study-breastmnist")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=100, help="downstream classifier steps cap (quick budget: 200)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not DATA.is_file():
        print(f"{DATA} not found: the study needs ../shared/data/breastmnist", file=sys.stderr)
        return 2
    ds = load_dataset(str(DATA))
    print(f"BreastMNIST: {ds.summary()['train_class_counts']} training images per class, {len(ds.test_labels)} test images", flush=True)
    runs = []
    t0 = time.time()
    for family, steps in (("vae", args.vae_steps), ("gan", args.gan_steps)):
        if steps <= 0:
            continue
        out = Path(args.runs_dir) / f"{family}-breastmnist"
        cfg = out / "config.json"
        if not (cfg.is_file() and json.loads(cfg.read_text()).get("finished")):
            t = time.time()
            train(family, ds, out=out, steps=steps, seed=0, device="cpu", checkpoint_every=steps)
            print(f"trained {family}: {steps} steps in {time.time() - t:.0f} s", flush=True)
        runs.append(out)
    budget = dataclasses.replace(quick_budget(), epochs=8, min_steps=40, max_steps=args.max_steps)
    t = time.time()
    res = run_study(runs, ds, per_class_levels=(10, 50, "all"), ratios=(0, 1, 2, 3), seeds=args.seeds, geometric_aug=(False, True),
                    budget=budget, device="cpu",
                    progress=lambda f, m: print(f"[{f:4.0%}] {m}", file=sys.stderr, flush=True) if m else None)  # fmt: skip
    print(f"study: {time.time() - t:.0f} s (total {time.time() - t0:.0f} s)", flush=True)
    d = res.to_dict()
    d["bench"] = {"classifier_budget": budget.to_dict(), "vae_steps": args.vae_steps, "gan_steps": args.gan_steps, "threads": args.threads, "study_seconds": round(time.time() - t, 1)}
    atomic_write_json(ROOT / "bench" / "results" / "study_breastmnist.json", d)
    atomic_write_bytes(ROOT / "assets" / "study_breastmnist.png", res.png())
    print(res.markdown())
    print()
    for line in res.reading():
        print(f"- {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
