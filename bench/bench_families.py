"""Every registered family on one dataset at one budget: size, speed and the six scores.

    .venv/bin/python -m bench.bench_families [--dataset digits] [--minutes 4] [--threads 1]
        [--families vae gan ...] [--jobs 1] [--steps 10] [--previews docs/images/families_digits.png]

For each family: train with the family defaults for ``--minutes`` of wall-clock time (the normal
trainer, batch 64, seed 0), then run the full ``evaluate`` (the six axes, utility with the 1x
augmentation set) with ``--steps`` sampler steps for the iterative families (diffusion, LDM,
flow), and record parameters, training images/s (images seen / training time), sampling
images/s (from the speed axis: batch 64, median of 3), the six scores and, for likelihood
families, held-out bits/dim. ``--jobs 2`` runs two families at a time (one thread each) on a
2-core machine. Results: bench/results/families_<dataset>_<device>.json and a markdown table;
``--previews PATH`` also writes the runs' preview grids side by side into one PNG.

``--seeds 3`` evaluates over three sampling seeds, so every score has its interval; then the results
also hold each family's report, the app's reading, the trilemma reading (do the hybrids escape it at
this budget?) and a radar with its bands (docs/images/radar_families_<dataset>.png). The results
file is written after every family and a re-run of the same settings skips the families already in
it, so a long run (all families on pneumoniamnist is hours on 2 cores) continues across sessions
from the committed file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

ITERATIVE = {"ddpm", "ldm", "flow"}
#: The distilled student's sampling steps, as the shipped digits student (bench/train_shipped.py).
STUDENT_STEPS = 2


def one(family: str, args: argparse.Namespace) -> dict:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from gda_core import checkpoints as ck
    from gda_core.data import load_dataset
    from gda_core.metrics import evaluate
    from gda_core.metrics.evaluation import evaluation_options
    from gda_core.models import TrainConfig
    from gda_core.runtime import device_name, resolve_device
    from gda_core.training import ensure_trained, is_finished

    load0 = os.getloadavg()[0]
    dev = resolve_device(args.device)
    ds = load_dataset(args.dataset, image_size=args.image_size)
    out = Path(args.runs_dir) / f"{family}-{args.dataset}"
    extra = {}
    train = {"minutes": args.minutes, "train_config": TrainConfig(batch_size=64), "seed": 0, "device": args.device}
    if family != "distilled":
        ensure_trained(out, family, ds, **train)  # reused when finished, resumed when killed part-way
    elif not is_finished(out):  # a student is made from this run's DDPM (trained before it), for the same minutes
        from gda_core.distill import distill

        teacher = Path(args.runs_dir) / f"ddpm-{args.dataset}"
        if not is_finished(teacher):
            # A fresh clone keeps the DDPM's row but not its run folder: the student's teacher is then a new
            # training of the same settings, not the DDPM evaluated above, and its row says so.
            ensure_trained(teacher, "ddpm", ds, **train)
            extra["teacher_retrained"] = True
        distill(teacher, steps=STUDENT_STEPS, out=out, minutes=args.minutes, seed=0, device=args.device, resume=(out / ck.STATE).exists())
    cfg = ck.read_config(out)
    t = time.perf_counter()
    steps = args.steps if family in ITERATIVE else None
    opts = {**evaluation_options(args.preset), "augment": (1,), "seeds": args.seeds}
    rep = evaluate(out, ds, device=args.device, steps=steps, seed=0, **opts)
    eval_s = time.perf_counter() - t
    run = ck.load_run(out, device="cpu")
    return {
        "family": family,
        "parameters": run.model.num_parameters(),
        "train_steps": cfg["step"],
        "train_time_s": cfg["train_time_s"],
        "train_images_per_s": cfg["step"] * 64 / max(cfg["train_time_s"], 1e-9),
        "train_precision": cfg.get("train_precision", "float32"),
        "sample_images_per_s": rep.raw.get("images_per_s"),
        "nfe_per_image": rep.raw.get("nfe_per_image"),
        "sampler_steps": steps,
        "scores": rep.scores,
        "bits_per_dim": rep.bits_per_dim,
        "fid": rep.raw.get("fid"),
        "tstr_acc": rep.raw.get("tstr_acc"),
        "trtr_acc": rep.raw.get("trtr_acc"),
        "eval_time_s": round(eval_s, 1),
        "device": device_name(dev),
        "threads": torch.get_num_threads(),
        "seeds": args.seeds,
        "intervals": rep.intervals,
        "load_start": round(load0, 2),
        "load_end": round(os.getloadavg()[0], 2),
        # The whole report, so the reading, trilemma and radar can be rebuilt on a fresh clone (run folders are not tracked).
        "report": rep.to_dict(),
        **extra,
    }


def _settings(args: argparse.Namespace, families: list[str]) -> dict:
    """What the results answer: a re-run with the same settings continues them, other settings start over."""
    return {"dataset": args.dataset, "image_size": args.image_size, "minutes": args.minutes, "steps": args.steps, "families": families,
            "seeds": args.seeds, "preset": args.preset, "threads": args.threads, "jobs": args.jobs, "device": args.device}  # fmt: skip


def summarise(rows: list[dict], dataset: str) -> tuple[dict, bytes | None]:
    """The reading, the trilemma reading and the radar PNG of the rows that carry a report (two or more)."""
    from gda_core.metrics import Report, radar_png, reading, trilemma_reading

    have = [r for r in rows if isinstance(r.get("report"), dict)]
    if len(have) < 2:
        return {"reading": [], "trilemma": [], "image": None}, None
    reps = [Report.from_dict(r["report"]) for r in have]
    names = [r["family"] for r in have]
    return ({"reading": reading(reps, names), "trilemma": trilemma_reading(reps, names), "image": f"images/radar_families_{dataset}.png"},
            radar_png(reps, names, size=800))  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--minutes", type=float, default=4.0, help="training wall-clock budget per family")
    ap.add_argument("--steps", type=int, default=10, help="sampler steps for diffusion / LDM / flow during evaluation")
    ap.add_argument("--families", nargs="*", default=None)
    ap.add_argument("--seeds", type=int, default=1, help="sampling seeds of each evaluation (3: every score with its interval)")
    ap.add_argument(
        "--preset", choices=("full", "quick"), default="full", help="evaluation settings (quick: fewer samples, short classifiers)"
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--runs-dir", default=str(ROOT / "bench" / "runs"))
    ap.add_argument("--results-dir", default=str(ROOT / "bench" / "results"), help="where the (tracked) results file goes")
    ap.add_argument("--images-dir", default=str(ROOT / "docs" / "images"), help="where the radar goes (with --seeds > 1)")
    ap.add_argument("--previews", default=None, help="write the runs' preview grids side by side into this PNG")
    ap.add_argument("--summarise-only", action="store_true",
                    help="re-read the stored reports (reading, trilemma, radar) of the results file with this code, running nothing")  # fmt: skip
    args = ap.parse_args(argv)
    if args.seeds < 1:
        ap.error("--seeds must be at least 1")
    from bench import bench_speed
    from gda_core.models import list_models
    from gda_core.runtime import atomic_write_bytes, atomic_write_json, resolve_device

    families = args.families or list_models()
    # A MedMNIST set is read from ../shared/data/<name> (or $GDA_DATA_DIR), never downloaded.
    if (SHARED / args.dataset).is_dir():
        os.environ.setdefault("GDA_DATA_DIR", str(SHARED / args.dataset))
    os.environ.setdefault("GDA_ALLOW_DOWNLOAD", "0")
    dev = resolve_device(args.device).type
    path = Path(args.results_dir) / f"families_{args.dataset}_{dev}.json"
    settings = _settings(args, families)
    old = json.loads(path.read_text()) if path.is_file() else {}
    done = {r["family"]: r for r in old.get("rows", [])} if old.get("settings") == settings else {}
    for f in done:
        print(f"{f}: already in {path.name}", flush=True)
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    command = " ".join(["python -m bench.bench_families", *(argv if argv is not None else sys.argv[1:])])

    def summary(rows: list[dict]) -> dict:
        """The reading, trilemma reading and radar of these rows (with several seeds), the radar written."""
        extra, png = summarise(rows, args.dataset) if args.seeds > 1 else ({}, None)
        if png is not None:
            atomic_write_bytes(Path(args.images_dir) / f"radar_families_{args.dataset}.png", png)
        return extra

    def write(rows: list[dict]) -> dict:
        rows = sorted(rows, key=lambda r: families.index(r["family"]))
        out = {
            "dataset": args.dataset,
            "minutes_per_family": args.minutes,
            "sampler_steps": args.steps,
            "jobs": args.jobs,
            "seeds": args.seeds,
            "cpu_count": os.cpu_count(),
            # This run's wall time; each family's own training and evaluation times are in its row.
            "wall_s": round(time.perf_counter() - t0, 1),
            "cpu": bench_speed._cpu_model(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "command": command,
            "settings": settings,
            "units_done": len(rows),
            "units_total": len(families),
            "rows": rows,
        }
        out.update(summary(rows))
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, out)  # after every family: a session may stop at any time
        return out

    if args.summarise_only:
        if not done:
            ap.error(f"{path} holds no results of these settings to summarise")
        # Not write(): that would stamp this call's wall time, load and date over the run's own.
        old.update(summary(list(done.values())))
        atomic_write_json(path, old)
        print(f"re-summarised {len(done)} families in {path}")
        return 0
    rows = list(done.values())
    todo = [f for f in families if f not in done]
    # The student needs its teacher finished: it runs after the others, never beside the DDPM.
    later = [f for f in todo if f == "distilled"]
    todo = [f for f in todo if f != "distilled"]
    if args.jobs > 1 and todo:
        with ProcessPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(one, f, args) for f in todo]
            for fut in as_completed(futures):
                rows.append(fut.result())
                write(rows)
        todo = []
    for f in todo + later:
        rows.append(one(f, args))
        write(rows)
    res = write(rows)
    rows = res["rows"]
    axes = ["fidelity", "diversity", "speed", "utility", "robustness", "privacy"]
    print(f"{args.dataset}, {args.minutes:g} min training per family on {rows[0]['device']} ({rows[0]['threads']} thread(s))\n")
    print("| family | parameters | train img/s | sample img/s | " + " | ".join(axes) + " | bits/dim |")
    print("|---|---|---|---|" + "---|" * len(axes) + "---|")
    for r in rows:
        sc = " | ".join("n/a" if r["scores"].get(a) is None else f"{r['scores'][a]:.2f}" for a in axes)
        bpd = "-" if r["bits_per_dim"] is None else f"{r['bits_per_dim']:.2f}"
        fam = r["family"] + (f" ({r['sampler_steps']} steps)" if r["sampler_steps"] else "")
        print(f"| {fam} | {r['parameters'] / 1e6:.2f} M | {r['train_images_per_s']:.0f} | {r['sample_images_per_s']:.1f} | {sc} | {bpd} |")
    for line in res.get("trilemma", []):
        print(f"- {line}")
    print(f"wrote {path}")
    if args.previews:
        order = [f for f in PREVIEW_ORDER if f in families] + [f for f in families if f not in PREVIEW_ORDER]
        print(f"\nwrote {compose_previews([Path(args.runs_dir) / f'{f}-{args.dataset}' for f in order], Path(args.previews))}")
    return 0


# The previews' order in the docs' image: the one-shot generators, then the iterative families (the rest after).
PREVIEW_ORDER = ("vae", "gan", "stylegan2", "ddpm", "ldm", "flow", "realnvp")


def compose_previews(run_dirs: list[Path], out: Path, columns: int | None = None, gap: int = 16, scale: int = 3) -> Path:
    """The runs' preview.png grids, each under its family's name, ``columns`` to a row on a grey
    background, enlarged ``scale`` times (nearest neighbour: 16-px digits stay sharp). Rows, not one
    strip: ten grids side by side made a 7000-px-wide image nobody could read at page width. By default
    as many columns as make the whole about 3:2 landscape (two for wide 2-class grids, five for 10-class ones)."""
    import io

    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    from gda_core.runtime import atomic_write_bytes

    found = [(d.name.split("-")[0], d / "preview.png") for d in run_dirs if (d / "preview.png").is_file()]
    if not found:
        raise SystemExit("error: no preview.png in the runs")
    grids = [(name, np.asarray(Image.open(p).convert("RGB")).repeat(scale, axis=0).repeat(scale, axis=1)) for name, p in found]
    try:
        font = ImageFont.load_default(size=18)
    except (ImportError, OSError):  # a Pillow built without FreeType: its small bitmap font still names the grid
        font = ImageFont.load_default()
    label_h = 26
    cell_w = max(g.shape[1] for _, g in grids)
    cell_h = max(g.shape[0] for _, g in grids) + label_h
    if columns is None:
        columns = round(math.sqrt(len(grids) * cell_h / cell_w * 1.5))
    columns = max(1, min(columns, len(grids)))
    rows = -(-len(grids) // columns)
    canvas = Image.new("RGB", (columns * cell_w + gap * (columns + 1), rows * cell_h + gap * (rows + 1)), (128, 128, 128))
    draw = ImageDraw.Draw(canvas)
    for i, (name, g) in enumerate(grids):
        x = gap + (i % columns) * (cell_w + gap)
        y = gap + (i // columns) * (cell_h + gap)
        draw.text((x, y + 2), name, fill=(255, 255, 255), font=font)
        canvas.paste(Image.fromarray(g), (x, y + label_h))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, buf.getvalue())
    return out


if __name__ == "__main__":
    raise SystemExit(main())
