"""Wall time of a full `evaluate` per model family on pneumoniamnist (28x28 grey, 2,428 training images).

    .venv/bin/python -m bench.bench_evaluate [--steps 200] [--device auto]

Each family is trained briefly (the figure is about the evaluation's cost, not the model's
quality), then evaluated with the default (full) settings: synthetic set = training-split size,
TSTR / TRTR / 1x-2x-3x classifiers, DeepFool, exact nearest SSIM over all training images.
The domain feature extractor is trained once and cached; its time is reported separately.
Results: bench/results/evaluate_<device>.json and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from gda_core.data import load_dataset
from gda_core.metrics import evaluate, get_extractor
from gda_core.models import TrainConfig, list_models
from gda_core.runtime import device_name, resolve_device
from gda_core.training import train

ROOT = Path(__file__).resolve().parents[1]

DATA = ROOT.parent / "shared" / "data" / "pneumoniamnist" / "pneumoniamnist.npz"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--families", default=",".join(list_models()))
    args = ap.parse_args()
    if not DATA.exists():
        print(f"{DATA} not found: this benchmark needs ../shared/data beside the checkout", file=sys.stderr)
        return 2
    dev = resolve_device(args.device)
    ds = load_dataset(str(DATA))
    work = Path(tempfile.mkdtemp(prefix="gda-bench-eval-"))
    t = time.perf_counter()
    get_extractor("domain-cnn", ds, device=dev, cache_dir=work / "cache")
    extractor_s = time.perf_counter() - t
    rows = []
    for family in args.families.split(","):
        run = train(family, ds, out=work / family, steps=args.steps, train_config=TrainConfig(batch_size=64), device=str(dev))
        t = time.perf_counter()
        rep = evaluate(run, seed=0, device=dev, cache=False, cache_dir=work / "cache")
        rows.append({"family": family, "train_steps": args.steps, "evaluate_s": round(time.perf_counter() - t, 1),
                     "scores": rep.scores, "images_per_s": rep.raw.get("images_per_s")})  # fmt: skip
        print(f"{family}: evaluate {rows[-1]['evaluate_s']} s", flush=True)
    meta = {"device": device_name(dev), "dataset": "pneumoniamnist (shared/data)", "extractor_train_s": round(extractor_s, 1),
            "command": "python -m bench.bench_evaluate", "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    (ROOT / "bench" / "results" / f"evaluate_{dev.type}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"\nDevice: {meta['device']}; domain extractor trained once in {meta['extractor_train_s']} s (then cached)\n")
    print("| family | full evaluate wall time | " + " | ".join(rows[0]["scores"]) + " |")
    print("|---|---|" + "---|" * len(rows[0]["scores"]))
    for r in rows:
        print(f"| {r['family']} | {r['evaluate_s']} s | " + " | ".join(f"{v:.2f}" if v is not None else "n/a" for v in r["scores"].values()) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
