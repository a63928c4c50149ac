"""Coverage of the hierarchical interval (seeds outside, paired bootstrap over test images inside) on
synthetic data with a known truth: per-test-image 0/1 correctness of a real-only and a real + synthetic
classifier for K seeds, with image difficulty shared by every seed and arm, a seed effect with heavy
tails (Student-t, 3 df: seeds whose generator collapses or excels) and, in one design, seeds where the
generator collapses outright. Pure numpy; no model is trained."""

import numpy as np
import pytest

from gda_core.metrics.intervals import hierarchical

REPS, N_TEST, N_BOOT = 2000, 150, 150
GAIN = 0.04  # true mean gain of real + synthetic over real only (probability scale)
P_COLLAPSE, COLLAPSE = 0.04, -0.12  # a collapsed generator's seed loses 12 points


def _seed_effect(rng, k, collapse):
    e = np.clip(0.03 * rng.standard_t(3, k), -0.15, 0.15)  # clipped symmetrically: mean stays 0
    if collapse:
        e = e + np.where(rng.random(k) < P_COLLAPSE, COLLAPSE, 0.0)
    return e


def _draw(rng, k, collapse):
    """(aug, base): (K, n) correctness; per image a difficulty in [0.25, 0.75], new test images each replication."""
    p = rng.uniform(0.25, 0.75, N_TEST)
    base = rng.random((k, N_TEST)) < p + np.clip(0.02 * rng.standard_normal((k, 1)), -0.05, 0.05)
    aug = rng.random((k, N_TEST)) < p + GAIN + _seed_effect(rng, k, collapse)[:, None]
    return aug.astype(np.float64), base.astype(np.float64)


def _coverage(k, collapse, stat=None, truth=GAIN + (P_COLLAPSE * COLLAPSE)):
    rng = np.random.default_rng(20261206 + k)
    hits = 0
    for r in range(REPS):
        aug, base = _draw(rng, k, collapse)
        est = hierarchical([aug, base], stat=stat, n_boot=N_BOOT, seed=r)
        hits += est.lo <= truth <= est.hi
    return hits / REPS


@pytest.mark.parametrize("k", [3, 5])
def test_gain_interval_covers_with_heavy_tailed_seeds(k):
    assert 0.93 <= _coverage(k, collapse=False, truth=GAIN) <= 0.97


@pytest.mark.parametrize("k", [3, 5])
def test_gain_interval_covers_with_collapsing_generators(k):
    assert 0.93 <= _coverage(k, collapse=True) <= 0.97


def test_one_seed_is_a_bootstrap_over_test_images_and_says_so():
    rng = np.random.default_rng(0)
    aug, base = _draw(rng, 1, False)
    est = hierarchical([aug, base], n_boot=200)
    assert est.n == N_TEST and "one seed" in est.method and est.lo < est.mean < est.hi


def test_paired_interval_is_narrower_than_ignoring_the_pairing():
    """The same test indices for both arms remove the shared image difficulty from the gain's noise."""
    rng = np.random.default_rng(1)
    aug, base = _draw(rng, 5, False)
    paired = hierarchical([aug, base], n_boot=300)
    shuffled = hierarchical([aug, base[:, rng.permutation(N_TEST)]], n_boot=300)
    assert paired.se < shuffled.se


@pytest.mark.parametrize("k", [3, 5])
def test_utility_ratio_interval_covers(k):
    """The evaluate utility score: TSTR accuracy / TRTR accuracy per seed (TRTR retrained per seed).
    Truth: the mean over seeds of the population ratio, by Monte Carlo over the seed effects."""
    rng = np.random.default_rng(7)
    e = np.clip(0.03 * rng.standard_t(3, 2_000_000), -0.15, 0.15)
    f = np.clip(0.02 * rng.standard_normal(2_000_000), -0.05, 0.05)
    truth = float(np.mean((0.5 + GAIN + e) / (0.5 + f)))
    assert 0.93 <= _coverage(k, collapse=False, stat=lambda a, b: a / b, truth=truth) <= 0.97
