"""The memorisation audit: does a generator copy its training images, or only look unlike them?

Nearest-SSIM privacy (``privacy.py``) is low for a blurry model as much as for a private one. The
audit tells the two apart by asking, for every synthetic image, how close it comes to the
generator's own training images *compared with how close a genuinely new real image comes*:

- **reference**: for every held-out real image (never seen by the generator), its nearest SSIM to
  the training images of its class. Its 95th percentile (per class where the class has at least
  ``MIN_REFERENCE`` held-out images, else over all classes) is the memorisation threshold: only 5 %
  of new real images come that close to a training image.
- **memorisation rate**: the share of synthetic images whose nearest same-class training SSIM
  exceeds that threshold. A model making genuinely new images scores about 5 %; a copier near
  100 %; a blurry model near 0 % (its images are close to nothing), although its nearest-SSIM
  "privacy" looks excellent.
- **copy gap**: the mean over synthetic images of (nearest training SSIM - nearest held-out SSIM),
  both within the image's class. Large for a copier. A maximum over more images is higher, so
  with a training set larger than the held-out one even new images have a gap above 0: the block
  also gives ``new_images_gap``, the same figure for the held-out real images themselves (nearest
  training SSIM minus nearest *other* held-out SSIM), what a model that does not copy scores.

Intervals: one run -> a percentile bootstrap, stratified by class, that resamples the synthetic
images and the held-out images (the threshold is itself estimated from a few held-out images per
class, and that noise belongs in the interval); several sampling seeds -> a t-interval over seeds
(``combine``). SSIM is ``privacy.nearest_ssim`` (exact, batched), restricted to one class at a time.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from .intervals import CONFIDENCE, N_BOOT, Estimate, _rng, fmt, over_replicates
from .privacy import nearest_ssim

PERCENTILE = 95.0
MIN_REFERENCE = 20  # held-out images a class needs for a threshold of its own (else the pooled one)


def _nchw(x) -> np.ndarray:
    """uint8 (N, H, W, C) or (N, C, H, W) / float (N, C, H, W) -> an array nearest_ssim takes."""
    a = np.asarray(x.numpy() if hasattr(x, "numpy") else x)
    if a.ndim != 4:
        raise ConfigError(f"images must be a 4-D batch, got shape {a.shape}")
    if a.dtype == np.uint8 and a.shape[-1] in (1, 3) and a.shape[1] not in (1, 3):
        a = a.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(a)


def class_nearest_ssim(images, labels, ref_images, ref_labels, *, device=None, progress: Callable[[float], None] | None = None,
                       cancel: threading.Event | None = None) -> np.ndarray:  # fmt: skip
    """For every image, its maximum SSIM over the ``ref_images`` of its own class -> (N,) float64
    (NaN where ``ref_images`` hold no image of that class)."""
    x, r = _nchw(images), _nchw(ref_images)
    y, ry = np.asarray(labels, dtype=np.int64), np.asarray(ref_labels, dtype=np.int64)
    if len(x) != len(y) or len(r) != len(ry):
        raise ConfigError(f"images and labels differ in length: {len(x)} vs {len(y)}, {len(r)} vs {len(ry)}")
    out = np.full(len(x), np.nan)
    classes = [c for c in np.unique(y) if (ry == c).any()]
    for k, c in enumerate(classes):
        m = y == c
        out[m] = nearest_ssim(x[m], r[ry == c], device=device, cancel=cancel).numpy()
        if progress is not None:
            progress((k + 1) / len(classes))
    return out


def held_out_nearest_ssim(images, labels, *, device=None, cancel: threading.Event | None = None) -> np.ndarray:
    """For every held-out image, its maximum SSIM over the *other* held-out images of its class
    (NaN for a class of one): what the copy gap of genuinely new images is measured against."""
    from .privacy import ssim_matrix

    x, y = _nchw(images), np.asarray(labels, dtype=np.int64)
    out = np.full(len(x), np.nan)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) < 2:
            continue
        m = ssim_matrix(x[idx], x[idx], device=device, cancel=cancel).numpy()
        np.fill_diagonal(m, -np.inf)
        out[idx] = m.max(1)
    return out


def thresholds(reference: np.ndarray, reference_labels: np.ndarray, *, percentile: float = PERCENTILE) -> dict[int, float]:
    """The memorisation threshold of every class met in ``reference_labels`` (pooled below MIN_REFERENCE)."""
    ref, ry = np.asarray(reference, dtype=np.float64), np.asarray(reference_labels)
    ok = np.isfinite(ref)
    if not ok.any():
        raise ConfigError("the memorisation audit needs held-out real images of the synthetic images' classes")
    pooled = float(np.percentile(ref[ok], percentile))
    out = {}
    for c in np.unique(ry[ok]):
        v = ref[ok & (ry == c)]
        out[int(c)] = float(np.percentile(v, percentile)) if len(v) >= MIN_REFERENCE else pooled
    out[-1] = pooled
    return out


@dataclass(frozen=True)
class MemorisationAudit:
    """One synthetic set's audit. ``rate`` / ``copy_gap``: Estimates; arrays: per synthetic image."""

    rate: Estimate
    copy_gap: Estimate
    percentile: float
    n_synthetic: int
    n_train: int
    n_held_out: int
    nearest_train_mean: float
    nearest_held_out_mean: float
    reference_mean: float
    new_images_gap: float  # the copy gap of held-out real images (train vs other held-out): what no copying scores
    per_class: dict = field(default_factory=dict)
    nearest_train: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    nearest_held_out: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    flagged: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), repr=False)

    def to_dict(self) -> dict:
        """The report's ``memorisation`` block (JSON; no per-image arrays)."""
        return {"rate": self.rate.to_dict(), "copy_gap": self.copy_gap.to_dict(), "percentile": self.percentile,
                "n_synthetic": self.n_synthetic, "n_train": self.n_train, "n_held_out": self.n_held_out,
                "nearest_train_mean": self.nearest_train_mean, "nearest_held_out_mean": self.nearest_held_out_mean,
                "reference_mean": self.reference_mean, "new_images_gap": self.new_images_gap, "per_class": dict(self.per_class)}  # fmt: skip


