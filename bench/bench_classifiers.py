"""Does the ranking of families by utility change with the downstream classifier? (issue 28)

    .venv/bin/python -m bench.bench_classifiers --data pneumoniamnist [--classifiers small-cnn,resnet18,densenet121,vgg11]
        [--seeds 3] [--max-steps N] [--only vae-pneumoniamnist,...]

For every shipped checkpoint on ``--data`` (or ``--only``) and every classifier, per seed s: the
checkpoint's class-balanced synthetic training set (as many images as real ones, sampling seed s),
and the classifier (torchvision's architectures adapted to small images, trained from scratch,
weights seeded by s) trained on it and tested on the real test split (TSTR), beside the same
classifier trained on the real images (TRTR). The classifier budget is the evaluation's standard one
(``ClassifierBudget``), ``--max-steps`` caps it (then said in the file and the docs).

The ranking under each classifier is by mean TSTR accuracy with its t-interval over the seeds; a
pair of checkpoints is ordered only where the paired difference (same seeds) is clear of noise, and
the ranking "changes with the classifier" only where a pair is clearly one way under one classifier
and clearly the other way under another. Everything else is said as within noise.

Resumable: each finished (checkpoint, classifier, seed) cell is written to
``bench/results/classifiers_<data>.parts.json`` as it completes (commit it); a rerun skips them.
The combined file ``bench/results/classifiers_<data>.json`` is rebuilt at the end. Real data are read
from ``../shared/data/<data>`` (or ``$GDA_DATA_DIR``), never downloaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
REAL = "real"  # the TRTR cells: the classifier trained on the real training images


def _key(checkpoint: str, classifier: str, seed: int) -> str:
    return f"{checkpoint}|{classifier}|{seed}"


def _fit(images: np.ndarray, labels, ds, classifier: str, seed: int, budget, device: str) -> dict:
    """Train ``classifier`` from scratch on (images, labels), test it on the real test split."""
    import torch

    from gda_core.data import images_to_tensor
    from gda_core.metrics import accuracy, train_classifier

    b = dataclasses.replace(budget, architecture=classifier)
    t0 = time.time()
    model = train_classifier(images_to_tensor(images), torch.as_tensor(np.asarray(labels), dtype=torch.long), ds.num_classes, seed=seed,
                             budget=b, device=device)  # fmt: skip
    acc, bacc = accuracy(model, images_to_tensor(ds.test_images), ds.test_labels)
    return {"acc": acc, "bacc": bacc, "steps": b.steps_for(len(labels)), "seconds": round(time.time() - t0, 1)}


def synthetic(run, ds, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """As many images as real training ones, in the training split's class proportions, sampling seed ``seed``."""
    from gda_core.metrics.evaluation import balanced_label_order
    from gda_core.sampling import generate

    labels = balanced_label_order(ds.train_labels)
    t0 = time.time()
    out = generate(run, len(labels), [int(y) for y in labels], seed=seed)
    return out.images, out.labels, round(time.time() - t0, 1)


def ranking(cells: dict, checkpoints: list[str], classifiers: list[str], seeds: list[int]) -> dict:
    """Per classifier: each checkpoint's TSTR estimate (t-interval over seeds) and the pairs ordered
    clear of noise (paired over seeds); then the pairs whose clear order flips between classifiers."""
    from gda_core.metrics.intervals import CONTRADICTED, SUPPORTED, difference, over_replicates

    per: dict[str, dict] = {}
    for c in classifiers:
        vals = {k: [cells[_key(k, c, s)]["acc"] for s in seeds if _key(k, c, s) in cells] for k in checkpoints}
        trtr = [cells[_key(REAL, c, s)]["acc"] for s in seeds if _key(REAL, c, s) in cells]
        ests = {k: over_replicates(v) for k, v in vals.items() if len(v) >= 2}
        order = sorted(ests, key=lambda k: -ests[k].mean)
        clear = {}
        for a, b in itertools.combinations(sorted(ests), 2):
            if len(vals[a]) == len(vals[b]):
                v = difference(ests[a], ests[b], paired=True).verdict
                if v in (SUPPORTED, CONTRADICTED):
                    clear[f"{a} > {b}" if v == SUPPORTED else f"{b} > {a}"] = True
        per[c] = {"tstr": {k: {"mean": e.mean, "lo": e.lo, "hi": e.hi, "n": e.n} for k, e in ests.items()}, "order": order,
                  "clear_pairs": sorted(clear), "trtr_mean": float(np.mean(trtr)) if trtr else None}  # fmt: skip
    flips = []
    for c1, c2 in itertools.combinations(classifiers, 2):
        for pair in per[c1]["clear_pairs"]:
            a, b = pair.split(" > ")
            if f"{b} > {a}" in per[c2]["clear_pairs"]:
                flips.append(f"{a} above {b} with {c1}, below it with {c2}")
    return {"per_classifier": per, "flips": flips}


