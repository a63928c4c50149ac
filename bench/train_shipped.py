"""Train the checkpoints shipped in checkpoints/ (the app's instant start) and write their model cards.

    .venv/bin/python -m bench.train_shipped [--only vae,gan,ddpm] [--runs-dir /tmp/ship]

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
        s, r = report["scores"], report["raw"]
        lines += ["## Six-axis scores (gda_core.metrics.evaluate, seed 0)", "", "| axis | score |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in s.items()]
        keep = ["precision", "recall", "density", "coverage", "images_per_s", "tstr_acc", "trtr_acc", "nearest_ssim_mean", "memorization_rate", "fid"]
        lines += ["", "Raw figures: " + ", ".join(f"{k} = {r[k]:.4g}" for k in keep if isinstance(r.get(k), (int, float)))]
        lines += [f"Device: {report.get('provenance', {}).get('device', '?')}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="vae,gan,ddpm")
    ap.add_argument("--runs-dir", default=str(ROOT / "runs" / "shipped-training"))
    ap.add_argument("--no-eval", action="store_true")
    args = ap.parse_args()
    runs = Path(args.runs_dir)
    for family in args.only.split(","):
        t0 = time.time()
        run = train(family, runs)
        dest = ROOT / "checkpoints" / f"{family}-digits"
        dest.mkdir(parents=True, exist_ok=True)
        for name in SHIP_FILES:
            shutil.copy2(run / name, dest / name)
        report = None
        if not args.no_eval:
            from gda_core.metrics import evaluate

            report = evaluate(dest, seed=0).to_dict()
        (dest / "MODEL_CARD.md").write_text(model_card(dest, report))
        print(f"{family}: shipped to {dest} in {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