def _bootstrap(near_tr, gap, y, ref, ry, percentile, n_boot, seed, confidence) -> tuple[Estimate, Estimate]:
    """Stratified percentile bootstrap of (rate, copy gap): synthetic and held-out images resampled
    within each class, thresholds re-estimated from each resample (vectorised over replicates)."""
    rng = _rng(seed)
    ok = np.isfinite(ref)
    ref, ry = ref[ok], ry[ok]
    pooled = np.percentile(ref[rng.integers(0, len(ref), (n_boot, len(ref)))], percentile, axis=1)
    flagged, gaps = np.zeros(n_boot), np.zeros(n_boot)
    for c in np.unique(y):
        s, g = near_tr[y == c], gap[y == c]
        rc = ref[ry == c]
        thr = np.percentile(rc[rng.integers(0, len(rc), (n_boot, len(rc)))], percentile, axis=1) if len(rc) >= MIN_REFERENCE else pooled
        idx = rng.integers(0, len(s), (n_boot, len(s)))
        flagged += (s[idx] > thr[:, None]).sum(1)
        gaps += np.nan_to_num(g[idx]).sum(1)
    n, n_gap = len(y), int(np.isfinite(gap).sum())
    alpha = (1 - confidence) / 2
    method = f"bootstrap over {n} synthetic and {len(ref)} held-out images, by class"

    def est(reps: np.ndarray) -> Estimate:  # the point value is filled in by the caller
        lo, hi = (float(q) for q in np.quantile(reps, [alpha, 1 - alpha]))
        return Estimate(0.0, lo, hi, float(reps.std(ddof=1)), math.inf, n, method)

    return est(flagged / n), est(gaps / max(1, n_gap))


