"""Selection filters: keep the synthetic images most likely to help, drop near-copies.

Each filter decides which images of a :class:`SyntheticSet` to keep and records its parameters;
filters compose (applied in the order given) and :func:`select` reports the counts per class before
and after each one.

- ``confidence:KEEP`` (top-k selection): the fixed classifier trained on the *real* training
  images scores each synthetic image by its softmax probability for the intended label; the top
  KEEP fraction of every class is kept.
- ``realism:KEEP`` (Kynkaanniemi et al. 2019, "Improved precision and recall"): realism score
  ``max_r radius_k(r) / ||f - f_r||`` over real feature vectors f_r, where radius_k(r) is the
  distance from r to its k-th nearest real neighbour (k = 3) and, as in the paper, only the real
  points whose radius is at most the median are used (outliers with huge balls would otherwise
  make anything look real). Score >= 1 means "inside the real manifold estimate". The top KEEP
  fraction of every class is kept.
- ``cluster:KEEP`` (cluster-based selection): per class, k-means (scikit-learn, seeded) on the
  features with k clusters (default ``min(8, n_c // 2)``); the class quota (KEEP fraction) is
  split over the clusters in proportion to their sizes (largest remainder, every cluster keeps at
  least one image when the quota allows), and in each cluster the images nearest its centre are
  kept. Coverage of the modes is kept while redundant look-alikes go.
- ``privacy:MAX_SSIM``: drops every image whose SSIM to its nearest real training image exceeds
  MAX_SSIM (exact search via gda_core.metrics.nearest_ssim): near-copies of training images.

Features are the "domain" features: the penultimate layer of the fixed small CNN
(gda_core.metrics.train_classifier) trained on the real training images of the context; the same
network gives the confidence scores, so it is trained once per context.

Spec strings: ``"confidence:0.5,privacy:0.9,realism:0.5,cluster:0.5"``; extra integer options
as ``realism:0.5:k=5`` or ``cluster:0.5:k=4``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import Cancelled, ConfigError
from .generate import SyntheticSet

FILTER_HELP = {
    "confidence": "keep the fraction of each class the real-data classifier is most sure belongs to its intended class (top-k selection)",
    "realism": "keep the fraction of each class with the highest realism score (Kynkaanniemi 2019): how deep inside the real images' feature manifold it lies",
    "cluster": "cluster each class's images (k-means on features) and keep the images nearest each centre, in proportion to cluster size, so every mode stays covered",
    "privacy": "drop images whose SSIM to the nearest real training image is above this threshold (near-copies of training images)",
}


# ---------------------------------------------------------------------------------------------
# Context: the real data the filters compare against, with lazily built classifier / features.
# ---------------------------------------------------------------------------------------------


@dataclass
class SelectionContext:
    """Real training images and labels the filters compare synthetic images to.

    ``classifier``: a trained SmallCNN to use instead of training one (tests, caching).
    ``feature_fn``: images (uint8 NHWC) -> (N, D) features, instead of the classifier's.
    """

    real_images: np.ndarray
    real_labels: np.ndarray
    num_classes: int
    seed: int = 0
    device: str | torch.device = "cpu"
    budget: object | None = None
    classifier: object | None = None
    feature_fn: Callable[[np.ndarray], np.ndarray] | None = None
    progress: Callable[[str], None] | None = None
    cancel: threading.Event | None = None
    _real_features: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_dataset(cls, dataset, **kw) -> SelectionContext:
        return cls(dataset.train_images, dataset.train_labels, dataset.num_classes, **kw)

    def _say(self, msg: str) -> None:
        if self.progress is not None:
            self.progress(msg)

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("selection cancelled")

    def get_classifier(self):
        if self.classifier is None:
            from ..metrics import DEFAULT_BUDGET, train_classifier

            self._say("training the real-data classifier")
            self.classifier = train_classifier(
                self.real_images, self.real_labels, self.num_classes, seed=self.seed, budget=self.budget or DEFAULT_BUDGET,
                device=self.device, cancel=self.cancel,
            )  # fmt: skip
        return self.classifier

    def features(self, images: np.ndarray) -> np.ndarray:
        if self.feature_fn is not None:
            return np.asarray(self.feature_fn(images), dtype=np.float64)
        from ..metrics import features

        return features(self.get_classifier(), images).numpy().astype(np.float64)

    def real_features(self) -> np.ndarray:
        if self._real_features is None:
            self._real_features = self.features(self.real_images)
        return self._real_features

    def confidences(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Softmax probability of the intended label under the real-data classifier."""
        from ..metrics.classifier import _as_float_images

        model = self.get_classifier()
        dev = next(model.parameters()).device
        x = _as_float_images(images)
        out = []
        with torch.no_grad():
            for i in range(0, len(x), 512):
                out.append(torch.softmax(model(x[i : i + 512].to(dev)).float(), 1).cpu())
        if not out:
            return np.zeros(0)
        probs = torch.cat(out).numpy()
        return probs[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)].astype(np.float64)


