"""The utility study, leakage-free: does adding synthetic images help a classifier trained on few
real ones, and does this data support the paper's rankings?

The protocol (docs/protocol.md), for every scarcity level L (real images per class), seed s,
model m and ratio r (synthetic images per real image):

    subset(L, s)  -> generator(m, L, s)  -> synthetic pool  -> classifier(real subset + r x synthetic)
                                                            -> scores (fidelity, privacy, TSTR utility)

- **subset**: a seeded stratified subset of the training split (``stratified_subset(labels, L, s)``);
  the record keeps the SHA-256 of its indices and their count.
- **generator**: trained on exactly that subset with seed s and the level's budget (minutes or
  steps) - the default ``scope="per-level"``. A generator trained on more images than the
  classifier sees would pass it information from images it is denied (leakage), flattering
  synthetic data exactly where it matters. ``scope="shared"`` (one generator per seed on the
  whole training split, used at every level) and given checkpoints (``scope="checkpoint"``) stay
  as explicit options, labelled as such in every table and chart.
- **cells**: the fixed downstream classifier (``gda_core.metrics.train_classifier``, seed s) on the
  real subset plus the first r x |subset| synthetic images (class balance of the subset), tested
  on the real test split. Ratio 0 is the real-only baseline.

Every stage output is cached on disk: generators by (family, config, subset hash, seed, budget) as
ordinary run folders (loadable everywhere a checkpoint is), synthetic pools, scores and cells by
hashes of their inputs. Re-running or extending a study reuses them; a study killed at any moment
resumes (an unfinished generator resumes from its last checkpoint).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import Cancelled, ConfigError
from ..runtime import cache_root
from ..stages import StageCache, stage_key
from .study_report import SCOPE_NOTE, StudyResult, fmt_ratio, level_label, pack_correct

QUICK_BUDGET_KW = {"epochs": 10, "min_steps": 60, "max_steps": 200, "batch_size": 64}
SCOPES = ("per-level", "shared", "checkpoint")
STUDY_VERSION = 2  # 2: per-test-image correctness kept per cell, equal classifier steps across arms
SCORE_IMAGES = 1000  # synthetic images per generator for its fidelity / privacy scores (at most the training split)


def quick_budget():
    from ..metrics import ClassifierBudget

    return ClassifierBudget(**QUICK_BUDGET_KW)


def default_cache() -> Path:
    """Where studies keep generators and stage outputs unless told otherwise."""
    return cache_root() / "study"


# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------


def parse_levels(levels) -> list:
    out = []
    for lv in levels:
        if isinstance(lv, str) and lv.strip().lower() in ("all", "full"):
            out.append("all")
            continue
        try:
            v = int(lv)
        except (TypeError, ValueError):
            raise ConfigError(f"scarcity level must be a positive integer or 'all', got {lv!r}") from None
        if v < 1 or (isinstance(lv, float) and lv != v):
            raise ConfigError(f"scarcity level must be >= 1 image per class, got {lv}")
        out.append(v)
    if not out:
        raise ConfigError("give at least one scarcity level (images per class, or 'all')")
    return list(dict.fromkeys(out))


def parse_ratios(ratios) -> list[float]:
    out = []
    for r in ratios:
        try:
            v = float(r)
        except (TypeError, ValueError):
            raise ConfigError(f"ratio must be a number, got {r!r}") from None
        if not math.isfinite(v) or v < 0 or v > 50:
            raise ConfigError(f"ratio must be in 0..50, got {r}")
        out.append(v)
    if not out:
        raise ConfigError("give at least one ratio")
    return sorted(set(out))


def parse_seeds(seeds) -> list[int]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1 or seeds > 100:
            raise ConfigError(f"number of seeds must be in 1..100, got {seeds}")
        return list(range(int(seeds)))
    try:
        out = [int(s) for s in seeds]
    except (TypeError, ValueError):
        raise ConfigError(f"seeds must be a count or a list of integers, got {seeds!r}") from None
    if not out:
        raise ConfigError("give at least one seed")
    return list(dict.fromkeys(out))


def _per_level(value, levels: list, name: str, cast) -> list | None:
    """A budget given once or once per level -> one value per level (None: not given)."""
    if value is None:
        return None
    vals = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(vals) == 1:
        vals = vals * len(levels)
    if len(vals) != len(levels):
        raise ConfigError(f"give one {name} for every level ({len(levels)}) or one for all, got {len(vals)}")
    out = []
    for v in vals:
        try:
            x = cast(v)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, got {v!r}") from None
        if not (isinstance(x, (int, float)) and math.isfinite(x) and x > 0):
            raise ConfigError(f"{name} must be positive, got {v!r}")
        out.append(x)
    return out


@dataclass
class GeneratorSpec:
    """A model of the study: a family trained per level (or shared), or a given checkpoint."""

    name: str
    family: str
    model_config: dict = field(default_factory=dict)
    run: object = None  # a loaded Run for scope "checkpoint"

    @property
    def label(self) -> str:
        return self.name


def indices_sha256(idx: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(idx, dtype="<i8")).tobytes()).hexdigest()


def scarce_subset(train_labels: np.ndarray, level, seed: int) -> np.ndarray:
    """The training indices of scarcity level ``level`` ('all' or images per class) for ``seed``:
    what both the per-level generator and the downstream classifier are trained on."""
    from ..data.base import stratified_subset

    return np.arange(len(train_labels)) if level == "all" else stratified_subset(train_labels, int(level), int(seed))


def check_dataset(ds, levels: list) -> None:
    """Refuse, with one line naming the problem, a dataset the study cannot split honestly."""
    if ds.spec.per_class is not None:
        raise ConfigError(f"the study draws its own scarce subsets: load '{ds.name}' without a per-class limit (it has {ds.spec.per_class}/class)")
    counts = ds.class_counts("train")
    test = ds.class_counts("test")
    for name, n, t in zip(ds.class_names, counts, test, strict=True):
        if n < 2:
            raise ConfigError(f"class '{name}' has {n} training image{'s' * (n != 1)}: too few to split into a scarce subset (2 or more needed)")
        if t < 1:
            raise ConfigError(f"class '{name}' has no test images: the study cannot measure it (give the dataset a test split with every class)")
    for level in levels:
        if level != "all" and level > min(counts):
            i = int(np.argmin(counts))
            raise ConfigError(f"scarcity level {level}/class is more than class '{ds.class_names[i]}' has ({counts[i]} training images); "
                              "use a smaller level or 'all'")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Plan
# ---------------------------------------------------------------------------------------------


@dataclass
class StudyPlan:
    ds: object
    models: list[GeneratorSpec]
    levels: list
    ratios: list[float]
    seeds: list[int]
    augs: list[bool]
    scope: str
    minutes: list[float] | None
    steps: list[int] | None
    budget: object  # ClassifierBudget of the downstream classifier
    selection_budget: object
    filters: list
    mode: str
    sampling: dict
    device: object
    cache: StageCache
    gen_root: Path
    progress: Callable[[float, str], None] | None = None
    cancel: threading.Event | None = None
    done: int = 0
    total: int = 1
    subsets: dict = field(default_factory=dict)
    real_ref: dict = field(default_factory=dict)

    def tick(self, msg: str, units: int = 1) -> None:
        self.check()
        self.done += units
        if self.progress is not None:
            self.progress(min(1.0, self.done / max(1, self.total)), msg)

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("study cancelled; run it again to resume (finished cells are kept)")

    def subset(self, level, seed) -> tuple[np.ndarray, str]:
        key = (level, seed)
        if key not in self.subsets:
            idx = scarce_subset(self.ds.train_labels, level, seed)
            self.subsets[key] = (idx, indices_sha256(idx))
        return self.subsets[key]

    def budget_for(self, level) -> dict:
        i = self.levels.index(level) if level in self.levels else len(self.levels) - 1
        return {"minutes": self.minutes[i] if self.minutes else None, "steps": int(self.steps[i]) if self.steps else None}


def _models(models, checkpoints, model_configs, device) -> tuple[list[GeneratorSpec], str | None]:
    from ..checkpoints import Run, load_run
    from ..models import get_model_class

    specs: list[GeneratorSpec] = []
    for fam in models or []:
        if not get_model_class(fam).trainable_from_scratch:  # also fails fast on an unknown family
            raise ConfigError(f"a {fam} model is made from a trained checkpoint, not from data: distil one "
                              "(`python -m gda_core distill`) and give it as a checkpoint (--checkpoints)")  # fmt: skip
        cfg = dict((model_configs or {}).get(fam, {}))
        get_model_class(fam).Config.from_dict({**get_model_class(fam).Config().to_dict(), **cfg})  # a bad override fails here
        specs.append(GeneratorSpec(name=fam if fam not in [s.name for s in specs] else f"{fam}'", family=fam, model_config=cfg))
    for c in checkpoints or []:
        run = c if isinstance(c, Run) else load_run(c, device=device)
        name = run.name
        while name in [s.name for s in specs]:
            name += "'"
        specs.append(GeneratorSpec(name=name, family=run.family, run=run))
    if not specs:
        raise ConfigError("give at least one model family (--models) or checkpoint (--checkpoints)")
    return specs, ("checkpoint" if checkpoints else None)


def plan_study(dataset, *, models=None, checkpoints=None, model_configs=None, per_class_levels=(10, 50, "all"), ratios=(0, 1, 2, 3),
               seeds=3, scope="per-level", budget_minutes=None, budget_steps=None, geometric_aug=(False,), select=None,
               mode="balanced", budget=None, selection_budget=None, sampling=None, device="cpu", cache_dir=None, progress=None,
               cancel=None) -> StudyPlan:  # fmt: skip
    """Check every option and the dataset (before anything is trained or written) and plan the study."""
    from ..metrics import DEFAULT_BUDGET
    from ..runtime import resolve_device
    from .generate import MODES
    from .select import parse_filters

    levels, ratio_list, seed_list = parse_levels(per_class_levels), parse_ratios(ratios), parse_seeds(seeds)
    augs = [bool(a) for a in dict.fromkeys(geometric_aug)]
    if not augs:
        raise ConfigError("geometric_aug must list at least one of False / True")
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    dev = resolve_device(device)
    specs, forced = _models(models, checkpoints, model_configs, dev)
    scope = forced or scope
    if scope not in SCOPES:
        raise ConfigError(f"generator scope must be one of {', '.join(SCOPES[:2])}, got '{scope}'")
    minutes = _per_level(budget_minutes, levels, "budget in minutes", float)
    steps = _per_level(budget_steps, levels, "budget in steps", lambda v: int(v) if float(v) == int(float(v)) else float("nan"))
    if scope != "checkpoint" and minutes is None and steps is None:
        raise ConfigError("give the generators a training budget: minutes or steps (--budget-minutes / --budget-steps; one, or one per level)")
    check_dataset(dataset, levels)
    _check_shapes(specs, dataset)
    filters = parse_filters(select) if isinstance(select, str) else (list(select) if select else [])
    unknown = set(sampling or {}) - {"temperature", "guidance", "steps", "sampler"}
    if unknown:
        raise ConfigError(f"unknown sampling setting(s) {', '.join(sorted(unknown))}; use temperature, guidance, steps or sampler")
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache()
    return StudyPlan(ds=dataset, models=specs, levels=levels, ratios=ratio_list, seeds=seed_list, augs=augs, scope=scope, minutes=minutes,
                     steps=steps, budget=budget or DEFAULT_BUDGET, selection_budget=selection_budget or budget or DEFAULT_BUDGET,
                     filters=filters, mode=mode, sampling=dict(sampling or {}), device=dev, cache=StageCache(root / "stages"),
                     gen_root=root / "generators", progress=progress, cancel=cancel)  # fmt: skip


def _check_shapes(specs: list[GeneratorSpec], ds) -> None:
    for s in specs:
        if s.run is None:
            continue
        mc = s.run.model.config
        if (mc.image_size, mc.channels, mc.num_classes) != (ds.image_size, ds.channels, ds.num_classes):
            raise ConfigError(
                f"{s.name} makes {mc.image_size}x{mc.image_size}x{mc.channels} images of {mc.num_classes} classes but the dataset has "
                f"{ds.image_size}x{ds.image_size}x{ds.channels} images of {ds.num_classes} classes; load the dataset with the checkpoint's "
                "image size and channels"
            )


# ---------------------------------------------------------------------------------------------
# Stage: generators
# ---------------------------------------------------------------------------------------------


def subset_dataset(ds, idx: np.ndarray, level, seed: int):
    """The dataset restricted to the training indices ``idx`` (val / test unchanged); its spec
    reloads exactly this subset (``per_class`` = level, ``subset_seed`` = seed)."""
    spec = dataclasses.replace(ds.spec, per_class=None if level == "all" else int(level), subset_seed=None if level == "all" else int(seed))
    return dataclasses.replace(ds, train_images=ds.train_images[idx], train_labels=ds.train_labels[idx], spec=spec, warnings=[])


def _generator_level(plan: StudyPlan, level):
    return "all" if plan.scope == "shared" else level


def generator(plan: StudyPlan, spec: GeneratorSpec, level, seed: int):
    """The generator of ``spec`` for (level, seed): trained on exactly the level's subset (or the
    whole split for scope 'shared'), found in the cache, or resumed. -> (Run, record)."""
    from ..checkpoints import load_run
    from ..metrics.extractors import data_hash
    from ..models import get_model_class
    from ..training import ensure_trained

    if spec.run is not None:
        return spec.run, _checkpoint_record(plan, spec)
    glevel = _generator_level(plan, level)
    idx, sha = plan.subset(glevel, seed)
    sub = subset_dataset(plan.ds, idx, glevel, seed)
    cls = get_model_class(spec.family)
    config = {**cls.Config().to_dict(), **spec.model_config, "image_size": sub.image_size, "channels": sub.channels, "num_classes": sub.num_classes}
    budget = plan.budget_for(glevel)
    data_sha = data_hash(sub.train_images, sub.train_labels)
    key = stage_key(version=STUDY_VERSION, family=spec.family, config=config, data=data_sha, seed=seed, budget=budget, device=plan.device.type)
    out = plan.gen_root / f"{spec.family}-{'all' if glevel == 'all' else f'{glevel}pc'}-seed{seed}-{key[:12]}"
    label = f"{spec.name} {level_label(glevel)} seed {seed}"

    def cb(ev) -> None:
        if plan.progress is not None and ev.kind in ("start", "step", "done"):
            plan.progress(min(1.0, (plan.done + ev.fraction) / max(1, plan.total)), f"training {label}: {ev.message or f'step {ev.step}'}")

    ensure_trained(out, spec.family, sub, steps=budget["steps"], minutes=budget["minutes"], model_config=spec.model_config, seed=seed,
                   device=str(plan.device), callback=cb, cancel=plan.cancel)  # fmt: skip
    run = load_run(out, device=plan.device)
    rec = {"checkpoint": str(out), "family": spec.family, "scope": plan.scope, "seed": int(seed), "per_class": glevel,
           "train_indices_sha256": sha, "n_train": int(len(idx)), "train_data_sha256": data_sha, "steps": run.config.get("step"),
           "budget": budget, "weights_sha256": run.weights_hash}  # fmt: skip
    return run, rec


def _checkpoint_record(plan: StudyPlan, spec: GeneratorSpec) -> dict:
    """A given checkpoint's record: the indices it was trained on where its spec says so."""
    run = spec.run
    ds_spec = run.data_spec
    sha = None
    if str(ds_spec.source) in (str(plan.ds.spec.source), plan.ds.name):
        lvl = "all" if ds_spec.per_class is None else int(ds_spec.per_class)
        s = ds_spec.seed if ds_spec.subset_seed is None else ds_spec.subset_seed
        sha = indices_sha256(scarce_subset(plan.ds.train_labels, lvl, s)) if lvl == "all" or lvl <= max(plan.ds.class_counts("train")) else None
    return {"checkpoint": str(run.run_dir), "family": run.family, "scope": "checkpoint", "seed": None, "per_class": ds_spec.per_class or "all",
            "train_indices_sha256": sha, "n_train": run.config.get("train_images"), "trained_on": str(ds_spec.source),
            "steps": run.config.get("step"), "budget": None, "weights_sha256": run.weights_hash}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Stage: synthetic images, generator scores
