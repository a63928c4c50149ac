"""Verdicts a reviewer accepts: Holm-corrected differences and TOST equivalence with stated margins.

A reading (one line of the study, one of the paper's claims) summarises several comparisons at
once. Reading each at 95 % on its own would let one of six null cells look like a gain about one
time in seven; so the comparisons a reading summarises are corrected together with Holm's
step-down procedure (Holm 1979), which keeps the chance of any false "better" in the reading at
or below 5 % whatever the dependence between the cells (they often share a baseline).

Each comparison then gets one of four verdicts:

- "A better" / "B better": the difference is clearly not 0 after the correction;
- "no meaningful difference": two one-sided tests (TOST, Schuirmann 1987) show the difference lies
  within +-margin, a margin fixed per axis in ``MARGINS`` (score units) and stated in the UI;
- "cannot tell": neither; more seeds or training runs are needed.

The p-values use Student's t with the Estimate's degrees of freedom where it has them (replicates)
and the normal distribution where it has none (bootstraps: df = inf), through scipy's t and normal
distribution functions (scipy.special, what scipy.stats.t calls).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .intervals import Estimate, over_replicates

ALPHA = 0.05

A_BETTER, B_BETTER, EQUIVALENT, CANNOT_TELL = "A better", "B better", "no meaningful difference", "cannot tell"

#: Equivalence margins, in the units of the figure compared: a difference smaller than this is
#: too small to change a choice. Radar scores are in [0, 1]: 0.05 is a twentieth of the scale
#: (for speed, log10(img/s) / 5, it is a factor 10**0.25 = 1.8 in images per second). A study
#: gain is in accuracy on the real test split: 0.02 is two percentage points.
MARGINS: dict[str, float] = {
    "fidelity": 0.05,
    "diversity": 0.05,
    "speed": 0.05,
    "utility": 0.05,
    "robustness": 0.05,
    "privacy": 0.05,
    "accuracy": 0.02,
    "balanced_accuracy": 0.02,
}


def margin_for(axis: str) -> float:
    """The equivalence margin of an axis (0.05 for an axis not listed: the radar-score default)."""
    return MARGINS.get(axis, 0.05)


def margins_text(axes: Sequence[str]) -> str:
    """'+-0.05 on fidelity, utility' style text for the UI, grouped by margin."""
    by: dict[float, list[str]] = {}
    for a in axes:
        by.setdefault(margin_for(a), []).append(a)
    return "; ".join(f"±{m:g} on {', '.join(names)}" for m, names in by.items())


@dataclass(frozen=True)
class Comparison:
    """One difference a - b to decide: its estimate, standard error, degrees of freedom (inf: normal)
    and the equivalence margin of its axis."""

    a: str
    b: str
    axis: str
    delta: float
    se: float
    df: float
    margin: float


@dataclass(frozen=True)
class Verdict:
    """A comparison decided within its reading.

    ``verdict``: one of A_BETTER, B_BETTER, EQUIVALENT, CANNOT_TELL; ``p`` / ``p_holm``: two-sided
    p-value of "a = b" before / after Holm over the ``m`` comparisons of the reading; ``p_equiv`` /
    ``p_equiv_holm``: TOST p-value of "|a - b| >= margin"; ``lo`` / ``hi``: the interval of a - b
    at the level Holm's step tested it at (so it excludes 0 exactly when the verdict is a
    difference); ``level``: that confidence level; ``text``: the sentence a user reads."""

    a: str
    b: str
    axis: str
    delta: float
    se: float
    df: float
    margin: float
    lo: float
    hi: float
    level: float
    p: float
    p_holm: float
    p_equiv: float
    p_equiv_holm: float
    m: int
    verdict: str
    text: str

    @property
    def short(self) -> str:
        """'a - b = +0.012 [+0.004, +0.020]: a better', for lists whose correction is said once."""
        iv = f" [{self.lo:+.3f}, {self.hi:+.3f}]" if math.isfinite(self.lo) else " (no spread)"
        word = f"{self.winner} better" if self.winner else self.verdict
        return f"{self.a} - {self.b} = {self.delta:+.3f}{iv}: {word}"

    @property
    def winner(self) -> str | None:
        return self.a if self.verdict == A_BETTER else self.b if self.verdict == B_BETTER else None

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["df"] = None if not math.isfinite(self.df) else self.df
        return d


def _sf(x: float, df: float) -> float:
    """Upper tail of Student's t (normal for df = inf); unfrozen calls: a frozen scipy distribution
    costs more to build than to evaluate."""
    from scipy.special import ndtr, stdtr

    return float(ndtr(-x)) if not math.isfinite(df) else float(stdtr(df, -x))


def _ppf(q: float, df: float) -> float:
    from scipy.special import ndtri, stdtrit

    return float(ndtri(q)) if not math.isfinite(df) else float(stdtrit(df, q))


def p_two_sided(delta: float, se: float, df: float) -> float:
    """p-value of "the true difference is 0" (1 where there is no spread to judge by)."""
    if not (se > 0 and math.isfinite(se) and math.isfinite(delta)):
        return 1.0
    return float(min(1.0, 2 * _sf(abs(delta) / se, df)))


def p_tost(delta: float, se: float, df: float, margin: float) -> float:
    """TOST p-value of "|true difference| >= margin": the larger of the two one-sided p-values."""
    if not (se > 0 and math.isfinite(se) and math.isfinite(delta)) or margin <= 0:
        return 1.0
    return float(max(_sf((delta + margin) / se, df), _sf((margin - delta) / se, df)))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order: sort ascending, multiply the i-th
    smallest (0-based) by (m - i), keep them non-decreasing, cap at 1. Reject where <= alpha."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        out[i] = running
    return out


def _levels(pvalues: Sequence[float], alpha: float) -> list[float]:
    """Per comparison, the confidence level of Holm's step at which it was tested; comparisons past
    the first one kept get that step's level (their intervals then hold 0, as their verdicts say)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [1 - alpha / m] * m
    stopped = None
    for rank, i in enumerate(order):
        level = 1 - alpha / (m - rank) if stopped is None else stopped
        out[i] = level
        if stopped is None and pvalues[i] > alpha / (m - rank):
            stopped = level
    return out


