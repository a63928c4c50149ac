"""One call that scores a model on the six axes: ``evaluate(run_dir_or_model, dataset) -> Report``."""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from ..errors import Cancelled, CheckpointError, ConfigError, GDAError
from ..runtime import atomic_write_json, resolve_device
from ..runtime import device_name as _device_name
from .classifier import DEFAULT_BUDGET, ClassifierBudget
from .extractors import data_hash, get_extractor
from .fid import FID_MIN_SAMPLES, fid, kid
from .manifold import prdc
from .privacy import WIN, nearest_ssim
from .report import Report
from .robustness import deepfool
from .speed import sampling_speed
from .utility import utility

METRICS_VERSION = 1
Progress = Callable[[str, float], None]

# Share of the progress bar per stage (start, end).
_STAGES = {
    "loading": (0.0, 0.02),
    "extractor": (0.02, 0.12),
    "sampling": (0.12, 0.40),
    "features": (0.40, 0.44),
    "fidelity": (0.44, 0.46),
    "likelihood": (0.46, 0.47),
    "speed": (0.47, 0.52),
    "utility": (0.52, 0.84),
    "robustness": (0.84, 0.92),
    "privacy": (0.92, 1.0),
}


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
    from ..data import load_dataset
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
        spec = run.data_spec
        # The full training split (per_class=None): the extractor, TRTR and the privacy search use all real images.
        dataset = load_dataset(
            spec.source, image_size=spec.image_size, channels=spec.channels, per_class=None, seed=spec.seed, data_dir=spec.data_dir
        )
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


