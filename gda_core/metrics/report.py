"""The evaluation report and the fixed radar normalisation (comparisons: ``comparison.py``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..runtime import atomic_write_json
from .intervals import Estimate
from .speed import speed_score

AXES = ("fidelity", "diversity", "speed", "utility", "robustness", "privacy")
SCHEMA_VERSION = 2

AXIS_HELP = {
    "fidelity": "improved precision (k=3): share of synthetic images that look like real ones",
    "diversity": "improved recall (k=3): share of the real data the synthetic images cover",
    "speed": "log10(images per second) / 5, clipped to [0, 1]: 1 img/s -> 0, 100,000 img/s -> 1",
    "utility": "min(1, TSTR accuracy / TRTR accuracy): how well synthetic data alone trains a classifier",
    "robustness": "min(1, DeepFool rho of the TSTR classifier / rho of the TRTR classifier)",
    "privacy": "1 - mean SSIM of each synthetic image to its nearest training image",
}

# raw key -> (unit, better, one-line description shown as a tooltip)
RAW_META: dict[str, tuple[str, str, str]] = {
    "precision": ("fraction", "higher", "share of synthetic images inside the real data's k-NN manifold (k=3)"),
    "recall": ("fraction", "higher", "share of real training images inside the synthetic data's k-NN manifold (k=3)"),
    "density": ("ratio", "higher", "how many real k-NN balls (k=5) hold each synthetic image, / k; about 1 for matching data"),
    "coverage": ("fraction", "higher", "share of real images whose k-NN ball (k=5) holds at least one synthetic image"),
    "images_per_s": ("img/s", "higher", "images generated per second at batch 64 (median of 3 after a warm-up)"),
    "nfe_per_image": ("evals/img", "lower", "network evaluations needed per generated image"),
    "tstr_acc": ("fraction", "higher", "test accuracy of the classifier trained on synthetic images only"),
    "tstr_bacc": ("fraction", "higher", "balanced (per-class mean) test accuracy of the synthetic-only classifier"),
    "trtr_acc": ("fraction", "higher", "test accuracy of the same classifier trained on the real training split"),
    "trtr_bacc": ("fraction", "higher", "balanced test accuracy of the real-data classifier"),
    "aug_1x_acc": ("fraction", "higher", "test accuracy when training on real + 1x synthetic images"),
    "aug_1x_bacc": ("fraction", "higher", "balanced test accuracy, real + 1x synthetic"),
    "aug_2x_acc": ("fraction", "higher", "test accuracy when training on real + 2x synthetic images"),
    "aug_2x_bacc": ("fraction", "higher", "balanced test accuracy, real + 2x synthetic"),
    "aug_3x_acc": ("fraction", "higher", "test accuracy when training on real + 3x synthetic images"),
    "aug_3x_bacc": ("fraction", "higher", "balanced test accuracy, real + 3x synthetic"),
    "deepfool_rho_tstr": ("||r||/||x||", "higher", "mean relative L2 DeepFool perturbation that fools the synthetic-only classifier"),
    "deepfool_rho_trtr": ("||r||/||x||", "higher", "mean relative L2 DeepFool perturbation that fools the real-data classifier"),
    "nearest_ssim_mean": ("SSIM", "lower", "mean over synthetic images of the SSIM to the nearest training image"),
    "nearest_ssim_p95": ("SSIM", "lower", "95th percentile of the nearest-training-image SSIM"),
    "memorization_rate": ("fraction", "lower", "share of synthetic images closer to a training image than 99% of real test images are"),
    "memorization_threshold": ("SSIM", "info", "99th percentile of nearest-training SSIM of real test images (the memorisation cut-off)"),
    "fid": ("FD (domain feats)", "lower", "Frechet distance on the domain extractor's features (not comparable to Inception FID)"),
    "kid": ("MMD^2", "lower", "kernel inception distance (unbiased, cubic kernel) on the domain features"),
    "kid_std": ("MMD^2", "info", "standard deviation of KID over subsets"),
    "bits_per_dim": (
        "bits/dim",
        "lower",
        "exact negative log-likelihood of the real held-out test images, in bits per pixel value (likelihood families only; "
        "8 = a model that learned nothing)",
    ),
}
# Raw figures shown first, next to the six axes, when a report has them.
HEADLINE_RAW = ("bits_per_dim",)
BPD_HELP = (
    "Bits per dimension on the real held-out test images: how many bits the model needs per pixel value. "
    "Lower is better; 8 is a model that learned nothing. Only models with an exact likelihood (e.g. RealNVP) have it; "
    "compare it only between models evaluated on the same dataset."
)


def normalise_scores(raw: dict) -> dict[str, float | None]:
    """The fixed radar normalisation of METRICS.md; every score in [0, 1] (None when not measured)."""

    def get(k):
        v = raw.get(k)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    def clip(v):
        return None if v is None else float(min(1.0, max(0.0, v)))

    def ratio(a, b):
        if a is None or b is None:
            return None
        if b <= 0:
            return 0.0 if a <= 0 else 1.0
        return clip(a / b)

    ips = get("images_per_s")
    ssim_mean = get("nearest_ssim_mean")
    return {
        "fidelity": clip(get("precision")),
        "diversity": clip(get("recall")),
        "speed": None if ips is None else speed_score(ips),
        "utility": ratio(get("tstr_acc"), get("trtr_acc")),
        "robustness": ratio(get("deepfool_rho_tstr"), get("deepfool_rho_trtr")),
        "privacy": None if ssim_mean is None else clip(1.0 - ssim_mean),
    }


def _number(v) -> float | None:
    """A finite float, or None for anything else (reports are read as untrusted input)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _estimates(d) -> dict[str, Estimate]:
    """The ``uncertainty`` block of a report file; malformed entries are dropped, not trusted."""
    out = {}
    for k, v in (d or {}).items() if isinstance(d, dict) else ():
        try:
            est = Estimate.from_dict(v)
        except (ConfigError, AttributeError):
            continue
        if all(math.isfinite(x) for x in (est.mean, est.lo, est.hi, est.se)) and est.lo <= est.hi:
            out[str(k)] = est
    return out