# ---------------------------------------------------------------------------------------------


def synthetic_pool(plan: StudyPlan, run, rec: dict, ry: np.ndarray, seed: int):
    """The synthetic images for every ratio of one (generator, subset): the largest ratio's set
    (class balance of the subset); smaller ratios take per-class prefixes. Cached."""
    from .generate import SyntheticSet, generate_synthetic, target_counts

    k = plan.ds.num_classes
    top = max(max(plan.ratios), 1.0)  # ratio 1 is also the synthetic-only (TSTR) set
    counts = target_counts(ry, k, top, plan.mode)
    key = stage_key(weights=rec["weights_sha256"], counts=counts, seed=seed, sampling=plan.sampling, mode=plan.mode)

    def sample() -> dict:
        s = generate_synthetic(run, top, real_labels=ry, mode=plan.mode, seed=(seed + 1) * 1_000_000, counts=counts, cancel=plan.cancel,
                               **plan.sampling)  # fmt: skip
        return {"images": s.images, "labels": s.labels, "seeds": s.seeds}

    a = plan.cache.arrays("pools", key, sample)
    return SyntheticSet(a["images"], a["labels"], a["seeds"], list(run.class_names), {"ratio": top, "mode": plan.mode, "seed": seed})


def _real_reference(plan: StudyPlan) -> dict:
    """Features of the full training split (fidelity reference) and its uint8 NCHW images (privacy)."""
    if "f_real" not in plan.real_ref:
        import torch

        from ..metrics import get_extractor

        ext = get_extractor("domain-cnn", plan.ds, device=plan.device, cancel=plan.cancel)
        x = torch.from_numpy(np.ascontiguousarray(plan.ds.train_images)).permute(0, 3, 1, 2).contiguous()
        plan.real_ref.update(ext=ext, train_x=x, f_real=ext(x))
    return plan.real_ref