def audit_memorisation(synthetic, synthetic_labels, train, train_labels, held_out, held_out_labels, *, reference: np.ndarray | None = None,
                       reference_held_out: np.ndarray | None = None,
                       percentile: float = PERCENTILE, n_boot: int = N_BOOT, seed: int = 0, confidence: float = CONFIDENCE,
                       class_names: Sequence[str] | None = None, device=None, progress: Callable[[float], None] | None = None,
                       cancel: threading.Event | None = None) -> MemorisationAudit:  # fmt: skip
    """Audit synthetic images (N, C, H, W) or (N, H, W, C), uint8 or [0, 1] floats, against the
    generator's own ``train`` images and ``held_out`` real images it never saw (same layout).

    ``reference``: the held-out images' nearest same-class training SSIM if already computed
    (``class_nearest_ssim(held_out, ..., train, ...)``), ``reference_held_out`` their nearest SSIM
    to the other held-out images (``held_out_nearest_ssim``); evaluations reuse both across seeds.
    """
    if not 50.0 <= percentile < 100.0:
        raise ConfigError(f"percentile must be in [50, 100), got {percentile}")
    y, ty, hy = (np.asarray(v, dtype=np.int64) for v in (synthetic_labels, train_labels, held_out_labels))
    if len(y) == 0 or len(ty) == 0 or len(hy) == 0:
        raise ConfigError("the memorisation audit needs synthetic, training and held-out images")
    if not np.isin(y, hy).any():
        raise ConfigError("the memorisation audit needs held-out real images of the synthetic images' classes")
    tick = (lambda lo, hi: lambda f: progress(lo + (hi - lo) * f)) if progress is not None else (lambda lo, hi: None)
    if reference is None:
        reference = class_nearest_ssim(held_out, hy, train, ty, device=device, progress=tick(0.0, 0.3), cancel=cancel)
    reference = np.asarray(reference, dtype=np.float64)
    if reference_held_out is None:
        reference_held_out = held_out_nearest_ssim(held_out, hy, device=device, cancel=cancel)
    loo_gap = reference - np.asarray(reference_held_out, dtype=np.float64)
    new_gap = float(np.nanmean(loo_gap)) if np.isfinite(loo_gap).any() else float("nan")
    if len(reference) != len(hy):
        raise ConfigError(f"reference has {len(reference)} values for {len(hy)} held-out images")
    near_tr = class_nearest_ssim(synthetic, y, train, ty, device=device, progress=tick(0.3, 0.75), cancel=cancel)
    near_ho = class_nearest_ssim(synthetic, y, held_out, hy, device=device, progress=tick(0.75, 1.0), cancel=cancel)
    thr = thresholds(reference, hy, percentile=percentile)
    cut = np.array([thr.get(int(c), thr[-1]) for c in y])
    flagged = np.isfinite(near_tr) & (near_tr > cut)
    gap = near_tr - near_ho
    rate_e, gap_e = _bootstrap(near_tr, gap, y, reference, hy, percentile, n_boot, seed, confidence)
    rate, mean_gap = float(flagged.mean()), float(np.nanmean(gap)) if np.isfinite(gap).any() else float("nan")
    rate_e = Estimate(rate, min(rate_e.lo, rate), max(rate_e.hi, rate), rate_e.se, rate_e.df, rate_e.n, rate_e.method)
    gap_e = Estimate(mean_gap, min(gap_e.lo, mean_gap), max(gap_e.hi, mean_gap), gap_e.se, gap_e.df, gap_e.n, gap_e.method)
    names = list(class_names) if class_names is not None else [str(c) for c in range(int(max(y.max(), ty.max(), hy.max())) + 1)]
    per_class = {}
    for c in np.unique(y):
        m = y == c
        per_class[names[c]] = {"rate": float(flagged[m].mean()), "threshold": thr.get(int(c), thr[-1]), "n_synthetic": int(m.sum()),
                               "n_train": int((ty == c).sum()), "n_held_out": int((hy == c).sum()),
                               "pooled_threshold": int((hy == c).sum()) < MIN_REFERENCE}  # fmt: skip
    return MemorisationAudit(rate_e, gap_e, float(percentile), len(y), len(ty), len(hy), float(np.nanmean(near_tr)), float(np.nanmean(near_ho)),
                             float(np.nanmean(reference)), new_gap, per_class, near_tr, near_ho, flagged)  # fmt: skip


