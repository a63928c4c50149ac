"""Command line: ``python -m gda_core <command>``.

User errors (bad files, bad options) print ``error: <one line>`` on stderr and exit with code 2;
``--debug`` shows the traceback instead. Progress is a tqdm bar on a terminal, or one JSON object
per line with ``--json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from .errors import GDAError

# Modules that add sub-commands through ``register(subparsers)``; absent ones are skipped.
PLUGIN_MODULES = ("gda_core.metrics.cli", "gda_core.augment.cli", "gda_core.server.cli", "gda_core.view_cli", "gda_core.sweep")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own usage errors: same one-line, exit 2 contract
        self.exit(2, f"error: {message} (see --help)\n")


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{s}'") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{s}'")
    return v


def _add_data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--dataset", required=required, help="registered name (see `datasets`) or path to .npz / .zip / folder")
    p.add_argument("--data-dir", default=None, help="folder holding named datasets' files (default $GDA_DATA_DIR or the user cache)")
    p.add_argument("--image-size", type=int, default=None, help="resize images to SxS (multiple of 4)")
    p.add_argument("--channels", default="keep", choices=["keep", "grey", "rgb"], help="channel conversion")
    p.add_argument("--per-class", type=_positive_int, default=None, help="keep at most N training images per class (data-scarce regime)")


def _add_distill_parser(sub) -> None:
    p = sub.add_parser("distill", help="distil a DDPM or flow checkpoint into a 1-4 step student")
    p.add_argument("--checkpoint", required=True, help="the teacher: a ddpm or flow run folder")
    p.add_argument("--steps", type=int, required=True, help="the student's sampling steps (network passes per image), 1..4")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget in minutes")
    p.add_argument("--train-steps", type=_positive_int, default=None, help="optimisation-step budget")
    p.add_argument("--method", default="progressive", choices=["progressive", "consistency", "reflow"],
                   help="progressive (default; measured best: docs/hybrids.md), consistency or reflow")  # fmt: skip
    p.add_argument("--teacher-substeps", type=_positive_int, default=None, help="teacher solver steps per student step (default: the teacher's default steps / --steps)")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="run folder of the student")
    p.add_argument("--resume", action="store_true", help="continue the distillation in --out")
    p.add_argument("--json", action="store_true", help="one JSON object per event on stdout")
    p.set_defaults(func=cmd_distill)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m gda_core", description="GDA Studio engine: datasets, generative models, training, sampling, evaluation.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("datasets", help="list datasets")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("models", help="list model families")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("train", help="train a model into a run folder")
    _add_data_args(p)
    p.add_argument("--model", required=True, help="model family (see `models`)")
    p.add_argument("--steps", type=_positive_int, default=None, help="training steps")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget in minutes")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="images per optimisation step (over all processes)")
    p.add_argument(
        "--grad-accum", type=_positive_int, default=1, help="split each batch into N micro-batches (same result, less memory)"
    )
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the family's)")
    p.add_argument(
        "--cpu-bf16", action=argparse.BooleanOptionalAction, default=None,
        help="train in bfloat16 autocast on a CPU that does bf16 natively (AVX512-BF16/AMX; float32 elsewhere); default: the "
        "family's (on for ddpm and flow, off for the others); --no-cpu-bf16 keeps float32; GPUs use bf16 already",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model config override, e.g. --set latent_dim=64 (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--checkpoint-every", type=_positive_int, default=None, help="steps between checkpoints")
    p.add_argument("--json", action="store_true", help="one JSON object per event on stdout")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="generate images from a checkpoint")
    p.add_argument("--checkpoint", required=True, help="run folder")
    p.add_argument("--n", type=_positive_int, default=64)
    p.add_argument("--label", default=None, help="class index or name (default: cycle through classes)")
    p.add_argument("--temperature", type=float, default=1.0, help="randomness of the starting noise / latent (1 = as trained); the truncation psi for stylegan2")
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--steps", type=_positive_int, default=None)
    p.add_argument("--eta", type=float, default=0.0)
    p.add_argument("--sampler", default=None, help="sampler of iterative families: ddim | dpmpp (ddpm, ldm), heun | euler (flow); see `models`")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--fast", action=argparse.BooleanOptionalAction, default=None,
                   help="--fast: the fastest path (channels_last, bf16 autocast on GPU and on CPUs with native bf16, torch.compile where measured to help); "
                        "default: channels_last, bf16 on GPU only, no compile; --no-fast: the plain path")  # fmt: skip
    p.add_argument("--out", required=True, help="FILE.png (grid), FILE.npz (images + labels) or FILE.zip")
    p.set_defaults(func=cmd_sample)

    _add_distill_parser(sub)

    for mod in PLUGIN_MODULES:
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name and mod.startswith(exc.name):
                continue
            raise
        m.register(sub)
    return parser


def cmd_datasets(args) -> int:
    from .data import default_data_dir, list_datasets, load_dataset

    rows = []
    for info in list_datasets():
        row = {"name": info.name, "description": info.description}
        try:
            ds = load_dataset(info.name, data_dir=args.data_dir)
            s = ds.summary()
            row.update({k: s[k] for k in ("image_size", "channels", "num_classes", "train", "val", "test")})
            row["available"] = True
        except GDAError:
            row["available"] = False
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':16} {'size':>5} {'ch':>3} {'classes':>7} {'train':>6} {'val':>5} {'test':>5}  description")
    for r in rows:
        if r["available"]:
            print(f"{r['name']:16} {r['image_size']:>5} {r['channels']:>3} {r['num_classes']:>7} {r['train']:>6} {r['val']:>5} {r['test']:>5}  {r['description']}")
        else:
            print(f"{r['name']:16} {'-':>5} {'-':>3} {'-':>7} {'-':>6} {'-':>5} {'-':>5}  {r['description']} [file not in {args.data_dir or default_data_dir()}]")
    print("Any .npz (MedMNIST layout), .zip or folder of class sub-folders can also be passed as --dataset PATH.")
    return 0


def cmd_models(args) -> int:
    from .models import get_model_class, list_models

    rows = []
    for name in list_models():
        cls = get_model_class(name)
        rows.append({"name": name, "description": cls.description, "controls": list(cls.controls), "samplers": list(cls.samplers),
                     "exact_likelihood": cls.has_likelihood, "defaults": cls.Config().to_dict()})  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            samplers = f"; samplers: {', '.join(r['samplers'])}" if r["samplers"] else ""
            print(f"{r['name']:9} {r['description']}  [controls: {', '.join(r['controls'])}{samplers}]")
    return 0


def _parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise GDAError(f"--set expects KEY=VALUE, got '{item}'")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def cmd_train(args) -> int:
    from .data import load_dataset
    from .models import TrainConfig
    from .training import train

    if args.steps is None and args.minutes is None:
        raise GDAError("give a training budget: --steps N or --minutes M")
    ds = load_dataset(args.dataset, image_size=args.image_size, channels=args.channels, per_class=args.per_class, seed=args.seed, data_dir=args.data_dir)
    for w in ds.warnings:
        print(f"warning: {w}", file=sys.stderr)
    bar = None
    use_bar = not args.json and sys.stderr.isatty()

    def cb(ev):
        nonlocal bar
        if args.json:
            print(json.dumps(ev.to_json()), flush=True)
            return
        if ev.kind in ("start", "done"):
            print(ev.message, file=sys.stderr)
        if use_bar:
            from tqdm import tqdm

            if bar is None:
                bar = tqdm(total=1000, unit="‰", desc="training", file=sys.stderr)
            bar.n = int(ev.fraction * 1000)
            if ev.logs:
                bar.set_postfix({k: f"{v:.4g}" for k, v in ev.logs.items() if k not in ("step", "time_s")}, refresh=False)
            bar.refresh()
        elif ev.kind == "step" and ev.step % 100 == 0:
            losses = ", ".join(f"{k}={v:.4g}" for k, v in ev.logs.items() if k not in ("step", "time_s"))
            print(f"step {ev.step}: {losses}", file=sys.stderr)

    try:
        out = train(
            args.model,
            ds,
            out=args.out,
            steps=args.steps,
            minutes=args.minutes,
            model_config=_parse_overrides(args.set) or None,
            train_config=TrainConfig(batch_size=args.batch_size, lr=args.lr, grad_accum=args.grad_accum, cpu_bf16=args.cpu_bf16),
            seed=args.seed,
            device=args.device,
            resume=args.resume,
            callback=cb,
            checkpoint_every=args.checkpoint_every,
        )
    finally:
        if bar is not None:
            bar.close()
    if not args.json and os.environ.get("RANK", "0") == "0":  # torchrun: one line, from process 0
        print(f"run saved to {out}")
    return 0


def cmd_distill(args) -> int:
    from .distill import distill

    def cb(ev):
        if args.json:
            print(json.dumps(ev.to_json()), flush=True)
        elif ev.kind in ("start", "done") or (ev.kind == "step" and ev.step % 100 == 0):
            losses = ", ".join(f"{k}={v:.4g}" for k, v in ev.logs.items() if k not in ("step", "time_s"))
            print(ev.message or f"step {ev.step}: {losses}", file=sys.stderr)

    out = distill(args.checkpoint, steps=args.steps, out=args.out, minutes=args.minutes, train_steps=args.train_steps, method=args.method,
                  teacher_substeps=args.teacher_substeps, batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device,
                  resume=args.resume, callback=cb)  # fmt: skip
    if not args.json:
        print(f"student saved to {out}")
    return 0


def cmd_sample(args) -> int:
    from .checkpoints import load_run
    from .sampling import generate

    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".npz", ".zip"):
        raise GDAError(f"--out must end in .png, .npz or .zip, got '{out.name}'")
    run = load_run(args.checkpoint, device=args.device)
    label = None
    if args.label is not None:
        names = run.class_names
        if args.label in names:
            label = names.index(args.label)
        else:
            try:
                label = int(args.label)
            except ValueError:
                raise GDAError(f"unknown class '{args.label}'; classes are {', '.join(names[:20])}") from None
    res = generate(run, args.n, label, temperature=args.temperature, guidance=args.guidance, steps=args.steps, seed=args.seed, eta=args.eta, sampler=args.sampler, fast=args.fast)
    for note in res.notes:
        print(f"note: {note}", file=sys.stderr)
    k = run.model.config.num_classes
    res.save(out, nrow=k if (label is None and 2 <= k <= 16) else 8)
    print(f"wrote {len(res.images)} images to {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GDAError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        if args.debug:
            raise
        print("error: out of memory; try a smaller --per-class, --image-size or batch size", file=sys.stderr)
        return 2
