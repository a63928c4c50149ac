"""Train the checkpoints shipped in checkpoints/ (the app's instant start) and write their model cards.

    .venv/bin/python -m bench.train_shipped [--only vae,gan,ddpm] [--runs-dir /tmp/ship] [--eval-only]

Each model trains on the built-in `digits` dataset (16x16, all 1,259 training images) with the
budget below, is evaluated on the six axes, and is copied into checkpoints/<family>-digits/ with
its config.json, history.json, preview.png and MODEL_CARD.md (the resumable train_state.pt is
not shipped: it holds optimiser moments and would triple the size).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from gda_core.metrics import AXES, Report, fmt_with_interval

ROOT = Path(__file__).resolve().parents[1]

BUDGETS = {
    "vae": ["--steps", "2500"],
    "gan": ["--steps", "2500"],
    "ddpm": ["--steps", "6000", "--minutes", "25"],
}
SHIP_FILES = ("model.safetensors", "config.json", "history.json", "preview.png")


def train(family: str, runs: Path) -> Path:
    out = runs / f"{family}-digits"
    if not (out / "config.json").exists() or not json.loads((out / "config.json").read_text()).get("finished"):
        cmd = [sys.executable, "-m", "gda_core", "train", "--dataset", "digits", "--model", family, "--seed", "0", "--out", str(out), *BUDGETS[family]]
        if (out / "train_state.pt").exists():
            cmd.append("--resume")
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
    return out


def model_card(run_dir: Path, report: dict | None) -> str:
    cfg = json.loads((run_dir / "config.json").read_text())
    lines = [
        f"# {cfg['family'].upper()} on digits (shipped checkpoint)",
        "",
        f"- Data: scikit-learn digits, {cfg.get('train_images')} training images, 16x16 grey, 10 classes (fixed split, seed 0).",
        f"- Training: {cfg['step']} steps, batch {cfg['train_config']['batch_size']}, seed {cfg['seed']}, "
        f"{cfg.get('train_time_s', 0) / 60:.1f} min wall-clock on {cfg.get('device')} (a 2-core machine shared with other jobs; "
        "alone it is several times faster).",
        f"- Model config: `{json.dumps(cfg['model_config'])}`",
        "- Re-train: `make checkpoints` (runs bench/train_shipped.py).",
        "",
    ]
    if report:
        rep = Report.from_dict(report)
        seeds = rep.provenance.get("seeds") or [rep.provenance.get("seed")]
        lines += [f"## Six-axis scores (gda_core.metrics.evaluate, full preset: {len(seeds)} seeds, mean [95% interval])", "",
                  "| axis | score | interval |", "|---|---|---|"]  # fmt: skip
        lines += [f"| {a} | {fmt_with_interval(rep.scores[a], rep.intervals.get(a))} | {rep.estimate(a).method if rep.estimate(a) else 'n/a'} |"
                  for a in AXES]  # fmt: skip
        keep = ["precision", "recall", "density", "coverage", "images_per_s", "tstr_acc", "trtr_acc", "nearest_ssim_mean", "memorization_rate", "fid"]
        lines += ["", "Raw figures: " + ", ".join(f"{k} = {fmt_with_interval(rep.raw[k], rep.raw_intervals.get(k))}" for k in keep
                                                  if isinstance(rep.raw.get(k), (int, float)))]  # fmt: skip
        lines += [f"Device: {rep.provenance.get('device', '?')}. Re-evaluate: `python -m gda_core evaluate --checkpoint {Path(run_dir).resolve().relative_to(ROOT)} --preset full --out r.json`."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="vae,gan,ddpm")
    ap.add_argument("--runs-dir", default=str(ROOT / "runs" / "shipped-training"))
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--eval-only", action="store_true", help="re-evaluate the shipped checkpoints (full preset) and rewrite their cards")
    args = ap.parse_args()
    runs = Path(args.runs_dir)
    for family in args.only.split(","):
        t0 = time.time()
        dest = ROOT / "checkpoints" / f"{family}-digits"
        if not args.eval_only:
            run = train(family, runs)
            dest.mkdir(parents=True, exist_ok=True)
            for name in SHIP_FILES:
                shutil.copy2(run / name, dest / name)
        for old in (dest / "eval").glob("*.json"):  # reports of older settings would never be served again
            old.unlink()
        report = None
        if not args.no_eval:
            from gda_core.metrics import evaluate
            from gda_core.metrics.evaluation import evaluation_options

            report = evaluate(dest, **evaluation_options("full")).to_dict()
        (dest / "MODEL_CARD.md").write_text(model_card(dest, report))
        print(f"{family}: shipped to {dest} in {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
