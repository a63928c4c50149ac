"""The paper's protocol end to end on real data, with wall time and peak memory.

    .venv/bin/python -m bench.bench_protocol [--data breastmnist,plantvillage_corn] [--seeds 3]
        [--units 10:1,10:2]  (only these (level, seed) units now, same study)
        [--budget-steps 150,300,600] [--models vae,gan,ddpm,ddgan,vaegan]

For each dataset (../shared/data/<name>/<name>.npz): vae, gan, ddpm and the hybrids ddgan and vaegan
trained per scarcity level and seed on exactly the classifier's real subset (10 and 50 per class,
all), the downstream classifier on real + 0/1/2/3x synthetic images, 3 seeds; claims checked. Runs
one (level, seed) unit at a time and writes each finished unit to the tracked
bench/results/protocol_<dataset>.parts.json, so a killed run, or the next session on a fresh clone,
continues where it stopped; then bench/results/protocol_<dataset>.json (the combined study plus how
it ran) and assets/protocol_<dataset>.png (the chart). Generators and stage outputs of the running
session are kept in bench/runs/protocol-cache (not tracked). docs/benchmarks.md is generated from the results
(``python -m bench.make_docs``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from bench.bench_speed import _cpu_model
from gda_core.augment import run_study
from gda_core.data import load_dataset
from gda_core.runtime import atomic_write_bytes, atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def _jsonable(v):
    """Cells hold numpy values (and, per cell, the per-test-image correctness the intervals need)."""
    import numpy as np

    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _unit_key(level, seed: int) -> str:
    return f"level={level},seed={seed}"


def _find_unit(plan: list[tuple], text: str) -> tuple:
    """``LEVEL:SEED`` (``10:1``, ``all:0``) as one (seed, level, steps) unit of this study's plan."""
    level, _, seed = text.strip().partition(":")
    for unit in plan:
        if str(unit[1]) == level and str(unit[0]) == seed.strip():
            return unit
    have = ", ".join(f"{lv}:{sd}" for sd, lv, _ in plan)
    raise SystemExit(f"error: --units {text.strip()!r} is not a unit of this study (LEVEL:SEED, one of {have})")


def run_dataset(name: str, args, levels: list, steps: list[int], ratios: list[float], seeds: list[int]) -> dict | None:
    """Every (level, seed) unit of one dataset's study, each written to a TRACKED parts file as it
    finishes (bench/results/protocol_<tag>.parts.json), so a later session, on a fresh clone,
    continues with the units not yet there instead of starting over. The combined study (summary,
    claims, reading) is rebuilt from the parts after every unit."""
    path = Path(args.data_dir) / name / f"{name}.npz"
    if not path.is_file():
        print(f"skip {name}: {path} not found")
        return None
    ds = load_dataset(str(path))
    tag = name if args.scope == "per-level" else f"{name}_shared"
    parts_path = Path(args.results_dir) / f"protocol_{tag}.parts.json"
    command = (f"python -m bench.bench_protocol --data {name} --models {args.models} --per-class {args.per_class} --ratios {args.ratios} "
               f"--seeds {args.seeds} --budget-steps {args.budget_steps} --scope {args.scope} --threads {args.threads}"
               + (f" --steps {args.steps}" if args.steps else "") + (f" --sampler {args.sampler}" if args.sampler else ""))  # fmt: skip
    parts = json.loads(parts_path.read_text()) if parts_path.exists() else {}
    if parts.get("command") != command:  # other settings: those units answer another question
        parts = {"command": command, "units": {}}
    sampling = {k: v for k, v in (("steps", args.steps), ("sampler", args.sampler)) if v is not None}
    # Seed-major by default: two finished seeds already give every gain an interval. --units picks some units, in its
    # order, for a session that has time for only a few (e.g. the other seeds of one level before a new level).
    plan = [(seed, level, st) for seed in seeds for level, st in zip(levels, steps, strict=True)]
    if args.units:
        plan = [_find_unit(plan, u) for u in args.units.split(",")]
    for seed, level, st in [] if args.combine_only else plan:
        key = _unit_key(level, seed)
        if key in parts["units"]:
            print(f"{name} {key}: already in {parts_path.name}", flush=True)
            continue
        t0, load0 = time.time(), os.getloadavg()[0]
        res = run_study(ds, models=args.models.split(","), per_class_levels=[level], ratios=ratios, seeds=[seed], budget_steps=[st],
                        scope=args.scope, device="cpu", cache_dir=args.cache, sampling=sampling,
                        progress=lambda f, m, k=key: print(f"[{k} {f:5.1%}] {m}", flush=True) if not m.startswith("training ") else None)  # fmt: skip
        gen_s = sum(float(json.loads((Path(g["checkpoint"]) / "config.json").read_text()).get("train_time_s", 0)) for g in res.generators)
        parts["units"][key] = _jsonable({
            "cells": res.cells, "generators": res.generators, "config": res.config, "notes": res.notes,
            "bench": {"wall_s": round(time.time() - t0, 1), "load_start": round(load0, 2), "load_end": round(os.getloadavg()[0], 2),
                      "generator_train_s": round(gen_s, 1), "date": datetime.now(UTC).isoformat(timespec="seconds")},
        })  # fmt: skip
        atomic_write_json(parts_path, parts)
        _combine(name, tag, parts, command, args, levels, steps, seeds)  # a session may stop at any time: the figures so far
        print(f"{name} {key}: done in {time.time() - t0:.0f} s (load {load0:.2f} -> {os.getloadavg()[0]:.2f})", flush=True)
    return _combine(name, tag, parts, command, args, levels, steps, seeds)


