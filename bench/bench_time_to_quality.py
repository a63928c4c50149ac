"""Time to quality: our DDPM vs diffusers' UNet2DModel, same wall-clock training budget, same data.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_time_to_quality [--minutes 10] [--n 1000] [--seed 0]
        [--models ours diffusers-ref diffusers] [--out NAME]

``--models`` lists what trains (all at once, one process and one thread each):
- ``ours``: our DDPM with its default config, through our trainer (its default training precision:
  bf16 autocast on a CPU with native bf16, float32 elsewhere; ``ours:cpu_bf16=false`` forces float32);
- ``ours:key=value,...``: the same with DDPMConfig overrides, e.g.
  ``ours:base_channels=32,channel_mults=1-2-2`` (tuples written with '-', words as they are:
  ``x0_clip=static``), to compare UNet layouts or training settings (``min_snr_gamma=5``);
  the key ``cpu_bf16=true|false`` is a TrainConfig setting instead (train in bf16 autocast on a CPU
  with native bf16, or not; sampling stays float32, so only the training precision differs). ``diffusers``
  and ``diffusers-ref`` take ``:cpu_bf16=true`` too: the same autocast around their forward pass and
  loss (without it they train in float32, as diffusers does on CPU);
- ``flow[:key=value,...]``: our flow-matching family (same UNet) through the same trainer, sampled
  with its own default sampler and steps (Heun, 20), e.g. ``flow:cpu_bf16=false flow:cpu_bf16=true``
  to measure what bf16 training does to it;
- ``diffusers``: UNet2DModel with OUR default layout (bench/diffusers_baseline.matched_unet);
- ``diffusers-ref``: UNet2DModel in the layout of diffusers' train_unconditional example, shrunk to
  our default's parameter count (bench/diffusers_baseline.reference_unet).

Data: pneumoniamnist (28x28 grey, 2 classes) from ../shared/data/pneumoniamnist/pneumoniamnist.npz,
or any dataset spec via --data (e.g. ../shared/data/plantvillage_corn/plantvillage_corn.npz, 32x32 RGB);
the script says so and exits 0 if the file is absent.

Fairness:
- Every model is class-conditional with about the same parameter count (printed), the same objective (epsilon
  MSE, cosine schedule, 10% null-label dropout for classifier-free guidance), AdamW lr 5e-4 betas
  (0.9, 0.99), gradient clipping 1.0, batch 64, the same batch order, and EMA 0.999 with the same
  (1 + n) / (10 + n) warm-up (diffusers' EMAModel); samples come from the EMA weights of both.
- Ours trains through our normal trainer, ``gda_core.training.train(minutes=...)``, so its budget
  also pays for what users get: checkpoints, preview grids and loss logging. The baseline is a
  bare loop (no checkpoints, no previews).
- The trainings run CONCURRENTLY, each in its own process with one thread, so all see the same
  contention from whatever else runs on the machine. With more models than cores each gets a share of
  a core: the table's CPU s column says how much training each really had (raise --minutes to match).
- Then each draws N images with DDIM 25 steps (same trailing timesteps, starting noise per seed
  and classifier-free guidance formula, ``--guidance``, default 2.0 = our default; x0 is kept in
  range by each library's default: our dynamic thresholding, DDIMScheduler's clip_sample, which
  bench/bench_x0_clip.py compares on one network),
  with labels in the training class proportions. FID / precision / recall / density / coverage use
  the domain-cnn features (gda_core.metrics) against the real training split; the real test split
  scored the same way is given as a reference.
Writes bench/results/<--out, default time_to_quality_cpu>.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "pneumoniamnist" / "pneumoniamnist.npz"


def _labels(train_y: np.ndarray, n: int) -> np.ndarray:
    from gda_core.metrics import balanced_label_order

    order = balanced_label_order(train_y)
    return np.tile(order, -(-n // len(order)))[:n]


def sample_u8(n: int, draw) -> np.ndarray:
    """n images as one uint8 (N, C, H, W) array, drawn 64 at a time: ``draw(start, stop)``
    returns images in [0, 1] for sample indices start..stop-1 (image i from sample seed i)."""
    chunks = [draw(start, min(n, start + 64)) for start in range(0, n, 64)]
    return torch.cat(chunks).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()


def scores(f_real: torch.Tensor, f_fake: torch.Tensor) -> dict:
    """FID and precision / recall / density / coverage of fake against real domain features."""
    from gda_core.metrics import fid, prdc

    return {"fid": round(fid(f_real, f_fake), 3), **{k: round(v, 4) for k, v in prdc(f_real, f_fake).items()}}


def parse_spec(spec: str) -> tuple[str, dict]:
    """'ours:base_channels=16,channel_mults=1-3-5' -> ('ours', {...}); ConfigError-free: bad keys fail in DDPMConfig."""
    kind, _, rest = spec.partition(":")
    if kind not in ("ours", "flow", "diffusers", "diffusers-ref"):
        raise SystemExit(f"error: unknown model spec {spec!r} (ours, ours:key=value,..., flow[:key=value,...], diffusers, diffusers-ref)")
    overrides: dict = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if "-" in value and value.replace("-", "").isdigit():
            overrides[key] = tuple(int(v) for v in value.split("-"))
        else:
            try:
                overrides[key] = json.loads(value)
            except ValueError:  # a bare word: cosine, min_snr, ...
                overrides[key] = value
    if set(overrides) - {"cpu_bf16"} and kind not in ("ours", "flow"):
        raise SystemExit(f"error: diffusers models take only cpu_bf16=true, got {spec!r}")
    return kind, overrides


def worker(args) -> int:
    """One model of the comparison: train for --minutes, then sample --n images into --work."""
    torch.set_num_threads(1)
    from gda_core.data import load_dataset
    from gda_core.models.ddpm import DDPMConfig

    work = Path(args.work)
    ds = load_dataset(args.data)
    train_y = ds.split("train")[1]
    labels = torch.as_tensor(_labels(train_y, args.n))
    seeds = list(range(args.n))
    kind, overrides = parse_spec(args.worker)
    tag = str(args.index)
    cfg = DDPMConfig(image_size=ds.image_size, channels=ds.channels, num_classes=ds.num_classes)
    t0, c0 = time.perf_counter(), time.process_time()
    if kind in ("ours", "flow"):
        from gda_core.checkpoints import load_run
        from gda_core.models import TrainConfig
        from gda_core.training import train

        run_dir = work / f"run_{tag}"
        tc = TrainConfig(cpu_bf16=overrides.pop("cpu_bf16", None))  # None: the trainer's default for the family
        family = "ddpm" if kind == "ours" else "flow"
        # The DDPM samples as diffusers does here (DDIM 25); the flow model with its own defaults (Heun, 20 steps).
        how = {"steps": 25, "sampler": "ddim"} if kind == "ours" else {}
        train(family, ds, out=run_dir, minutes=args.minutes, seed=args.seed, device="cpu", model_config=overrides or None, train_config=tc)
        train_cpu = time.process_time() - c0
        run = load_run(run_dir, device="cpu")
        model = run.model.eval()
        steps_done = int(run.config["step"])
        precision = run.config.get("train_precision", "float32")
        train_wall = float(run.config["train_time_s"])  # the trainer's own budget clock
        params = model.num_parameters()
        t1 = time.perf_counter()
        u8 = sample_u8(args.n, lambda a, b: model.sample(b - a, labels[a:b], seed=a, guidance=args.guidance, **how))
    else:
        from diffusers.training_utils import EMAModel

        from bench import diffusers_baseline as base
        from gda_core.models import TrainConfig
        from gda_core.runtime import set_global_seed
        from gda_core.training import train_precision
        from gda_core.training.trainer import _batch_indices

        set_global_seed(args.seed)
        # The autocast dtype our trainer would use for the same setting: one rule for both libraries.
        amp = train_precision(torch.device("cpu"), TrainConfig(cpu_bf16=bool(overrides.get("cpu_bf16", False))))
        precision = "bfloat16" if amp is not None else "float32"
        if kind == "diffusers":
            unet = base.matched_unet(cfg)
        else:
            from gda_core.models import build_model

            target = build_model("ddpm", image_size=cfg.image_size, channels=cfg.channels, num_classes=cfg.num_classes).num_parameters()
            unet = base.reference_unet(cfg, target)
        sched = base.noise_scheduler(cfg)
        opt = base.make_optimizer(unet)
        ema = EMAModel(unet.parameters(), decay=0.999, use_ema_warmup=False)
        images, ys = ds.tensors("train")
        n = len(ys)
        unet.train()
        steps_done = 0
        # The budget clock starts at the loop, as our trainer's does (after building the model).
        t0, c0 = time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < args.minutes * 60:
            idx = _batch_indices(steps_done, n, 64, args.seed)
            base.train_step(unet, sched, opt, images[idx], ys[idx], num_classes=cfg.num_classes, cond_drop=cfg.cond_drop, amp_dtype=amp)
            ema.step(unet.parameters())
            steps_done += 1
        train_wall, train_cpu = time.perf_counter() - t0, time.process_time() - c0
        ema.copy_to(unet.parameters())
        unet.eval()
        params = sum(p.numel() for p in unet.parameters())
        ddim = base.ddim_scheduler(cfg)
        t1 = time.perf_counter()
        u8 = sample_u8(args.n, lambda a, b: base.sample(unet, ddim, labels[a:b], seeds[a:b], steps=25, guidance=args.guidance, num_classes=cfg.num_classes))
    sample_wall = time.perf_counter() - t1
    np.save(work / f"{tag}_samples.npy", u8, allow_pickle=False)
    stats = {
        "model": args.worker,
        "params": params,
        "train_steps": steps_done,
        "train_wall_s": round(train_wall, 1),
        "train_cpu_s": round(train_cpu, 1),
        "train_images_per_s": round(steps_done * 64 / train_wall, 2),
        "train_precision": precision,
        "sample_wall_s": round(sample_wall, 1),
        "sample_images_per_s": round(args.n / sample_wall, 2),
    }
    (work / f"{tag}_stats.json").write_text(json.dumps(stats))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget of each model (wall clock)")
    ap.add_argument("--n", type=int, default=1000, help="images sampled from each model for the metrics")
    ap.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance of both samplers (1.0: none)")
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="dataset .npz (MedMNIST layout); default: the shared pneumoniamnist")
    ap.add_argument("--models", nargs="+", default=["ours", "diffusers-ref"], help="what trains (see the module docstring)")
    ap.add_argument("--seed", type=int, default=0, help="training seed of every model (init, noise, batch order)")
    ap.add_argument("--out", default="time_to_quality_cpu", help="result file name under bench/results (no extension)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    for spec in args.models:
        parse_spec(spec)
    if not Path(args.data).is_file():
        print(f"skipped: {args.data} not found (time-to-quality needs a dataset file, by default the shared pneumoniamnist.npz; pass --data PATH)")
        return 0
    try:
        import diffusers
    except ImportError:
        print("skipped: diffusers is not installed (pip install -r bench/requirements.txt)")
        return 0
    from bench import bench_speed
    from gda_core.data import load_dataset
    from gda_core.fastpath import cpu_native_bf16
    from gda_core.metrics import get_extractor
    from gda_core.runtime import atomic_write_json

    ds = load_dataset(args.data)
    # The feature extractor is trained (or read from its cache) BEFORE the timed runs start.
    ext = get_extractor("domain-cnn", ds, device="cpu")
    train_u8, train_y = ds.split("train")
    test_u8, _ = ds.split("test")
    f_real = ext(torch.from_numpy(np.ascontiguousarray(train_u8)).permute(0, 3, 1, 2).contiguous())

    with tempfile.TemporaryDirectory(prefix="gda-ttq-") as tmp:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        base_cmd = [sys.executable, "-m", "bench.bench_time_to_quality", "--minutes", str(args.minutes), "--n", str(args.n), "--guidance", str(args.guidance),
                    "--data", args.data, "--work", tmp, "--seed", str(args.seed)]  # fmt: skip
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        procs = {i: subprocess.Popen([*base_cmd, "--worker", w, "--index", str(i)], env=env, cwd=ROOT) for i, w in enumerate(args.models)}
        codes = {args.models[i]: p.wait() for i, p in procs.items()}
        wall = time.perf_counter() - t0
        if any(codes.values()):
            print(f"error: worker exit codes {codes}", file=sys.stderr)
            return 1
        rows = {}
        for i, w in enumerate(args.models):
            stats = json.loads((Path(tmp) / f"{i}_stats.json").read_text())
            u8 = np.load(Path(tmp) / f"{i}_samples.npy", allow_pickle=False)
            f_fake = ext(torch.from_numpy(u8))
            rows[w] = {**stats, **scores(f_real, f_fake)}
    f_test = ext(torch.from_numpy(np.ascontiguousarray(test_u8)).permute(0, 3, 1, 2).contiguous())
    ref = {"n": len(test_u8), **scores(f_real, f_test)}

    meta = {
        "dataset": f"{ds.name} {ds.image_size}x{ds.image_size}x{ds.channels}, {len(train_y)} training images, {ds.num_classes} classes",
        "minutes": args.minutes,
        "seed": args.seed,
        "n_samples": args.n,
        "sampler": f"DDIM 25 steps, eta 0, guidance {args.guidance} (DDPMs); flow: its default sampler and steps, same guidance",
        "conditioning": "class-conditional for both (num_class_embeds = classes + null label, 10% label dropout)",
        "concurrency": f"all {len(args.models)} trainings run at the same time, one process with 1 thread each",
        "features": "domain-cnn (gda_core.metrics), real = training split",
        "wall_s_total": round(wall, 1),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "cpu": bench_speed._cpu_model(),
        "machine": platform.machine(),
        "cpu_native_bf16": cpu_native_bf16(),
        "date": time.strftime("%Y-%m-%d"),
        "command": f"OMP_NUM_THREADS=1 python -m bench.bench_time_to_quality --data {_rel(args.data)} --minutes {args.minutes:g} --n {args.n} "
        f"--guidance {args.guidance:g} --seed {args.seed} --models {' '.join(args.models)} --out {args.out}",
    }
    table = _table(rows, ref)
    out = ROOT / "bench" / "results" / f"{Path(args.out).name}.json"
    atomic_write_json(out, {"meta": meta, "rows": rows, "real_test_reference": ref, "markdown": table})
    print(table)
    print(f"\nwrote {out}")
    return 0


def _table(rows: dict, ref: dict) -> str:
    lines = [
        "| model | params | train steps in budget | train wall s / CPU s | train img/s | FID (lower better) | precision | recall | density | coverage |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    labels = {"ours": "GDA Studio DDPM (our trainer)", "flow": "GDA Studio flow matching (our trainer)", "diffusers": "diffusers UNet2DModel, our layout (bare loop)",
              "diffusers-ref": "diffusers UNet2DModel, train_unconditional layout (bare loop)"}  # fmt: skip
    for name, r in rows.items():
        kind, _, rest = name.partition(":")
        label = labels[kind] + (f" with {rest}" if rest else "") + f", trained in {r.get('train_precision', 'float32')}"
        lines.append(
            f"| {label} | {r['params']:,} | {r['train_steps']} | {r['train_wall_s']:.0f} / {r['train_cpu_s']:.0f} | {r['train_images_per_s']} | "
            f"{r['fid']} | {r['precision']} | {r['recall']} | {r['density']} | {r['coverage']} |"
        )
    lines.append(f"| real test split ({ref['n']} images, reference) | - | - | - | - | {ref['fid']} | {ref['precision']} | {ref['recall']} | "
                 f"{ref['density']} | {ref['coverage']} |")  # fmt: skip
    return "\n".join(lines)


def _rel(path: str) -> str:
    """The data path as a reader re-running the command from the repository root would type it."""
    try:
        return os.path.relpath(Path(path).resolve(), ROOT)
    except ValueError:
        return path


if __name__ == "__main__":
    raise SystemExit(main())
