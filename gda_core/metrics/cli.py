"""``gda evaluate`` and ``gda compare`` subcommands (registered by gda_core/cli.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError
from ..runtime import DEVICE_CHOICES, atomic_write_json

COMPARE_SUFFIXES = (".html", ".htm", ".json", ".csv", ".png")


def _progress_printer(quiet: bool):
    last = {"stage": None, "pct": -10}

    def cb(stage: str, frac: float) -> None:
        if quiet:
            return
        pct = int(frac * 100)
        if stage != last["stage"] or pct >= last["pct"] + 10:
            print(f"[{pct:3d}%] {stage}", file=sys.stderr, flush=True)
            last["stage"], last["pct"] = stage, pct

    return cb


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset", default=None, help="dataset name or path (default: the dataset the run was trained on, full training split)"
    )
    p.add_argument(
        "--n", type=int, default=None, help="synthetic images for fidelity/diversity/privacy (default: size of the training split)"
    )
    p.add_argument("--seed", type=int, default=0, help="sampling and classifier seed (default 0)")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="device (default auto: cuda, then mps, then cpu)")
    p.add_argument("--no-cache", action="store_true", help="recompute even if <run>/eval/ holds a report with the same settings")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _eval_one(path: str, args) -> object:
    from .evaluation import evaluate

    run_dir = Path(path)
    if not run_dir.exists():
        raise ConfigError(f"checkpoint folder {run_dir} does not exist")
    return evaluate(
        run_dir,
        args.dataset,
        n_samples=args.n,
        seed=args.seed,
        device=args.device,
        cache=not args.no_cache,
        progress=_progress_printer(args.quiet),
    )


def cmd_evaluate(args) -> int:
    out = Path(args.out)
    if out.suffix.lower() != ".json":
        raise ConfigError(f"--out must be a .json file, got '{out.name}'")
    rep = _eval_one(args.checkpoint, args)
    atomic_write_json(out, rep.to_dict())
    print(" ".join(f"{k}={v:.3f}" if v is not None else f"{k}=n/a" for k, v in rep.scores.items()))
    for w in rep.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"wrote {out}")
    return 0


def cmd_compare(args) -> int:
    from .report import write_comparison

    out = Path(args.out)
    if out.suffix.lower() not in COMPARE_SUFFIXES:
        raise ConfigError(f"--out must end in one of {', '.join(COMPARE_SUFFIXES)}, got '{out.name}'")
    if len(args.checkpoints) < 1:
        raise ConfigError("give at least one checkpoint folder")
    reports, names = [], []
    for path in args.checkpoints:
        name = Path(path).resolve().name or str(path)
        base, i = name, 2
        while name in names:
            name, i = f"{base}-{i}", i + 1
        reports.append(_eval_one(path, args))
        names.append(name)
    write_comparison(reports, names, out)
    print(f"wrote {out}")
    return 0


def register(subparsers) -> None:
    """Add the ``evaluate`` and ``compare`` subcommands to an argparse subparsers object."""
    p = subparsers.add_parser(
        "evaluate",
        help="score one trained model on the six axes",
        description="Score one trained model on fidelity, diversity, speed, utility, robustness and privacy.",
    )
    p.add_argument("--checkpoint", required=True, help="run folder (config.json + model.safetensors)")
    _common(p)
    p.add_argument("--out", required=True, help="where to write the metrics JSON")
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser(
        "compare",
        help="evaluate several models and write a comparison",
        description="Evaluate several trained models and write a radar + table comparison.",
    )
    p.add_argument("--checkpoints", nargs="+", required=True, help="run folders to compare")
    _common(p)
    p.add_argument("--out", required=True, help="report file: .html, .json, .csv or .png")
    p.set_defaults(func=cmd_compare)