def evaluate(
    run_or_model,
    dataset=None,
    *,
    n_samples: int | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: Progress | None = None,
    extractor: str = "domain-cnn",
    cache: bool = True,
    cancel: threading.Event | None = None,
    budget: ClassifierBudget = DEFAULT_BUDGET,
    augment: tuple[int, ...] = (1, 2, 3),
    steps: int | None = None,
    guidance: float | None = None,
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
        seed: image i of the synthetic set uses seed ``seed + i``; also seeds every classifier.
        progress: ``progress(stage, fraction)`` with fraction in [0, 1] over the whole evaluation.
        cancel: set it to stop; raises ``Cancelled`` at the next check.
        cache: reuse / write ``<run_dir>/eval/<settings-sha>.json`` (run folders only).
        budget: the fixed classifier's training budget (TSTR, TRTR, augmentation).
        augment: real + k x synthetic augmentation multiples (() skips augmentation).
        steps, guidance: sampling controls passed to ``model.sample`` (None: the family default).
        extractor_options: extra keyword options of the feature extractor's factory (e.g. its
            ``budget`` or ``seed`` for ``domain-cnn``); part of the cache key.

    Returns:
        A Report; ``scores`` has exactly the six axes, each in [0, 1] (None if not measurable).
    """
    t_start = time.perf_counter()
    dev = resolve_device(device)

    def report(stage: str, frac: float, label: str | None = None) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("evaluation cancelled")
        if progress is not None:
            a, b = _STAGES[stage]
            progress(label or stage, a + (b - a) * min(1.0, max(0.0, frac)))

    if n_samples is not None and (not isinstance(n_samples, (int, np.integer)) or n_samples < 6):
        raise ConfigError(f"n_samples must be an integer >= 6, got {n_samples}")
    if any((not isinstance(k, int)) or k < 1 for k in augment):
        raise ConfigError(f"augmentation multiples must be positive integers, got {augment}")
    report("loading", 0.0)
    model, ds, run = _resolve(run_or_model, dataset, dev)
    # One set of sampling controls for any family (a comparison of runs): those this family does not
    # use are left out of its sampling calls, not an error (the cache key keeps what was asked for).
    controls, _ = model.split_controls(steps=steps, guidance=guidance)
    train_u8, train_y = ds.split("train")
    test_u8, test_y = ds.split("test")
    n_train = len(train_y)
    n_main = int(n_samples) if n_samples is not None else n_train
    family = getattr(model, "family", None) or type(model).__name__
    settings = {
        "metrics_version": METRICS_VERSION,
        "n_samples": n_main,
        "seed": int(seed),
        "device": dev.type,
        "extractor": extractor,
        "extractor_options": {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in (extractor_options or {}).items()},
        "budget": budget.to_dict(),
        "augment": list(augment),
        "steps": steps,
        "guidance": guidance,
        "speed_batch": int(speed_batch),
        "deepfool_steps": int(deepfool_steps),
        "kid_subsets": int(kid_subsets),
        "dataset": {"spec": ds.spec.to_dict(), "train_sha256": data_hash(train_u8, train_y), "test_sha256": data_hash(test_u8, test_y)},
        # The same weights sample differently under another config (e.g. DDPM's x0_clip) or after a
        # change to the family's sampling code, so both are part of the key (less the fields that
        # only steer training, ``ModelConfig.training_only``: they cannot change what given weights sample).
        "model": {
            "family": family,
            "config": _sampling_config(getattr(model, "config", None)),
            "sampling_version": getattr(model, "sampling_version", None),
        },
    }
    weights_sha = getattr(run, "weights_hash", None) if run is not None else None
    settings_sha = hashlib.sha256(json.dumps({**settings, "weights": weights_sha}, sort_keys=True, default=str).encode()).hexdigest()[:24]
    cache_path = Path(run.run_dir) / "eval" / f"{settings_sha}.json" if (run is not None and weights_sha) else None
    if cache and cache_path is not None and cache_path.exists():
        try:
            cached = Report.from_dict(json.loads(cache_path.read_text()))
            # A report cached before bits/dim was measured lacks it: recompute for likelihood families.
            stale = getattr(model, "has_likelihood", False) and cached.bits_per_dim is None
            if cached.provenance.get("checkpoint_sha256") == weights_sha and not stale:
                if progress is not None:
                    progress("cached", 1.0)
                return cached
        except (ValueError, ConfigError, OSError):
            pass  # unreadable cache entry: recompute and overwrite
    if weights_sha is None:
        weights_sha = _weights_sha(model)
    warnings: list[str] = list(ds.warnings)
    spec = getattr(run, "data_spec", None)
    if spec is not None and getattr(spec, "per_class", None):
        warnings.append(
            f"the model was trained on {spec.per_class} images per class; metrics compare it with the full training split "
            f"({n_train} images)"
        )

    # 1. Feature extractor (trained once per dataset, cached).
    report("extractor", 0.0, "feature extractor")
    ext_kw = dict(extractor_options or {})
    if extractor == "domain-cnn":
        ext_kw.update(progress=lambda s, t: report("extractor", s / t, "training the feature extractor"), cancel=cancel)
    ext = get_extractor(extractor, ds, device=dev, cache_dir=cache_dir, **ext_kw)

    # 2. Synthetic images: one label sequence with the training class balance; image i <- seed + i.
    order = balanced_label_order(train_y)
    n_total = max(n_main, n_train * (max(augment) if augment else 1))
    labels = np.tile(order, math.ceil(n_total / n_train))[:n_total]
    syn_chunks = []
    chunk = max(1, min(2048, sample_batch * 8))
    for start in range(0, n_total, chunk):
        stop = min(n_total, start + chunk)

        def cb(done: int, total: int, start=start) -> None:
            report("sampling", (start + done) / n_total, f"sampling {start + done}/{n_total} images")

        imgs = model.sample(
            stop - start,
            torch.as_tensor(labels[start:stop]),
            seed=int(seed) + start,
            batch_size=sample_batch,
            progress=cb,
            **controls,
        )
        # Quantise as saved images would be: uint8 on the CPU (also bounds memory).
        syn_chunks.append(imgs.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu())
    syn_u8 = torch.cat(syn_chunks)  # (n_total, C, H, W) uint8
    syn_y = torch.as_tensor(labels, dtype=torch.long)
    main_u8 = syn_u8[:n_main]

    # 3. Fidelity / diversity / FID / KID on the domain features.
    report("features", 0.0, "extracting features")
    train_x = torch.from_numpy(np.ascontiguousarray(train_u8)).permute(0, 3, 1, 2).contiguous()  # uint8 NCHW
    test_x = torch.from_numpy(np.ascontiguousarray(test_u8)).permute(0, 3, 1, 2).contiguous()
    f_real = ext(train_x)
    f_fake = ext(main_u8)
    report("fidelity", 0.0, "precision, recall, density, coverage")
    raw: dict[str, float | None] = {}
    raw.update(prdc(f_real, f_fake, k_pr=3, k_dc=5, device=dev))
    raw["fid"] = fid(f_real, f_fake)
    raw["kid"], raw["kid_std"] = kid(f_real, f_fake, subsets=kid_subsets, subset_size=1000, seed=seed)
    if min(n_train, n_main) < FID_MIN_SAMPLES:
        warnings.append(
            f"FID/KID computed on {min(n_train, n_main)} images per side (< {FID_MIN_SAMPLES}): FID is biased upwards on small "
            "sets; compare FIDs only at equal sample counts"
        )

    # 3b. Exact likelihood of the real held-out images (families with ``has_likelihood`` only).
    if getattr(model, "has_likelihood", False):
        if len(test_y):
            report("likelihood", 0.0, "bits/dim on held-out images")
            raw["bits_per_dim"] = held_out_bits_per_dim(
                model, test_x, torch.as_tensor(test_y), progress=lambda f: report("likelihood", f, "bits/dim on held-out images")
            )
        else:
            warnings.append("the test split is empty: bits/dim on held-out images not measured")

    # 4. Sampling speed.
    report("speed", 0.0, "timing sampling speed")
    sp = sampling_speed(model, batch_size=speed_batch, seed=seed, **controls)
    raw["images_per_s"], raw["nfe_per_image"] = sp["images_per_s"], sp["nfe_per_image"]

    # 5. Utility (TSTR, TRTR, augmentation) and 6. robustness of the TSTR / TRTR classifiers.
    uraw, clfs = utility(
        (train_x, torch.as_tensor(train_y)),
        (test_x, torch.as_tensor(test_y)),
        (syn_u8, syn_y),
        ds.num_classes,
        seed=seed,
        budget=budget,
        device=dev,
        multiples=tuple(augment),
        progress=lambda stage, f: report("utility", f, stage),
        cancel=cancel,
    )
    raw.update(uraw)
    if len(test_y) < 50:
        warnings.append(f"the test split has only {len(test_y)} images: utility and robustness figures are noisy")
    test_f = test_x.float().div(255.0)
    for j, name in enumerate(("tstr", "trtr")):
        report("robustness", j / 2, f"DeepFool on the {name.upper()} classifier")
        res = deepfool(clfs[name], test_f, torch.as_tensor(test_y), steps=deepfool_steps, overshoot=0.02, cancel=cancel)
        raw[f"deepfool_rho_{name}"] = res.rho
        not_flipped = int((~res.flipped).sum())
        if not_flipped:
            warnings.append(
                f"DeepFool did not flip {not_flipped} of {len(test_y)} test images of the {name.upper()} classifier within {deepfool_steps} steps"
            )

    # 7. Privacy: nearest-training-image SSIM, exact.
    report("privacy", 0.0, "nearest-training-image SSIM")
    if ds.image_size >= WIN:
        syn_ssim = nearest_ssim(main_u8, train_x, device=dev, progress=lambda f: report("privacy", 0.8 * f), cancel=cancel)
        raw["nearest_ssim_mean"] = float(syn_ssim.mean())
        raw["nearest_ssim_p95"] = float(torch.quantile(syn_ssim, 0.95))
        if len(test_y):
            test_ssim = nearest_ssim(test_x, train_x, device=dev, progress=lambda f: report("privacy", 0.8 + 0.2 * f), cancel=cancel)
            thr = float(torch.quantile(test_ssim, 0.99))
            raw["memorization_threshold"] = thr
            raw["memorization_rate"] = float((syn_ssim > thr).double().mean())
        else:
            raw["memorization_threshold"] = raw["memorization_rate"] = None
    else:
        raw["nearest_ssim_mean"] = raw["nearest_ssim_p95"] = raw["memorization_rate"] = raw["memorization_threshold"] = None
        warnings.append(f"privacy (SSIM with an {WIN}x{WIN} window) needs images of at least {WIN} px; these are {ds.image_size} px")

    from .. import __version__

    provenance = {
        "seed": int(seed),
        "n_samples": n_main,
        "n_synthetic_total": int(n_total),
        "n_train": int(n_train),
        "n_test": len(test_y),
        "device": _device_name(dev),
        "device_type": dev.type,
        "extractor": extractor,
        "extractor_info": ext.info,
        "checkpoint_sha256": weights_sha,
        "run_dir": str(run.run_dir) if run is not None else None,
        "family": family,
        "name": Path(run.run_dir).name if run is not None else family,
        "sampling": {"steps": steps, "guidance": guidance, "speed_batch": sp["batch_size"]},
        "classifier_budget": budget.to_dict(),
        "augment": list(augment),
        "time_s": round(time.perf_counter() - t_start, 3),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "gda_core_version": __version__,
        "metrics_version": METRICS_VERSION,
        "dataset": ds.summary(),
        "settings_sha256": settings_sha,
    }
    rep = Report.from_raw(raw, warnings=warnings, provenance=provenance)
    if cache_path is not None:
        try:
            atomic_write_json(cache_path, rep.to_dict())
        except (OSError, GDAError):  # a read-only run folder must not lose the result
            rep.warnings.append(f"could not write the evaluation cache {cache_path}")
    report("privacy", 1.0, "done")
    return rep