# ---------------------------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------------------------


def quota(n: int, keep: float) -> int:
    """Images to keep out of ``n`` for a fraction ``keep``: round half up, at least 1 when n > 0."""
    if n <= 0:
        return 0
    return int(min(n, max(1, math.floor(keep * n + 0.5))))


def _top_per_class(scores: np.ndarray, labels: np.ndarray, keep: float) -> np.ndarray:
    """Boolean mask keeping the highest-scoring ``quota(n_c, keep)`` images of every class
    (ties: earlier image first)."""
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        order = idx[np.lexsort((idx, -scores[idx]))]
        mask[order[: quota(len(idx), keep)]] = True
    return mask


def _check_keep(name: str, keep) -> float:
    try:
        keep = float(keep)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: keep must be a number in (0, 1], got {keep!r}") from None
    if not (0 < keep <= 1):
        raise ConfigError(f"{name}: keep must be a fraction in (0, 1], got {keep}")
    return keep


class Filter:
    """Base class: ``apply`` returns (boolean keep mask, per-image scores or None)."""

    name = ""

    def params(self) -> dict:
        raise NotImplementedError

    def apply(self, synth: SyntheticSet, ctx: SelectionContext) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def spec(self) -> str:
        p = self.params()
        first, *rest = p.items()
        extra = "".join(f":{k}={v}" for k, v in rest if v is not None and k == "k")
        return f"{self.name}:{first[1]}{extra}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"


class ConfidenceFilter(Filter):
    name = "confidence"

    def __init__(self, keep: float = 0.5):
        self.keep = _check_keep(self.name, keep)

    def params(self) -> dict:
        return {"keep": self.keep}

    def apply(self, synth, ctx):
        scores = ctx.confidences(synth.images, synth.labels)
        return _top_per_class(scores, synth.labels, self.keep), scores


def realism_scores(real_feats: np.ndarray, fake_feats: np.ndarray, k: int = 3, *, prune_median: bool = True) -> np.ndarray:
    """Realism score of every fake feature vector (Kynkaanniemi et al. 2019, eq. in section 5)."""
    from ..metrics import knn_radii

    real = torch.as_tensor(real_feats, dtype=torch.float64)
    fake = torch.as_tensor(fake_feats, dtype=torch.float64)
    if len(real) < k + 1:
        raise ConfigError(f"realism: need at least k + 1 = {k + 1} real images, got {len(real)}")
    radii = knn_radii(real, k)
    if prune_median:
        keep = radii <= radii.median()
        real, radii = real[keep], radii[keep]
    out = []
    for s in range(0, len(fake), 1024):
        d = torch.cdist(fake[s : s + 1024], real).clamp_min(1e-12)
        out.append((radii[None, :] / d).max(dim=1).values)
    return torch.cat(out).numpy() if out else np.zeros(0)


