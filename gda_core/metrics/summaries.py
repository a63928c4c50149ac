"""From per-seed measurements to figures with intervals: the evaluation's aggregate stage.

``bootstrap_intervals``: one run -> a bootstrap over its images for every figure that is a
statistic of images (precision, FID, SSIM...) and over the test images for the classifier figures
(which then cover the test-set draw only: a single run cannot show classifier-training noise).
``aggregate_replicates``: K >= 2 runs -> a t-interval over them for every figure and score.
Score intervals are keyed ``score:<axis>``; raw figures by their own key.
"""

from __future__ import annotations

import math

import numpy as np

from .fid import fid
from .intervals import Estimate, bootstrap_mean, bootstrap_stat, from_spread, hierarchical, over_replicates
from .report import AXES, normalise_scores

FID_BOOT = 200  # each FID resample needs two covariance square roots


def _arr(items: dict, key: str) -> np.ndarray | None:
    v = items.get(key)
    return None if v is None else np.asarray(v, dtype=np.float64)


def _clip01(x: float) -> float:
    return float(min(1.0, max(0.0, x)))


def balanced(correct: np.ndarray, y: np.ndarray) -> float:
    """Balanced accuracy from per-image correctness: the mean over classes of their accuracy."""
    classes = np.unique(y)
    return float(np.mean([correct[y == c].mean() for c in classes])) if len(classes) else math.nan


def _ratio_stat(a: np.ndarray, b: np.ndarray) -> float:
    den = b.mean()
    return _clip01(a.mean() / den) if den > 0 else (0.0 if a.mean() <= 0 else 1.0)


def classifier_intervals(prefix: str, correct: np.ndarray, y: np.ndarray, *, seed: int) -> dict[str, Estimate]:
    """Accuracy and balanced accuracy of one classifier, bootstrapped over the test images."""
    y = np.asarray(y)
    return {
        f"{prefix}_acc": bootstrap_mean(correct, seed=seed, what="test images"),
        f"{prefix}_bacc": bootstrap_stat(balanced, correct, y, seed=seed, what="test images"),
    }


def reference_intervals(trtr: dict, test_y: np.ndarray, *, seed: int = 0) -> dict[str, Estimate]:
    """The real-data classifier's figures (shared by every seed): bootstraps over test images."""
    if not trtr:
        return {}
    out = classifier_intervals("trtr", np.asarray(trtr["correct"], dtype=np.float64), test_y, seed=seed)
    out["deepfool_rho_trtr"] = bootstrap_mean(np.asarray(trtr["rho"], dtype=np.float64), seed=seed, what="test images")
    return out


def bootstrap_intervals(raw: dict, items: dict, ref, *, seed: int = 0) -> dict[str, Estimate]:
    """Intervals of one run's figures from its per-image terms (see the module docstring)."""
    out: dict[str, Estimate] = {}
    for key, what in (("precision", "synthetic images"), ("density", "synthetic images"), ("recall", "real images"), ("coverage", "real images")):
        if (v := _arr(items, f"prdc_{key}")) is not None:
            out[key] = bootstrap_mean(v, seed=seed, what=what)
    if (f_fake := _arr(items, "f_fake")) is not None:
        f_real = ref.f_real.numpy().astype(np.float64)
        out["fid"] = bootstrap_stat(fid, f_real, f_fake, paired=False, n_boot=FID_BOOT, seed=seed, what="images per side")
    if raw.get("kid") is not None:
        out["kid"] = from_spread(raw["kid"], raw.get("kid_std") or 0.0, len(items.get("f_fake", [])), "spread over KID subsets")
    if (s := _arr(items, "ssim")) is not None:
        out["nearest_ssim_mean"] = bootstrap_mean(s, seed=seed, what="synthetic images")
        out["nearest_ssim_p95"] = bootstrap_stat(lambda a: float(np.quantile(a, 0.95)), s, seed=seed, what="synthetic images")
        if raw.get("memorization_threshold") is not None:
            out["memorization_rate"] = bootstrap_mean((s > raw["memorization_threshold"]).astype(np.float64), seed=seed, what="synthetic images")
    y = np.asarray(ref.test_y)
    for prefix in ["tstr"] + sorted({k[: -len("_correct")] for k in items if k.startswith("aug_") and k.endswith("_correct")}):
        if (c := _arr(items, f"{prefix}_correct")) is not None:
            out.update(classifier_intervals(prefix, c, y, seed=seed))
    if (r := _arr(items, "tstr_rho")) is not None:
        out["deepfool_rho_tstr"] = bootstrap_mean(r, seed=seed, what="test images")
    out.update(reference_intervals(ref.trtr, y, seed=seed))
    out.update(_score_bootstraps(out, items, ref, seed=seed))
    return out


