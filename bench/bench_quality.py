"""Sample quality of the shipped digits checkpoints, and few-step samplers vs DDIM at 50 steps.

    .venv/bin/python -m bench.bench_quality [--n 1000]

1. Held-out recognition: a logistic-regression classifier trained ONLY on the digits test split
   (never seen by the generative models) labels 1,000 class-balanced samples per model; the
   figure is the share recognised as the class that was asked for (chance = 10 %).
2. Diffusion samplers: the shipped DDPM sampled with DDIM and DPM-Solver++(2M) at 10 / 20 / 50
   steps; precision, recall and FID on the domain features (gda_core.metrics, real = training
   split), plus the recognition rate and wall time.
3. Precision of the fast path: each shipped model sampled again with ``generate(fast=True)``
   where that runs bf16 autocast (CUDA, or a CPU with native bf16: AVX512-BF16 / AMX), scored the
   same way as its float32 images of section 1, with the mean and largest per-pixel change (uint8
   levels) and the speed-up. Skipped, and said so, where fast=True stays float32.
Results: bench/results/quality_<device>.json and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from gda_core import fastpath
from gda_core.checkpoints import SHIPPED_DIR, load_run
from gda_core.data import images_to_tensor, load_dataset
from gda_core.metrics import fid, get_extractor, precision_recall
from gda_core.runtime import atomic_write_json, device_name, resolve_device
from gda_core.sampling import generate

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    from sklearn.linear_model import LogisticRegression

    ds = load_dataset("digits")
    flat = lambda a: a.reshape(len(a), -1) / 255.0  # noqa: E731
    clf = LogisticRegression(max_iter=3000, C=0.5).fit(flat(ds.test_images), ds.test_labels)
    val_acc = float(clf.score(flat(ds.val_images), ds.val_labels))
    labels = np.arange(args.n) % 10
    ext = get_extractor("domain-cnn", ds, device=dev)
    real_f = ext(images_to_tensor(ds.train_images))

    def score(images: np.ndarray) -> dict:
        f = ext(images_to_tensor(images))
        p, r = precision_recall(real_f, f, 3)
        return {"recognised": float((clf.predict(flat(images)) == labels).mean()), "precision": p, "recall": r, "fid": fid(real_f, f)}

    rows, fp32_images = [], {}
    for family in ("vae", "gan", "ddpm"):
        path = SHIPPED_DIR / f"{family}-digits"
        if not (path / "model.safetensors").exists():
            continue
        run = load_run(path, device=dev)
        t = time.perf_counter()
        res = generate(run, args.n, labels.tolist(), seed=0)
        fp32_images[family] = res.images
        rows.append({"model": family, "sampler": "default", "steps": run.model.config.to_dict().get("default_steps"),
                     "seconds": round(time.perf_counter() - t, 2), **score(res.images)})  # fmt: skip
    samplers = []
    ddpm = SHIPPED_DIR / "ddpm-digits"
    if (ddpm / "model.safetensors").exists():
        run = load_run(ddpm, device=dev)
        for sampler, steps in (("ddim", 50), ("ddim", 20), ("ddim", 10), ("dpmpp", 20), ("dpmpp", 10)):
            t = time.perf_counter()
            res = generate(run, args.n, labels.tolist(), seed=0, steps=steps, sampler=sampler)
            samplers.append({"sampler": sampler, "steps": steps, "seconds": round(time.perf_counter() - t, 2), **score(res.images)})
    precision, low = [], dev.type == "cuda" or (dev.type == "cpu" and fastpath.cpu_native_bf16())
    for r in rows if low else []:
        run = load_run(SHIPPED_DIR / f"{r['model']}-digits", device=dev)
        wall = {}
        for mode in (None, True):  # the default (float32 on CPU) and fast=True, each timed after a warm-up call
            generate(run, min(args.n, 64), labels[:64].tolist(), seed=0, fast=mode)
            t = time.perf_counter()
            res = generate(run, args.n, labels.tolist(), seed=0, fast=mode)
            wall[mode] = time.perf_counter() - t
        diff = np.abs(res.images.astype(int) - fp32_images[r["model"]].astype(int))
        precision.append({"model": r["model"], "dtype": res.settings["fast"]["dtype"], "seconds": round(wall[True], 2),
                          "seconds_default": round(wall[None], 2), "speedup": round(wall[None] / wall[True], 2),
                          "mean_level_change": round(float(diff.mean()), 3), "max_level_change": int(diff.max()), **score(res.images)})  # fmt: skip
    out = ROOT / "bench" / "results" / f"quality_{dev.type}.json"
    meta = {"device": device_name(dev), "n": args.n, "classifier_val_acc": val_acc, "cpu_native_bf16": fastpath.cpu_native_bf16(),
            "command": "python -m bench.bench_quality" + (f" --n {args.n}" if args.n != 1000 else "")}  # fmt: skip
    atomic_write_json(out, {"meta": meta, "models": rows, "samplers": samplers, "fast_path_precision": precision})
    print(f"Held-out classifier (trained on the digits test split) accuracy on the val split: {val_acc:.3f}\n")
    print(f"| model | recognised as requested class | precision | recall | FID (domain features) | time for {args.n} |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['recognised']:.1%} | {r['precision']:.3f} | {r['recall']:.3f} | {r['fid']:.2f} | {r['seconds']} s |")
    if samplers:
        print(f"\n| DDPM sampler | steps | recognised | precision | recall | FID | time for {args.n} |")
        print("|---|---|---|---|---|---|---|")
        for r in samplers:
            print(f"| {r['sampler']} | {r['steps']} | {r['recognised']:.1%} | {r['precision']:.3f} | {r['recall']:.3f} | {r['fid']:.2f} | {r['seconds']} s |")
    if precision:
        print(f"\n| model | arithmetic | recognised | precision | recall | FID | mean / max change, uint8 levels | time for {args.n} | speed-up |")
        print("|---|---|---|---|---|---|---|---|---|")
        for f32 in rows:
            for r in (x for x in precision if x["model"] == f32["model"]):
                print(f"| {f32['model']} | default | {f32['recognised']:.1%} | {f32['precision']:.3f} | {f32['recall']:.3f} | {f32['fid']:.2f} | - | {r['seconds_default']} s | - |")
                print(f"| {r['model']} | {r['dtype']} (fast=True) | {r['recognised']:.1%} | {r['precision']:.3f} | {r['recall']:.3f} | {r['fid']:.2f} | "
                      f"{r['mean_level_change']} / {r['max_level_change']} | {r['seconds']} s | {r['speedup']}x |")  # fmt: skip
    else:
        print("\n(fast path precision: skipped, generate(fast=True) runs float32 on this device)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
