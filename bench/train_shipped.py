"""Train the checkpoints shipped in checkpoints/ (the app's instant start) and write their model cards.

    .venv/bin/python -m bench.train_shipped [--only vae-digits,gan-digits,...] [--runs-dir DIR] [--eval-only] [--no-eval]

Each entry of SHIPPED trains one family on one dataset with a fixed step budget (a minutes cap only
bounds a slow machine), is evaluated with the full preset (three sampling seeds, every score with
its interval), and is copied into checkpoints/<family>-<dataset>/ with its config.json,
history.json, preview.png, MODEL_CARD.md and the evaluation report the Compare page opens with (the
resumable train_state.pt is not shipped: it holds optimiser moments and would triple the size). The
distilled student is made from the shipped digits DDPM by `python -m gda_core distill`; the
pneumoniamnist entries read ../shared/data/pneumoniamnist (or $GDA_DATA_DIR) and never download.

A DDPM on a real set takes about an hour to train and two to evaluate here, more than is left in many
sessions: `--no-eval --dest bench/pending` ships the training alone into a tracked waiting folder, and the
next run of this entry (with its evaluation) moves it into checkpoints/ and evaluates it, training nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from gda_core.metrics import AXES, Report, fmt_with_interval

ROOT = Path(__file__).resolve().parents[1]

SHARED = ROOT.parent / "shared" / "data"
MEDMNIST_CREDIT = ("MedMNIST v2 (Yang et al., Scientific Data 2023), derived from Kermany et al. 2018; licence CC BY 4.0 "
                   "(https://medmnist.com). The checkpoint is a derived work under the same licence.")  # fmt: skip

# name -> (family, dataset, train arguments). The steps are the budget; the minutes cap keeps a slow
# machine from running for hours (the card records the steps actually taken). Budgets follow the all-families
# table of docs/benchmarks.md ("All families on one dataset at one budget"): the iterative families
# get more steps because a few minutes leave them furthest from converged.
SHIPPED: dict[str, tuple[str, str, list[str]]] = {
    "vae-digits": ("vae", "digits", ["--steps", "2500"]),
    "gan-digits": ("gan", "digits", ["--steps", "2500"]),
    "ddpm-digits": ("ddpm", "digits", ["--steps", "6000", "--minutes", "25"]),
    "stylegan2-digits": ("stylegan2", "digits", ["--steps", "3000", "--minutes", "15"]),
    "ldm-digits": ("ldm", "digits", ["--steps", "4000", "--minutes", "20"]),
    "flow-digits": ("flow", "digits", ["--steps", "4000", "--minutes", "25"]),
    "realnvp-digits": ("realnvp", "digits", ["--steps", "3000", "--minutes", "15"]),
    # two large steps: in a short run on digits they learn faster than four (tests/test_family_hybrids.py)
    "ddgan-digits": ("ddgan", "digits", ["--steps", "3000", "--minutes", "20", "--set", "denoising_steps=2"]),
    "vaegan-digits": ("vaegan", "digits", ["--steps", "3000", "--minutes", "15"]),
    "distilled-digits": ("distilled", "digits", ["--teacher", "ddpm-digits", "--steps", "2", "--train-steps", "1500", "--minutes", "20"]),
    "vae-pneumoniamnist": ("vae", "pneumoniamnist", ["--steps", "3000", "--minutes", "20"]),
    "gan-pneumoniamnist": ("gan", "pneumoniamnist", ["--steps", "3000", "--minutes", "30"]),
    # The hybrid shipped on the real sets is the VAE-GAN: the DDGAN's discriminator goes flat (d_loss = ln 4, R1 ~ 0)
    # within a few hundred steps on digits and on chest X-rays alike (checkpoints/ddgan-digits/history.json), so more
    # of its steps buy nothing (docs/hybrids.md).
    "vaegan-pneumoniamnist": ("vaegan", "pneumoniamnist", ["--steps", "3000", "--minutes", "40"]),
    # 110 minutes: its first 60 were spent at load average 7.4 (2,165 steps); the run resumes to 6,000 steps.
    "ddpm-pneumoniamnist": ("ddpm", "pneumoniamnist", ["--steps", "6000", "--minutes", "110"]),
    "vae-plantvillage_corn": ("vae", "plantvillage_corn", ["--steps", "3000", "--minutes", "20"]),
    "gan-plantvillage_corn": ("gan", "plantvillage_corn", ["--steps", "3000", "--minutes", "30"]),
    "vaegan-plantvillage_corn": ("vaegan", "plantvillage_corn", ["--steps", "3000", "--minutes", "45"]),
    "ddpm-plantvillage_corn": ("ddpm", "plantvillage_corn", ["--steps", "6000", "--minutes", "60"]),
}
RESULTS = ROOT / "bench" / "results" / "train_shipped.json"
# A trained checkpoint waiting for its evaluation (`--no-eval --dest bench/pending`): tracked, so that a training
# done in one session is evaluated and shipped by the next one instead of trained again. It does not sit in
# checkpoints/ meanwhile, because every checkpoint there must come with its report (the app opens Compare with it).
PENDING = ROOT / "bench" / "pending"
DEFAULT = "vae-digits,gan-digits,ddpm-digits"  # shipped before bench/results/train_shipped.json recorded recipes
SHIP_FILES = ("model.safetensors", "config.json", "history.json", "preview.png")


def recipe(name: str, max_steps: int | None = None) -> list[str]:
    """The training arguments of an entry; ``max_steps`` caps them (a quick check that a recipe still runs)."""
    family, _, extra = SHIPPED[name]
    if max_steps:
        key = "--train-steps" if family == "distilled" else "--steps"
        extra = [str(max_steps) if i and extra[i - 1] == key else a for i, a in enumerate(extra)]
    return list(extra)


def _train_parts(entry: dict, steps: int | None, train_s: float, load0: float, load1: float) -> list[dict]:
    """The parts of a training that resumed a run the entry already recorded: each with its steps, seconds and
    the load at its start and end (the entry's own loads are the last part's, so without these a first part
    measured under load would read as quiet). Empty for a training in one go."""
    parts = list(entry.get("train_parts") or [])
    before_steps, before_s = entry.get("steps"), entry.get("train_s")
    if not (before_steps and before_s and steps and steps > before_steps and train_s > before_s):
        return parts  # not a resume of the recorded run (a first training, or a retrain from scratch)
    if not parts:
        parts = [{"to_step": before_steps, "seconds": before_s, "load_start": entry.get("train_load_start"), "load_end": entry.get("train_load_end")}]
    done = sum(float(x["seconds"]) for x in parts)
    return parts + [{"to_step": steps, "seconds": round(train_s - done, 1), "load_start": load0, "load_end": load1}]


def _budget_left(saved: dict, extra: list[str]) -> bool:
    """A finished run whose recipe now asks for more (steps and minutes both left) resumes instead of
    being shipped as is: a run cut short by its minutes cap on a loaded machine continues where it stopped."""
    def arg(key: str) -> float | None:
        return float(extra[extra.index(key) + 1]) if key in extra else None

    steps, minutes = arg("--train-steps") or arg("--steps"), arg("--minutes")
    more_steps = steps is None or int(saved.get("step") or 0) < steps
    more_time = minutes is None or float(saved.get("train_time_s") or 0) < minutes * 60
    return more_steps and more_time


def train(name: str, runs: Path, max_steps: int | None = None) -> Path:
    family, dataset, _ = SHIPPED[name]
    extra = recipe(name, max_steps)
    out = runs / name
    cfg = out / "config.json"
    saved = json.loads(cfg.read_text()) if cfg.exists() else {}
    if saved.get("finished") and not _budget_left(saved, extra):
        return out
    if family == "distilled":
        teacher = ROOT / "checkpoints" / extra[extra.index("--teacher") + 1]
        rest = [a for i, a in enumerate(extra) if a != "--teacher" and (i == 0 or extra[i - 1] != "--teacher")]
        cmd = [sys.executable, "-m", "gda_core", "distill", "--checkpoint", str(teacher), "--seed", "0", "--out", str(out), *rest]
    else:
        cmd = [sys.executable, "-m", "gda_core", "train", "--dataset", dataset, "--model", family, "--seed", "0", "--out", str(out), *extra]
    if (out / "train_state.pt").exists():
        cmd.append("--resume")
    print(" ".join(cmd), flush=True)
    # The MedMNIST file is found through GDA_DATA_DIR, not --data-dir, so the shipped config records no
    # path of this machine (the app looks in its own data folder); GDA_ALLOW_DOWNLOAD=0: never a download.
    env = {**os.environ, "GDA_ALLOW_DOWNLOAD": "0"}
    if dataset != "digits":
        env["GDA_DATA_DIR"] = str(SHARED / dataset)
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)
    return out


def model_card(run_dir: Path, report: dict | None, entry: dict | None = None) -> str:
    from gda_core.data import dataset_title
    from gda_core.data.plantvillage import CORN_LICENCE
    from gda_core.models import display_name

    cfg = json.loads((run_dir / "config.json").read_text())
    dataset = cfg.get("dataset_name", "digits")
    entry = entry or {}
    if dataset == "digits":
        data = f"scikit-learn digits, {cfg.get('train_images')} training images, 16x16 grey, 10 classes (fixed split, seed 0)."
    elif dataset == "plantvillage_corn":
        data = (f"{dataset_title(dataset)} from PlantVillage, {cfg.get('train_images')} training images ({', '.join(cfg.get('class_names', []))}). "
                f"Source and licence: {CORN_LICENCE}. This checkpoint is a derived work and is shared under CC BY-SA 3.0 too.")  # fmt: skip
    else:
        data = f"{dataset_title(dataset)}, {cfg.get('train_images')} training images ({', '.join(cfg.get('class_names', []))}). Source and licence: {MEDMNIST_CREDIT}"
    lines = [f"# {display_name(cfg['family'])} on {dataset_title(dataset)} (shipped checkpoint)", ""]
    if cfg["family"] == "distilled":  # the lines of the student's own card (gda_core.distill) that name its teacher
        card = run_dir / "MODEL_CARD.md"
        own = [ln for ln in (card.read_text().splitlines() if card.exists() else []) if ln.startswith(("- Teacher:", "- Student:", "- Re-make:"))]
        lines += [*own, ""] if own else []
    lines += [
        f"- Data: {data}",
        f"- Training: {cfg['step']} steps, batch {cfg['train_config']['batch_size']}, seed {cfg['seed']}, "
        f"{cfg.get('train_time_s', 0) / 60:.1f} min wall-clock on {cfg.get('device')}"
        + _card_loads(entry),
        f"- Model config: `{json.dumps(cfg['model_config'])}`",
        f"- Re-train: `python -m bench.train_shipped --only {run_dir.name}` (`make checkpoints` re-makes every shipped one).",
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


def portable_report(report: dict, dest: Path) -> dict:
    """The report as shipped: no path of the machine that made it (the evaluation's stage cache, its run folder),
    which would tell a reader nothing and a clone the maker's home directory. The run folder becomes the
    checkpoint's place in the repository, and the training steps that claims read from the run folder's config
    (gda_core.metrics.claims.training_steps) are written into the report, which then needs no folder to find."""
    prov = report.get("provenance") or {}
    cfg = Path(dest) / "config.json"
    if "train_steps" not in prov and cfg.exists():
        step = json.loads(cfg.read_text()).get("step")
        if isinstance(step, int):
            prov["train_steps"] = step
    if isinstance(prov.get("stages"), dict):
        prov["stages"].pop("root", None)
    if prov.get("run_dir"):
        d = Path(dest).resolve()
        prov["run_dir"] = str(d.relative_to(ROOT)) if d.is_relative_to(ROOT) else d.name
    return report


def _card_loads(entry: dict) -> str:
    """The loads of the card's training line: each part's where a stopped training resumed."""
    parts = entry.get("train_parts") or []
    if len(parts) > 1:
        told = "; ".join(f"to step {x['to_step']}: {x['seconds'] / 60:.1f} min, load average {x['load_start']} -> {x['load_end']}" for x in parts)
        return f" in {len(parts)} parts ({told}; above 2 a time is not a quiet-machine figure)."
    if "train_load_start" in entry:
        return f" (load average {entry['train_load_start']} at the start, {entry['train_load_end']} at the end; above 2 the time is not a quiet-machine figure)."
    return "."


def _load_results(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"entries": {}}


def _save_results(path: Path, res: dict) -> None:
    from gda_core.runtime import atomic_write_json

    atomic_write_json(path, res)


def _shipped_current(name: str, dest: Path, res: dict, max_steps: int | None) -> bool:
    """A finished checkpoint of this very recipe is already in checkpoints/ (committed): train nothing."""
    entry = res.get("entries", {}).get(name, {})
    cfg = dest / "config.json"
    if not (cfg.exists() and (dest / "model.safetensors").exists()):
        return False
    try:
        c = json.loads(cfg.read_text())
    except ValueError:
        return False
    recipe_ok = entry.get("recipe") == recipe(name, max_steps) or (not entry and not max_steps and name in DEFAULT.split(","))
    return bool(c.get("finished")) and c.get("family") == SHIPPED[name][0] and recipe_ok


def _promote_pending(name: str, dest: Path, pending: Path, res: dict, max_steps: int | None) -> bool:
    """Move a finished checkpoint of this recipe from the pending folder into ``dest`` when ``dest`` has none.
    Returns whether it moved (the training it holds is then not redone)."""
    src = pending / name
    if dest.resolve() == src.resolve() or _shipped_current(name, dest, res, max_steps) or not _shipped_current(name, src, res, max_steps):
        return False
    if dest.exists():  # an unfinished or other-recipe folder: the pending one is what the results file records
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(src), str(dest))
    return True


def _copy_atomic(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="all", help=f"comma-separated names among {', '.join(SHIPPED)}, or 'all'")
    ap.add_argument("--runs-dir", default=str(ROOT / "runs" / "shipped-training"))
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--dest", default=str(ROOT / "checkpoints"), help="where the shipped folders go")
    ap.add_argument("--max-steps", type=int, default=None, help="cap every recipe's steps (a quick check of the recipes)")
    ap.add_argument("--eval-only", action="store_true", help="re-evaluate the shipped checkpoints (full preset) and rewrite their cards")
    ap.add_argument("--retrain", action="store_true", help="train again even where checkpoints/ holds this recipe's finished checkpoint")
    ap.add_argument("--pending", default=str(PENDING), help="where a training committed without its evaluation waits (moved into --dest here)")
    ap.add_argument("--results", default=str(RESULTS), help="the tracked file of recipes and timings (what a later session resumes from)")
    args = ap.parse_args()
    names = list(SHIPPED) if args.only == "all" else args.only.split(",")
    unknown = [n for n in names if n not in SHIPPED]
    if unknown:
        ap.error(f"unknown shipped checkpoint(s) {', '.join(unknown)}; choose among {', '.join(SHIPPED)}")
    runs = Path(args.runs_dir)
    # Every entry is recorded with the recipe it actually ran (a --max-steps check records its capped one,
    # so it never passes for the real recipe); point --results elsewhere for checks.
    results = Path(args.results)
    res = _load_results(results)
    for name in names:
        t0 = time.time()
        dest = Path(args.dest) / name
        entry = dict(res.setdefault("entries", {}).get(name, {}))
        if not args.retrain and _promote_pending(name, dest, Path(args.pending), res, args.max_steps):
            print(f"{name}: moved the finished training from {args.pending}/{name} to {dest}", flush=True)
        done_before = _shipped_current(name, dest, res, args.max_steps) and not args.retrain
        if not args.eval_only and not done_before:
            if SHIPPED[name][0] == "distilled" and not (ROOT / "checkpoints" / "ddpm-digits" / "model.safetensors").exists():
                print(f"{name}: skipped (its teacher checkpoints/ddpm-digits is missing)", flush=True)
                continue
            load0 = _load()
            run = train(name, runs, args.max_steps)
            dest.mkdir(parents=True, exist_ok=True)
            for f in SHIP_FILES + ("MODEL_CARD.md",):
                if (run / f).exists():
                    _copy_atomic(run / f, dest / f)
            cfg = json.loads((dest / "config.json").read_text())
            train_s, load1 = round(float(cfg.get("train_time_s") or 0), 1), _load()
            parts = _train_parts(entry, cfg.get("step"), train_s, load0, load1)
            entry.update(recipe=recipe(name, args.max_steps), family=SHIPPED[name][0], dataset=SHIPPED[name][1], steps=cfg.get("step"),
                         train_s=train_s, train_load_start=load0, train_load_end=load1, size_bytes=(dest / "model.safetensors").stat().st_size,
                         **({"train_parts": parts} if parts else {}))  # fmt: skip
            res["entries"][name] = entry
            _save_results(results, res)
        elif done_before:
            print(f"{name}: checkpoints/{name} already holds this recipe's finished checkpoint (--retrain to train again)", flush=True)
        report = None
        if not args.no_eval:
            from gda_core.metrics import evaluate
            from gda_core.metrics.evaluation import evaluation_options

            # The real images are read from ../shared/data (or $GDA_DATA_DIR) and never downloaded, as in train().
            os.environ["GDA_ALLOW_DOWNLOAD"] = "0"
            if SHIPPED[name][1] != "digits":
                os.environ["GDA_DATA_DIR"] = os.environ.get("GDA_SHIPPED_DATA_DIR") or str(SHARED / SHIPPED[name][1])
            load0, te = _load(), time.time()
            rep = evaluate(dest, **evaluation_options("full"))
            report = portable_report(rep.to_dict(), dest)
            keep = f"{rep.provenance.get('settings_sha256')}.json"
            # evaluate() never writes into a shipped checkpoint (its report went to the user cache): this is the one place that does.
            from gda_core.runtime import atomic_write_json

            atomic_write_json(dest / "eval" / keep, report)
            for old in (dest / "eval").glob("*.json"):  # reports of older settings (or metrics versions) would never be served again
                if old.name != keep:
                    old.unlink()
            # Only an evaluation computed here measured its time. A report served from the cache (a re-run to rewrite
            # the card) carries the time_s of the run that made it but took seconds now: recording those would erase
            # the hour it took.
            took = time.time() - te
            if took > 1 and took >= 0.5 * float(rep.provenance.get("time_s") or 0):
                entry.update(eval_s=round(took, 1), eval_load_start=load0, eval_load_end=_load(),
                             metrics_version=rep.provenance.get("metrics_version"))  # fmt: skip
                res["entries"][name] = entry
                _save_results(results, res)
        card = dest / "MODEL_CARD.md"
        tmp = card.with_name("MODEL_CARD.md.tmp")
        tmp.write_text(model_card(dest, report, entry))
        os.replace(tmp, card)
        print(f"{name}: shipped to {dest} in {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