def generator_scores(plan: StudyPlan, run, rec: dict, pool, ry: np.ndarray, level, seed: int, baseline_acc: float | None) -> dict:
    """Fidelity (precision) and diversity (recall) against the full training split, privacy (1 -
    mean nearest-training SSIM) and utility (TSTR accuracy / the real-only accuracy at this level)
    of one generator. Cached."""
    key = stage_key(weights=rec["weights_sha256"], data=_data_id(plan), seed=seed, level=level, n=SCORE_IMAGES, sampling=plan.sampling,
                    budget=plan.budget.to_dict(), baseline=baseline_acc, device=plan.device.type)  # fmt: skip
    return plan.cache.json("scores", key, lambda: _scores(plan, run, pool, ry, seed, baseline_acc))


def _scores(plan: StudyPlan, run, pool, ry, seed: int, baseline_acc) -> dict:
    import torch

    from ..metrics import accuracy, nearest_ssim, prdc, train_classifier
    from ..metrics.privacy import WIN
    from .generate import generate_synthetic

    ref = _real_reference(plan)
    n = min(SCORE_IMAGES, len(plan.ds.train_labels))
    s = generate_synthetic(run, n / len(plan.ds.train_labels), real_labels=plan.ds.train_labels, seed=(seed + 1) * 1_000_000 + 500_000,
                           cancel=plan.cancel, **plan.sampling)  # fmt: skip
    x = torch.from_numpy(np.ascontiguousarray(s.images)).permute(0, 3, 1, 2).contiguous()
    out = prdc(ref["f_real"], ref["ext"](x), k_pr=3, k_dc=5, device=plan.device)
    if plan.ds.image_size >= WIN:
        out["privacy"] = 1.0 - float(nearest_ssim(x, ref["train_x"], device=plan.device, cancel=plan.cancel).mean())
    tstr = pool.per_class_prefix(np.bincount(ry, minlength=plan.ds.num_classes).tolist())
    clf = train_classifier(tstr.images, tstr.labels, plan.ds.num_classes, seed=seed, budget=plan.budget, device=plan.device, cancel=plan.cancel)
    out["tstr_acc"] = accuracy(clf, *plan.ds.split("test"))[0]
    if baseline_acc:
        out["utility"] = min(1.0, out["tstr_acc"] / baseline_acc)
    out["n_images"] = int(n)
    return out