def _block(v, *, memorisation: bool = False) -> dict | None:
    """An optional JSON block of a report file: an object (a memorisation block with readable
    intervals), else None."""
    if not isinstance(v, dict):
        return None
    if memorisation:
        from .memorisation import read_block

        return dict(v) if read_block(v) is not None else None
    return dict(v)


@dataclass
class Report:
    """One model's evaluation: radar ``scores`` (exactly the six AXES), ``raw`` figures with their
    ``units`` / ``better`` / ``descriptions``, ``uncertainty`` (a 95 % interval with its method for
    each score, keyed ``score:<axis>``, and each raw figure), ``per_class`` figures, ``warnings`` and
    ``provenance``."""

    scores: dict[str, float | None]
    raw: dict[str, float | None]
    units: dict[str, str] = field(default_factory=dict)
    better: dict[str, str] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)
    uncertainty: dict[str, Estimate] = field(default_factory=dict)
    per_class: dict = field(default_factory=dict)
    memorisation: dict | None = None  # memorisation.MemorisationAudit.to_dict() / combine(): rate, copy_gap, n, ...
    duplicates: dict | None = None  # data.duplicates.SplitDuplicates.to_dict(): exact, near, pairs, warnings

    @classmethod
    def from_raw(cls, raw: dict, *, warnings: list[str] | None = None, provenance: dict | None = None,
                 uncertainty: dict[str, Estimate] | None = None, per_class: dict | None = None) -> Report:  # fmt: skip
        keys = list(raw)
        scores = normalise_scores(raw)
        unc = dict(uncertainty or {})
        for axis, v in scores.items():  # an interval always holds the figure it is drawn around
            est = unc.get(f"score:{axis}")
            if est is not None and v is not None:
                unc[f"score:{axis}"] = Estimate(v, min(est.lo, v), max(est.hi, v), est.se, est.df, est.n, est.method, est.values)
        return cls(
            scores=scores,
            raw=dict(raw),
            units={k: RAW_META.get(k, ("", "", ""))[0] for k in keys},
            better={k: RAW_META.get(k, ("", "", ""))[1] for k in keys},
            descriptions={k: RAW_META.get(k, ("", "", ""))[2] for k in keys},
            warnings=list(warnings or []),
            provenance=dict(provenance or {}),
            uncertainty=unc,
            per_class=dict(per_class or {}),
        )

    def estimate(self, key: str) -> Estimate | None:
        """The interval of a score (``'fidelity'`` or ``'score:fidelity'``) or a raw figure, if measured."""
        if key in AXES:
            key = f"score:{key}"
        return self.uncertainty.get(key)

    @property
    def intervals(self) -> dict[str, list[float] | None]:
        """The six scores' 95 % intervals ([lo, hi], None where not measured)."""
        return {a: (self.uncertainty[f"score:{a}"].interval if f"score:{a}" in self.uncertainty else None) for a in AXES}

    @property
    def raw_intervals(self) -> dict[str, list[float]]:
        return {k: e.interval for k, e in self.uncertainty.items() if not k.startswith("score:")}

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA_VERSION,
            "scores": {k: self.scores.get(k) for k in AXES},
            "intervals": self.intervals,
            "raw": dict(self.raw),
            "raw_intervals": self.raw_intervals,
            "interval_methods": {k: e.method for k, e in self.uncertainty.items()},
            "units": dict(self.units),
            "better": dict(self.better),
            "descriptions": dict(self.descriptions),
            "axis_help": dict(AXIS_HELP),
            "per_class": dict(self.per_class),
            "warnings": list(self.warnings),
            "provenance": dict(self.provenance),
            "uncertainty": {k: e.to_dict() for k, e in self.uncertainty.items()},
            "memorisation": self.memorisation,
            "duplicates": self.duplicates,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Report:
        """A report from JSON (a cached file or an upload): shapes checked, numbers that are not
        finite numbers read as None, unknown or malformed intervals dropped."""
        try:
            scores = d["scores"]
            raw = d["raw"]
        except (KeyError, TypeError):
            raise ConfigError("not a GDA Studio metrics report: missing 'scores' / 'raw'") from None
        if not isinstance(scores, dict) or set(scores) != set(AXES):
            raise ConfigError(f"report scores must have exactly the keys {', '.join(AXES)}")
        if not isinstance(raw, dict):
            raise ConfigError("report 'raw' must be an object")

        def strings(key) -> dict[str, str]:
            v = d.get(key, {})
            return {str(k): str(x) for k, x in v.items()} if isinstance(v, dict) else {}

        clean_scores = {k: (None if (v := _number(scores[k])) is None else min(1.0, max(0.0, v))) for k in AXES}
        return cls(
            scores=clean_scores,
            raw={str(k): _number(v) for k, v in raw.items()},
            units=strings("units"),
            better=strings("better"),
            descriptions=strings("descriptions"),
            warnings=[str(w) for w in d.get("warnings", [])] if isinstance(d.get("warnings"), list) else [],
            provenance=dict(d["provenance"]) if isinstance(d.get("provenance"), dict) else {},
            uncertainty=_estimates(d.get("uncertainty")),
            per_class=dict(d["per_class"]) if isinstance(d.get("per_class"), dict) else {},
            memorisation=_block(d.get("memorisation"), memorisation=True),
            duplicates=_block(d.get("duplicates")),
        )

    @property
    def bits_per_dim(self) -> float | None:
        """Held-out bits/dim of a likelihood family; None for the others (and for reports written before it existed)."""
        v = self.raw.get("bits_per_dim")
        try:
            v = float(v) if v is not None and not isinstance(v, bool) else None
        except (TypeError, ValueError):  # a hand-edited or foreign report: show n/a rather than fail
            return None
        return v if v is not None and math.isfinite(v) else None

    def save(self, path) -> None:
        atomic_write_json(path, self.to_dict())