class RealismFilter(Filter):
    name = "realism"

    def __init__(self, keep: float = 0.5, k: int = 3):
        self.keep = _check_keep(self.name, keep)
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"realism: k must be a positive integer, got {k!r}")
        self.k = k

    def params(self) -> dict:
        return {"keep": self.keep, "k": self.k}

    def apply(self, synth, ctx):
        scores = realism_scores(ctx.real_features(), ctx.features(synth.images), self.k)
        return _top_per_class(scores, synth.labels, self.keep), scores


def cluster_quotas(sizes: list[int], total: int) -> list[int]:
    """Split ``total`` over clusters in proportion to ``sizes`` (largest remainder), at least one
    per non-empty cluster when ``total`` allows, never more than a cluster's size."""
    sizes_a = np.asarray(sizes, dtype=np.int64)
    total = int(min(total, sizes_a.sum()))
    if total <= 0:
        return [0] * len(sizes)
    ideal = total * sizes_a / sizes_a.sum()
    q = np.minimum(np.floor(ideal).astype(np.int64), sizes_a)
    nonempty = sizes_a > 0
    if total >= int(nonempty.sum()):
        q[nonempty] = np.maximum(q[nonempty], 1)
    idx = np.arange(len(q))
    while q.sum() > total:  # the minimum-one grants overshot: take from the most over-served
        cand = idx[q > 1]
        q[cand[np.lexsort((cand, -(q[cand] - ideal[cand])))[0]]] -= 1
    while q.sum() < total:  # largest remainder, within cluster sizes
        cand = idx[q < sizes_a]
        q[cand[np.lexsort((cand, -(ideal[cand] - q[cand])))[0]]] += 1
    return q.astype(int).tolist()