def _score_bootstraps(est: dict[str, Estimate], items: dict, ref, *, seed: int) -> dict[str, Estimate]:
    """The six scores' intervals for one run: paired bootstraps for the two ratio scores."""
    out = {}
    if "precision" in est:
        out["score:fidelity"] = est["precision"].map(_clip01)
    if "recall" in est:
        out["score:diversity"] = est["recall"].map(_clip01)
    if "nearest_ssim_mean" in est:
        e = est["nearest_ssim_mean"]
        out["score:privacy"] = Estimate(_clip01(1 - e.mean), _clip01(1 - e.hi), _clip01(1 - e.lo), e.se, e.df, e.n, e.method)
    if ref.trtr and (tc := _arr(items, "tstr_correct")) is not None:
        rc = np.asarray(ref.trtr["correct"], dtype=np.float64)
        out["score:utility"] = bootstrap_stat(_ratio_stat, tc, rc, seed=seed, what="test images")
        out["score:robustness"] = bootstrap_stat(_ratio_stat, _arr(items, "tstr_rho"), np.asarray(ref.trtr["rho"], dtype=np.float64),
                                                 seed=seed, what="test images")  # fmt: skip
    return out


def ratio01(a, b):
    """TSTR / TRTR (or DeepFool distance ratio) cut to [0, 1], vectorised (a zero denominator: 0 or 1)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(b > 0, a / np.where(b > 0, b, 1.0), np.where(a <= 0, 0.0, 1.0))
    return np.clip(r, 0.0, 1.0)


def _stack(items_per_seed: list[dict], key: str, mask=None) -> np.ndarray | None:
    rows = [it.get(key) for it in items_per_seed]
    if any(r is None for r in rows):
        return None
    a = np.asarray(rows, dtype=np.float64)
    return a if mask is None else a[:, mask]


def classifier_hierarchical(items_per_seed: list[dict], *, seed: int = 0, mask=None) -> dict[str, Estimate]:
    """Accuracies, DeepFool distances and the utility / robustness scores over K seeds, each seed
    with its own TSTR, augmentation and TRTR classifiers: seeds outside, a paired bootstrap over the
    test images inside (``intervals.hierarchical``; ``mask``: only these test images, e.g. one class)."""
    out: dict[str, Estimate] = {}
    first = items_per_seed[0]
    prefixes = ["tstr", "trtr"] + sorted(k[: -len("_correct")] for k in first if k.startswith("aug_") and k.endswith("_correct"))
    for prefix in prefixes:
        if (c := _stack(items_per_seed, f"{prefix}_correct", mask)) is not None and c.shape[1]:
            out[f"{prefix}_acc"] = hierarchical([c], seed=seed)
    for side in ("tstr", "trtr"):
        if (r := _stack(items_per_seed, f"{side}_rho", mask)) is not None and r.shape[1]:
            out[f"deepfool_rho_{side}"] = hierarchical([r], seed=seed)
    for axis, key in (("utility", "correct"), ("robustness", "rho")):
        a, b = _stack(items_per_seed, f"tstr_{key}", mask), _stack(items_per_seed, f"trtr_{key}", mask)
        if a is not None and b is not None and a.shape[1]:
            e = hierarchical([a, b], stat=ratio01, seed=seed)
            out[f"score:{axis}"] = e.within()
    for key in [k for k in out if k.endswith("_acc")]:
        out[key] = out[key].within()
    return out


def aggregate_replicates(raws: list[dict], *, what: str = "sampling seeds") -> dict[str, Estimate]:
    """t-intervals over K >= 2 replicates for every raw figure that varies and every score."""
    out: dict[str, Estimate] = {}
    for key in raws[0]:
        if key in _SHARED:
            continue
        est = over_replicates([r.get(key) for r in raws], what=what)
        if est is not None:
            out[key] = _within_domain(key, est)
    scores = [normalise_scores(r) for r in raws]
    for axis in AXES:
        est = over_replicates([s[axis] for s in scores if s[axis] is not None], what=what)
        if est is not None:
            out[f"score:{axis}"] = est.within()
    return out


# A t-interval knows nothing of a figure's range: three accuracies of 0.80, 0.95 and 0.96 give an upper
# end above 1. Shown to a user that reads as an error, so each interval is cut to what the figure can take.
_UNIT = {"precision", "recall", "coverage", "memorization_rate"}
_NON_NEGATIVE = {"density", "fid", "images_per_s", "deepfool_rho_tstr", "deepfool_rho_trtr", "bits_per_dim"}


def _within_domain(key: str, est: Estimate) -> Estimate:
    if key in _UNIT or key.endswith(("_acc", "_bacc")):
        lo, hi = 0.0, 1.0
    elif key == "nearest_ssim_mean":
        lo, hi = -1.0, 1.0
    elif key in _NON_NEGATIVE:
        lo, hi = 0.0, math.inf
    else:
        return est
    return est.within(lo, hi)


# Figures with no interval over seeds: the real-data references and the speed are measured once and shared by every
# replicate; kid_std is itself a spread (of KID over subsets), so a mean of it with an interval would mean nothing.
_SHARED = {"trtr_acc", "trtr_bacc", "deepfool_rho_trtr", "images_per_s", "nfe_per_image", "memorization_threshold", "kid_std"}


def wilson(p: float, n: int) -> tuple[float, float]:
    """Wilson score 95 % interval of a proportion p observed on n items."""
    if n <= 0:
        return (math.nan, math.nan)
    z = 1.959963984540054
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


PER_CLASS_FIGURES = {"fidelity": "precision", "diversity": "recall", "tstr_acc": "tstr_acc", "trtr_acc": "trtr_acc"}


def per_class_summary(per_seed: list[dict], items_per_seed: list[dict] | None = None, test_y=None, *, seed: int = 0) -> dict:
    """Per class: fidelity (precision within the class), diversity (recall), utility (TSTR / TRTR
    accuracy on the class's test images) and the accuracies, each with a 95 % interval.

    The accuracies and utility, given the per-test-image correctness of every seed (``items_per_seed``,
    ``test_y``): ``classifier_hierarchical`` on the class's test images (seeds outside, paired bootstrap
    over those images inside; the ratio bootstrapped as a ratio). Fidelity / diversity: over seeds
    when there are several, else a Wilson interval over one seed's images of the class."""
    out = {}
    y = None if test_y is None else np.asarray(test_y)
    for c, name in enumerate(per_seed[0]):
        recs = [p[name] for p in per_seed]
        first = recs[0]
        row: dict = {k: first.get(k) for k in ("n_real", "n_synthetic", "n_test")}
        intervals: dict = {}
        for fig, src in PER_CLASS_FIGURES.items():
            vals = [r[src] for r in recs if r.get(src) is not None]
            row[fig] = float(np.mean(vals)) if vals else None
            if vals:
                intervals[fig] = _per_class_interval(vals, first, src)
        hier = {}
        if items_per_seed and y is not None and (y == c).any() and all("trtr_correct" in it for it in items_per_seed):
            hier = classifier_hierarchical(items_per_seed, seed=seed, mask=y == c)
            for fig in ("tstr_acc", "trtr_acc"):
                if fig in hier:
                    row[fig], intervals[fig] = hier[fig].mean, hier[fig].interval
        if "score:utility" in hier:
            row["utility"], intervals["utility"] = hier["score:utility"].mean, hier["score:utility"].interval
        elif row.get("tstr_acc") is not None and row.get("trtr_acc"):
            row["utility"] = _clip01(row["tstr_acc"] / row["trtr_acc"])
            utils = [_clip01(r["tstr_acc"] / r["trtr_acc"]) for r in recs if r.get("trtr_acc")]
            est = over_replicates(utils)
            iv = [est.lo, est.hi] if est is not None and est.se > 0 else _ratio_bounds(intervals.get("tstr_acc"), row["trtr_acc"])
            intervals["utility"] = None if iv is None else [_clip01(iv[0]), _clip01(iv[1])]
        row["intervals"] = intervals
        row["method"] = _per_class_method(len(recs), bool(hier))
        out[name] = row
    return out


def _per_class_method(k: int, hier: bool) -> str:
    if hier:
        side = f"{k} seeds, paired bootstrap over the class's test images inside" if k > 1 else "bootstrap over the class's test images (one seed)"
        return f"accuracies and utility: {side}; fidelity / diversity: " + (f"t-interval over {k} seeds" if k > 1 else "Wilson over its images")
    return f"t-interval over {k} seeds" if k > 1 else "Wilson interval over the class's images (one run)"


def _per_class_interval(vals: list[float], first: dict, src: str) -> list[float]:
    """Over seeds where they differ; where they do not (one seed, or the same figure every time), a
    Wilson interval over one seed's images: the seeds share the test images, so pooling them would
    count the same images K times."""
    est = over_replicates(vals)
    if est is not None and est.se > 0:
        return est.within().interval
    n = first.get("n_synthetic" if src == "precision" else "n_real" if src == "recall" else "n_test") or 0
    return list(wilson(float(np.mean(vals)), int(n)))


def _ratio_bounds(tstr_iv, trtr: float):
    if not tstr_iv or not trtr:
        return None
    return [_clip01(tstr_iv[0] / trtr), _clip01(tstr_iv[1] / trtr)]
