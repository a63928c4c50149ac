"""Sample quality of the shipped digits checkpoints, and few-step samplers vs DDIM at 50 steps.

    .venv/bin/python bench/bench_quality.py [--n 1000]

1. Held-out recognition: a logistic-regression classifier trained ONLY on the digits test split
   (never seen by the generative models) labels 1,000 class-balanced samples per model; the
   figure is the share recognised as the class that was asked for (chance = 10 %).
2. Diffusion samplers: the shipped DDPM sampled with DDIM and DPM-Solver++(2M) at 10 / 20 / 50
   steps; precision, recall and FID on the domain features (gda_core.metrics, real = training
   split), plus the recognition rate and wall time.
Results: bench/results/quality_<device>.json and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gda_core.checkpoints import SHIPPED_DIR, load_run  # noqa: E402
from gda_core.data import images_to_tensor, load_dataset  # noqa: E402
from gda_core.metrics import fid, get_extractor, precision_recall  # noqa: E402
from gda_core.runtime import device_name, resolve_device  # noqa: E402
from gda_core.sampling import generate  # noqa: E402


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

    rows = []
    for family in ("vae", "gan", "ddpm"):
        path = SHIPPED_DIR / f"{family}-digits"
        if not (path / "model.safetensors").exists():
            continue
        run = load_run(path, device=dev)
        t = time.perf_counter()
        res = generate(run, args.n, labels.tolist(), seed=0)
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
    out = ROOT / "bench" / "results" / f"quality_{dev.type}.json"
    meta = {"device": device_name(dev), "n": args.n, "classifier_val_acc": val_acc, "command": "python bench/bench_quality.py"}
    out.write_text(json.dumps({"meta": meta, "models": rows, "samplers": samplers}, indent=2) + "\n")
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
