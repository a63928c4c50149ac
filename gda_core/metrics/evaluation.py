"""One call that scores a model on the six axes: ``evaluate(run_dir_or_model, dataset) -> Report``.

The evaluation is a short pipeline of stages (docs/metrics.md):

    plan -> reference -> speed -> per seed: generate -> score -> aggregate (report)

- **plan**: the model, the dataset, every setting, and the cache key of the final report.
- **reference** (seed-independent, reused by every seed and every model of a dataset): the domain
  feature extractor, the real features, the real-data (TRTR) classifier with its per-test-image
  results and DeepFool distances, and the test-to-train SSIM behind the memorisation threshold.
- **speed**: images per second over several timed batches.
- **generate**: the synthetic images of one sampling seed (uint8, cached on disk).
- **score**: everything measured on those images (PRDC, FID/KID, TSTR and augmentation, DeepFool
  on the TSTR classifier, nearest-training SSIM, per-class figures), with the per-image terms a
  bootstrap needs.
- **aggregate**: mean over seeds (or training runs) and a 95 % interval for every figure
  (``intervals.py``: over seeds where a run's noise includes training a classifier, bootstrap over
  images where one run suffices; each figure says which).

Every stage output is cached (``gda_core.stages``), so a killed evaluation resumes with its
finished stages kept and a re-run with one more seed computes only that seed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from ..errors import Cancelled, CheckpointError, ConfigError, GDAError
from ..runtime import atomic_write_json, cache_root, resolve_device
from ..runtime import device_name as _device_name
from ..stages import StageCache, stage_key
from .classifier import DEFAULT_BUDGET, ClassifierBudget, predict, train_classifier
from .extractors import data_hash, get_extractor
from .fid import FID_MIN_SAMPLES, fid, kid
from .manifold import prdc_items
from .privacy import WIN, nearest_ssim
from .report import AXES, Report, normalise_scores
from .robustness import deepfool
from .speed import sampling_speed
from .summaries import aggregate_replicates, bootstrap_intervals, classifier_hierarchical, per_class_summary, reference_intervals

# 3: TRTR retrained per seed, hierarchical intervals, equal classifier steps, speed se in score units, the memorisation audit
METRICS_VERSION = 3
MEMORISATION_VERSION = 1  # of the memorisation stage's record (memorisation.py)
Progress = Callable[[str, float], None]
# Sampling seeds of replicate j start at seed + j * SEED_STRIDE, so replicates never share an image seed.
SEED_STRIDE = 1_000_003
SYNTHETIC_CACHE_BYTES = 2 << 30  # cached synthetic images kept on disk (oldest pruned first)


def balanced_label_order(labels: np.ndarray) -> np.ndarray:
    """The training labels reordered so that every prefix keeps the class proportions (classes
    interleaved by rank / count). The full sequence has exactly the training class counts."""
    labels = np.asarray(labels, dtype=np.int64)
    keys = np.empty(len(labels))
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        keys[idx] = (np.arange(len(idx)) + 0.5) / len(idx)
    order = np.lexsort((labels, keys))
    return labels[order]


# Fixed batch of the held-out likelihood: a family's ``bits_per_dim`` draws its dequantisation noise
# per call from a fixed seed, so the same batches give the same figure on every run.
LIKELIHOOD_BATCH = 256


@torch.inference_mode()
def held_out_bits_per_dim(
    model,
    images_u8: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int = LIKELIHOOD_BATCH,
    progress: Callable[[float], None] | None = None,
) -> float:
    """Mean negative log-likelihood in bits per dimension of uint8 images (N, C, H, W) under a
    family with an exact likelihood (``model.has_likelihood``), in fixed batches (deterministic).

    8 bits/dim is what a model that knows nothing (uniform over the 256 levels) scores; lower is better.
    """
    if not getattr(model, "has_likelihood", False):
        raise ConfigError(f"{getattr(model, 'family', type(model).__name__)} has no exact likelihood, so it has no bits/dim")
    n = len(labels)
    if n == 0:
        raise ConfigError("bits/dim needs at least one held-out image")
    dev = model.device
    total = 0.0
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        x = images_u8[start:stop].to(dev).float().div(255.0)
        bpd = model.bits_per_dim(x, labels[start:stop].to(dev)).double()
        total += float(bpd.sum())
        if progress is not None:
            progress(stop / n)
    return total / n


def _weights_sha(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _resolve(run_or_model, dataset, device):
    """-> (model, dataset, run or None)."""
    from ..data import load_dataset, load_spec
    from ..models.base import GenerativeModel

    run = None
    if isinstance(run_or_model, GenerativeModel):
        model = run_or_model.to(device).eval()
    elif isinstance(run_or_model, (str, os.PathLike)):
        try:
            from ..checkpoints import load_run
        except ImportError:
            raise CheckpointError("loading checkpoints is not available in this build (gda_core.checkpoints missing)") from None
        run = load_run(Path(run_or_model), device=device)
        model = run.model.to(device).eval()
    elif hasattr(run_or_model, "model") and hasattr(run_or_model, "run_dir"):
        run = run_or_model
        model = run.model.to(device).eval()
    else:
        raise ConfigError(f"evaluate needs a run folder or a GenerativeModel, got {type(run_or_model).__name__}")
    cfg = model.config
    if dataset is None:
        if run is None:
            raise ConfigError("evaluating a model object needs an explicit dataset")
        # The full training split (per_class=None): the extractor, TRTR and the privacy search use all real images.
        dataset = load_spec(run.data_spec, per_class=None, subset_seed=None)
    elif isinstance(dataset, (str, os.PathLike)):
        dataset = load_dataset(dataset, image_size=cfg.image_size, channels="grey" if cfg.channels == 1 else "rgb")
    if (dataset.image_size, dataset.channels) != (cfg.image_size, cfg.channels):
        raise ConfigError(
            f"model makes {cfg.channels}x{cfg.image_size}x{cfg.image_size} images but dataset '{dataset.name}' has "
            f"{dataset.channels}x{dataset.image_size}x{dataset.image_size}"
        )
    if dataset.num_classes != cfg.num_classes:
        raise ConfigError(f"model has {cfg.num_classes} classes but dataset '{dataset.name}' has {dataset.num_classes}")
    return model, dataset, run


def _sampling_config(config) -> dict | None:
    """A model config as it enters the evaluation cache key: every field but ``training_only``."""
    if not hasattr(config, "to_dict"):
        return None
    skip = set(getattr(type(config), "training_only", ()))
    return {k: v for k, v in config.to_dict().items() if k not in skip}


def _seed_list(seed: int, seeds) -> list[int]:
    """Replicate seeds: a count K -> [seed, ..., seed + K - 1], or an explicit list."""
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if not 1 <= seeds <= 100:
            raise ConfigError(f"seeds must be between 1 and 100, got {seeds}")
        return [int(seed) + j for j in range(int(seeds))]
    try:
        out = list(dict.fromkeys(int(s) for s in seeds))
    except (TypeError, ValueError):
        raise ConfigError(f"seeds must be a count or a list of integers, got {seeds!r}") from None
    if not out:
        raise ConfigError("give at least one seed")
    return out


# ---------------------------------------------------------------------------------------------
# Plan
# ---------------------------------------------------------------------------------------------


@dataclass
class SamplingSettings:
    """The sampler settings an evaluation uses (None / 1.0: the family's defaults)."""

    steps: int | None = None
    guidance: float | None = None
    sampler: str | None = None
    temperature: float = 1.0

    def validate(self) -> None:
        if self.steps is not None and (not isinstance(self.steps, (int, np.integer)) or isinstance(self.steps, bool) or self.steps < 1):
            raise ConfigError(f"steps must be a positive integer, got {self.steps!r}")
        for name in ("guidance", "temperature"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.sampler is not None and not isinstance(self.sampler, str):
            raise ConfigError(f"sampler must be a name, got {self.sampler!r}")

    def kwargs(self, model) -> dict:
        """Keyword arguments of ``model.sample``: the controls this family takes (validated by
        ``split_controls``), so one setting (e.g. 25 steps) can be applied to every model compared;
        the cache key keeps what was asked for."""
        used, _ = model.split_controls(steps=self.steps, guidance=self.guidance, sampler=self.sampler, temperature=self.temperature)
        return used

    def to_dict(self) -> dict:
        return {"steps": self.steps, "guidance": self.guidance, "sampler": self.sampler, "temperature": float(self.temperature)}


@dataclass
class EvalPlan:
    """Everything the stages need, resolved once."""

    model: object
    ds: object
    run: object
    dev: torch.device
    family: str
    seeds: list[int]
    n_main: int
    n_total: int
    labels: np.ndarray
    sampling: SamplingSettings
    budget: ClassifierBudget
    augment: tuple[int, ...]
    deepfool_steps: int
    kid_subsets: int
    speed_batch: int
    sample_batch: int
    extractor: str
    extractor_options: dict
    cache_dir: object
    weights_sha: str | None
    settings: dict
    settings_sha: str
    cache_path: Path | None
    stages: StageCache
    cancel: threading.Event | None = None
    progress: Progress | None = None
    warnings: list[str] = field(default_factory=list)
    t_start: float = field(default_factory=time.perf_counter)
    held_out: tuple | None = None  # (SplitDuplicates, (val + test images, labels, n left out)), made once

    def say(self, stage: str, frac: float) -> None:
        """Report progress (overall fraction in [0, 1]) and honour cancellation."""
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("evaluation cancelled")
        if self.progress is not None:
            self.progress(stage, min(1.0, max(0.0, frac)))

    def slot(self, lo: float, hi: float, label: str) -> Callable[[float], None]:
        return lambda f: self.say(label, lo + (hi - lo) * min(1.0, max(0.0, f)))


def _check_options(n_samples, augment, seeds, sampling: SamplingSettings) -> None:
    if n_samples is not None and (not isinstance(n_samples, (int, np.integer)) or n_samples < 6):
        raise ConfigError(f"n_samples must be an integer >= 6, got {n_samples}")
    if any((not isinstance(k, int)) or k < 1 for k in augment):
        raise ConfigError(f"augmentation multiples must be positive integers, got {augment}")
    sampling.validate()


def _settings(plan_kw: dict, ds, model, family: str) -> dict:
    """The evaluation cache key's content: every setting that can change a figure."""
    train_u8, train_y = ds.split("train")
    test_u8, test_y = ds.split("test")
    return {
        "metrics_version": METRICS_VERSION,
        **plan_kw,
        "dataset": {"spec": ds.spec.to_dict(), "train_sha256": data_hash(train_u8, train_y), "test_sha256": data_hash(test_u8, test_y)},
        # The same weights sample differently under another config (e.g. DDPM's x0_clip) or after a
        # change to the family's sampling code, so both are part of the key (less the fields that
        # only steer training, ``ModelConfig.training_only``: they cannot change what given weights sample).
        "model": {"family": family, "config": _sampling_config(getattr(model, "config", None)),
                  "sampling_version": getattr(model, "sampling_version", None)},
    }  # fmt: skip


def plan_evaluation(run_or_model, dataset, *, n_samples, seed, seeds, device, extractor, budget, augment, sampling: SamplingSettings,
                    speed_batch, sample_batch, deepfool_steps, kid_subsets, cache_dir, extractor_options, progress, cancel) -> EvalPlan:  # fmt: skip
    """Stage 1: resolve the model and dataset, check every option, compute the report's cache key."""
    dev = resolve_device(device)
    _check_options(n_samples, augment, seeds, sampling)
    seed_list = _seed_list(seed, seeds)
    if progress is not None:
        progress("loading", 0.0)
    model, ds, run = _resolve(run_or_model, dataset, dev)
    train_y = ds.split("train")[1]
    n_train = len(train_y)
    n_main = int(n_samples) if n_samples is not None else n_train
    n_total = max(n_main, n_train * (max(augment) if augment else 1))
    if n_total >= SEED_STRIDE:
        raise ConfigError(f"an evaluation samples at most {SEED_STRIDE - 1:,} images per seed; this one needs {n_total:,}")
    family = getattr(model, "family", None) or type(model).__name__
    ext_opts = {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in (extractor_options or {}).items()}
    plan_kw = {"n_samples": n_main, "seed": int(seed), "seeds": seed_list, "device": dev.type, "extractor": extractor,
               "extractor_options": ext_opts, "budget": budget.to_dict(), "augment": list(augment), "sampling": sampling.to_dict(),
               "speed_batch": int(speed_batch), "deepfool_steps": int(deepfool_steps), "kid_subsets": int(kid_subsets)}  # fmt: skip
    settings = _settings(plan_kw, ds, model, family)
    weights_sha = getattr(run, "weights_hash", None) if run is not None else None
    settings_sha = hashlib.sha256(json.dumps({**settings, "weights": weights_sha}, sort_keys=True, default=str).encode()).hexdigest()[:24]
    cache_path = _report_path(Path(run.run_dir), settings_sha, weights_sha, cache_dir) if (run is not None and weights_sha) else None
    stages = StageCache((Path(cache_dir) if cache_dir is not None else cache_root()) / "stages")
    return EvalPlan(
        model=model, ds=ds, run=run, dev=dev, family=family, seeds=seed_list, n_main=n_main, n_total=n_total,
        labels=np.tile(balanced_label_order(train_y), math.ceil(n_total / n_train))[:n_total], sampling=sampling, budget=budget,
        augment=tuple(augment), deepfool_steps=int(deepfool_steps), kid_subsets=int(kid_subsets), speed_batch=int(speed_batch),
        sample_batch=int(sample_batch), extractor=extractor, extractor_options=dict(extractor_options or {}), cache_dir=cache_dir,
        weights_sha=weights_sha, settings=settings, settings_sha=settings_sha, cache_path=cache_path, stages=stages,
        cancel=cancel, progress=progress, warnings=list(ds.warnings),
    )  # fmt: skip


def _report_path(run_dir: Path, settings_sha: str, weights_sha: str, cache_dir) -> Path:
    """Where the report of these settings is cached: the run's eval/ folder, except for a shipped
    checkpoint, whose folder only ever holds the reports `make checkpoints` made (its model card and
    docs/benchmarks.md are made from them); other settings' reports of it go to the user cache."""
    from ..checkpoints import SHIPPED_DIR

    own = run_dir / "eval" / f"{settings_sha}.json"
    if own.exists() or run_dir.resolve().parent != SHIPPED_DIR.resolve():
        return own
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    return root / "reports" / f"{run_dir.name}-{weights_sha[:12]}" / f"{settings_sha}.json"


def _cached_report(plan: EvalPlan) -> Report | None:
    """The report cached in the run folder for exactly these settings and weights, if any."""
    if plan.cache_path is None or not plan.cache_path.exists():
        return None
    try:
        cached = Report.from_dict(json.loads(plan.cache_path.read_text()))
    except (ValueError, ConfigError, OSError):
        return None  # unreadable cache entry: recompute and overwrite
    stale = getattr(plan.model, "has_likelihood", False) and cached.bits_per_dim is None
    if cached.provenance.get("checkpoint_sha256") != plan.weights_sha or stale:
        return None
    return cached


# ---------------------------------------------------------------------------------------------
# Reference: what every seed and every model of a dataset shares
# ---------------------------------------------------------------------------------------------


@dataclass
class Reference:
    """Seed-independent inputs: extractor, real images and features, the TRTR classifier's results."""

    ext: object
    train_x: torch.Tensor  # uint8 NCHW
    test_x: torch.Tensor
    train_y: np.ndarray
    test_y: np.ndarray
    f_real: torch.Tensor
    trtr: dict  # acc, bacc, correct (test,), pred (test,), rho (test,)
    test_ssim: np.ndarray | None  # nearest-training SSIM of each test image (memorisation threshold)


def _nchw(images_u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images_u8)).permute(0, 3, 1, 2).contiguous()


def real_features(plan: EvalPlan) -> tuple[object, torch.Tensor, torch.Tensor]:
    """The domain extractor (trained once per dataset, cached), the real training images (uint8
    NCHW) and their features."""
    ext_kw = dict(plan.extractor_options)
    if plan.extractor == "domain-cnn":
        tick = plan.slot(0.02, 0.10, "training the feature extractor")
        ext_kw.update(progress=lambda s, t: tick(s / t), cancel=plan.cancel)
    plan.say("feature extractor", 0.02)
    ext = get_extractor(plan.extractor, plan.ds, device=plan.dev, cache_dir=plan.cache_dir, **ext_kw)
    train_x = _nchw(plan.ds.split("train")[0])
    return ext, train_x, ext(train_x)


def build_reference(plan: EvalPlan) -> Reference:
    """Stage 2: real features, the TRTR classifier's per-test-image results and DeepFool
    distances, test-to-train SSIM. Cached per dataset and classifier budget."""
    ds = plan.ds
    ext, train_x, f_real = real_features(plan)
    train_y, (test_u8, test_y) = ds.split("train")[1], ds.split("test")
    test_x = _nchw(test_u8)
    data = plan.settings["dataset"]
    key = stage_key(train=data["train_sha256"], test=data["test_sha256"], budget=plan.budget.to_dict(), seed=plan.seeds[0],
                    deepfool=plan.deepfool_steps, device=plan.dev.type)  # fmt: skip

    def trtr() -> dict[str, np.ndarray]:
        plan.say("utility: training the real-data classifier", 0.10)
        clf = train_classifier(train_x, train_y, ds.num_classes, seed=plan.seeds[0], budget=plan.budget, device=plan.dev, cancel=plan.cancel)
        plan.say("DeepFool on the TRTR classifier", 0.13)
        return _classifier_items(plan, clf, test_x, test_y)

    ref_items = plan.stages.arrays("trtr", key, trtr) if len(test_y) else {}
    test_ssim = None
    if len(test_y) and ds.image_size >= WIN:
        tick = plan.slot(0.14, 0.16, "test-to-train SSIM")

        def ssim() -> dict:
            return {"ssim": nearest_ssim(test_x, train_x, device=plan.dev, progress=tick, cancel=plan.cancel).numpy()}

        test_ssim = plan.stages.arrays("test_ssim", stage_key(train=data["train_sha256"], test=data["test_sha256"]), ssim)["ssim"]
    return Reference(ext, train_x, test_x, np.asarray(train_y), np.asarray(test_y), f_real, ref_items, test_ssim)


def _classifier_items(plan: EvalPlan, clf, test_x: torch.Tensor, test_y: np.ndarray) -> dict[str, np.ndarray]:
    """Per-test-image results of a classifier: prediction, correctness, DeepFool ||r|| / ||x||."""
    pred = predict(clf, test_x).numpy()
    res = deepfool(clf, test_x.float().div(255.0), torch.as_tensor(test_y), steps=plan.deepfool_steps, overshoot=0.02, cancel=plan.cancel)
    return {"pred": pred, "correct": (pred == np.asarray(test_y)).astype(np.float64), "rho": res.per_image.numpy(),
            "not_flipped": (~res.flipped).numpy()}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Speed, generation and scoring of one seed
# ---------------------------------------------------------------------------------------------

SPEED_REPEATS = 5


def measure_speed(plan: EvalPlan) -> dict:
    """Stage 3: images per second over ``SPEED_REPEATS`` timed batches (after a warm-up). Kept
    like the other stages, so that a resumed or extended evaluation reports the same figure."""
    plan.say("timing sampling speed", 0.16)
    kw = plan.sampling.kwargs(plan.model)
    key = stage_key(model=plan.settings["model"], weights=plan.weights_sha or _weights_sha(plan.model), sampling=kw, batch=plan.speed_batch,
                    device=_device_name(plan.dev), seed=plan.seeds[0])  # fmt: skip
    return plan.stages.json("speed", key, lambda: sampling_speed(plan.model, batch_size=plan.speed_batch, seed=plan.seeds[0],
                                                                   repeats=SPEED_REPEATS, **kw))  # fmt: skip


def generate(plan: EvalPlan, j: int, tick: Callable[[float], None]) -> torch.Tensor:
    """Stage 4: the synthetic images of replicate ``j`` (uint8 (n_total, C, H, W)); image i of
    replicate j uses sampling seed ``seed + j * SEED_STRIDE + i``. Cached on disk."""
    base = plan.seeds[0] + (plan.seeds[j] - plan.seeds[0]) * SEED_STRIDE
    weights = plan.weights_sha or _weights_sha(plan.model)
    key = stage_key(weights=weights, model=plan.settings["model"], sampling=plan.sampling.to_dict(), n=plan.n_total, base=base,
                    labels=hashlib.sha256(plan.labels.tobytes()).hexdigest(), device=plan.dev.type)  # fmt: skip

    def sample() -> dict[str, np.ndarray]:
        chunks, chunk = [], max(1, min(2048, plan.sample_batch * 8))
        for start in range(0, plan.n_total, chunk):
            stop = min(plan.n_total, start + chunk)
            imgs = plan.model.sample(stop - start, torch.as_tensor(plan.labels[start:stop]), seed=base + start, batch_size=plan.sample_batch,
                                     progress=lambda d, t, s=start: tick((s + d) / plan.n_total), **plan.sampling.kwargs(plan.model))  # fmt: skip
            # Quantise as saved images would be: uint8 on the CPU (also bounds memory).
            chunks.append(imgs.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy())
        return {"images": np.concatenate(chunks)}

    out = plan.stages.arrays("synthetic", key, sample)["images"]
    plan.stages.prune("synthetic", SYNTHETIC_CACHE_BYTES)
    return torch.from_numpy(out)


def score_seed(plan: EvalPlan, ref: Reference, j: int, lo: float, hi: float) -> dict:
    """Stages 4-5 for replicate ``j``: generate, then every figure and its per-image terms."""
    tick = plan.slot(lo, lo + 0.45 * (hi - lo), f"sampling (seed {plan.seeds[j]})")
    syn = generate(plan, j, tick)
    # Keyed without the list of seeds, so that adding a seed reuses the seeds already scored.
    settings = {k: v for k, v in plan.settings.items() if k not in ("seed", "seeds")}
    base = plan.seeds[0] + (plan.seeds[j] - plan.seeds[0]) * SEED_STRIDE
    key = stage_key(settings=settings, weights=plan.weights_sha or _weights_sha(plan.model), classifier_seed=plan.seeds[j], base=base,
                    trtr_seed=plan.seeds[0])  # fmt: skip
    rec = plan.stages.json("scores", key, lambda: _score(plan, ref, j, syn, lo + 0.45 * (hi - lo), hi))
    return {**rec, "memorisation": memorisation_stage(plan, ref, j, syn, key)}


def _score(plan: EvalPlan, ref: Reference, j: int, syn: torch.Tensor, lo: float, hi: float) -> dict:
    seed = plan.seeds[j]
    main_u8 = syn[: plan.n_main]
    main_y = plan.labels[: plan.n_main]
    plan.say(f"fidelity and diversity (seed {seed})", lo)
    f_fake = ref.ext(main_u8)
    items = {f"prdc_{k}": v for k, v in prdc_items(ref.f_real, f_fake, k_pr=3, k_dc=5, device=plan.dev).items()}
    raw = {k[5:]: float(v.mean()) for k, v in items.items()}
    raw["fid"] = fid(ref.f_real, f_fake)
    raw["kid"], raw["kid_std"] = kid(ref.f_real, f_fake, subsets=plan.kid_subsets, subset_size=1000, seed=seed)
    items["f_fake"] = f_fake.numpy()
    per_class = _per_class_prdc(plan, ref, f_fake, main_y)
    if len(ref.test_y):
        _utility(plan, ref, syn, seed, raw, items, per_class, plan.slot(lo + 0.05 * (hi - lo), lo + 0.85 * (hi - lo), f"utility (seed {seed})"))
    if plan.ds.image_size >= WIN:
        plan.say(f"nearest-training-image SSIM (seed {seed})", lo + 0.85 * (hi - lo))
        s = nearest_ssim(main_u8, ref.train_x, device=plan.dev, progress=plan.slot(lo + 0.85 * (hi - lo), hi, "privacy"), cancel=plan.cancel).numpy()
        items["ssim"] = s
        raw["nearest_ssim_mean"], raw["nearest_ssim_p95"] = float(s.mean()), float(np.quantile(s, 0.95))
        if ref.test_ssim is not None:
            thr = float(np.quantile(ref.test_ssim, 0.99))
            raw["memorization_threshold"], raw["memorization_rate"] = thr, float((s > thr).mean())
    return {"raw": raw, "per_class": per_class, "items": {k: np.asarray(v).tolist() for k, v in items.items()}}


# ---------------------------------------------------------------------------------------------
# Memorisation audit and split duplicates (memorisation.py, data/duplicates.py)
# ---------------------------------------------------------------------------------------------


def _held_out(plan: EvalPlan):
    """Duplicates between the splits (computed once per plan: under a second for a few thousand
    images) and the held-out reference images: val + test less those with a copy in train."""
    if plan.held_out is None:
        from ..data.duplicates import held_out_without_copies, split_duplicates

        dups = split_duplicates(plan.ds)
        plan.held_out = (dups, held_out_without_copies(plan.ds, dups))
    return plan.held_out


def memorisation_stage(plan: EvalPlan, ref: Reference, j: int, syn: torch.Tensor, score_key: str) -> dict | None:
    """The memorisation audit of replicate ``j``'s synthetic images against the training split the
    model is evaluated on, with val + test (less copies of training images) as the held-out reference.
    Cached; None where SSIM cannot run (images < 11 px) or nothing is held out."""
    from .memorisation import audit_memorisation, class_nearest_ssim, held_out_nearest_ssim

    hx, hy, _ = _held_out(plan)[1]
    if plan.ds.image_size < WIN or not len(hy):
        return None
    data = plan.settings["dataset"]
    held_sha = data_hash(hx, hy)
    tick = plan.slot(0.16, 0.18, "memorisation reference")

    def reference() -> dict:
        return {"ssim": class_nearest_ssim(hx, hy, ref.train_x, ref.train_y, device=plan.dev, progress=tick, cancel=plan.cancel),
                "held_out": held_out_nearest_ssim(hx, hy, device=plan.dev, cancel=plan.cancel)}  # fmt: skip

    refs = plan.stages.arrays("memo_reference", stage_key(train=data["train_sha256"], held_out=held_sha, version=MEMORISATION_VERSION), reference)

    def audit() -> dict:
        plan.say(f"memorisation audit (seed {plan.seeds[j]})", 0.18 + 0.8 * (j + 1) / len(plan.seeds))
        a = audit_memorisation(syn[: plan.n_main], plan.labels[: plan.n_main], ref.train_x, ref.train_y, hx, hy, reference=refs["ssim"],
                               reference_held_out=refs["held_out"], seed=plan.seeds[j], class_names=plan.ds.class_names, device=plan.dev,
                               cancel=plan.cancel)  # fmt: skip
        return a.to_dict()

    return plan.stages.json("memorisation", stage_key(scores=score_key, held_out=held_sha, version=MEMORISATION_VERSION), audit)


def _attach_audits(plan: EvalPlan, recs: list[dict], rep: Report, replicate_label: str) -> None:
    """The report's ``memorisation`` and ``duplicates`` blocks, and their warnings."""
    from .memorisation import combine, copies, reading

    dups, (_, _, dropped) = _held_out(plan)
    rep.duplicates = dups.to_dict()
    rep.warnings.extend(dups.warnings())
    rep.memorisation = combine([r.get("memorisation") for r in recs], what=replicate_label)
    if rep.memorisation is not None:
        rep.memorisation["held_out"] = "validation + test splits" + (f", less {dropped} with a copy in train" if dropped else "")
        if copies(rep.memorisation):
            rep.warnings.append(reading(rep.memorisation, plan.family))


def _per_class_prdc(plan: EvalPlan, ref: Reference, f_fake: torch.Tensor, fake_y: np.ndarray) -> dict:
    """Fidelity / diversity within each class (None where a class has too few images for k = 5)."""
    out = {}
    for c, name in enumerate(plan.ds.class_names):
        r, f = ref.f_real[torch.as_tensor(ref.train_y == c)], f_fake[torch.as_tensor(fake_y == c)]
        rec = {"n_real": int(len(r)), "n_synthetic": int(len(f))}
        if min(len(r), len(f)) >= 6:
            it = prdc_items(r, f, k_pr=3, k_dc=5, device=plan.dev)
            rec.update(precision=float(it["precision"].mean()), recall=float(it["recall"].mean()))
        out[name] = rec
    return out


def _utility(plan: EvalPlan, ref: Reference, syn: torch.Tensor, seed: int, raw: dict, items: dict, per_class: dict, tick) -> None:
    """TSTR, real + k x synthetic augmentation, DeepFool on the TSTR classifier, per-class accuracy,
    and this seed's own real-data (TRTR) classifier (its training noise belongs in the interval).
    Every arm trains for the steps of the real set's size (equal optimisation budget)."""
    n, k = len(ref.train_y), plan.ds.num_classes
    syn_y = torch.as_tensor(plan.labels, dtype=torch.long)
    sets = [("tstr", syn[:n], syn_y[:n])]
    for m in plan.augment:
        sets.append((f"aug_{m}x", torch.cat([ref.train_x, syn[: m * n]]), torch.cat([torch.as_tensor(ref.train_y), syn_y[: m * n]])))
    for i, (name, x, y) in enumerate(sets):
        tick(i / (len(sets) + 1))
        clf = train_classifier(x, y, k, seed=seed, budget=plan.budget, device=plan.dev, cancel=plan.cancel, budget_n=n)
        if name == "tstr":
            tick(1 / (len(sets) + 1))
            res = _classifier_items(plan, clf, ref.test_x, ref.test_y)
            items.update({f"tstr_{key}": v for key, v in res.items()})
            raw["deepfool_rho_tstr"] = float(res["rho"].mean())
            pred = res["pred"]
        else:
            pred = predict(clf, ref.test_x).numpy()
        raw[f"{name}_acc"], raw[f"{name}_bacc"] = _acc(pred, ref.test_y)
        items[f"{name}_correct"] = (pred == ref.test_y).astype(np.float64)
    trtr = _seed_trtr(plan, ref, seed)
    items.update({f"trtr_{key}": np.asarray(trtr[key]) for key in ("correct", "rho", "not_flipped")})
    raw["trtr_acc"], raw["trtr_bacc"] = _acc(np.asarray(trtr["pred"]), ref.test_y)
    raw["deepfool_rho_trtr"] = float(np.mean(trtr["rho"]))
    for c, cname in enumerate(plan.ds.class_names):
        mask = ref.test_y == c
        per_class[cname]["n_test"] = int(mask.sum())
        if mask.any():
            per_class[cname]["tstr_acc"] = float(items["tstr_correct"][mask].mean())
            per_class[cname]["trtr_acc"] = float(items["trtr_correct"][mask].mean())


def _seed_trtr(plan: EvalPlan, ref: Reference, seed: int) -> dict:
    """The real-data classifier of one seed: the reference's for the first seed, else retrained with this seed."""
    if seed == plan.seeds[0]:
        return ref.trtr
    clf = train_classifier(ref.train_x, ref.train_y, plan.ds.num_classes, seed=seed, budget=plan.budget, device=plan.dev, cancel=plan.cancel)
    return _classifier_items(plan, clf, ref.test_x, ref.test_y)


def _acc(pred: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(accuracy, balanced accuracy) from predictions."""
    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float((pred == y).mean()), float(balanced_accuracy_score(y, pred))


# ---------------------------------------------------------------------------------------------
# Aggregate
# ---------------------------------------------------------------------------------------------


def _seed_figures(plan: EvalPlan, ref: Reference, rec: dict, speed: dict) -> dict:
    """One replicate's raw figures, the shared reference figures and its six scores."""
    raw = dict(rec["raw"])
    if ref.trtr and "trtr_acc" not in raw:
        raw["trtr_acc"], raw["trtr_bacc"] = _acc(ref.trtr["pred"], ref.test_y)
        raw["deepfool_rho_trtr"] = float(np.mean(ref.trtr["rho"]))
    raw["images_per_s"], raw["nfe_per_image"] = speed["images_per_s"], speed["nfe_per_image"]
    return raw


def _warnings(plan: EvalPlan, ref: Reference, recs: list[dict]) -> list[str]:
    out = list(plan.warnings)
    spec = getattr(plan.run, "data_spec", None)
    n_train = len(ref.train_y)
    if spec is not None and getattr(spec, "per_class", None):
        out.append(f"the model was trained on {spec.per_class} images per class; metrics compare it with the full training split ({n_train} images)")
    if min(n_train, plan.n_main) < FID_MIN_SAMPLES:
        out.append(f"FID/KID computed on {min(n_train, plan.n_main)} images per side (< {FID_MIN_SAMPLES}): FID is biased upwards on small "
                   "sets; compare FIDs only at equal sample counts")  # fmt: skip
    n_test = len(ref.test_y)
    if not n_test:
        out.append("the test split is empty: utility, robustness and bits/dim not measured")
    elif n_test < 50:
        out.append(f"the test split has only {n_test} images: utility and robustness figures are noisy")
    if ref.trtr:
        for name, nf in (("TRTR", int(np.sum(ref.trtr["not_flipped"]))), ("TSTR", int(np.sum(recs[0]["items"].get("tstr_not_flipped", []))))):
            if nf:
                out.append(f"DeepFool did not flip {nf} of {n_test} test images of the {name} classifier within {plan.deepfool_steps} steps")
    if plan.ds.image_size < WIN:
        out.append(f"privacy (SSIM with an {WIN}x{WIN} window) needs images of at least {WIN} px; these are {plan.ds.image_size} px")
    if len(plan.seeds) == 1:
        out.append("one sampling seed: fidelity, diversity, FID and privacy intervals are bootstraps over images; utility and robustness "
                   "intervals cover only the test-set draw (classifier-training noise needs --seeds 2 or more)")  # fmt: skip
    return out


def aggregate(plan: EvalPlan, ref: Reference, speed: dict, recs: list[dict], *, replicate_label: str = "sampling seeds") -> Report:
    """Stage 6: the mean over replicates of every figure, its interval, per-class figures, the report."""
    raws = [_seed_figures(plan, ref, r, speed) for r in recs]
    if len(recs) == 1:
        unc = bootstrap_intervals(raws[0], recs[0]["items"], ref, seed=plan.seeds[0])
    else:
        unc = {**reference_intervals(ref.trtr, ref.test_y, seed=plan.seeds[0]), **aggregate_replicates(raws, what=replicate_label)}

    if all("trtr_correct" in r["items"] for r in recs):  # every seed has its own TRTR classifier
        unc.update(classifier_hierarchical([r["items"] for r in recs], seed=plan.seeds[0]))
    raw = {k: (float(np.mean([r[k] for r in raws if r.get(k) is not None])) if any(r.get(k) is not None for r in raws) else None)
           for k in raws[0]}  # fmt: skip
    raw.update({k: v for k, v in speed.items() if k == "images_per_s"})
    unc.update(speed_interval(speed))
    if getattr(plan.model, "has_likelihood", False) and len(ref.test_y):
        raw["bits_per_dim"] = held_out_bits_per_dim(plan.model, ref.test_x, torch.as_tensor(ref.test_y))
    rep = Report.from_raw(raw, warnings=_warnings(plan, ref, recs), provenance=_provenance(plan, ref, speed, recs), uncertainty=unc,
                          per_class=per_class_summary([r["per_class"] for r in recs], [r["items"] for r in recs], ref.test_y,
                                                      seed=plan.seeds[0]))  # fmt: skip
    _attach_audits(plan, recs, rep, replicate_label)
    return rep


def speed_interval(speed: dict) -> dict:
    """Interval of images/s (and its score) over the timed batches (machine load not included)."""
    from .intervals import over_replicates
    from .speed import speed_score

    rates = [speed["batch_size"] / t for t in speed.get("seconds_all", []) if t > 0]
    est = over_replicates(rates, what="timed batches")
    if est is None:
        return {}
    lo = max(est.lo, 1e-9)
    est = type(est)(float(speed["images_per_s"]), lo, est.hi, est.se, est.df, est.n, est.method, est.values)
    return {"images_per_s": est, "score:speed": est.map(speed_score)}


def _provenance(plan: EvalPlan, ref: Reference, speed: dict, recs: list[dict]) -> dict:
    from .. import __version__

    return {
        "seed": int(plan.seeds[0]), "seeds": list(plan.seeds), "n_samples": plan.n_main, "n_synthetic_total": int(plan.n_total),
        "n_train": int(len(ref.train_y)), "n_test": int(len(ref.test_y)), "device": _device_name(plan.dev), "device_type": plan.dev.type,
        "extractor": plan.extractor, "extractor_info": ref.ext.info, "checkpoint_sha256": plan.weights_sha or _weights_sha(plan.model),
        "run_dir": str(plan.run.run_dir) if plan.run is not None else None, "family": plan.family,
        "name": Path(plan.run.run_dir).name if plan.run is not None else plan.family,
        "sampling": {**plan.sampling.to_dict(), "speed_batch": speed["batch_size"]}, "speed_load_avg": speed.get("load_avg_1min"),
        "classifier_budget": plan.budget.to_dict(),
        "augment": list(plan.augment), "deepfool_steps": plan.deepfool_steps, "time_s": round(time.perf_counter() - plan.t_start, 3),
        "created": datetime.now(UTC).isoformat(timespec="seconds"), "gda_core_version": __version__, "metrics_version": METRICS_VERSION,
        "dataset": plan.ds.summary(), "dataset_sha256": plan.settings["dataset"]["train_sha256"], "settings_sha256": plan.settings_sha,
        "stages": plan.stages.summary(),
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The public call
# ---------------------------------------------------------------------------------------------

#: Evaluation presets. ``quick`` finishes in about a minute per model on a laptop CPU for 16 px
#: digits (one seed: bootstrap intervals); ``full`` is the figure to report (three seeds).
PRESETS: dict[str, dict] = {
    "quick": {"n_samples": 300, "augment": (1,), "deepfool_steps": 20, "budget": {"epochs": 5, "min_steps": 60, "max_steps": 200}, "seeds": 1},
    "full": {"seeds": 3},
}


def evaluation_options(preset: str) -> dict:
    """Keyword arguments of ``evaluate`` for a preset name (``quick`` / ``full``)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown evaluation preset '{preset}'; choose one of {', '.join(PRESETS)}")
    opts = dict(PRESETS[preset])
    if "budget" in opts:
        opts["budget"] = ClassifierBudget(**opts["budget"])
    return opts



def evaluate(
    run_or_model,
    dataset=None,
    *,
    n_samples: int | None = None,
    seed: int = 0,
    seeds: int | Sequence[int] = 1,
    device: str | torch.device = "auto",
    progress: Progress | None = None,
    extractor: str = "domain-cnn",
    cache: bool = True,
    cancel: threading.Event | None = None,
    budget: ClassifierBudget = DEFAULT_BUDGET,
    augment: tuple[int, ...] = (1, 2, 3),
    steps: int | None = None,
    guidance: float | None = None,
    sampler: str | None = None,
    temperature: float = 1.0,
    speed_batch: int = 64,
    sample_batch: int = 256,
    deepfool_steps: int = 50,
    kid_subsets: int = 20,
    cache_dir: str | os.PathLike | None = None,
    extractor_options: dict | None = None,
) -> Report:
    """Score a generative model on fidelity, diversity, speed, utility, robustness and privacy.

    Args:
        run_or_model: a run folder (loaded with ``gda_core.checkpoints.load_run``) or a
            GenerativeModel (then ``dataset`` is required).
        dataset: a Dataset, a dataset name / path, or None to reload the run's dataset (full
            training split, no per-class subset).
        n_samples: synthetic images for fidelity / diversity / privacy / FID (default: the size of
            the real training split, with its class balance). TSTR always uses the training split's
            size; augmentation uses k x that size for k in ``augment``.
        seed, seeds: replicate j (of ``seeds``, a count K or a list) samples image i with seed
            ``seed + j * SEED_STRIDE + i`` and seeds its classifiers with ``seed + j``. With K >= 2
            every figure gets a t-interval over the K seeds; with K = 1 a bootstrap interval.
        progress: ``progress(stage, fraction)`` with fraction in [0, 1] over the whole evaluation.
        cancel: set it to stop; raises ``Cancelled`` at the next check.
        cache: reuse / write ``<run_dir>/eval/<settings-sha>.json`` (run folders only).
        budget: the fixed classifier's training budget (TSTR, TRTR, augmentation).
        augment: real + k x synthetic augmentation multiples (() skips augmentation).
        steps, guidance, sampler, temperature: sampling controls passed to ``model.sample`` (None /
            1.0: the family's defaults).
        cache_dir: where the extractor and the stage outputs are cached (default: the user cache).
        extractor_options: extra keyword options of the feature extractor's factory (e.g. its
            ``budget`` or ``seed`` for ``domain-cnn``); part of the cache key.

    Returns:
        A Report: ``scores`` (the six axes, each in [0, 1] or None), ``intervals`` (a 95 % interval
        for each), ``raw`` figures with theirs, ``per_class`` figures, warnings and provenance.
    """
    sampling = SamplingSettings(steps=steps, guidance=guidance, sampler=sampler, temperature=temperature)
    plan = plan_evaluation(run_or_model, dataset, n_samples=n_samples, seed=seed, seeds=seeds, device=device, extractor=extractor,
                           budget=budget, augment=augment, sampling=sampling, speed_batch=speed_batch, sample_batch=sample_batch,
                           deepfool_steps=deepfool_steps, kid_subsets=kid_subsets, cache_dir=cache_dir,
                           extractor_options=extractor_options, progress=progress, cancel=cancel)  # fmt: skip
    if cache and (cached := _cached_report(plan)) is not None:
        if progress is not None:
            progress("cached", 1.0)
        return cached
    ref = build_reference(plan)
    speed = measure_speed(plan)
    k = len(plan.seeds)
    recs = [score_seed(plan, ref, j, 0.18 + 0.8 * j / k, 0.18 + 0.8 * (j + 1) / k) for j in range(k)]
    rep = aggregate(plan, ref, speed, recs)
    _save(plan, rep)
    plan.say("done", 1.0)
    return rep


def _save(plan: EvalPlan, rep: Report) -> None:
    if plan.cache_path is None:
        return
    try:
        atomic_write_json(plan.cache_path, rep.to_dict())
    except (OSError, GDAError):  # a read-only run folder must not lose the result
        rep.warnings.append(f"could not write the evaluation cache {plan.cache_path}")


__all__ = ["AXES", "METRICS_VERSION", "PRESETS", "SEED_STRIDE", "SamplingSettings", "balanced_label_order", "evaluate",
           "evaluation_options", "held_out_bits_per_dim", "normalise_scores"]  # fmt: skip
