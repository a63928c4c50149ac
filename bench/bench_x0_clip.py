"""How the DDPM sampler keeps x0 in range: dynamic thresholding vs a static clip vs diffusers' default.

    .venv/bin/python -m bench.bench_x0_clip [--n 500] [--steps 300] [--out x0_clip_cpu]

Each sampler turns the same starting noise into images with DDIM 25 steps and guidance 2.0 (our
default) on two networks: the shipped 16x16 digits DDPM and a DDPM trained here for
--steps steps on pneumoniamnist (seed 0; early in training, when x0 predictions overshoot most).
Variants: ours with DDPMConfig ``x0_clip="dynamic"`` (Imagen's thresholding, the default), ours with
``x0_clip="static"`` (clip to [-1, 1], eps re-derived), and diffusers' DDIMScheduler with its
defaults (clip x0, keep the network's eps) driving our network. Scores: FID and precision / recall
/ density / coverage on the domain features against the real training split. Writes
bench/results/x0_clip_cpu.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

PNEUMONIA = ROOT.parent / "shared" / "data" / "pneumoniamnist" / "pneumoniamnist.npz"


def _diffusers_images(model, labels: torch.Tensor, seeds: list[int]) -> torch.Tensor:
    from bench import diffusers_baseline as base

    cfg = model.config

    class Wrapped(torch.nn.Module):  # UNet2DModel's call signature around our UNet
        def __init__(self, unet):
            super().__init__()
            self.unet = unet
            self.config = type("Config", (), {"in_channels": cfg.channels, "sample_size": cfg.image_size})()

        def forward(self, x, t, class_labels):
            t = t.expand(x.shape[0]) if t.ndim == 0 else t
            return type("Out", (), {"sample": self.unet(x, t, class_labels)})()

    return base.sample(Wrapped(model.unet_ema), base.ddim_scheduler(cfg), labels, seeds, steps=25, guidance=2.0, num_classes=cfg.num_classes)


def score(run_dir: Path, ds, n: int) -> dict:
    from gda_core.checkpoints import load_run
    from gda_core.metrics import balanced_label_order, fid, get_extractor, prdc
    from gda_core.models.ddpm import DDPM

    ext = get_extractor("domain-cnn", ds, device="cpu")
    train_u8, train_y = ds.split("train")
    f_real = ext(torch.from_numpy(np.ascontiguousarray(train_u8)).permute(0, 3, 1, 2).contiguous())
    model = load_run(run_dir, device="cpu").model.eval()
    assert isinstance(model, DDPM)
    order = balanced_label_order(train_y)
    labels = torch.as_tensor(np.tile(order, -(-n // len(order)))[:n])
    out = {}
    trained = model.config
    for variant in ("dynamic", "static", "diffusers"):
        if variant != "diffusers":
            model.config = dataclasses.replace(trained, x0_clip=variant)
        chunks = []
        for s in range(0, n, 64):
            lab, seeds = labels[s : s + 64], list(range(s, min(n, s + 64)))
            if variant == "diffusers":
                chunks.append(_diffusers_images(model, lab, seeds))
            else:
                chunks.append(model.sample(len(seeds), lab, seed=s, steps=25, guidance=2.0, sampler="ddim"))
        u8 = torch.cat(chunks).clamp(0, 1).mul(255).round().to(torch.uint8)
        f = ext(u8)
        out[variant] = {"fid": round(fid(f_real, f), 3), **{k: round(v, 3) for k, v in prdc(f_real, f).items()}}
        print(run_dir.name, variant, out[variant], flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="images per variant")
    ap.add_argument("--steps", type=int, default=300, help="training steps of the pneumoniamnist DDPM")
    ap.add_argument("--out", default="x0_clip_cpu", help="result file name under bench/results (no extension)")
    args = ap.parse_args()
    from gda_core.data import load_dataset
    from gda_core.runtime import atomic_write_json
    from gda_core.training import train

    t0 = time.perf_counter()
    shipped = ROOT / "checkpoints" / "ddpm-digits"
    shipped_steps = json.loads((shipped / "config.json").read_text())["step"]
    precision = None
    rows = {f"shipped ddpm-digits (16x16, {shipped_steps} steps)": score(shipped, load_dataset("digits"), args.n)}
    if PNEUMONIA.is_file():
        ds = load_dataset(str(PNEUMONIA))
        with tempfile.TemporaryDirectory(prefix="gda-x0clip-") as tmp:
            run = Path(tmp) / "pneumonia"
            train("ddpm", ds, out=run, steps=args.steps, seed=0, device="cpu")
            precision = json.loads((run / "config.json").read_text())["train_precision"]  # the trainer's default here
            rows[f"pneumoniamnist DDPM (28x28, {args.steps} steps)"] = score(run, ds, args.n)
    else:
        print(f"skipped the pneumoniamnist row: {PNEUMONIA} not found")
    lines = ["| network | x0 handling | FID (lower better) | precision | recall | density | coverage |", "|---|---|---|---|---|---|---|"]
    names = {"dynamic": "ours, dynamic thresholding (default)", "static": "ours, static clip", "diffusers": "diffusers DDIMScheduler defaults"}
    for net, res in rows.items():
        for v, r in res.items():
            lines.append(f"| {net} | {names[v]} | {r['fid']} | {r['precision']} | {r['recall']} | {r['density']} | {r['coverage']} |")
    table = "\n".join(lines)
    meta = {"n": args.n, "sampler": "DDIM 25 steps, eta 0, guidance 2.0", "features": "domain-cnn, real = training split",
            "wall_s": round(time.perf_counter() - t0, 1), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
            "pneumoniamnist_train_precision": precision, "cpu_threads": torch.get_num_threads(),
            "command": f"python -m bench.bench_x0_clip --n {args.n} --steps {args.steps} --out {args.out}"}  # fmt: skip
    out = ROOT / "bench" / "results" / f"{Path(args.out).name}.json"
    atomic_write_json(out, {"meta": meta, "rows": rows, "markdown": table})
    print(table)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
