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
from dataclasses import asdict, dataclass

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

    def map(self, fn: Callable[[float], float]) -> Estimate:
        """The same interval through a monotone increasing function (e.g. a score's clip)."""
        return Estimate(fn(self.mean), fn(self.lo), fn(self.hi), self.se, self.df, self.n, self.method, tuple(fn(v) for v in self.values))


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