def _previous_peak(path: Path) -> float:
    """The peak memory the combined file recorded (a --combine-only rebuild runs no unit of its own)."""
    try:
        return float(json.loads(path.read_text())["bench"]["peak_rss_mb"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def _combine(name: str, tag: str, parts: dict, command: str, args, levels: list, steps: list[int], seeds: list[int]) -> dict | None:
    """The combined study of the finished units: bench/results/protocol_<tag>.json and its chart."""
    from gda_core.augment.study import memorisation_notes
    from gda_core.augment.study_report import StudyResult

    results, assets = Path(args.results_dir), Path(args.assets_dir)
    units = list(parts["units"].values())
    if not units:
        return None
    cells = [c for u in units for c in u["cells"]]
    gens = [g for u in units for g in u["generators"]]
    done_levels = [lv for lv in levels if any(_unit_key(lv, s) in parts["units"] for s in seeds)]
    done_seeds = sorted({g["seed"] for g in gens})
    config = {**units[0]["config"], "per_class_levels": done_levels, "seeds": done_seeds,
              "generator_budget": {"minutes": None, "steps": [st for lv, st in zip(levels, steps, strict=True) if lv in done_levels]}}  # fmt: skip
    # The memorisation lines are re-read from every finished unit's audits (a unit's own notes hold only its level,
    # in the wording of the session that ran it).
    notes = [n for n in units[0]["notes"] if not n.startswith("Memorisation")] + memorisation_notes(done_levels, gens)
    res = StudyResult.build(cells, gens, config, notes)
    benches = [u["bench"] for u in units]
    meta = {
        "command": command, "date": max(b["date"] for b in benches), "cpu": _cpu_model(), "threads": args.threads,
        "units_done": len(units), "units_total": len(levels) * len(seeds), "wall_s": round(sum(b["wall_s"] for b in benches), 1),
        "peak_rss_mb": max(round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), _previous_peak(results / f"protocol_{tag}.json")),
        "load_start": min(b["load_start"] for b in benches), "load_end": max(b["load_end"] for b in benches),
        "load_max": max(max(b["load_start"], b["load_end"]) for b in benches),
        "generator_train_s": round(sum(b["generator_train_s"] for b in benches), 1),
    }  # fmt: skip
    out = res.to_dict()
    out["bench"] = meta
    atomic_write_json(results / f"protocol_{tag}.json", out)
    atomic_write_bytes(assets / f"protocol_{tag}.png", res.png())
    print(json.dumps(meta, indent=1))
    for line in res.reading():
        print("-", line)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="breastmnist,plantvillage_corn")
    ap.add_argument("--models", default="vae,gan,ddpm,ddgan,vaegan")
    ap.add_argument("--per-class", default="10,50,all")
    ap.add_argument("--ratios", default="0,1,2,3")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget-steps", default="150,300,600", help="generator training steps per level (10/class, 50/class, all)")
    ap.add_argument("--scope", choices=("per-level", "shared"), default="per-level",
                    help="shared: one generator per seed on all training images (the leaky design, for comparison)")  # fmt: skip
    ap.add_argument("--steps", type=int, default=None, help="sampling steps of iterative generators (default: the family's)")
    ap.add_argument("--sampler", default=None, help="sampler of iterative generators (default: the family's)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default=str(ROOT / "bench" / "runs" / "protocol-cache"))
    ap.add_argument("--data-dir", default=str(SHARED), help="folder holding <name>/<name>.npz (MedMNIST layout)")
    ap.add_argument("--results-dir", default=str(ROOT / "bench" / "results"), help="where the tracked parts and results files go")
    ap.add_argument("--assets-dir", default=str(ROOT / "assets"), help="where the chart goes")
    ap.add_argument("--units", default=None,
                    help="run only these (level, seed) units, in this order, e.g. 10:1,10:2 (the same study: results go to the same parts file)")
    ap.add_argument("--combine-only", action="store_true", help="run no unit: rebuild the combined results and chart from the parts files")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    levels = [x if x == "all" else int(x) for x in args.per_class.split(",")]
    steps = [int(s) for s in args.budget_steps.split(",")]
    if len(steps) == 1:
        steps = steps * len(levels)
    if len(steps) != len(levels):
        ap.error(f"--budget-steps needs one value or one per level ({len(levels)}), got {len(steps)}")
    ratios = [float(r) for r in args.ratios.split(",")]
    for name in args.data.split(","):
        run_dataset(name, args, levels, steps, ratios, list(range(args.seeds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