def _duplicates(plan: StudyPlan):
    """(SplitDuplicates of the dataset's splits, (held-out images, labels, n left out)): val + test
    less copies of training images, the memorisation audit's reference. Made once per study."""
    if "dups" not in plan.real_ref:
        from ..data.duplicates import held_out_without_copies, split_duplicates

        dups = split_duplicates(plan.ds)
        plan.real_ref["dups"] = (dups, held_out_without_copies(plan.ds, dups))
    return plan.real_ref["dups"]


def _generator_indices(plan: StudyPlan, spec: GeneratorSpec, rec: dict, level, seed: int) -> np.ndarray | None:
    """The training indices the generator saw: the level's subset (the whole split for 'shared'),
    a checkpoint's own subset where its spec names this dataset, else None."""
    if spec.run is None:
        return plan.subset(_generator_level(plan, level), seed)[0]
    ds_spec = spec.run.data_spec
    if not rec.get("train_indices_sha256"):
        return None
    lvl = "all" if ds_spec.per_class is None else int(ds_spec.per_class)
    idx = scarce_subset(plan.ds.train_labels, lvl, ds_spec.seed if ds_spec.subset_seed is None else ds_spec.subset_seed)
    return idx if indices_sha256(idx) == rec["train_indices_sha256"] else None


