"""``augment`` and ``study`` subcommands (registered by gda_core/cli.py through PLUGIN_MODULES).

    python -m gda_core augment --checkpoint RUN_DIR --ratio 2 [--select confidence:0.5,privacy:0.9]
        [--rebalance] [--merge] [--seed S] --out DIR | FILE.zip | FILE.npz
    python -m gda_core study --dataset D --models vae,gan,ddpm --per-class 10,50,all --ratios 0,1,2,3
        --seeds 3 --budget-minutes M [--select ...] --out study.json | study.html | study.png | study.md | study.pdf
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ..errors import ConfigError, GDAError
from ..metrics.classifier import ARCHITECTURES
from ..runtime import DEVICE_CHOICES, atomic_write_bytes, atomic_write_json, atomic_write_text

STUDY_SUFFIXES = (".json", ".html", ".htm", ".png", ".md", ".pdf")


def _float(s: str) -> float:
    try:
        return float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{s}'") from None


def _csv(s: str) -> list[str]:
    items = [p.strip() for p in s.split(",") if p.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got '{s}'")
    return items


def _printer(quiet: bool):
    last = {"pct": -10}

    def cb(frac: float, msg: str) -> None:
        pct = int(frac * 100)
        if not quiet and (pct >= last["pct"] + 5 or pct == 100):
            print(f"[{pct:3d}%] {msg}", file=sys.stderr, flush=True)
            last["pct"] = pct

    return cb


def _load_data(source: str | None, run, args):
    from ..data import load_dataset, load_spec

    if source is None:
        # The data the checkpoint was trained on (its recorded spec, per_class limit included).
        return load_spec(run.data_spec, **({"data_dir": args.data_dir} if args.data_dir else {}))
    mc = run.model.config
    return load_dataset(source, image_size=mc.image_size, channels="grey" if mc.channels == 1 else "rgb", data_dir=args.data_dir)


def cmd_augment(args) -> int:
    from ..checkpoints import load_run
    from .export import export, provenance_path
    from .generate import generate_synthetic
    from .select import SelectionContext, parse_filters, select

    out = Path(args.out)
    if out.suffix and out.suffix.lower() not in (".zip", ".npz"):
        raise ConfigError(f"--out must be a folder, a .zip or a .npz, got '{out.name}'")
    filters = parse_filters(args.select, seed=args.seed)  # fail on a bad spec before loading anything
    run = load_run(args.checkpoint, device=args.device)
    ds = _load_data(args.dataset, run, args)
    if ds.num_classes != run.model.config.num_classes:
        raise ConfigError(f"the dataset has {ds.num_classes} classes but {run.name} makes {run.model.config.num_classes}")
    mode = "rebalance" if args.rebalance else "balanced"
    say = _printer(args.quiet)
    synth = generate_synthetic(run, args.ratio, real_labels=ds.train_labels, mode=mode, seed=args.seed, temperature=args.temperature,
                               guidance=args.guidance, steps=args.steps, progress=lambda d, t: say(0.6 * d / max(1, t), f"sampling {d}/{t}"))  # fmt: skip
    for note in synth.notes:
        print(f"note: {note}", file=sys.stderr)
    if filters:
        ctx = SelectionContext.from_dataset(ds, seed=args.seed, device=run.model.device, progress=lambda m: say(0.7, m))
        synth, report = select(synth, filters, ctx)
        for rec in report["filters"]:
            print(f"{rec['spec']}: {sum(rec['before'])} -> {sum(rec['after'])} images (per class {rec['before']} -> {rec['after']})", file=sys.stderr)
    path = export(synth, out, merge_with=ds if args.merge else None)
    counts = ", ".join(f"{n}: {c}" for n, c in zip(synth.class_names, synth.class_counts(), strict=True))
    print(f"wrote {len(synth)} synthetic images ({counts}){' merged with the real splits' if args.merge else ''} to {path}")
    if path.suffix.lower() == ".npz":
        print(f"provenance: {provenance_path(path)}")
    return 0


def _model_configs(items: list[str]) -> dict[str, dict]:
    """``--set vae.latent_dim=8`` -> {'vae': {'latent_dim': 8}}."""
    import json

    out: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        fam, dot, field = key.strip().partition(".")
        if not sep or not dot or not fam or not field:
            raise ConfigError(f"--set expects FAMILY.KEY=VALUE (e.g. vae.latent_dim=8), got '{item}'")
        try:
            out.setdefault(fam, {})[field] = json.loads(value)
        except json.JSONDecodeError:
            out.setdefault(fam, {})[field] = value
    return out


def _budget(items: list[str] | None, cast, name: str):
    if items is None:
        return None
    try:
        return [cast(x) for x in items]
    except ValueError:
        raise ConfigError(f"{name} must be numbers (one, or one per level), got {','.join(items)}") from None


def _study_dataset(args):
    from ..checkpoints import load_run
    from ..data import load_dataset, load_spec

    if args.dataset is not None:
        return load_dataset(args.dataset, data_dir=args.data_dir)
    if not args.checkpoints:
        raise ConfigError("give --dataset (the real data to study)")
    run = load_run(args.checkpoints[0], device=args.device)
    return load_spec(run.data_spec, per_class=None, subset_seed=None, **({"data_dir": args.data_dir} if args.data_dir else {}))


def cmd_study(args) -> int:
    from ..metrics import DEFAULT_BUDGET
    from .select import parse_filters
    from .study import quick_budget, run_study
    from .study_report import VERDICT_NOTE

    out = Path(args.out)
    if out.suffix.lower() not in STUDY_SUFFIXES:
        raise ConfigError(f"--out must end in one of {', '.join(STUDY_SUFFIXES)}, got '{out.name}'")
    if not args.models and not args.checkpoints:
        raise ConfigError("give --models (families trained per level, e.g. vae,gan,ddpm) or --checkpoints (used as they are)")
    if args.select:
        parse_filters(args.select)
    ds = _study_dataset(args)
    sampling = {k: v for k, v in (("temperature", args.temperature), ("guidance", args.guidance), ("steps", args.steps), ("sampler", args.sampler))
                if v is not None}  # fmt: skip
    res = run_study(
        ds, models=args.models, checkpoints=args.checkpoints, model_configs=_model_configs(args.set), per_class_levels=args.per_class,
        ratios=args.ratios, seeds=args.seeds, scope=args.generator_scope, budget_minutes=_budget(args.budget_minutes, float, "--budget-minutes"),
        budget_steps=_budget(args.budget_steps, float, "--budget-steps"), geometric_aug={"off": (False,), "on": (True,), "both": (False, True)}[args.geometric_aug],
        select=args.select, mode="rebalance" if args.rebalance else "balanced",
        budget=dataclasses.replace(quick_budget() if args.classifier_budget == "quick" else DEFAULT_BUDGET, architecture=args.classifier),
        sampling=sampling, device=args.device,
        cache_dir=args.cache, progress=_printer(args.quiet),
    )  # fmt: skip
    written = _write_study(res, out)
    print(res.markdown())
    print()
    print(VERDICT_NOTE)
    for line in res.reading():
        print(f"- {line}")
    print("wrote " + " and ".join(str(p) for p in written))
    return 0


def _write_study(res, out: Path) -> list[Path]:
    """The requested file; a .json also gets its .html report beside it."""
    suffix = out.suffix.lower()
    if suffix == ".json":
        atomic_write_json(out, res.to_dict())
        atomic_write_text(out.with_suffix(".html"), res.html())
        return [out, out.with_suffix(".html")]
    if suffix in (".html", ".htm"):
        atomic_write_text(out, res.html())
    elif suffix == ".png":
        atomic_write_bytes(out, res.png())
    elif suffix == ".pdf":
        atomic_write_bytes(out, res.pdf())
    else:
        atomic_write_text(out, res.markdown() + "\n\n" + "\n".join(f"- {s}" for s in res.reading()) + "\n")
    return [out]


def register(subparsers) -> None:
    p = subparsers.add_parser("augment", help="generate a (selected) synthetic training set and export it")
    p.add_argument("--checkpoint", required=True, help="run folder")
    p.add_argument("--ratio", type=_float, required=True, help="synthetic images per real training image (1, 2, 3 or any number >= 0)")
    p.add_argument("--select", default=None, help="selection filters in order, e.g. confidence:0.5,privacy:0.9,realism:0.5,cluster:0.5")
    p.add_argument("--rebalance", action="store_true", help="spend the synthetic budget on the smallest classes first (default: keep the real class balance)")
    p.add_argument("--merge", action="store_true", help="also write the real train/val/test images (a ready-to-train augmented dataset)")
    p.add_argument("--dataset", default=None, help="real dataset (default: the one the checkpoint was trained on)")
    p.add_argument("--data-dir", default=None, help="folder holding named datasets' files")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (image i uses seed + i)")
    p.add_argument("--temperature", type=_float, default=1.0)
    p.add_argument("--guidance", type=_float, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--out", required=True, help="FOLDER (class folders of PNGs), FILE.zip or FILE.npz (MedMNIST layout)")
    p.set_defaults(func=cmd_augment)

    p = subparsers.add_parser("study", help="the paper's protocol: per scarcity level, generators trained on exactly the classifier's real subset",
                              description="Leakage-free utility study: for each scarcity level and seed, each generator is trained on "
                              "exactly the real subset the downstream classifier sees; the classifier is trained on real + ratio x synthetic "
                              "images and tested on the real test split. Reports means with 95%% intervals and checks the paper's claims.")  # fmt: skip
    p.add_argument("--dataset", default=None, help="real dataset: a name or a .npz / .zip / folder (default: the first checkpoint's)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--models", type=_csv, default=None, help="families to train per level, comma-separated (e.g. vae,gan,ddpm)")
    p.add_argument("--checkpoints", nargs="+", default=None, help="use these run folders as they are at every level (labelled as such)")
    p.add_argument("--generator-scope", choices=("per-level", "shared"), default="per-level",
                   help="per-level (default): one generator per level and seed on exactly that subset; shared: one per seed on all training "
                        "images, used at every level (leaks at scarce levels; labelled as such)")  # fmt: skip
    p.add_argument("--per-class", type=_csv, default=["10", "50", "all"], help="scarcity levels: real images per class ('all' = every image)")
    p.add_argument("--ratios", type=_csv, default=["0", "1", "2", "3"], help="synthetic images per real image (0 = real only)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per cell (subset, generator, classifier and sampling seeds)")
    p.add_argument("--budget-minutes", type=_csv, default=None, help="generator training minutes: one number, or one per level")
    p.add_argument("--budget-steps", type=_csv, default=None, help="generator training steps: one number, or one per level")
    p.add_argument("--set", action="append", default=[], metavar="FAMILY.KEY=VALUE", help="generator config override, e.g. vae.latent_dim=8")
    p.add_argument("--geometric-aug", choices=["off", "on", "both"], default="off", help="classifier's random 1-pixel shifts")
    p.add_argument("--select", default=None, help="also run every cell with these selection filters")
    p.add_argument("--rebalance", action="store_true", help="rebalance mode for the synthetic sets")
    p.add_argument("--classifier-budget", choices=["quick", "standard"], default="standard", help="downstream classifier budget")
    p.add_argument("--classifier", choices=tuple(ARCHITECTURES), default="small-cnn",
                   help="downstream classifier, trained from scratch: " + "; ".join(f"{k}: {v}" for k, v in ARCHITECTURES.items()))  # fmt: skip
    p.add_argument("--temperature", type=_float, default=None)
    p.add_argument("--guidance", type=_float, default=None)
    p.add_argument("--steps", type=int, default=None, help="sampling steps of iterative generators")
    p.add_argument("--sampler", default=None, help="sampler of iterative generators (e.g. dpmpp for ddpm, heun for flow)")
    p.add_argument("--cache", default=None, help="where generators and stage outputs are kept (default: the user cache); re-runs reuse them")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", required=True, help="study.json (+ study.html beside it), study.html, study.png (chart) or study.md")
    p.set_defaults(func=cmd_study)


__all__ = ["register", "GDAError"]
