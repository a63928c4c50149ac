"""``evaluate``, ``compare`` and ``curve`` subcommands (registered by gda_core/cli.py)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ..errors import ConfigError
from ..runtime import DEVICE_CHOICES, atomic_write_json
from .classifier import ARCHITECTURES, DEFAULT_BUDGET

COMPARE_SUFFIXES = (".html", ".htm", ".json", ".csv", ".png", ".pdf")


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


def _count(name: str, hi: int):
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, got '{s}'") from None
        if not 1 <= v <= hi:
            raise argparse.ArgumentTypeError(f"{name} must be between 1 and {hi}, got {v}")
        return v

    return parse


def _sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=_count("--steps", 10_000), default=None, help="sampling steps of iterative families (default: the family's)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default: the family's)")
    p.add_argument("--sampler", default=None, help="sampler of iterative families, e.g. ddim | dpmpp (ddpm, ldm), heun | euler (flow)")
    p.add_argument("--temperature", type=float, default=1.0, help="scale of the starting noise / latent (1 = as trained)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset", default=None, help="dataset name or path (default: the dataset the run was trained on, full training split)"
    )
    p.add_argument(
        "--n", type=int, default=None, help="synthetic images for fidelity/diversity/privacy (default: size of the training split)"
    )
    p.add_argument("--seed", type=int, default=0, help="first sampling and classifier seed (default 0)")
    p.add_argument("--seeds", type=_count("--seeds", 100), default=None,
                   help="sampling seeds: K >= 2 gives every figure a t-interval over K seeds; 1 (default) a bootstrap interval")  # fmt: skip
    p.add_argument("--train-seeds", type=_count("--train-seeds", 20), default=1,
                   help="also re-train the checkpoint's recipe with T seeds and report intervals over the T training runs")  # fmt: skip
    p.add_argument("--preset", choices=("quick", "full"), default=None,
                   help="quick: 300 samples, short classifier, one seed; full: the default settings with 3 seeds")  # fmt: skip
    _sampling_args(p)
    p.add_argument("--classifier", choices=tuple(ARCHITECTURES), default="small-cnn",
                   help="downstream classifier of utility and robustness, trained from scratch: " + "; ".join(f"{k}: {v}" for k, v in ARCHITECTURES.items()))  # fmt: skip
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="device (default auto: cuda, then mps, then cpu)")
    p.add_argument("--no-cache", action="store_true", help="recompute even if <run>/eval/ holds a report with the same settings")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _eval_one(path: str, args) -> object:
    from .evaluation import evaluate, evaluation_options
    from .replicates import evaluate_training_seeds

    run_dir = Path(path)
    if not run_dir.exists():
        raise ConfigError(f"checkpoint folder {run_dir} does not exist")
    opts = evaluation_options(args.preset) if args.preset else {}
    if args.seeds is not None:
        opts["seeds"] = args.seeds
    if args.n is not None:
        opts["n_samples"] = args.n
    if args.classifier != "small-cnn":
        opts["budget"] = dataclasses.replace(opts.get("budget", DEFAULT_BUDGET), architecture=args.classifier)
    kw = dict(seed=args.seed, device=args.device, cache=not args.no_cache, progress=_progress_printer(args.quiet), steps=args.steps,
              guidance=args.guidance, sampler=args.sampler, temperature=args.temperature, **opts)  # fmt: skip
    if args.train_seeds > 1:
        return evaluate_training_seeds(run_dir, args.dataset, train_seeds=args.train_seeds, **kw)
    return evaluate(run_dir, args.dataset, **kw)


def cmd_evaluate(args) -> int:
    from .comparison import fmt_with_interval

    out = Path(args.out)
    if out.suffix.lower() != ".json":
        raise ConfigError(f"--out must be a .json file, got '{out.name}'")
    rep = _eval_one(args.checkpoint, args)
    atomic_write_json(out, rep.to_dict())
    for axis, v in rep.scores.items():
        est = rep.estimate(axis)
        print(f"{axis:11} {fmt_with_interval(v, rep.intervals.get(axis))}" + (f"  ({est.method})" if est else ""))
    from .intervals import fmt
    from .memorisation import read_block

    if (audit := read_block(rep.memorisation)) is not None:
        print(f"memorisation {fmt(audit[0])}, copy gap {fmt(audit[1])}  (share of images closer to a training image than 95% of "
              "held-out real images; about 0.05 without copying)")  # fmt: skip
    for w in rep.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"wrote {out}")
    return 0


def cmd_compare(args) -> int:
    from .claims import CLAIMS_NOTE, claim_sentence, claims_from_reports
    from .comparison import comparability, write_comparison

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
    for w in comparability(reports, names):
        print(f"warning: {w}", file=sys.stderr)
    write_comparison(reports, names, out)
    print(CLAIMS_NOTE)
    for c in claims_from_reports(reports, names):
        print(f"- {claim_sentence(c)}")
    print(f"wrote {out}")
    return 0


def cmd_curve(args) -> int:
    from .curve import quality_cost_curve, write_curve

    out = Path(args.out)
    if out.suffix.lower() not in (".json", ".html", ".htm", ".png"):
        raise ConfigError(f"--out must end in .json, .html or .png, got '{out.name}'")
    try:
        steps = [int(s) for s in args.steps_list.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--steps must be comma-separated whole numbers, got '{args.steps_list}'") from None
    curve = quality_cost_curve(args.checkpoint, args.dataset, steps=steps, sampler=args.sampler, guidance=args.guidance,
                               temperature=args.temperature, n_samples=args.n, seed=args.seed, device=args.device,
                               progress=_progress_printer(args.quiet))  # fmt: skip
    write_curve(curve, out)
    for p in curve["points"]:
        print(f"{p['steps']:5d} steps  {p['images_per_s']:9.1f} img/s  FID {p['fid']:.3f} [{p['fid_ci95'][0]:.3f}, {p['fid_ci95'][1]:.3f}]  "
              f"precision {p['precision']:.3f}  recall {p['recall']:.3f}")  # fmt: skip
    print(f"wrote {out}")
    return 0


def register(subparsers) -> None:
    """Add the ``evaluate``, ``compare`` and ``curve`` subcommands to an argparse subparsers object."""
    p = subparsers.add_parser(
        "evaluate",
        help="score one trained model on the six axes, with 95%% intervals",
        description="Score one trained model on fidelity, diversity, speed, utility, robustness and privacy, each with a 95%% interval.",
    )
    p.add_argument("--checkpoint", required=True, help="run folder (config.json + model.safetensors)")
    _common(p)
    p.add_argument("--out", required=True, help="where to write the metrics JSON")
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser(
        "compare",
        help="evaluate several models and write a comparison",
        description="Evaluate several trained models and write a radar + table comparison with intervals and the paper's claims.",
    )
    p.add_argument("--checkpoints", nargs="+", required=True, help="run folders to compare")
    _common(p)
    p.add_argument("--out", required=True, help="report file: .html, .json, .csv, .png or .pdf")
    p.set_defaults(func=cmd_compare)

    p = subparsers.add_parser(
        "curve",
        help="quality against cost of an iterative model over a range of sampling steps",
        description="FID, precision and recall against images per second, one point per step count, each with a 95%% interval.",
    )
    p.add_argument("--checkpoint", required=True, help="run folder of an iterative family (ddpm, ldm, flow)")
    p.add_argument("--dataset", default=None, help="dataset name or path (default: the run's, full training split)")
    p.add_argument("--steps", dest="steps_list", default="5,10,20,50", help="comma-separated step counts (default 5,10,20,50)")
    p.add_argument("--sampler", default=None, help="sampler (default: the family's)")
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--n", type=int, default=None, help="synthetic images per point (default: min(1000, training images))")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", required=True, help="curve.json, curve.html or curve.png")
    p.set_defaults(func=cmd_curve)