def generator_memorisation(plan: StudyPlan, spec: GeneratorSpec, rec: dict, pool, level, seed: int) -> dict | None:
    """The memorisation audit of one generator against its own training images (not the whole
    split), on up to SCORE_IMAGES images of its pool; held-out: val + test less copies of training
    images. Cached; None where it cannot run (images < 11 px, unknown training set, nothing held out)."""
    from ..metrics.extractors import data_hash
    from ..metrics.memorisation import audit_memorisation
    from ..metrics.privacy import WIN

    idx = _generator_indices(plan, spec, rec, level, seed)
    hx, hy, _ = _duplicates(plan)[1]
    if idx is None or plan.ds.image_size < WIN or not len(hy) or not len(pool):
        return None
    cnt = np.bincount(pool.labels, minlength=plan.ds.num_classes)
    syn = pool.per_class_prefix(np.minimum(cnt, np.ceil(cnt * SCORE_IMAGES / max(1, cnt.sum()))).astype(int).tolist())
    key = stage_key(weights=rec["weights_sha256"], train=indices_sha256(idx), synthetic=data_hash(syn.images, syn.labels),
                    held_out=data_hash(hx, hy), seed=seed, version=1)  # fmt: skip

    def audit() -> dict:
        a = audit_memorisation(syn.images, syn.labels, plan.ds.train_images[idx], plan.ds.train_labels[idx], hx, hy, seed=seed,
                               class_names=plan.ds.class_names, device=plan.device, cancel=plan.cancel)  # fmt: skip
        return {**a.to_dict(), "against": f"the generator's own {len(idx)} training images"}

    return plan.cache.json("memorisation", key, audit)