def combine(blocks: Sequence[dict], *, what: str = "sampling seeds") -> dict | None:
    """The report block of K audits (``MemorisationAudit.to_dict()``, one per replicate): one audit
    as it is; K >= 2 -> rate and copy gap as t-intervals over the K replicates."""
    blocks = [b for b in blocks if b]
    if not blocks:
        return None
    if len(blocks) == 1:
        return dict(blocks[0])
    out = dict(blocks[0])
    for key in ("rate", "copy_gap"):
        est = over_replicates([float(b[key]["mean"]) for b in blocks], what=what)
        if est is not None:
            if key == "rate":  # a share: a t-interval over few replicates can cross 0 % or 100 %, the rate cannot
                est = est.within()
            out[key] = est.to_dict()
    for key in ("nearest_train_mean", "nearest_held_out_mean"):
        out[key] = float(np.mean([b[key] for b in blocks]))
    out["n_synthetic"] = int(sum(b["n_synthetic"] for b in blocks))
    out["per_class"] = {
        c: {**v, "rate": float(np.mean([b["per_class"].get(c, v)["rate"] for b in blocks]))} for c, v in blocks[0]["per_class"].items()
    }
    out["replicates"] = len(blocks)
    return out


def read_block(block) -> tuple[Estimate, Estimate] | None:
    """(rate, copy gap) of a report's ``memorisation`` block read as untrusted JSON; None if malformed."""
    if not isinstance(block, dict):
        return None
    try:
        rate, gap = Estimate.from_dict(block["rate"]), Estimate.from_dict(block["copy_gap"])
    except (KeyError, TypeError, ConfigError):
        return None
    if not all(math.isfinite(v) for e in (rate, gap) for v in (e.mean, e.lo, e.hi)):
        return None
    # Reports written before combine() clipped the rate (and hand-edited ones) still read as a share.
    return rate.within(), gap


#: How much closer to its training images than new real images come (in SSIM, on the copy gap) a model
#: must be before its high rate reads as copying: new real images' own gap is 0.010-0.025 on the shipped
#: sets, a copier's is far above (tests/test_memorisation.py's copier).
GAP_MARGIN = 0.02


def new_images_gap(block) -> float | None:
    """The copy gap new real images score by themselves (the block's ``new_images_gap``), None if absent or not finite."""
    new = block.get("new_images_gap") if isinstance(block, dict) else None
    return float(new) if isinstance(new, (int, float)) and not isinstance(new, bool) and math.isfinite(new) else None


def _kind(block) -> str | None:
    """What a ``memorisation`` block shows, decided in one place: "copies", "smooth" (a high rate, but as
    close to held-out images as to training ones) or "none"; None if there is no readable block."""
    got = read_block(block)
    if got is None:
        return None
    rate, gap = got
    if not rate.lo > 2 * (1 - _percentile(block) / 100):
        return "none"
    new = new_images_gap(block)
    return "copies" if new is None or gap.lo > new + GAP_MARGIN else "smooth"


def copies(block) -> bool:
    """Whether a ``memorisation`` block shows copying: the rate's whole interval above twice the
    share that new real images reach by construction (5 % at the 95th percentile) AND the copy gap's
    whole interval above what new real images score (``new_images_gap``). The rate alone also
    fires for a smooth model on images that all look alike (a VAE on chest X-rays: 62 % of its
    images beat the threshold, with a copy gap within 0.005 of new images'): its images are as close
    to held-out X-rays as to training ones, which is not copying."""
    return _kind(block) == "copies"