def reading(rank: dict, classifiers: list[str]) -> list[str]:
    """The answer in words: a clear flip, or the orders within noise."""
    per = rank["per_classifier"]
    out = []
    for c in classifiers:
        p = per.get(c) or {}
        if not p.get("order"):
            out.append(f"{c}: not measured yet.")
            continue
        told = f"clear of noise: {'; '.join(p['clear_pairs'])}" if p["clear_pairs"] else "every difference within noise"
        out.append(f"{c}: by mean TSTR accuracy {' > '.join(p['order'])} ({told}).")
    if rank["flips"]:
        out.append("The ranking changes with the classifier: " + "; ".join(rank["flips"]) + ".")
    elif sum(bool((per.get(c) or {}).get("order")) for c in classifiers) >= 2:
        out.append("No pair of checkpoints is clearly ordered one way under one classifier and clearly the other way under another: "
                   "where the orders differ, they differ within noise at this budget.")  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    from gda_core.checkpoints import SHIPPED_DIR, list_runs, load_run
    from gda_core.data import load_dataset
    from gda_core.metrics import DEFAULT_BUDGET
    from gda_core.metrics.classifier import ARCHITECTURES
    from gda_core.runtime import atomic_write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="pneumoniamnist")
    ap.add_argument("--classifiers", default=",".join(ARCHITECTURES))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--max-steps", type=int, default=None, help="cap each classifier training (said in the results)")
    ap.add_argument("--only", default=None, help="comma-separated shipped checkpoint names (default: every one on --data)")
    ap.add_argument("--checkpoints-dir", default=str(SHIPPED_DIR))
    ap.add_argument("--out", default=None, help="results file (default bench/results/classifiers_<data>.json)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    classifiers = args.classifiers.split(",")
    unknown = [c for c in classifiers if c not in ARCHITECTURES]
    if unknown or not 2 <= args.seeds <= 10:
        ap.error(f"classifiers among {', '.join(ARCHITECTURES)} and 2..10 seeds (got {', '.join(unknown) or args.seeds})")
    os.environ["GDA_ALLOW_DOWNLOAD"] = "0"
    if args.data != "digits":
        os.environ.setdefault("GDA_DATA_DIR", str(SHARED / args.data))
    ds = load_dataset(args.data)
    runs = [r for r in list_runs(args.checkpoints_dir, include_shipped=False) if r.dataset == args.data]
    if args.only:
        runs = [r for r in runs if r.path.name in args.only.split(",")]
    if len(runs) < 2:
        ap.error(f"fewer than two checkpoints on {args.data} in {args.checkpoints_dir}")
    names = [r.path.name for r in runs]
    out = Path(args.out or ROOT / "bench" / "results" / f"classifiers_{args.data}.json")
    parts = out.with_suffix(".parts.json")
    budget = DEFAULT_BUDGET if args.max_steps is None else dataclasses.replace(DEFAULT_BUDGET, max_steps=args.max_steps,
                                                                                min_steps=min(DEFAULT_BUDGET.min_steps, args.max_steps))  # fmt: skip
    settings = {"budget": dataclasses.asdict(budget), "data": args.data, "n_train": int(len(ds.train_labels))}
    done = json.loads(parts.read_text()) if parts.is_file() else {}
    if done.get("settings") != settings:
        done = {"settings": settings, "cells": {}}  # another budget or dataset: its cells answer another question
    seeds = list(range(args.seeds))
    load0, t0 = os.getloadavg(), time.time()
    # Seed-major: after two seeds every (checkpoint, classifier) already has an interval. A seed's synthetic
    # set is sampled once and used for every classifier; TRTR is trained once per (classifier, seed).
    for seed in seeds:
        for r in [None, *runs]:
            todo = [c for c in classifiers if _key(REAL if r is None else r.path.name, c, seed) not in done["cells"]]
            if not todo:
                continue
            if r is None:
                images, labels, sample_s = ds.train_images, ds.train_labels, 0.0
            else:
                images, labels, sample_s = synthetic(load_run(r.path, device=args.device), ds, seed)
            for c in todo:
                k = _key(REAL if r is None else r.path.name, c, seed)
                res = {**_fit(images, labels, ds, c, seed, budget, args.device), "sample_s": sample_s, "load": round(os.getloadavg()[0], 2)}
                done["cells"][k] = res
                atomic_write_json(parts, done)
                print(f"{k}: test accuracy {res['acc']:.3f} ({res['seconds']:.0f} s training)", flush=True)
    rank = ranking(done["cells"], names, classifiers, seeds)
    meta = {"command": "python -m bench.bench_classifiers " + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M"), "load_start": [round(x, 2) for x in load0],
            "load_end": [round(x, 2) for x in os.getloadavg()], "wall_s": round(time.time() - t0, 1), "capped": args.max_steps is not None}  # fmt: skip
    atomic_write_json(out, {"meta": meta, "settings": settings, "checkpoints": names, "classifiers": classifiers, "seeds": seeds,
                            "cells": done["cells"], "ranking": rank, "reading": reading(rank, classifiers)})  # fmt: skip
    for line in reading(rank, classifiers):
        print(f"- {line}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