def memorisation_notes(levels: list, gens: list[dict]) -> list[str]:
    """One line per model: at each level (over seeds), against its own training images, its memorisation
    rate with the copy gap and what the two say together (:func:`~gda_core.metrics.memorisation.verdict`):
    the rate alone reads a smooth model on look-alike images (chest X-rays) as a copier."""
    from ..metrics.memorisation import combine, new_images_gap, read_block, verdict

    out = []
    for model in dict.fromkeys(g["model"] for g in gens):
        parts = []
        for level in levels:
            block = combine([g.get("memorisation") for g in gens if g["model"] == model and g["per_class"] == level])
            if (got := read_block(block)) is not None:
                r, gap = got
                new = new_images_gap(block)
                new = f", new real images {new:+.3f}" if new is not None else ""
                parts.append(f"{level_label(level)} {r.mean:.0%} [{r.lo:.0%}, {r.hi:.0%}], copy gap {gap.mean:+.3f}{new}: {verdict(block)}")
        if parts:
            out.append(f"Memorisation of {model} (rate: share of its images closer to one of its own training images than 95% of "
                       f"held-out real images come, about 5% without copying; copy gap: how much closer to its training images than to "
                       f"held-out ones): {'; '.join(parts)}.")  # fmt: skip
    return out


def model_speed(plan: StudyPlan, run) -> dict:
    """Images per second of a generator over several timed batches (cached per weights)."""
    from ..metrics import sampling_speed

    def measure() -> dict:
        sp = sampling_speed(run.model, batch_size=64, repeats=5, **plan.sampling)
        return {"images_per_s": sp["images_per_s"], "rates": [sp["batch_size"] / t for t in sp["seconds_all"]], "batch_size": sp["batch_size"]}

    # Speed depends on the architecture, not the weights: measured once per family and config.
    key = stage_key(family=run.family, config=run.model.config.to_dict(), sampling=plan.sampling, device=plan.device.type)
    return plan.cache.json("speed", key, measure)


# ---------------------------------------------------------------------------------------------
# Stage: classifier cells
# ---------------------------------------------------------------------------------------------