def _percentile(block) -> float:
    pct = block.get("percentile")
    return float(pct) if isinstance(pct, (int, float)) and not isinstance(pct, bool) and 50 <= pct < 100 else PERCENTILE


_VERDICTS = {"copies": "copies training images", "smooth": "smooth images, as close to held-out images as to training ones: not copies",
             "none": "no sign of copying"}  # fmt: skip


def verdict(block) -> str | None:
    """A few words on a ``memorisation`` block, as :func:`reading` decides (None if there is no block)."""
    kind = _kind(block)
    return None if kind is None else _VERDICTS[kind]


def reading(block, name: str = "the model") -> str | None:
    """One sentence on a ``memorisation`` block: copies, or not (None if there is no block)."""
    kind = _kind(block)
    if kind is None:
        return None
    rate, gap = read_block(block)
    pct = _percentile(block)
    null = 1 - pct / 100
    if kind == "copies":
        return (f"{name}: {rate.mean:.0%} [{rate.lo:.0%}, {rate.hi:.0%}] of its images are closer to a training image than "
                f"{pct:g}% of new real images come (about {null:.0%} expected without copying): it reproduces training images.")  # fmt: skip
    new = new_images_gap(block)
    new = f" (new real images: {new:+.3f})" if new is not None else ""
    if kind == "smooth":
        return (f"{name}: {rate.mean:.0%} [{rate.lo:.0%}, {rate.hi:.0%}] of its images are closer to a training image than {pct:g}% of new "
                f"real images come, but they are as close to held-out images as to training ones (copy gap {gap.mean:+.3f}{new}): "
                "smooth, typical images of the data, not copies of training images.")  # fmt: skip
    return (f"{name}: memorisation rate {rate.mean:.0%} [{rate.lo:.0%}, {rate.hi:.0%}] (about {null:.0%} expected without copying), "
            f"copy gap {gap.mean:+.3f}{new}: no sign that it copies its training images.")  # fmt: skip


#: One line for a page beside privacy: why the audit is there.
AUDIT_HELP = ("A low nearest-SSIM from a blurry model is not privacy: its images are far from every real image, not only from the "
              "training ones. The memorisation rate tells a copy from a blur: the share of images closer to one of the model's training "
              "images than 95% of new real images come (about 5% for a model that makes new images, near 100% for a copier), read with "
              "the copy gap: a copier is much closer to its training images than to held-out ones, a smooth model on look-alike images "
              "(chest X-rays) can pass the threshold while being as close to held-out images as to training ones.")  # fmt: skip


def _gap_cell(block, got) -> str:
    if not got:
        return "n/a"
    new = new_images_gap(block)
    return fmt(got[1]) + (f" (new real images: {new:.3f})" if new is not None else "")


def privacy_rows(reports: Sequence, names: Sequence[str]) -> list[dict]:
    """One row per report for a page: privacy score, nearest-training SSIM, memorisation rate and
    copy gap, each 'mean [lo, hi]' ('n/a' where the report has no audit: made before it existed)."""
    rows = []
    for name, rep in zip(names, reports, strict=True):
        got = read_block(getattr(rep, "memorisation", None))
        rows.append({"model": name, "privacy score": fmt(rep.estimate("privacy")), "nearest-training SSIM": fmt(rep.estimate("nearest_ssim_mean")),
                     "memorisation rate": fmt(got[0]) if got else "n/a", "copy gap": _gap_cell(rep.memorisation, got),
                     "verdict": (reading(rep.memorisation, name) or "").split(": ", 1)[-1] if got else "not audited (re-evaluate)"})  # fmt: skip
    return rows


__all__ = ["AUDIT_HELP", "MIN_REFERENCE", "PERCENTILE", "MemorisationAudit", "audit_memorisation", "class_nearest_ssim", "combine", "copies",
           "held_out_nearest_ssim", "new_images_gap", "privacy_rows", "read_block", "reading", "thresholds", "verdict"]  # fmt: skip
