"""Corrected verdicts: Holm against a hand computation, TOST equivalence, the false "helps" rate of a
study reading under a null, and the paper's claims saying checkpoint vs family and their budget."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gda_core.augment.study_report import ONE_SEED, StudyResult, fmt_ratio, reading_verdicts
from gda_core.metrics import AXES, Estimate, Report, check_claims, claim_sentence, claims_from_reports
from gda_core.metrics.claims import NO_DIFFERENCE, NOT_CLAIMED, ONE_MODEL, SPEED_BUDGET, budget_text
from gda_core.metrics.intervals import CONTRADICTED, INCONCLUSIVE, SUPPORTED, difference, over_replicates
from gda_core.metrics.verdicts import (
    A_BETTER,
    B_BETTER,
    CANNOT_TELL,
    EQUIVALENT,
    MARGINS,
    Comparison,
    decide,
    holm,
    p_tost,
    p_two_sided,
)

# -- Holm -------------------------------------------------------------------------------------------


def test_holm_matches_a_hand_computed_example():
    # sorted: 0.005*4 = 0.020, 0.010*3 = 0.030, 0.030*2 = 0.060, 0.040*1 = 0.040 -> kept non-decreasing: 0.060
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == [] and holm([0.02]) == pytest.approx([0.02])  # one comparison: nothing to correct


def test_decide_rejects_step_down_and_its_intervals_agree_with_the_verdicts():
    # z = 3.0, 2.5, 2.0, 1.0 (normal): two-sided p 0.0027, 0.0124, 0.0455, 0.317
    comps = [Comparison("x", "y", "utility", z * 0.01, 0.01, math.inf, 0.005) for z in (3.0, 2.5, 2.0, -1.0)]
    v = decide(comps)
    assert [x.verdict for x in v] == [A_BETTER, A_BETTER, CANNOT_TELL, CANNOT_TELL]  # 0.0455 > 0.05/2: Holm stops there
    assert v[2].p < 0.05  # ... though on its own it would have read "better"
    assert [x.level for x in v] == pytest.approx([1 - 0.05 / 4, 1 - 0.05 / 3, 1 - 0.05 / 2, 1 - 0.05 / 2])
    for x in v:  # the quoted interval excludes 0 exactly when the verdict is a difference
        assert (x.lo > 0 or x.hi < 0) == (x.verdict in (A_BETTER, B_BETTER))
    assert "Holm over 4 comparisons" in v[0].text and "x better on utility" in v[0].text
    neg = decide([Comparison("x", "y", "privacy", -0.2, 0.01, 4, 0.05)])[0]
    assert neg.verdict == B_BETTER and neg.winner == "y"


def test_p_values_use_student_t_with_the_estimates_df_and_the_normal_without():
    assert p_two_sided(1.959963984540054, 1.0, math.inf) == pytest.approx(0.05, abs=1e-9)
    assert p_two_sided(4.302652729911275, 1.0, 2) == pytest.approx(0.05, abs=1e-6)  # t(2) 97.5 % quantile
    assert p_two_sided(0.3, 0.0, 2) == 1.0  # no spread: nothing can be told


# -- TOST equivalence -------------------------------------------------------------------------------


def test_tost_by_hand_and_equivalence_versus_cannot_tell():
    # d = 0, se = 1, margin 1.645: each one-sided p is 1 - Phi(1.645) = 0.05
    assert p_tost(0.0, 1.0, math.inf, 1.6448536269514722) == pytest.approx(0.05, abs=1e-9)
    assert p_tost(0.02, 0.01, math.inf, 0.05) == pytest.approx(0.0013499, abs=1e-6)  # max(sf(7), cdf(-3))
    tight = decide([Comparison("a", "b", "fidelity", 0.004, 0.01, 10, MARGINS["fidelity"])])[0]
    assert tight.verdict == EQUIVALENT and "within ±0.05" in tight.text
    wide = decide([Comparison("a", "b", "fidelity", 0.004, 0.04, 10, MARGINS["fidelity"])])[0]
    assert wide.verdict == CANNOT_TELL  # the same difference, too noisy to show it is small
    near_edge = decide([Comparison("a", "b", "fidelity", 0.045, 0.01, 10, MARGINS["fidelity"])])[0]
    assert near_edge.verdict == A_BETTER and near_edge.p_equiv > 0.05  # clearly > 0, not shown below the margin


# -- a null study: the false "helps" rate per reading -------------------------------------------------


def _null_rows(rng, k: int, ratios=(1.0, 2.0, 3.0, 4.0)) -> list[dict]:
    """One reading line of a study with no true gain: each seed's real-only accuracy is shared by
    every ratio of that seed (as in the study: same subset, same classifier seed), so the gains are
    correlated; each cell adds its own classifier noise."""
    base_seed = rng.normal(0.7, 0.03, k)
    base = base_seed + rng.normal(0, 0.01, k)
    rows = [{"model_label": "m", "per_class": 10, "geometric_aug": False, "selected": False, "ratio": 0.0, "seeds": k}]
    for r in ratios:
        est = over_replicates(base_seed + rng.normal(0, 0.01, k) - base, what="seeds (paired)")
        rows.append({**rows[0], "ratio": r, "gain": est.mean, "gain_ci95": [est.lo, est.hi]})
    return rows


@pytest.mark.parametrize("k", [3, 5])
def test_false_helps_rate_under_a_null_is_at_most_5_percent_per_reading_after_correction(k):
    rng = np.random.default_rng(20261206 + k)
    reps, corrected, uncorrected = 2000, 0, 0
    for _ in range(reps):
        rows = _null_rows(rng, k)
        verdicts = reading_verdicts(rows).values()
        corrected += any(v.verdict == A_BETTER for v in verdicts)
        uncorrected += any(r["gain_ci95"][0] > 0 for r in rows[1:])  # each cell read alone at 95 %
    assert corrected / reps <= 0.05, corrected / reps
    assert uncorrected / reps > 0.05 and uncorrected > 2 * corrected  # each cell read alone: about 8 %


def test_a_real_gain_is_still_found_and_quoted_with_its_correction():
    rng = np.random.default_rng(7)
    rows = _null_rows(rng, 5)
    for r in rows[1:]:
        if r["ratio"] == 3.0:
            r["gain"] += 0.08
            r["gain_ci95"] = [r["gain_ci95"][0] + 0.08, r["gain_ci95"][1] + 0.08]
    res = StudyResult(cells=[], generators=[], config={}, summary=[{**r, "model": "m", "n_real": 100, "n_synthetic": 0, "mean": 0.7,
                      "ci95": [0.6, 0.8], "verdict": "helps" if r.get("gain_ci95", [0])[0] > 0 else "within noise"} for r in rows])  # fmt: skip
    line = next(s for s in res.reading() if s.startswith("m at 10/class"))
    assert f"best gain at +{fmt_ratio(3.0)}" in line and "Holm over 4 ratios" in line
    assert "helps" in line
    gains = {row["synthetic"]: row["gain over real only"] for row in res.table() if row["synthetic"] != "0x"}
    assert gains["3x"].endswith("helps")


def test_reading_says_no_meaningful_difference_and_one_seed():
    base = {"model": "m", "model_label": "m", "per_class": 10, "geometric_aug": False, "selected": False, "n_real": 100, "n_synthetic": 0,
            "mean": 0.7, "ci95": [0.69, 0.71]}  # fmt: skip
    flat = [{**base, "ratio": 0.0, "seeds": 5}] + [{**base, "ratio": r, "seeds": 5, "gain": 0.001, "gain_ci95": [-0.004, 0.006], "verdict": "x"}
                                                   for r in (1.0, 2.0)]  # fmt: skip
    line = StudyResult([], [], {}, summary=flat).reading()[0]
    assert "No meaningful difference: every change is within ±0.02 accuracy." in line
    one = [{**base, "ratio": 0.0, "seeds": 1}, {**base, "ratio": 1.0, "seeds": 1, "gain": 0.03, "gain_ci95": None, "verdict": "one seed"}]
    assert "One seed" in StudyResult([], [], {}, summary=one).reading()[0]


def test_a_one_seed_verdict_is_never_bare():
    """One seed with a test-image bootstrap still decides, but the words say the interval lacks seed noise, in
    the reading line, the table, the study-wide count and the exported (docs) verdict; three seeds read bare."""
    base = {"model": "m", "model_label": "m", "per_class": 10, "geometric_aug": False, "selected": False, "n_real": 100, "n_synthetic": 0,
            "mean": 0.8, "ci95": [0.78, 0.82]}  # fmt: skip

    def rows(seeds, label="m"):
        return [{**base, "model_label": label, "ratio": 0.0, "seeds": seeds}] + [
            {**base, "model_label": label, "ratio": r, "seeds": seeds, "gain": -0.06, "gain_ci95": [-0.08, -0.04], "gain_se": 0.01,
             "verdict": "hurts"} for r in (1.0, 2.0)]  # fmt: skip

    one = StudyResult([], [], {}, summary=rows(1) + rows(1, "n"))
    line = next(s for s in one.reading() if s.startswith("m at 10/class"))
    assert "did not help" in line and "One seed: these intervals hold the test images' noise" in line
    assert f"hurts ({ONE_SEED})" in line
    assert any(row["gain over real only"].endswith(f"hurts ({ONE_SEED})") for row in one.table())
    wide = next(s for s in one.reading() if s.startswith("Corrected over all"))
    assert f"4 of these gains rest on one seed ({ONE_SEED})" in wide
    exported = [s for s in one.to_dict()["summary"] if s["ratio"] > 0]
    assert exported and all(s["verdict_corrected"] == f"hurts ({ONE_SEED})" for s in exported)
    three = StudyResult([], [], {}, summary=rows(3) + rows(3, "n"))
    text = " ".join(three.reading())
    assert "did not help" in text and "one seed" not in text.lower()
    assert all(s["verdict_corrected"] == "hurts" for s in three.to_dict()["summary"] if s["ratio"] > 0)


# -- the paper's claims: checkpoint or family, and the budget ------------------------------------------


def _est(m: float, se: float, df: float = math.inf) -> Estimate:
    half = 1.96 * se
    return Estimate(m, m - half, m + half, se, df, 100, "constructed")


def _rep(family: str, m: float, se: float = 0.005, *, seeds=None, steps=600, **prov) -> Report:
    p = {"family": family, "checkpoint_sha256": f"sha-{family}-{m}", "train_steps": steps, **prov}
    if seeds:
        p["train_seeds"] = list(seeds)
    df = len(seeds) - 1 if seeds else math.inf
    return Report(scores={a: m for a in AXES}, raw={}, provenance=p, uncertainty={f"score:{a}": _est(m, se, df) for a in AXES})


def test_one_model_per_family_is_a_checkpoint_comparison_not_a_family_verdict():
    reports = [_rep("ddpm", 0.9), _rep("gan", 0.7), _rep("vae", 0.5)]
    claims = {c["axis"]: c for c in claims_from_reports(reports, ["d", "g", "v"])}
    fid = claims["fidelity"]
    assert fid["verdict"] == INCONCLUSIVE and fid["scope"] == "checkpoint" and fid["checkpoint_verdict"] == SUPPORTED
    text = claim_sentence(fid)
    assert text.startswith("Cannot tell:") and ONE_MODEL in text and "checkpoint d vs checkpoint g vs checkpoint v" in text
    assert claims["speed"]["scope"] == "family"  # speed is set by the network and sampler, not the training run
    assert claims["diversity"]["claim"] == "diffusion highest on diversity" and len(claims["diversity"]["pairs"]) == 2
    assert claims["robustness"]["verdict"] == NOT_CLAIMED and len(claims["robustness"]["pairs"]) == 3


def test_three_training_runs_per_family_give_a_family_verdict():
    reports = [_rep("ddpm", 0.9, seeds=[0, 1, 2]), _rep("gan", 0.7, seeds=[0, 1, 2]), _rep("vae", 0.5, seeds=[5, 6, 7])]
    claims = {c["axis"]: c for c in claims_from_reports(reports, ["d", "g", "v"])}
    assert claims["fidelity"]["verdict"] == SUPPORTED and claims["fidelity"]["scope"] == "family"
    assert claims["fidelity"]["runs"] == {"diffusion": 3, "GAN": 3, "VAE": 3}
    two = [_rep("ddpm", 0.9, seeds=[0, 1]), _rep("gan", 0.7, seeds=[0, 1, 2]), _rep("vae", 0.5, seeds=[5, 6, 7])]
    c = next(c for c in claims_from_reports(two, ["d", "g", "v"]) if c["axis"] == "fidelity")
    assert c["verdict"] == INCONCLUSIVE and "fewer than 3 training runs per family (diffusion 2)" in c["reason"]


def test_separately_trained_checkpoints_of_one_recipe_pool_as_training_runs():
    reports = [_rep("ddpm", m) for m in (0.90, 0.91, 0.89)] + [_rep("gan", m) for m in (0.70, 0.71, 0.69)] + [_rep("vae", m) for m in (0.5, 0.52, 0.51)]
    names = [f"{f}{i}" for f in "dgv" for i in range(3)]
    c = next(c for c in claims_from_reports(reports, names) if c["axis"] == "fidelity")
    assert c["scope"] == "family" and c["verdict"] == SUPPORTED and c["models"]["GAN"] == "gan (3 trained checkpoints)"


def test_contradicted_is_printed_with_its_training_budget(tmp_path):
    reports = [_rep("ddpm", 0.5, seeds=[0, 1, 2]), _rep("gan", 0.7, seeds=[0, 1, 2]), _rep("vae", 0.9, seeds=[0, 1, 2])]
    c = next(c for c in claims_from_reports(reports, ["d", "g", "v"]) if c["axis"] == "fidelity")
    assert c["verdict"] == CONTRADICTED and claim_sentence(c).startswith("Contradicted at 600 steps of training:")
    # The budget is read from the run folder when the report's provenance does not carry it.
    (tmp_path / "config.json").write_text(json.dumps({"step": 2500}))
    reports = [_rep("ddpm", 0.5, steps=None, run_dir=str(tmp_path)), _rep("gan", 0.7, steps=None, run_dir=str(tmp_path)),
               _rep("vae", 0.9, steps=None, run_dir=str(tmp_path))]  # fmt: skip
    c = next(c for c in claims_from_reports(reports, ["d", "g", "v"]) if c["axis"] == "fidelity")
    assert c["checkpoint_verdict"] == CONTRADICTED and "contradicted at 2,500 steps of training" in claim_sentence(c)
    assert budget_text({"a": 600, "b": 150}) == "at 600 (a), 150 (b) steps of training"
    # Speed does not depend on training: its claim never reads as tied to a budget (nor "an unrecorded" one).
    speed = [_rep(f, 0.5, seeds=[0, 1, 2], steps=None) for f in ("ddpm", "gan", "vae")]
    for r, v in zip(speed, (0.1, 0.9, 0.5), strict=True):
        r.scores["speed"], r.uncertainty["score:speed"] = v, _est(v, 0.005, 2)
    c = next(c for c in claims_from_reports(speed, ["d", "g", "v"]) if c["axis"] == "speed")
    assert c["budget"] == SPEED_BUDGET and "unrecorded" not in claim_sentence(c)


def test_contradicted_needs_the_holm_corrected_reversal_not_any_one_pair():
    se = 0.01 / math.sqrt(2)  # each pair's difference has se 0.01
    est = {"g": {"privacy": _est(0.500, se)}, "d": {"privacy": _est(0.5217, se)}, "v": {"privacy": _est(0.510, se)}}
    fam = {"g": "gan", "d": "ddpm", "v": "vae"}
    assert difference(est["g"]["privacy"], est["d"]["privacy"]).verdict == CONTRADICTED  # GAN < diffusion, read alone (p = 0.03)
    c = next(c for c in check_claims(est, fam, runs={"g": 3, "d": 3, "v": 3}) if c["axis"] == "privacy")
    assert c["verdict"] != CONTRADICTED  # 3 x 0.03 > 0.05: not a reversal once the three pairs are read together
    assert c["verdict"] == NO_DIFFERENCE  # (every pair is well within the 0.05 margin)


def test_claim_shown_within_the_margin_is_no_meaningful_difference():
    est = {n: {"fidelity": _est(m, 0.002)} for n, m in (("d", 0.700), ("g", 0.701), ("v", 0.3))}
    c = next(c for c in check_claims(est, {"d": "ddpm", "g": "gan", "v": "vae"}, runs={"d": 3, "g": 3, "v": 3}) if c["axis"] == "fidelity")
    assert c["verdict"] == NO_DIFFERENCE and claim_sentence(c).startswith("No meaningful difference:")
    assert {p["verdict"] for p in c["pairs"]} == {EQUIVALENT, A_BETTER}


def test_the_study_claims_count_per_seed_generators_as_training_runs():
    from gda_core.augment.study_report import study_claims

    noise = iter(np.random.default_rng(3).normal(0, 0.01, 9))
    gens = [{"model": m, "family": f, "per_class": 10, "seed": s, "steps": 600, "scores": {"precision": p + next(noise), "recall": p, "privacy": p,
             "utility": p}} for m, f, p in (("d", "ddpm", 0.5), ("g", "gan", 0.7), ("v", "vae", 0.9)) for s in range(3)]  # fmt: skip
    claims = {c["axis"]: c for c in study_claims(gens, {"d": "ddpm", "g": "gan", "v": "vae"}, [10])}
    assert claims["fidelity"]["scope"] == "family" and claims["fidelity"]["runs"] == {"diffusion": 3, "GAN": 3, "VAE": 3}
    assert claims["fidelity"]["verdict"] == CONTRADICTED and "at 600 steps of training" in claim_sentence(claims["fidelity"])
    assert "robustness" not in claims  # the study does not measure it
    assert B_BETTER in {p["verdict"] for p in claims["fidelity"]["pairs"]}


# -- the trilemma reading: faster than the best iterative model, and within noise of it on quality -------------


def _tri(family: str, fid: float, div: float, speed: float, se: float = 0.005) -> Report:
    m = {"fidelity": fid, "diversity": div, "speed": speed}
    scores = {a: m.get(a, 0.5) for a in AXES}
    return Report(scores=scores, raw={}, provenance={"family": family},
                  uncertainty={f"score:{a}": _est(v, se) for a, v in scores.items()})  # fmt: skip


def test_trilemma_reading_names_who_escapes_and_why_the_others_do_not():
    from gda_core.metrics import trilemma_reading

    reps = [_tri("ddpm", 0.90, 0.80, 0.20), _tri("flow", 0.80, 0.70, 0.20), _tri("vaegan", 0.90, 0.81, 0.70),
            _tri("ddgan", 0.85, 0.50, 0.60), _tri("distilled", 0.91, 0.80, 0.21)]  # fmt: skip
    lines = trilemma_reading(reps, ["d", "f", "vg", "dg", "st"])
    assert len(lines) == 3  # one per model that is not iterative; the reference is the best iterative (d, not f)
    assert lines[0].startswith("vg (a hybrid) escapes") and "faster than d" in lines[0]
    assert lines[1].startswith("dg (a hybrid) does not escape") and "fidelity and diversity are clearly lower" in lines[1]
    assert lines[2].startswith("st (a hybrid) is not clearly faster")
    # A one-pass family that matches the iterative model: the reading says the trade-off is not there to escape.
    lines = trilemma_reading([_tri("ddpm", 0.80, 0.70, 0.20), _tri("gan", 0.80, 0.70, 0.70)], ["d", "g"])
    assert "g (one pass per image) escapes" in lines[0] and "does not hold the quality corner" in lines[1]
    # Within noise is not lower: a wide interval keeps a lower mean from reading as a loss.
    lines = trilemma_reading([_tri("ddpm", 0.80, 0.70, 0.20, se=0.05), _tri("vaegan", 0.75, 0.70, 0.70, se=0.05)], ["d", "v"])
    assert "escapes" in lines[0] and "does not" not in lines[0]
    # Nothing to measure against, or no intervals: said, not guessed.
    assert trilemma_reading([_tri("gan", 0.8, 0.7, 0.7), _tri("vae", 0.8, 0.6, 0.7)], ["g", "v"]) == []
    bare = Report(scores={a: 0.5 for a in AXES}, raw={}, provenance={"family": "vaegan"})
    assert "no interval" in trilemma_reading([_tri("ddpm", 0.8, 0.7, 0.2), bare], ["d", "v"])[0]


def test_a_shipped_report_read_from_another_clone_finds_its_run_and_its_training_steps(tmp_path):
    """A report names the folder it was evaluated in (the machine that made the shipped ones): read from
    where the run is now, the claims still find its training steps (a clone elsewhere, CI's for one)."""
    import shutil

    from gda_core.checkpoints import SHIPPED_DIR
    from gda_core.jobs import cached_reports
    from gda_core.metrics.claims import training_steps

    src = SHIPPED_DIR / "vae-digits"
    if not cached_reports(src):
        pytest.skip("checkpoints/vae-digits has no current report (python -m bench.train_shipped --eval-only --only vae-digits)")
    moved = tmp_path / "elsewhere" / "vae-digits"
    shutil.copytree(src, moved)
    for f in (moved / "eval").glob("*.json"):
        d = json.loads(f.read_text())
        d["provenance"]["run_dir"] = "/nonexistent/build-machine/checkpoints/vae-digits"
        f.write_text(json.dumps(d))
    rep = cached_reports(moved)[0][1]
    assert rep.provenance["run_dir"] == str(moved)
    assert training_steps(rep) == json.loads((moved / "config.json").read_text())["step"]


def test_a_one_seed_study_claim_says_one_seed_not_unmeasured():
    """A study with one seed per level has every score measured once: its claims cannot compare families yet, and
    the reason says so (it once read "fidelity not measured"); with three seeds the same claims are judged."""
    from gda_core.augment.study_report import study_claims

    fams = {"vae": "vae", "gan": "gan", "ddpm": "ddpm"}
    base = {"vae": 0.3, "gan": 0.5, "ddpm": 0.7}
    rng = np.random.default_rng(0)
    jitter = {(m, s): float(rng.normal(0, 0.01)) for m in fams for s in range(3)}

    def gens(seeds):
        return [{"model": m, "family": f, "per_class": 10, "seed": s, "steps": 150,
                 "scores": {k: base[m] + jitter[(m, s)] for k in ("precision", "recall", "privacy", "utility")}}
                for m, f in fams.items() for s in seeds]  # fmt: skip

    one = [c for c in study_claims(gens([0]), fams, [10]) if c["axis"] == "fidelity"]
    assert one and all(c["verdict"] == INCONCLUSIVE and c["reason"].startswith("one seed so far") for c in one)
    assert not any("not measured" in c["reason"] for c in one)
    three = [c for c in study_claims(gens([0, 1, 2]), fams, [10]) if c["axis"] == "fidelity"]
    assert three and all(c["verdict"] == SUPPORTED for c in three), [c["reason"] for c in three]


def test_a_privacy_lead_that_comes_with_the_lowest_fidelity_is_read_as_not_learned():
    """At a short budget a collapsed model (fidelity 0.05) had the highest privacy on chest X-rays: the reading
    says why beside the lead instead of offering it as the private choice."""
    from gda_core.metrics import reading

    def rep(fid: float, priv: float, se: float = 0.005) -> Report:
        scores = {a: 0.5 for a in AXES} | {"fidelity": fid, "privacy": priv}
        return Report(scores=scores, raw={}, provenance={}, uncertainty={f"score:{a}": _est(v, se) for a, v in scores.items()})

    text = " ".join(reading([rep(0.95, 0.17), rep(0.05, 0.67), rep(0.80, 0.30)], ["vaegan", "ddgan", "ldm"]))
    assert "ddgan has the highest privacy" in text and "ddgan's privacy lead comes with the lowest fidelity (0.05" in text
    assert "has not learned the data" in text
    # A private model whose fidelity is within noise of the best, or not the lowest, reads bare.
    for reps in ([rep(0.95, 0.17, se=0.5), rep(0.05, 0.67, se=0.5)], [rep(0.95, 0.17), rep(0.60, 0.67), rep(0.50, 0.30)]):
        assert "privacy lead comes with" not in " ".join(reading(reps, ["a", "b", "c"][: len(reps)]))
