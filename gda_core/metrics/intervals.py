"""Intervals for every figure a user reads, and whether a difference is bigger than its noise.

Two sources of noise, two kinds of interval (docs/metrics.md, "Intervals"):

- **over replicates** (``over_replicates``): K independent repeats of the whole measurement (K
  sampling seeds, or K training runs) -> Student-t interval of the mean, ``mean +- t(K-1) s / sqrt(K)``.
  This is the only honest interval for a figure whose noise includes training a classifier or a
  generator: a single run cannot show that spread.
- **bootstrap over items** (``bootstrap_mean`` / ``bootstrap_stat``): one run whose figure is a
  statistic of many images (precision is a mean over synthetic images, FID a function of two
  feature sets) -> percentile bootstrap (Efron & Tibshirani 1993, ch. 13) with a seeded local RNG.

Every interval carries its standard error and degrees of freedom, so that two figures measured on
different models can be compared (``difference``: Welch's t for replicates, z for bootstraps), and
so that a verdict says "within noise" instead of a ranking when the difference interval holds 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from ..errors import ConfigError

CONFIDENCE = 0.95
N_BOOT = 1000
Z95 = 1.959963984540054

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"


def t_quantile(df: float, confidence: float = CONFIDENCE) -> float:
    """Two-sided Student-t quantile (the normal one for df = inf)."""
    from scipy.stats import norm, t

    q = 0.5 + confidence / 2
    return float(norm.ppf(q)) if not math.isfinite(df) else float(t.ppf(q, df))


@dataclass(frozen=True)
class Estimate:
    """A figure with its 95 % interval.

    ``se``: standard error of ``mean``; ``df``: degrees of freedom of its t distribution (inf for a
    bootstrap); ``n``: replicates or items it rests on; ``method``: how the interval was made, in
    words a report can show; ``values``: the per-replicate figures (empty for a bootstrap)."""

    mean: float
    lo: float
    hi: float
    se: float
    df: float
    n: int
    method: str
    values: tuple[float, ...] = ()

    @property
    def interval(self) -> list[float]:
        return [self.lo, self.hi]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["values"] = list(self.values)
        d["df"] = None if not math.isfinite(self.df) else self.df
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Estimate:
        try:
            df = d.get("df")
            return cls(
                mean=float(d["mean"]), lo=float(d["lo"]), hi=float(d["hi"]), se=float(d["se"]),
                df=math.inf if df is None else float(df), n=int(d["n"]), method=str(d["method"]),
                values=tuple(float(v) for v in d.get("values", ())),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError):
            raise ConfigError("not an interval record (mean, lo, hi, se, df, n, method)") from None

    def within(self, lo: float = 0.0, hi: float = 1.0) -> Estimate:
        """The interval cut to the figure's range (a share, a [0, 1] score): a t-interval over a few
        replicates can run past a bound the figure itself cannot cross."""
        return replace(self, lo=max(lo, self.lo), hi=min(hi, self.hi))

    def map(self, fn: Callable[[float], float], derivative: Callable[[float], float] | None = None) -> Estimate:
        """The same figure through a monotone function (e.g. images/s -> a [0, 1] score): the mean,
        the interval's ends and the per-replicate values go through ``fn`` (ends swapped for a
        decreasing map); the standard error by the delta method, ``se * |fn'(mean)|`` (``derivative``,
        else a central difference), so that a difference of two mapped figures is in the new units."""
        lo, hi = fn(self.lo), fn(self.hi)
        se = self.se * abs(derivative(self.mean) if derivative is not None else _slope(fn, self.mean, self.se))
        return Estimate(fn(self.mean), min(lo, hi), max(lo, hi), float(se), self.df, self.n, self.method, tuple(fn(v) for v in self.values))


def _slope(fn: Callable[[float], float], x: float, scale: float) -> float:
    """fn'(x) by a central difference; a step of 1e-4 of the figure's size keeps a clip's kink honest."""
    h = max(abs(x), abs(scale), 1e-12) * 1e-4
    a, b = (x - h, x + h) if x - h > 0 or x <= 0 else (x, x + h)  # stay inside a log's domain
    return (fn(b) - fn(a)) / (b - a)


def _finite(values: Sequence[float]) -> np.ndarray:
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    return a[np.isfinite(a)]


def over_replicates(values: Sequence[float], *, what: str = "seeds", confidence: float = CONFIDENCE) -> Estimate | None:
    """Student-t interval of the mean of K >= 2 replicate figures (None with fewer than 2)."""
    a = _finite(values)
    k = len(a)
    if k < 2:
        return None
    mean = float(a.mean())
    se = float(a.std(ddof=1) / math.sqrt(k))
    half = t_quantile(k - 1, confidence) * se
    return Estimate(mean, mean - half, mean + half, se, float(k - 1), k, f"t-interval over {k} {what}", tuple(float(v) for v in a))


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), 0x9E3779B9]))


