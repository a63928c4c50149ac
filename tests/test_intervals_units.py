"""Intervals stay in the units of the figure they belong to (issue 25, "Speed in the wrong units")."""

import json
import math
from pathlib import Path

from gda_core.metrics.intervals import SUPPORTED, Estimate, difference
from gda_core.metrics.speed import speed_score

ROOT = Path(__file__).resolve().parents[1]


def _images_per_s(name: str) -> Estimate:
    (path,) = sorted((ROOT / "checkpoints" / name / "eval").glob("*.json"))
    return Estimate.from_dict(json.loads(path.read_text())["uncertainty"]["images_per_s"])


def test_shipped_reports_give_gan_clearly_faster_than_ddpm_in_score_units():
    gan, ddpm = _images_per_s("gan-digits").map(speed_score), _images_per_s("ddpm-digits").map(speed_score)
    assert 0 < gan.se < 0.05 and 0 < ddpm.se < 0.05  # a score's se, not images/s
    d = difference(gan, ddpm)
    assert d.verdict == SUPPORTED and d.lo > 0.3


def test_map_uses_the_delta_method_and_keeps_the_ends_ordered():
    est = Estimate(100.0, 80.0, 120.0, 10.0, 4.0, 5, "t", (90.0, 110.0))
    m = est.map(lambda x: math.log10(x) / 5)
    assert math.isclose(m.se, 10.0 / (100.0 * math.log(10) * 5), rel_tol=1e-3)
    assert m.lo < m.mean < m.hi and m.values[0] < m.values[1]
    neg = est.map(lambda x: -x, derivative=lambda x: -1.0)
    assert (neg.lo, neg.hi, neg.se) == (-120.0, -80.0, 10.0)