def classifier_cell(plan: StudyPlan, x: np.ndarray, y: np.ndarray, seed: int, aug: bool, ident: dict, *, n_budget: int | None = None) -> dict:
    """Train the fixed classifier on (x, y), test it on the real test split. Cached by ``ident``
    (everything its training set and settings depend on). ``n_budget``: the real subset's size, so
    that every arm of a (level, seed) trains for the same number of steps (equal optimisation budget).
    The cell keeps its per-test-image correctness (``correct``, packed bits) for the study's gain."""
    n_budget = len(y) if n_budget is None else int(n_budget)
    key = stage_key(**ident, seed=seed, aug=aug, budget=plan.budget.to_dict(), steps=plan.budget.steps_for(n_budget),
                    device=plan.device.type, version=STUDY_VERSION)  # fmt: skip

    def fit() -> dict:
        from ..metrics import predict, train_classifier
        from ..metrics.intervals import bootstrap_mean, bootstrap_stat
        from ..metrics.summaries import balanced

        clf = train_classifier(x, y, plan.ds.num_classes, seed=seed, budget=plan.budget, device=plan.device, cancel=plan.cancel, augment=aug,
                               budget_n=n_budget)  # fmt: skip
        tx, ty = plan.ds.split("test")
        correct = (predict(clf, tx).numpy() == ty).astype(np.float64)
        acc, bacc = bootstrap_mean(correct, seed=seed, what="test images"), bootstrap_stat(balanced, correct, ty, seed=seed, what="test images")
        return {"accuracy": acc.mean, "accuracy_ci95": acc.interval, "balanced_accuracy": bacc.mean, "balanced_accuracy_ci95": bacc.interval,
                "classifier_steps": plan.budget.steps_for(n_budget), "correct": pack_correct(correct)}  # fmt: skip

    return plan.cache.json("cells", key, fit)


# ---------------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------------


def _units(plan: StudyPlan) -> int:
    pos = [r for r in plan.ratios if r > 0]
    per_seed = len(plan.augs) * (1 + len(plan.models) * len(pos) * (2 if plan.filters else 1)) + 3 * len(plan.models)
    return len(plan.levels) * len(plan.seeds) * per_seed


def run_study(dataset, **options) -> StudyResult:
    """Run the protocol (module docstring) and return a :class:`StudyResult`.

    Options (``plan_study``): ``models`` (families, trained per level) and/or ``checkpoints`` (used
    as they are), ``model_configs`` {family: overrides}, ``per_class_levels``, ``ratios``, ``seeds``
    (a count or a list), ``scope`` ('per-level' or 'shared'), ``budget_minutes`` / ``budget_steps``
    (one value or one per level), ``geometric_aug``, ``select`` (a filter spec), ``mode``,
    ``budget`` (the downstream ClassifierBudget), ``sampling`` ({temperature, guidance, steps}),
    ``device``, ``cache_dir``, ``progress(fraction, message)``, ``cancel`` (an Event).
    """
    plan = plan_study(dataset, **options)
    plan.total = _units(plan)
    cells: list[dict] = []
    gens: dict[tuple, dict] = {}
    for level in plan.levels:
        for seed in plan.seeds:
            cells += _level_seed(plan, level, seed, gens)
    dups = _duplicates(plan)[0]
    config = {**_config(plan), "duplicates": dups.to_dict()}
    notes = _notes(plan, list(gens.values())) + dups.warnings() + memorisation_notes(plan.levels, list(gens.values()))
    return StudyResult.build(cells, list(gens.values()), config, notes)


def _level_seed(plan: StudyPlan, level, seed: int, gens: dict) -> list[dict]:
    """Every cell of one (level, seed): the real-only baseline, then each model's ratios."""
    idx, sha = plan.subset(level, seed)
    rx, ry = plan.ds.train_images[idx], plan.ds.train_labels[idx]
    base = {"per_class": level, "seed": int(seed), "n_real": int(len(ry)), "subset_indices_sha256": sha}
    baselines = {}
    for aug in plan.augs:
        baselines[aug] = classifier_cell(plan, rx, ry, seed, aug, {"real": sha, "data": _data_id(plan)}, n_budget=len(ry))
        plan.tick(f"{level_label(level)}, seed {seed}: real only{', geometric aug' if aug else ''}")
    ctx = None
    if plan.filters:
        from .select import SelectionContext

        ctx = SelectionContext(rx, ry, plan.ds.num_classes, seed=seed, device=plan.device, budget=plan.selection_budget, cancel=plan.cancel)
    cells = []
    for spec in plan.models:
        run, rec = generator(plan, spec, level, seed)
        plan.tick(f"{level_label(level)}, seed {seed}: generator {spec.name} ready")
        pool = synthetic_pool(plan, run, rec, ry, seed)
        plan.tick(f"{level_label(level)}, seed {seed}: {len(pool)} images from {spec.name}")
        label = spec.name + (f" ({SCOPE_NOTE[plan.scope]})" if SCOPE_NOTE.get(plan.scope) else "")
        scores = generator_scores(plan, run, rec, pool, ry, level, seed, baselines[plan.augs[0]]["accuracy"])
        gens[(spec.name, level, seed)] = {**rec, "model": spec.name, "model_label": label, "per_class": level, "seed": int(seed),
                                          "scores": scores, "speed": model_speed(plan, run)}  # fmt: skip
        gens[(spec.name, level, seed)]["memorisation"] = generator_memorisation(plan, spec, rec, pool, level, seed)
        plan.tick(f"{level_label(level)}, seed {seed}: {spec.name} scored")
        head = {**base, "model": spec.name, "model_label": label, "scope": plan.scope, "generator": rec}
        for aug in plan.augs:
            cells.append({**head, "ratio": 0.0, "n_synthetic": 0, "geometric_aug": aug, "selected": False, "baseline": True, **baselines[aug]})
        cells += _ratio_cells(plan, head, rx, ry, pool, ctx, seed)
    return cells


