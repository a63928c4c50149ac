"""The slider target: which shipped model of diffusion quality answers a slider move in under 100 ms.

    .venv/bin/python -m bench.bench_slider [--n 1000] [--seeds 3] [--rounds 7]

For each shipped digits checkpoint that can answer fast (the distilled student, the DDGAN, the
VAE-GAN, the GAN and the VAE) and the reference it is judged against, the DDPM sampled with
DPM-Solver++(2M) at 10 steps:

1. Latency: wall time of one ``gda_core.sampling.generate`` call at batch 16 (what the Sample page
   runs on a slider move), median of ``--rounds`` interleaved rounds after a warm-up, with the
   process CPU time beside it.
2. Quality: FID, precision and recall (k = 3) on the domain features, ``--n`` class-balanced
   samples per sampling seed against the training split, over ``--seeds`` seeds: the mean with its
   t-interval, so "as good as the DDPM" is said only where the intervals allow it.

The load average is recorded at the start and the end; a run that starts above 1.5 or ends above
2.0 is written with ``"valid": false`` (its timings are not quiet-machine figures; re-run it alone).
Results: bench/results/slider_<device>.json, a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from bench.bench_speed import SLIDER_BUDGET_S, _cpu_model, interleaved
from gda_core.checkpoints import SHIPPED_DIR, load_run
from gda_core.data import images_to_tensor, load_dataset
from gda_core.metrics import fid, get_extractor, precision_recall
from gda_core.metrics.intervals import fmt, over_replicates
from gda_core.runtime import atomic_write_json, device_name, resolve_device
from gda_core.sampling import generate

ROOT = Path(__file__).resolve().parents[1]
# name -> (checkpoint, sampling settings); the DDPM at DPM-Solver++ 10 steps is the reference.
CASES = {
    "ddpm dpmpp-10 (reference)": ("ddpm-digits", {"sampler": "dpmpp", "steps": 10}),
    "distilled (2 steps)": ("distilled-digits", {}),
    "ddgan (2 steps)": ("ddgan-digits", {}),
    "vaegan": ("vaegan-digits", {}),
    "gan": ("gan-digits", {}),
    "vae": ("vae-digits", {}),
}


def _bounded(est, metric: str):
    """A t-interval kept within what the figure can take (FID >= 0; precision and recall in [0, 1])."""
    if est is None:
        return None
    hi = 1.0 if metric in ("precision", "recall") else float("inf")
    return est.within(0.0, hi)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    load0 = os.getloadavg()
    runs = {k: (load_run(SHIPPED_DIR / ck, device=dev), kw) for k, (ck, kw) in CASES.items() if (SHIPPED_DIR / ck / "model.safetensors").exists()}
    fns = {k: (lambda run=run, kw=kw: generate(run, 16, seed=0, **kw)) for k, (run, kw) in runs.items()}
    lat = interleaved(fns, dev, rounds=args.rounds, warmup=2)
    ds = load_dataset("digits")
    ext = get_extractor("domain-cnn", ds, device=dev)
    real_f = ext(images_to_tensor(ds.train_images))
    labels = (np.arange(args.n) % ds.num_classes).tolist()
    rows = []
    for k, (run, kw) in runs.items():
        per_seed = []
        for s in range(args.seeds):
            imgs = generate(run, args.n, labels, seed=1000 * (s + 1), **kw).images
            f = ext(images_to_tensor(imgs))
            p, r = precision_recall(real_f, f, 3)
            per_seed.append({"fid": fid(real_f, f), "precision": p, "recall": r})
        est = {m: _bounded(over_replicates([x[m] for x in per_seed], what="sampling seeds"), m) for m in ("fid", "precision", "recall")}
        ms = lat[k]["wall_s"] * 1000
        rows.append({"model": k, "checkpoint": CASES[k][0], "sampling": CASES[k][1], "batch": 16, "median_ms": round(ms, 1),
                     "cpu_ms": round(lat[k]["cpu_s"] * 1000, 1), "wall_all_ms": [round(x * 1000, 1) for x in lat[k]["wall_all"]],
                     "under_budget": ms < SLIDER_BUDGET_S * 1000, "per_seed": per_seed,
                     **{m: (e.to_dict() if e else None) for m, e in est.items()}})  # fmt: skip
    load1 = os.getloadavg()
    ref = rows[0] if rows and "reference" in rows[0]["model"] else None
    for r in rows:  # does its FID interval overlap the reference's or lie below it?
        if ref is not None and r is not ref and r["fid"] and ref["fid"]:
            r["fid_vs_reference"] = ("clearly worse" if r["fid"]["lo"] > ref["fid"]["hi"] else
                                     "clearly better" if r["fid"]["hi"] < ref["fid"]["lo"] else "within noise")  # fmt: skip
    meta = {"device": device_name(dev), "cpu": _cpu_model(), "threads": __import__("torch").get_num_threads(), "n": args.n, "seeds": args.seeds,
            "rounds": args.rounds, "load_start": [round(x, 2) for x in load0], "load_end": [round(x, 2) for x in load1],
            "valid": load0[0] < 1.5 and load1[0] <= 2.0, "date": time.strftime("%Y-%m-%d %H:%M"),
            "command": "python -m bench.bench_slider" + (f" --n {args.n}" if args.n != 1000 else "")}  # fmt: skip
    out = ROOT / "bench" / "results" / f"slider_{dev.type}.json"
    atomic_write_json(out, {"meta": meta, "rows": rows})
    print(f"load average {load0[0]:.2f} -> {load1[0]:.2f}{'' if meta['valid'] else ' (NOT a quiet machine: re-run alone)'}\n")
    print("| model | batch-16 latency (median ms) | under 100 ms | FID | precision | recall | FID against the DDPM |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        e = {m: _bounded(over_replicates([x[m] for x in r["per_seed"]]), m) for m in ("fid", "precision", "recall")}
        print(f"| {r['model']} | {r['median_ms']} | {'yes' if r['under_budget'] else 'no'} | {fmt(e['fid'], 2)} | {fmt(e['precision'])} | "
              f"{fmt(e['recall'])} | {r.get('fid_vs_reference', '-')} |")  # fmt: skip
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