def bootstrap_stat(
    stat: Callable[..., float],
    *arrays: np.ndarray,
    n_boot: int = N_BOOT,
    seed: int = 0,
    what: str = "images",
    paired: bool = True,
    confidence: float = CONFIDENCE,
) -> Estimate:
    """Percentile bootstrap interval of ``stat(*arrays)``.

    ``paired``: the arrays are per-item figures of the same items (resampled with one index);
    otherwise each array is resampled on its own (e.g. FID's real and synthetic feature sets).
    """
    arrays = tuple(np.asarray(a) for a in arrays)
    if not arrays or any(len(a) == 0 for a in arrays):
        raise ConfigError("bootstrap needs at least one item per set")
    if paired and len({len(a) for a in arrays}) != 1:
        raise ConfigError(f"paired bootstrap needs sets of one length, got {[len(a) for a in arrays]}")
    point = float(stat(*arrays))
    rng = _rng(seed)
    reps = np.empty(n_boot)
    for b in range(n_boot):
        if paired:
            idx = rng.integers(0, len(arrays[0]), len(arrays[0]))
            reps[b] = stat(*(a[idx] for a in arrays))
        else:
            reps[b] = stat(*(a[rng.integers(0, len(a), len(a))] for a in arrays))
    reps = reps[np.isfinite(reps)]
    if len(reps) < 2:
        return Estimate(point, point, point, 0.0, math.inf, len(arrays[0]), f"bootstrap over {len(arrays[0])} {what}")
    alpha = (1 - confidence) / 2
    lo, hi = (float(q) for q in np.quantile(reps, [alpha, 1 - alpha]))
    n = len(arrays[0]) if paired else min(len(a) for a in arrays)
    return Estimate(point, min(lo, point), max(hi, point), float(reps.std(ddof=1)), math.inf, n, f"bootstrap over {n} {what}")


def bootstrap_mean(values: np.ndarray, **kw) -> Estimate:
    """Bootstrap interval of the mean of per-item figures (vectorised: the common case)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(v) == 0:
        raise ConfigError("bootstrap needs at least one item")
    n_boot, seed, confidence = kw.get("n_boot", N_BOOT), kw.get("seed", 0), kw.get("confidence", CONFIDENCE)
    rng = _rng(seed)
    means = np.empty(n_boot)
    step = max(1, 4_000_000 // max(1, len(v)))  # bound the (chunk, n) index matrix
    for s in range(0, n_boot, step):
        b = min(step, n_boot - s)
        means[s : s + b] = v[rng.integers(0, len(v), (b, len(v)))].mean(1)
    alpha = (1 - confidence) / 2
    lo, hi = (float(q) for q in np.quantile(means, [alpha, 1 - alpha]))
    point = float(v.mean())
    return Estimate(point, min(lo, point), max(hi, point), float(means.std(ddof=1)), math.inf, len(v),
                    f"bootstrap over {len(v)} {kw.get('what', 'images')}")  # fmt: skip


def from_spread(mean: float, sd: float, n: int, method: str) -> Estimate:
    """A normal interval mean +- 1.96 sd from a known sampling spread (e.g. KID over subsets)."""
    return Estimate(float(mean), float(mean - Z95 * sd), float(mean + Z95 * sd), float(sd), math.inf, int(n), method)


def _arms(arms: Sequence) -> list[np.ndarray]:
    out = [np.atleast_2d(np.asarray(a, dtype=np.float64)) for a in arms]
    if not out or any(a.size == 0 for a in out) or len({a.shape for a in out}) != 1:
        raise ConfigError(f"a paired interval needs arms of one shape (seeds, test images), got {[a.shape for a in out]}")
    return out


def _default_stat(*means):
    return means[0] if len(means) == 1 else means[0] - means[1]


def hierarchical(
    arms: Sequence,
    *,
    stat: Callable[..., np.ndarray] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    what: str = "test images",
    confidence: float = CONFIDENCE,
) -> Estimate:
    """Interval of a figure measured by K seeds on one shared test set: seeds outside, a paired
    bootstrap over the test images inside.

    ``arms``: one array per arm (e.g. real + synthetic, real only), each (K, n): per seed, a per-test-image
    figure (0/1 correctness, DeepFool distance); a seed's row in every arm is one replicate (same
    subset and classifier seed), the columns the same test images. ``stat(*arm_means)``: the figure from
    the arms' means (vectorised; default: the mean of one arm, the difference of two). Returns the mean
    over seeds of the per-seed figures with

    - K = 1: the percentile bootstrap over the test images (training noise not covered, said so);
    - K >= 2: se^2 = var(seed figures) / K + var(bootstrap) - overlap, where the overlap is the
      seed-by-image noise both terms count (the residual mean square of the linearised figure over
      n K), and a t-quantile with Satterthwaite's df (K - 1 when the seeds dominate).
    """
    a = _arms(arms)
    stat = stat or _default_stat
    k, n = a[0].shape
    per_seed = np.asarray(stat(*(x.mean(1) for x in a)), dtype=np.float64).reshape(k)
    point = float(per_seed.mean())
    boot = _boot_means(a, stat, n_boot, seed)
    se_test2 = float(boot.var(ddof=1)) if len(boot) > 1 else 0.0
    if k == 1:
        alpha = (1 - confidence) / 2
        lo, hi = (float(q) for q in np.quantile(boot, [alpha, 1 - alpha])) if len(boot) > 1 else (point, point)
        return Estimate(point, min(lo, point), max(hi, point), math.sqrt(se_test2), math.inf, n,
                        f"bootstrap over {n} {what} (one seed: training noise not covered)", (point,))  # fmt: skip
    se_seed2 = float(per_seed.var(ddof=1)) / k
    overlap = _overlap(a, stat) / (n * k)
    se2 = max(se_seed2 + se_test2 - overlap, se_seed2, se_test2)
    df = (k - 1) * se2**2 / se_seed2**2 if se_seed2 > 0 else math.inf
    half = t_quantile(df, confidence) * math.sqrt(se2)
    return Estimate(point, point - half, point + half, math.sqrt(se2), float(df), k,
                    f"{k} seeds, paired bootstrap over {n} {what} inside", tuple(float(v) for v in per_seed))  # fmt: skip


def _boot_means(a: list[np.ndarray], stat, n_boot: int, seed: int) -> np.ndarray:
    """The seed-averaged figure on ``n_boot`` resamples of the test images (one index for every seed and arm)."""
    k, n = a[0].shape
    rng = _rng(seed)
    out = np.empty(n_boot)
    step = max(1, 2_000_000 // max(1, n))
    for s in range(0, n_boot, step):
        b = min(step, n_boot - s)
        idx = rng.integers(0, n, (b, n))
        w = np.stack([np.bincount(row, minlength=n) for row in idx]).astype(np.float64) / n  # (b, n) resampling weights
        means = [w @ x.T for x in a]  # (b, K) per arm
        out[s : s + b] = np.asarray(stat(*means), dtype=np.float64).reshape(b, k).mean(1)
    return out[np.isfinite(out)]


def _overlap(a: list[np.ndarray], stat) -> float:
    """Residual mean square of the figure linearised in the arms' means (seed-by-image interaction)."""
    m = [x.mean() for x in a]
    grads = []
    for i in range(len(a)):
        h = 1e-6 * max(1.0, abs(m[i]))
        up, dn = list(m), list(m)
        up[i] += h
        dn[i] -= h
        grads.append((float(stat(*up)) - float(stat(*dn))) / (2 * h))
    z = sum(g * x for g, x in zip(grads, a, strict=True))
    k, n = z.shape
    if k < 2 or n < 2:
        return 0.0
    r = z - z.mean(1, keepdims=True) - z.mean(0, keepdims=True) + z.mean()
    return float((r**2).sum() / ((k - 1) * (n - 1)))


