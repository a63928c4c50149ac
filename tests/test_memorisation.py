"""The memorisation audit tells a copy from a blur, on real digits (no model training needed)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from gda_core.errors import ConfigError
from gda_core.metrics.memorisation import audit_memorisation, class_nearest_ssim, combine, copies, read_block, reading, thresholds
from gda_core.metrics.privacy import nearest_ssim

from .test_app import runs_dir  # noqa: F401  (the fixture of the Compare page test)


@pytest.fixture(scope="module")
def parts(digits):
    rng = np.random.default_rng(0)
    tr, ty = digits.train_images, digits.train_labels
    idx = rng.choice(len(tr), 400, replace=False)
    # A copier: training images with noise of sd 2 grey levels.
    copier = np.clip(tr[idx].astype(np.float64) + rng.normal(0, 2, tr[idx].shape), 0, 255).round().astype(np.uint8)
    # A blurry model: each class's mean image, heavily blurred.
    means = np.stack([gaussian_filter(tr[ty == c].astype(np.float64).mean(0), sigma=(2, 2, 0)) for c in range(10)])
    by = rng.integers(0, 10, 400)
    return {"copier": (copier, ty[idx]), "blur": (means[by].round().astype(np.uint8), by), "new": (digits.val_images, digits.val_labels)}


def _audit(digits, x, y, **kw):
    return audit_memorisation(x, y, digits.train_images, digits.train_labels, digits.test_images, digits.test_labels, **kw)


def test_copier_is_flagged_and_blur_is_not(digits, parts):
    copier, blur, new = (_audit(digits, *parts[k]) for k in ("copier", "blur", "new"))
    # The copier: nearly every image beyond what 95 % of new real images reach, a wide copy gap.
    assert copier.rate.mean > 0.95 and copier.rate.lo > 0.9
    assert copier.copy_gap.mean > 0.08 and copier.copy_gap.lo > 0.05
    # The blur looks "private" on nearest-SSIM (far below how close real images come) ...
    to = lambda a: a.transpose(0, 3, 1, 2)  # noqa: E731
    blur_ssim = float(nearest_ssim(to(parts["blur"][0]), to(digits.train_images)).mean())
    assert blur_ssim < 0.7 < blur.reference_mean
    # ... but it copies nothing: rate near 0, no gap between training and held-out neighbours.
    assert blur.rate.mean <= 0.01 and blur.rate.hi <= 0.02
    assert abs(blur.copy_gap.mean) < 0.03
    # Genuinely new real images score about the 5 % the threshold lets through, the interval holds it.
    assert 0.0 < new.rate.mean < 0.12 and new.rate.lo <= 0.05 <= new.rate.hi
    assert new.copy_gap.mean < copier.copy_gap.mean / 2
    # The gap no copying gives (held-out images against train vs the other held-out ones) is what
    # new images score, and well below the copier's.
    assert abs(new.copy_gap.mean - new.new_images_gap) < 0.03 and copier.copy_gap.mean > 2 * copier.new_images_gap


def test_nearest_is_within_class_and_matches_the_exact_search(digits):
    x, y = digits.val_images[:30], digits.val_labels[:30]
    got = class_nearest_ssim(x, y, digits.train_images, digits.train_labels)
    for i in (0, 7, 19):
        ref = digits.train_images[digits.train_labels == y[i]].transpose(0, 3, 1, 2)
        # float32 SSIM over differently sized batches rounds differently (1.2e-7 seen once under make test-fast): the same
        # neighbour gives the same value to float32 precision, a wrong one differs by far more.
        assert got[i] == pytest.approx(float(nearest_ssim(x[i : i + 1].transpose(0, 3, 1, 2), ref)[0]), abs=1e-6)


def test_thresholds_pool_small_classes():
    ref = np.r_[np.linspace(0, 1, 101), [0.2, 0.3]]
    lab = np.r_[np.zeros(101, int), [1, 1]]
    thr = thresholds(ref, lab)
    assert thr[0] == pytest.approx(0.95) and thr[1] == thr[-1] == pytest.approx(np.percentile(ref, 95))


def test_block_round_trip_seeds_and_reading(digits, parts):
    a = _audit(digits, *parts["copier"], seed=0)
    b = _audit(digits, *parts["new"], seed=1)
    block = a.to_dict()
    rate, gap = read_block(block)
    assert rate.mean == a.rate.mean and gap.interval == a.copy_gap.interval
    both = combine([a.to_dict(), b.to_dict()])
    assert both["replicates"] == 2 and "t-interval over 2 sampling seeds" in both["rate"]["method"]
    # A copier and a new-image set: a t-interval on one degree of freedom spans far more than the rate can; a share stays in [0, 1].
    assert 0.0 <= both["rate"]["lo"] < both["rate"]["mean"] < both["rate"]["hi"] <= 1.0
    old_style = {**block, "rate": {**block["rate"], "lo": -0.06, "hi": 1.01}}  # a report stored before the clip
    assert read_block(old_style)[0].interval == [0.0, 1.0]
    assert "reproduces training images" in reading(block, "copier") and copies(block) and not copies(b.to_dict())
    assert "no sign" in reading(b.to_dict(), "real")
    assert read_block({"rate": {"mean": "x"}}) is None and reading(None) is None
    assert "about 5% expected" in reading({**block, "percentile": "ninety"}, "copier")  # a hand-edited report is read, not trusted


def test_bad_input(digits):
    with pytest.raises(ConfigError, match="needs synthetic, training and held-out"):
        audit_memorisation(digits.val_images[:0], digits.val_labels[:0], digits.train_images, digits.train_labels,
                           digits.test_images, digits.test_labels)  # fmt: skip
    with pytest.raises(ConfigError, match="percentile"):
        _audit(digits, digits.val_images, digits.val_labels, percentile=100)


def test_evaluate_reports_the_audit_and_planted_duplicates(small_digits, tmp_path):
    """evaluate's report carries ``memorisation`` and ``duplicates``: a memorising model is flagged,
    and test images planted as copies of training images are counted and warned about."""
    import dataclasses
    import json

    from gda_core.metrics import ClassifierBudget, Report, evaluate

    from .test_duplicates import _planted
    from .test_metrics_fakes import MemorisingModel, config_for

    ds, _ = _planted(small_digits, n_exact=3, n_near=5)
    ds = dataclasses.replace(ds, spec=dataclasses.replace(ds.spec, seed=99))  # its own cache key
    model = MemorisingModel(config_for(ds), ds.train_images, ds.train_labels)
    tiny = ClassifierBudget(epochs=2, min_steps=40, max_steps=40)
    rep = evaluate(model, ds, n_samples=200, augment=(), budget=tiny, cache_dir=tmp_path, device="cpu", deepfool_steps=5, kid_subsets=3,
                   extractor_options={"budget": ClassifierBudget(epochs=2, min_steps=60, max_steps=60)})  # fmt: skip
    mem = rep.memorisation
    assert mem["rate"]["mean"] > 0.95 and mem["copy_gap"]["mean"] > 0.05 and mem["n_synthetic"] == 200 and mem["n_train"] == 200
    # The 8 planted copies are left out of the held-out reference (they would raise the threshold).
    assert mem["n_held_out"] == len(ds.val_labels) + len(ds.test_labels) - 8 and "less 8" in mem["held_out"]
    tt = next(p for p in rep.duplicates["pairs"] if (p["a"], p["b"]) == ("train", "test"))
    assert (tt["exact"], tt["near"]) == (3, 5)
    assert any(w.startswith("8 of 359 test images have a copy in train (3 exact and 5 near") for w in rep.warnings)
    assert any("reproduces training images" in w for w in rep.warnings)
    again = Report.from_dict(json.loads(json.dumps(rep.to_dict())))
    assert again.memorisation == mem and again.duplicates == rep.duplicates


@pytest.mark.slow
def test_study_audits_each_generator_against_its_own_subset_and_warns_of_duplicates(digits, tmp_path, runs_dir):  # noqa: F811
    """The study: every generator's audit is against the 10/class subset it was trained on, and the
    planted train/test copies are counted in its config, its reading and on its page."""
    from gda_core.augment import run_study
    from gda_core.metrics import ClassifierBudget

    from .test_duplicates import _planted

    ds, _ = _planted(digits, n_exact=2, n_near=4, seed=3)
    res = run_study(ds, models=["vae"], model_configs={"vae": {"latent_dim": 8, "base_channels": 8}}, per_class_levels=[10], ratios=[0, 1],
                    seeds=1, budget_steps=10, budget=ClassifierBudget(epochs=1, min_steps=20, max_steps=20), device="cpu",
                    cache_dir=tmp_path)  # fmt: skip
    tt = next(p for p in res.config["duplicates"]["pairs"] if (p["a"], p["b"]) == ("train", "test"))
    assert (tt["exact"], tt["near"]) == (2, 4)
    assert any(n.startswith("6 of 359 test images have a copy in train (2 exact and 4 near") for n in res.notes)
    (gen,) = res.generators
    mem = gen["memorisation"]
    assert mem["n_train"] == 100 and mem["against"] == "the generator's own 100 training images"
    assert mem["n_held_out"] == len(ds.val_labels) + len(ds.test_labels) - 6 and 0 <= mem["rate"]["mean"] <= 1
    assert any(line.startswith("Memorisation of vae") and "10/class" in line and "copy gap" in line for line in res.reading())
    from .test_app import _ok, _open

    at = _open("7_Augment.py")
    at.session_state["study_result"] = res
    at.run()
    _ok(at)
    assert any(w.value.startswith("6 of 359 test images have a copy in train") for w in at.warning), [w.value for w in at.warning]


def test_compare_page_shows_the_audit_beside_privacy(digits, parts, runs_dir):  # noqa: F811
    """Compare: the memorisation table with its one-line explanation; a copier's verdict says it
    copies, a report made before the audit says it was not audited."""
    import shutil

    from gda_core.metrics import Report
    from gda_core.metrics.memorisation import AUDIT_HELP

    from .test_app import _any_run, _ok, _open

    info = _any_run(runs_dir)
    paths = []
    for name, block in (("copier", _audit(digits, *parts["copier"]).to_dict()), ("old", None)):
        dst = runs_dir / name
        shutil.copytree(info.path, dst, ignore=shutil.ignore_patterns("train_state.pt", ".lock", "eval"))
        raw = {"precision": 0.9, "recall": 0.6, "images_per_s": 5000.0, "nfe_per_image": 1.0, "tstr_acc": 0.9, "trtr_acc": 0.95,
               "deepfool_rho_tstr": 0.1, "deepfool_rho_trtr": 0.12, "nearest_ssim_mean": 0.99}  # fmt: skip
        from gda_core.metrics.evaluation import METRICS_VERSION

        rep = Report.from_raw(raw, provenance={"seed": 0, "n_samples": 100, "device": "CPU", "created": name, "metrics_version": METRICS_VERSION})
        rep.memorisation = block
        rep.save(dst / "eval" / "fake.json")
        paths.append(str(dst))
    at = _open("5_Compare.py")
    at.multiselect(key="compare_sel").set_value(paths).run()
    _ok(at)
    assert any(c.value == AUDIT_HELP for c in at.caption)
    table = next(d.value for d in at.dataframe if "memorisation rate" in d.value.columns)
    rows = dict(zip(table["model"], table["verdict"], strict=True))
    assert "reproduces training images" in rows["copier"] and rows["old"] == "not audited (re-evaluate)"
    assert table["memorisation rate"].iloc[0].startswith("1.000 [")


def test_cli_evaluate_prints_the_audit_and_the_duplicate_warning(digits, parts, tmp_path, monkeypatch, capsys):
    """The CLI line of a report's audit, and its duplicate warning on stderr (the report is made
    from a real audit; evaluate itself is tested above)."""
    import argparse

    from gda_core.data.duplicates import split_duplicates
    from gda_core.metrics import Report, cli

    from .test_duplicates import _planted

    rep = Report.from_raw({"nearest_ssim_mean": 0.99})
    rep.memorisation = _audit(digits, *parts["copier"]).to_dict()
    dups = split_duplicates(_planted(digits, n_exact=1, n_near=2)[0])
    rep.duplicates, rep.warnings = dups.to_dict(), dups.warnings()
    monkeypatch.setattr(cli, "_eval_one", lambda path, args: rep)
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["evaluate", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "r.json")])
    assert args.func(args) == 0
    out, err = capsys.readouterr()
    assert "memorisation 1.000 [1.000, 1.000], copy gap 0.1" in out
    assert "warning: 3 of 359 test images have a copy in train (1 exact and 2 near" in err


def test_a_high_rate_without_a_copy_gap_reads_as_smooth_not_copying():
    """Seen on the shipped chest X-ray VAE: 62 % of its images beat the threshold (X-rays all look
    alike and a smooth image is near many), but they are as close to held-out X-rays as to training
    ones. Only a rate AND a copy gap above new images' (by GAP_MARGIN) read as copying."""
    from gda_core.metrics.memorisation import GAP_MARGIN, copies, reading

    def block(rate, gap, new=0.010):
        e = lambda v: {"mean": v, "lo": v - 0.005, "hi": v + 0.005, "se": 0.003, "df": None, "n": 300, "method": "bootstrap"}  # noqa: E731
        return {"rate": e(rate), "copy_gap": e(gap), "percentile": 95.0, "new_images_gap": new}

    smooth = block(0.62, 0.014)
    assert not copies(smooth) and "not copies of training images" in reading(smooth, "vae")
    copier = block(0.95, 0.010 + GAP_MARGIN + 0.2)
    assert copies(copier) and "reproduces training images" in reading(copier, "copier")
    assert not copies(block(0.05, 0.3)), "a large gap alone, at the rate new images reach, is not copying"
