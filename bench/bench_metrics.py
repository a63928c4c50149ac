"""Benchmark the metric kernels against their oracles (not a test).

1. Precision / recall / density / coverage on 10k x 10k features vs ``prdc.compute_prdc``.
2. Nearest-training-image SSIM, 1,000 synthetic vs 2,500 training 28x28 images: ours (exact,
   every pair) vs a loop over ``skimage.metrics.structural_similarity`` and vs a naive batched
   torch version (product + Gaussian conv per pair); the two slow ones are timed on a subset of
   pairs and extrapolated (the table says so).
3. DeepFool on 500 test images vs torchattacks.DeepFool (timed on a subset and extrapolated).

Writes bench/results/metrics_<device>.json and prints a markdown table.

    .venv/bin/python -m bench.bench_metrics [--device auto] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gda_core.metrics import (
    ClassifierBudget,
    deepfool,
    density_coverage,
    nearest_ssim,
    precision_recall,
    train_classifier,
)
from gda_core.metrics.privacy import C1, C2, WIN, gaussian_window
from gda_core.runtime import device_name, resolve_device

ROOT = Path(__file__).resolve().parents[1]

PNEUMONIA = ROOT.parent / "shared" / "data" / "pneumoniamnist" / "pneumoniamnist.npz"


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(fn, dev):
    _sync(dev)
    t0 = time.perf_counter()
    out = fn()
    _sync(dev)
    return out, time.perf_counter() - t0


def bench_prdc(n: int, dev: torch.device) -> dict:
    import prdc

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 128)) * 3
    real = (centres[rng.integers(0, 10, n)] + rng.normal(size=(n, 128))).astype(np.float32)
    fake = (centres[rng.integers(0, 10, n)] * 1.1 + rng.normal(size=(n, 128))).astype(np.float32)

    def ours():
        p, r = precision_recall(real, fake, 3, device=dev)
        d, c = density_coverage(real, fake, 5, device=dev)
        return p, r, d, c

    (p, r, d, c), t_ours = _timed(ours, dev)

    def ref():
        with contextlib.redirect_stdout(io.StringIO()):
            a = prdc.compute_prdc(real, fake, 3)
            b = prdc.compute_prdc(real, fake, 5)
        return a["precision"], a["recall"], b["density"], b["coverage"]

    refv, t_ref = _timed(ref, torch.device("cpu"))
    diff = float(np.max(np.abs(np.array([p, r, d, c]) - np.array(refv, dtype=float))))
    return {
        "n": n,
        "dim": 128,
        "ours_s": t_ours,
        "prdc_s": t_ref,
        "max_abs_diff": diff,
        "ours": [p, r, d, c],
        "prdc": list(map(float, refv)),
    }


def naive_nearest_ssim(syn: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """Reference: for each synthetic image, elementwise products with every training image and
    valid Gaussian convolutions of x, y, x^2, y^2, xy (grey images)."""
    g1 = gaussian_window(dtype=torch.float32).to(syn.device)
    w = torch.outer(g1, g1)[None, None]
    conv = lambda t: F.conv2d(t, w)  # noqa: E731
    mu_y = conv(train)
    var_y = conv(train * train) - mu_y**2
    out = []
    for x in syn:
        x = x[None]
        mu_x = conv(x)
        var_x = conv(x * x) - mu_x**2
        cov = conv(train * x) - mu_x * mu_y
        s = ((2 * mu_x * mu_y + C1) * (2 * cov + C2)) / ((mu_x**2 + mu_y**2 + C1) * (var_x + var_y + C2))
        out.append(s.mean(dim=(1, 2, 3)).max())
    return torch.stack(out)


def bench_ssim(n_syn: int, n_train: int, dev: torch.device, skimage_pairs: int, naive_syn: int) -> dict:
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(1)
    train = torch.from_numpy(rng.random((n_train, 1, 28, 28), dtype=np.float32))
    syn = torch.from_numpy(rng.random((n_syn, 1, 28, 28), dtype=np.float32))
    syn[:10] = train[:10]  # some planted copies
    ours, t_ours = _timed(lambda: nearest_ssim(syn, train, device=dev), dev)
    # skimage over a subset of pairs, extrapolated to all n_syn * n_train pairs.
    pairs = [(i % n_syn, (i * 7919) % n_train) for i in range(skimage_pairs)]
    sn, tn = syn.numpy().astype(np.float64), train.numpy().astype(np.float64)
    t0 = time.perf_counter()
    for i, j in pairs:
        structural_similarity(sn[i, 0], tn[j, 0], gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    t_sk = (time.perf_counter() - t0) / skimage_pairs * n_syn * n_train
    # naive batched torch over the first naive_syn synthetic images, extrapolated.
    naive, t_naive = _timed(lambda: naive_nearest_ssim(syn[10 : 10 + naive_syn].to(dev), train.to(dev)), dev)
    t_naive_full = t_naive / naive_syn * n_syn
    agree = float((naive.double().cpu() - ours[10 : 10 + naive_syn]).abs().max())
    return {
        "n_syn": n_syn,
        "n_train": n_train,
        "ours_s": t_ours,
        "skimage_loop_s_extrapolated": t_sk,
        "skimage_pairs_timed": skimage_pairs,
        "naive_torch_s_extrapolated": t_naive_full,
        "naive_syn_timed": naive_syn,
        "max_abs_diff_vs_naive": agree,
        "planted_copies_found": bool((ours[:10] > 0.9999).all()),
        "window": WIN,
    }


def bench_deepfool(dev: torch.device, n: int, ta_subset: int) -> dict:
    import torchattacks

    if PNEUMONIA.is_file():
        d = np.load(PNEUMONIA)
        tr_x, tr_y = d["train_images"], d["train_labels"].reshape(-1)
        te_x = np.concatenate([d["test_images"], d["val_images"]])[:n]
        te_y = np.concatenate([d["test_labels"], d["val_labels"]]).reshape(-1)[:n]
        k, name = 2, "pneumoniamnist 28x28"
    else:
        from sklearn.datasets import load_digits

        b = load_digits()
        x = (b.images * (255 / 16)).astype(np.uint8)
        tr_x, tr_y, te_x, te_y = x[:1297], b.target[:1297], x[1297:][:n], b.target[1297:][:n]
        k, name = 10, "digits 8x8"
    to_t = lambda a: torch.from_numpy(a).float().div(255)[:, None]  # noqa: E731
    clf = train_classifier(
        to_t(tr_x), torch.from_numpy(tr_y).long(), k, seed=0, budget=ClassifierBudget(epochs=5, min_steps=100, max_steps=300), device=dev
    )
    x, y = to_t(te_x).to(dev), torch.from_numpy(te_y).long().to(dev)
    res, t_ours = _timed(lambda: deepfool(clf, x, y, steps=50, overshoot=0.02), dev)
    atk = torchattacks.DeepFool(clf, steps=50, overshoot=0.02)
    xs, ys = x[:ta_subset], y[:ta_subset]
    adv, t_ta = _timed(lambda: atk(xs, ys), dev)
    with torch.no_grad():
        correct = clf(xs).argmax(1) == ys
    r_ta = ((adv - xs).flatten(1).norm(dim=1) / xs.flatten(1).norm(dim=1)).double().cpu()
    r_ta[~correct.cpu()] = 0
    return {
        "dataset": name,
        "n": len(x),
        "ours_s": t_ours,
        "torchattacks_s_extrapolated": t_ta / ta_subset * len(x),
        "torchattacks_images_timed": ta_subset,
        "rho_ours": res.rho,
        "rho_ours_subset": float(res.per_image[:ta_subset].mean()),
        "rho_torchattacks_subset": float(r_ta.mean()),
        "flip_rate_ours": float(res.flipped.double().mean()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    q = args.quick
    env = {
        "device": device_name(dev),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_avg_start": os.getloadavg(),
    }
    print(f"device: {env['device']}, threads {env['threads']}, load {env['load_avg_start']}", file=sys.stderr)
    pr = bench_prdc(2000 if q else 10000, dev)
    print("prdc done", file=sys.stderr)
    ss = bench_ssim(200 if q else 1000, 500 if q else 2500, dev, skimage_pairs=200 if q else 1000, naive_syn=5 if q else 20)
    print("ssim done", file=sys.stderr)
    df = bench_deepfool(dev, 100 if q else 500, ta_subset=20 if q else 50)
    env["load_avg_end"] = os.getloadavg()
    out = {"env": env, "prdc": pr, "nearest_ssim": ss, "deepfool": df}
    res_dir = ROOT / "bench" / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    path = res_dir / f"metrics_{dev.type}{'_quick' if q else ''}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    rows = [
        (
            "P/R/D/C",
            f"{pr['n']:,} x {pr['n']:,} feats (128-d)",
            f"{pr['ours_s']:.2f} s",
            f"prdc.compute_prdc x2 (k=3, k=5): {pr['prdc_s']:.2f} s",
            f"max abs diff {pr['max_abs_diff']:.1e}",
        ),
        (
            "nearest SSIM",
            f"{ss['n_syn']:,} syn x {ss['n_train']:,} train 28x28",
            f"{ss['ours_s']:.2f} s",
            f"skimage loop: {ss['skimage_loop_s_extrapolated']:.0f} s (extrapolated from {ss['skimage_pairs_timed']:,} pairs); "
            f"naive batched torch: {ss['naive_torch_s_extrapolated']:.1f} s (extrapolated from {ss['naive_syn_timed']} syn images)",
            f"max abs diff vs naive {ss['max_abs_diff_vs_naive']:.1e}; planted copies found: {ss['planted_copies_found']}",
        ),
        (
            "DeepFool L2",
            f"{df['n']} test images ({df['dataset']})",
            f"{df['ours_s']:.2f} s",
            f"torchattacks: {df['torchattacks_s_extrapolated']:.1f} s (extrapolated from {df['torchattacks_images_timed']} images)",
            f"rho on that subset: ours {df['rho_ours_subset']:.4f} vs torchattacks {df['rho_torchattacks_subset']:.4f}; flip rate {df['flip_rate_ours']:.3f}",
        ),
    ]
    print(
        f"\nDevice: {env['device']} ({env['threads']} threads, load average {env['load_avg_start'][0]:.1f} -> {env['load_avg_end'][0]:.1f})\n"
    )
    print("| metric | size | ours | oracle | agreement |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