# ---------------------------------------------------------------------------------------------
# Differences and verdicts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """a - b with its 95 % interval and the verdict on "a > b"."""

    delta: float
    lo: float
    hi: float
    verdict: str  # supported (a > b), contradicted (a < b), inconclusive (interval holds 0)

    def words(self, better: str = "higher") -> str:
        if self.verdict == INCONCLUSIVE:
            return "within noise"
        return "clearly " + (better if self.verdict == SUPPORTED else ("lower" if better == "higher" else "higher"))


def _welch_df(a: Estimate, b: Estimate) -> float:
    if not (math.isfinite(a.df) and math.isfinite(b.df)):
        return math.inf
    va, vb = a.se**2, b.se**2
    den = (va**2 / a.df if a.df > 0 else 0.0) + (vb**2 / b.df if b.df > 0 else 0.0)
    return (va + vb) ** 2 / den if den > 0 else math.inf


def difference(a: Estimate, b: Estimate, *, paired: bool = False, confidence: float = CONFIDENCE) -> Difference:
    """Interval of a - b. ``paired``: the replicates match one to one (same seeds, same real subset),
    so the t-interval of the per-replicate differences is used; otherwise Welch's approximation
    (z when either side is a bootstrap)."""
    if paired and a.values and len(a.values) == len(b.values):
        d = over_replicates([x - y for x, y in zip(a.values, b.values, strict=True)], confidence=confidence)
        if d is not None:
            return Difference(d.mean, d.lo, d.hi, verdict(d.lo, d.hi))
    delta = a.mean - b.mean
    se = math.sqrt(a.se**2 + b.se**2)
    half = t_quantile(_welch_df(a, b), confidence) * se
    return Difference(delta, delta - half, delta + half, verdict(delta - half, delta + half))


def verdict(lo: float, hi: float) -> str:
    """supported when the whole interval of a difference is above 0, contradicted when below."""
    if lo > 0:
        return SUPPORTED
    if hi < 0:
        return CONTRADICTED
    return INCONCLUSIVE


def fmt(est: Estimate | None, digits: int = 3) -> str:
    """'0.870 [0.851, 0.889]' (or 'n/a')."""
    if est is None or est.mean is None or not math.isfinite(est.mean):
        return "n/a"
    return f"{est.mean:.{digits}f} [{est.lo:.{digits}f}, {est.hi:.{digits}f}]"