def _ratio_cells(plan: StudyPlan, head: dict, rx, ry, pool, ctx, seed: int) -> list[dict]:
    from .generate import target_counts
    from .select import select as run_select

    out = []
    for r in (r for r in plan.ratios if r > 0):
        synth = pool.per_class_prefix(target_counts(ry, plan.ds.num_classes, r, plan.mode))
        variants = [(False, synth)]
        if plan.filters:
            variants.append((True, run_select(synth, plan.filters, ctx)[0]))
        for sel, s in variants:
            x = np.concatenate([rx, s.images]) if len(s) else rx
            y = np.concatenate([ry, s.labels]) if len(s) else ry
            ident = {"real": head["subset_indices_sha256"], "data": _data_id(plan), "generator": head["generator"]["weights_sha256"],
                     "ratio": r, "select": [f.spec() for f in plan.filters] if sel else None, "pool_seed": seed, "mode": plan.mode,
                     "sampling": plan.sampling}  # fmt: skip
            for aug in plan.augs:
                res = classifier_cell(plan, x, y, seed, aug, ident, n_budget=len(ry))
                out.append({**head, "ratio": r, "n_synthetic": int(len(s)), "geometric_aug": aug, "selected": sel, "baseline": False, **res})
                plan.tick(f"{level_label(head['per_class'])}, seed {seed}: {head['model']} +{fmt_ratio(r)}{' selected' if sel else ''}")
    return out


def _data_id(plan: StudyPlan) -> str:
    if "data_id" not in plan.real_ref:
        from ..metrics.extractors import data_hash

        tx, ty = plan.ds.split("test")
        plan.real_ref["data_id"] = data_hash(plan.ds.train_images, plan.ds.train_labels) + data_hash(tx, ty)
    return plan.real_ref["data_id"]


def _config(plan: StudyPlan) -> dict:
    return {
        "dataset": plan.ds.name, "dataset_spec": plan.ds.spec.to_dict(), "test_images": int(len(plan.ds.test_labels)),
        "models": [{"name": s.name, "family": s.family, "model_config": s.model_config} for s in plan.models],
        "scope": plan.scope, "per_class_levels": plan.levels, "ratios": plan.ratios, "seeds": plan.seeds, "geometric_aug": plan.augs,
        "mode": plan.mode, "select": ",".join(f.spec() for f in plan.filters) or None,
        "generator_budget": {"minutes": plan.minutes, "steps": plan.steps}, "classifier_budget": plan.budget.to_dict(),
        "sampling": plan.sampling, "device": str(plan.device), "cache": str(plan.cache.root.parent) if plan.cache.root else None,
        "classifier": "gda_core.metrics.train_classifier (fixed SmallCNN); geometric aug = its random 1-pixel shifts",
    }  # fmt: skip


def _notes(plan: StudyPlan, gens: list[dict]) -> list[str]:
    if plan.scope == "per-level":
        return ["Each generator was trained on exactly the real images the classifier at its level sees (same indices; their SHA-256 "
                "is recorded), so synthetic images carry no information from images the classifier was denied."]  # fmt: skip
    n = len(plan.ds.train_labels)
    what = ("one generator per seed trained on all " + f"{n} training images" if plan.scope == "shared"
            else "the given checkpoints as they are (" + "; ".join(f"{g['model']}: {g.get('n_train')} images of {g.get('trained_on')}" for g in gens[:len(plan.models)]) + ")")  # fmt: skip
    return [f"Generators: {what}, used at every level. At scarce levels their images carry information from real images the classifier "
            "was denied, which flatters synthetic data exactly there; the leakage-free protocol trains one generator per level "
            "(the default)."]  # fmt: skip


__all__ = ["SCOPES", "StudyPlan", "StudyResult", "indices_sha256", "plan_study", "quick_budget", "run_study", "scarce_subset"]