class ClusterFilter(Filter):
    name = "cluster"

    def __init__(self, keep: float = 0.5, k: int | None = None, seed: int = 0):
        self.keep = _check_keep(self.name, keep)
        if k is not None and (not isinstance(k, int) or k < 1):
            raise ConfigError(f"cluster: k must be a positive integer, got {k!r}")
        self.k = k
        self.seed = int(seed)
        self.last_clusters: np.ndarray | None = None

    def params(self) -> dict:
        return {"keep": self.keep, "k": self.k, "seed": self.seed}

    def clusters_for(self, n: int) -> int:
        return max(1, min(n, self.k if self.k is not None else min(8, n // 2)))

    def apply(self, synth, ctx):
        from sklearn.cluster import KMeans

        feats = ctx.features(synth.images)
        mask = np.zeros(len(synth), dtype=bool)
        assign = np.full(len(synth), -1, dtype=np.int64)
        dist = np.zeros(len(synth))
        for c in np.unique(synth.labels):
            ctx.check_cancel()
            idx = np.flatnonzero(synth.labels == c)
            k = self.clusters_for(len(idx))
            x = feats[idx]
            if k == 1 or len(np.unique(x, axis=0)) < k:
                lab = np.zeros(len(idx), dtype=np.int64)
                centres = x.mean(0, keepdims=True)
            else:
                km = KMeans(n_clusters=k, n_init=4, random_state=self.seed).fit(x)
                lab, centres = km.labels_.astype(np.int64), km.cluster_centers_
            d = np.linalg.norm(x - centres[lab], axis=1)
            assign[idx], dist[idx] = lab, d
            sizes = np.bincount(lab, minlength=len(centres)).tolist()
            for j, qj in enumerate(cluster_quotas(sizes, quota(len(idx), self.keep))):
                members = np.flatnonzero(lab == j)
                order = members[np.lexsort((members, d[members]))]
                mask[idx[order[:qj]]] = True
        self.last_clusters = assign
        return mask, -dist


class PrivacyFilter(Filter):
    name = "privacy"

    def __init__(self, max_ssim: float = 0.9):
        try:
            max_ssim = float(max_ssim)
        except (TypeError, ValueError):
            raise ConfigError(f"privacy: max_ssim must be a number in (0, 1], got {max_ssim!r}") from None
        if not (0 < max_ssim <= 1):
            raise ConfigError(f"privacy: max_ssim must be in (0, 1], got {max_ssim}")
        self.max_ssim = max_ssim

    def params(self) -> dict:
        return {"max_ssim": self.max_ssim}

    def apply(self, synth, ctx):
        from ..metrics import nearest_ssim

        if len(synth) == 0:
            return np.zeros(0, dtype=bool), np.zeros(0)
        ctx.check_cancel()
        dev = ctx.device if str(ctx.device) != "mps" else "cpu"
        best = nearest_ssim(synth.images, ctx.real_images, device=dev, cancel=ctx.cancel).numpy()
        return best <= self.max_ssim, -best


FILTERS: dict[str, type[Filter]] = {f.name: f for f in (ConfidenceFilter, RealismFilter, ClusterFilter, PrivacyFilter)}


def parse_filters(spec: str | None, *, seed: int = 0) -> list[Filter]:
    """``"confidence:0.5,privacy:0.9,realism:0.5,cluster:0.5"`` -> filters, in that order."""
    if spec is None or not str(spec).strip():
        return []
    out: list[Filter] = []
    for item in str(spec).split(","):
        item = item.strip()
        if not item:
            raise ConfigError(f"empty filter in selection spec '{spec}' (two commas in a row?)")
        name, _, rest = item.partition(":")
        name = name.strip().lower()
        if name not in FILTERS:
            raise ConfigError(f"unknown selection filter '{name}' in '{item}'; choose from {', '.join(FILTERS)} (e.g. confidence:0.5,privacy:0.9)")
        if not rest.strip():
            what = "max SSIM" if name == "privacy" else "keep fraction"
            raise ConfigError(f"selection filter '{name}' needs a value: {name}:<{what}>, e.g. {name}:{0.9 if name == 'privacy' else 0.5}")
        value, *opts = [p.strip() for p in rest.split(":")]
        try:
            v = float(value)
        except ValueError:
            raise ConfigError(f"selection filter '{item}': '{value}' is not a number") from None
        kw: dict = {}
        for o in opts:
            key, eq, val = o.partition("=")
            if not eq or key.strip() != "k" or name not in ("realism", "cluster"):
                raise ConfigError(f"selection filter '{item}': unknown option '{o}' (only realism and cluster take k=INT)")
            try:
                kw["k"] = int(val)
            except ValueError:
                raise ConfigError(f"selection filter '{item}': k must be an integer, got '{val}'") from None
        if name == "cluster":
            kw["seed"] = seed
        out.append(FILTERS[name](v, **kw))
    return out


def select(
    synth: SyntheticSet,
    filters: list[Filter] | str | None,
    context: SelectionContext,
) -> tuple[SyntheticSet, dict]:
    """Apply ``filters`` in order; return the kept images and a report.

    Report: ``before`` / ``after`` counts per class, ``filters`` (one record per filter: name,
    parameters, counts per class before and after, images dropped), ``kept_index`` (indices into
    ``synth`` of the kept images, in order) and ``dropped_index``.
    """
    if isinstance(filters, str) or filters is None:
        filters = parse_filters(filters, seed=context.seed)
    names = list(synth.class_names)
    current = np.arange(len(synth))
    records = []
    for f in filters:
        context.check_cancel()
        context._say(f"selection: {f.name}")
        sub = synth.subset(current)
        before = sub.class_counts()
        if len(sub):
            mask, _ = f.apply(sub, context)
        else:
            mask = np.zeros(0, dtype=bool)
        current = current[np.asarray(mask, dtype=bool)]
        after = np.bincount(synth.labels[current], minlength=len(names)).astype(int).tolist()
        records.append({"name": f.name, "params": f.params(), "spec": f.spec(), "before": before, "after": after,
                        "dropped": int(sum(before) - sum(after))})  # fmt: skip
    kept = synth.subset(current)
    kept.selection = list(synth.selection) + records
    dropped = np.setdiff1d(np.arange(len(synth)), current)
    report = {
        "class_names": names,
        "before": synth.class_counts(),
        "after": kept.class_counts(),
        "filters": records,
        "kept_index": current.tolist(),
        "dropped_index": dropped.tolist(),
    }
    return kept, report