def decide(comparisons: Sequence[Comparison], *, alpha: float = ALPHA) -> list[Verdict]:
    """The verdict of each comparison, Holm-corrected over all of them (one reading). Differences
    and equivalences are corrected as two separate families, each at ``alpha``."""
    comps = list(comparisons)
    if not comps:
        return []
    ps = [p_two_sided(c.delta, c.se, c.df) for c in comps]
    pe = [p_tost(c.delta, c.se, c.df, c.margin) for c in comps]
    ph, peh, levels = holm(ps), holm(pe), _levels(ps, alpha)
    out = []
    for c, p, p_h, e, e_h, level in zip(comps, ps, ph, pe, peh, levels, strict=True):
        half = _ppf(0.5 + level / 2, c.df) * c.se if c.se > 0 and math.isfinite(c.se) else math.inf
        if p_h <= alpha:
            v = A_BETTER if c.delta > 0 else B_BETTER
        elif e_h <= alpha:
            v = EQUIVALENT
        else:
            v = CANNOT_TELL
        lo, hi = c.delta - half, c.delta + half
        out.append(Verdict(c.a, c.b, c.axis, c.delta, c.se, c.df, c.margin, lo, hi, level, p, p_h, e, e_h, len(comps), v,
                           _text(c, v, lo, hi, level, len(comps), e_h <= alpha)))  # fmt: skip
    return out


def _text(c: Comparison, v: str, lo: float, hi: float, level: float, m: int, within: bool) -> str:
    iv = f"{c.a} - {c.b} = {c.delta:+.3f}" + (f" [{lo:+.3f}, {hi:+.3f}]" if math.isfinite(lo) else " (no spread to judge by)")
    corr = f"{level:.1%} interval, Holm over {m} comparisons" if m > 1 else "95% interval"
    if v in (A_BETTER, B_BETTER):
        small = f", but by less than the ±{c.margin:g} that matters" if within else ""
        return f"{c.a if v == A_BETTER else c.b} better on {c.axis}: {iv} ({corr}){small}"
    if v == EQUIVALENT:
        return f"no meaningful difference on {c.axis} (within ±{c.margin:g}): {iv} ({corr})"
    return f"cannot tell on {c.axis}: {iv} ({corr}), neither clearly different nor shown within ±{c.margin:g}"


def comparison(a: str, b: str, axis: str, ea: Estimate, eb: Estimate, *, paired: bool = False, margin: float | None = None) -> Comparison:
    """The comparison of two Estimates: paired replicates (same seeds, same real subset) by the
    t-test of their differences, otherwise Welch's t (normal where either side is a bootstrap)."""
    from .intervals import _welch_df

    m = margin_for(axis) if margin is None else float(margin)
    if paired and ea.values and len(ea.values) == len(eb.values):
        d = over_replicates([x - y for x, y in zip(ea.values, eb.values, strict=True)], what="paired seeds")
        if d is not None:
            return Comparison(a, b, axis, d.mean, d.se, d.df, m)
    return Comparison(a, b, axis, ea.mean - eb.mean, math.sqrt(ea.se**2 + eb.se**2), _welch_df(ea, eb), m)


def of_difference(a: str, b: str, axis: str, est: Estimate, *, margin: float | None = None) -> Comparison:
    """The comparison of an Estimate that is already a difference a - b (e.g. a study's paired gain)."""
    return Comparison(a, b, axis, est.mean, est.se, est.df, margin_for(axis) if margin is None else float(margin))


__all__ = ["ALPHA", "A_BETTER", "B_BETTER", "CANNOT_TELL", "EQUIVALENT", "MARGINS", "Comparison", "Verdict", "comparison", "decide",
           "holm", "margin_for", "margins_text", "of_difference", "p_tost", "p_two_sided"]  # fmt: skip
