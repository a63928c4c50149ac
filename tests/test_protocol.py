"""Answers you can trust: intervals that cover, the paper's claims, evaluation with seeds, and the
leakage-free study protocol (exact subsets, no leakage, resume after a kill, bad input)."""

from __future__ import annotations

import functools
import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from gda_core.augment import run_study, scarce_subset
from gda_core.augment.study import indices_sha256
from gda_core.data import load_dataset, load_spec
from gda_core.errors import Cancelled, ConfigError
from gda_core.metrics import AXES, ClassifierBudget, Estimate, Report, check_claims, claims_from_reports, evaluate
from gda_core.metrics.extractors import data_hash
from gda_core.metrics.intervals import CONTRADICTED, INCONCLUSIVE, SUPPORTED, bootstrap_mean, difference, over_replicates
from gda_core.metrics.manifold import prdc_items

from .test_metrics_fakes import MemorisingModel, NoiseModel, config_for

TINY = ClassifierBudget(epochs=2, min_steps=40, max_steps=60, batch_size=64)
EXT = {"budget": ClassifierBudget(epochs=2, min_steps=60, max_steps=60)}
VAE = {"latent_dim": 8, "base_channels": 8}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# -- intervals ------------------------------------------------------------------------------------


def test_t_interval_covers_the_truth_at_its_nominal_rate_and_narrows_with_more_seeds():
    rng = np.random.default_rng(0)
    truth, sd = 0.7, 0.05
    for k in (3, 10):
        ests = [over_replicates(rng.normal(truth, sd, k)) for _ in range(2000)]
        cover = np.mean([e.lo <= truth <= e.hi for e in ests])
        assert 0.935 <= cover <= 0.965, (k, cover)
    w3 = np.mean([(e := over_replicates(rng.normal(truth, sd, 3))).hi - e.lo for _ in range(500)])
    w10 = np.mean([(e := over_replicates(rng.normal(truth, sd, 10))).hi - e.lo for _ in range(500)])
    assert w10 < 0.5 * w3
    assert over_replicates([0.5]) is None  # one replicate has no spread to show


def test_seed_intervals_stay_within_what_each_figure_can_take():
    from gda_core.metrics.summaries import aggregate_replicates

    raws = [{"tstr_acc": a, "precision": a, "fid": f, "kid": k} for a, f, k in ((0.80, 0.1, -0.001), (0.95, 2.0, 0.002), (0.96, 0.2, 0.0))]
    out = aggregate_replicates(raws)
    assert over_replicates([0.80, 0.95, 0.96]).hi > 1  # the raw t-interval runs past 1 ...
    assert out["tstr_acc"].hi == 1.0 and out["precision"].hi == 1.0  # ... the reported one stops there
    assert out["fid"].lo == 0.0 and out["fid"].mean == pytest.approx(0.7667, abs=1e-4)
    assert out["kid"].lo < 0  # unbiased KID can be negative: left as it is


def _precision_case(rng, n_fake: int, truth: float):
    """Real features, and fake ones that are either copies of real points (inside the real manifold
    for sure) or far away (outside for sure): the population precision is exactly ``truth``."""
    real = rng.normal(size=(400, 8))
    inside = rng.random(n_fake) < truth
    fake = np.where(inside[:, None], real[rng.integers(0, len(real), n_fake)], rng.normal(size=(n_fake, 8)) + 50.0)
    return real, fake


def test_bootstrap_interval_of_precision_covers_the_truth_and_narrows_with_more_images():
    rng = np.random.default_rng(1)
    truth = 0.7
    hits, widths = [], {}
    for n in (100, 400):
        ws = []
        for _ in range(150 if n == 100 else 40):
            real, fake = _precision_case(rng, n, truth)
            est = bootstrap_mean(prdc_items(real, fake, k_pr=3, k_dc=5)["precision"], seed=int(rng.integers(1 << 30)))
            ws.append(est.hi - est.lo)
            if n == 100:
                hits.append(est.lo <= truth <= est.hi)
        widths[n] = np.mean(ws)
    assert 0.89 <= np.mean(hits) <= 0.99, np.mean(hits)
    assert widths[400] < 0.6 * widths[100]


# -- the paper's claims -----------------------------------------------------------------------------


def _est(m: float, half: float) -> Estimate:
    return Estimate(m, m - half, m + half, half / 1.96, math.inf, 100, "constructed")


FAMILIES = {"dm": "ddpm", "g": "gan", "v": "vae"}


@pytest.mark.parametrize(
    "values, verdict",
    [
        ({"dm": (0.9, 0.02), "g": (0.7, 0.02), "v": (0.5, 0.02)}, SUPPORTED),  # clear win, in the claimed order
        ({"dm": (0.5, 0.02), "g": (0.7, 0.02), "v": (0.9, 0.02)}, CONTRADICTED),  # clear loss: reversed
        ({"dm": (0.70, 0.1), "g": (0.68, 0.1), "v": (0.5, 0.02)}, INCONCLUSIVE),  # overlap: cannot tell
    ],
)
def test_claims_verdicts_on_constructed_estimates(values, verdict):
    est = {m: {"fidelity": _est(*v), "utility": _est(*v), "privacy": _est(*v), "speed": _est(*v)} for m, v in values.items()}
    claims = {c["axis"]: c for c in check_claims(est, FAMILIES, runs={m: 3 for m in FAMILIES})}  # 3 training runs each: a family verdict
    assert claims["fidelity"]["verdict"] == verdict and claims["utility"]["verdict"] == verdict
    assert claims["fidelity"]["models"] == {"diffusion": "dm", "GAN": "g", "VAE": "v"}
    # privacy's claim orders GAN > diffusion: with the same numbers it can only be supported on a clear loss for diffusion
    assert claims["privacy"]["verdict"] in (CONTRADICTED, INCONCLUSIVE)


def test_claims_from_reports_and_missing_families():
    def rep(family, m, half):
        scores = {a: m for a in AXES}
        return Report(scores=scores, raw={}, provenance={"family": family}, uncertainty={f"score:{a}": _est(m, half) for a in AXES})

    reports = [rep("ddpm", 0.9, 0.01), rep("gan", 0.7, 0.01), rep("vae", 0.5, 0.01)]
    claims = {c["axis"]: c for c in claims_from_reports(reports, ["d", "g", "v"])}
    on_checkpoints = {a: c["checkpoint_verdict"] for a, c in claims.items() if a != "robustness"}
    assert on_checkpoints == {"fidelity": SUPPORTED, "diversity": SUPPORTED, "utility": SUPPORTED, "privacy": CONTRADICTED, "speed": CONTRADICTED}
    # One trained model per family: about these checkpoints, not the families (speed aside: set by network and sampler).
    assert {a: c["verdict"] for a, c in claims.items() if a not in ("robustness", "speed")} == dict.fromkeys(("fidelity", "diversity", "utility", "privacy"), INCONCLUSIVE)
    assert claims["speed"]["verdict"] == CONTRADICTED
    only_two = claims_from_reports(reports[:2], ["d", "g"])
    assert all(c["verdict"] in (INCONCLUSIVE, "not claimed") and "no VAE" in c["reason"] for c in only_two)
    # Paired replicates: a small but consistent difference is a clear one, unpaired it is within noise.
    a = Estimate(0.71, 0.6, 0.82, 0.02, 2, 3, "seeds", (0.60, 0.72, 0.81))
    b = Estimate(0.70, 0.59, 0.81, 0.02, 2, 3, "seeds", (0.59, 0.71, 0.80))
    assert difference(a, b).verdict == INCONCLUSIVE and difference(a, b, paired=True).verdict == SUPPORTED


# -- evaluate with seeds ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_digits():
    return load_dataset("digits", per_class=20, seed=0)


@pytest.fixture
def quick(tmp_path):
    return functools.partial(evaluate, budget=TINY, augment=(1,), cache_dir=tmp_path / "cache", device="cpu", deepfool_steps=10,
                             kid_subsets=3, extractor_options=EXT, n_samples=120, cache=False)  # fmt: skip


def test_evaluate_with_seeds_reports_intervals_per_class_and_reuses_finished_seeds(small_digits, quick):
    model = MemorisingModel(config_for(small_digits), small_digits.train_images, small_digits.train_labels)
    one = quick(model, small_digits, seeds=1)
    assert one.provenance["stages"]["computed"] == 7  # TRTR, test SSIM, speed, synthetic images, scores, memorisation reference and audit
    assert all(one.intervals[a] is not None and one.intervals[a][0] <= one.scores[a] <= one.intervals[a][1] for a in AXES)
    assert one.estimate("precision").method.startswith("bootstrap over 120 synthetic images")
    assert "classifier-training noise" in " ".join(one.warnings)  # one seed: the report says what its intervals leave out
    two = quick(model, small_digits, seeds=2)
    # Only seed 1 was computed (its synthetic images, scores and memorisation audit); the memorisation reference counts twice
    # as reused (the reference and seed 1's audit both read it).
    assert two.provenance["stages"] == {**two.provenance["stages"], "computed": 3, "reused": 8}
    assert two.estimate("tstr_acc").values[0] == one.raw["tstr_acc"]  # seed 0's figure is the one computed before
    assert two.estimate("score:utility").method.startswith("2 seeds, paired bootstrap over")  # TRTR retrained per seed, test images resampled inside
    d = json.loads(json.dumps(two.to_dict()))
    assert set(d["intervals"]) == set(AXES) and all(len(v) == 2 for v in d["intervals"].values())
    row = d["per_class"][small_digits.class_names[3]]
    assert {"fidelity", "diversity", "utility"} <= set(row) and {"fidelity", "diversity", "utility"} <= set(row["intervals"])
    assert Report.from_dict(d).to_dict() == d


def test_evaluate_killed_mid_seed_resumes_with_the_same_numbers(small_digits, quick, tmp_path):
    model = NoiseModel(config_for(small_digits))
    straight = quick(model, small_digits, seeds=2, cache_dir=tmp_path / "fresh")
    stop = threading.Event()

    def progress(stage, frac):
        if "seed 1" in stage:
            stop.set()

    with pytest.raises(Cancelled):
        quick(model, small_digits, seeds=2, progress=progress, cancel=stop)
    resumed = quick(model, small_digits, seeds=2)
    assert resumed.provenance["stages"]["reused"] >= 3  # the reference and seed 0 were kept
    # Every seeded figure is the same; the speed is a wall-clock measurement, made once per cache.
    assert {k: v for k, v in resumed.raw.items() if k != "images_per_s"} == {k: v for k, v in straight.raw.items() if k != "images_per_s"}
    assert {k: v for k, v in resumed.scores.items() if k != "speed"} == {k: v for k, v in straight.scores.items() if k != "speed"}


def test_evaluate_refuses_bad_seeds_and_sampler_settings(small_digits, quick):
    model = NoiseModel(config_for(small_digits))
    for kw, word in (({"seeds": 0}, "seeds"), ({"steps": 0}, "steps"), ({"guidance": float("nan")}, "guidance"), ({"temperature": -1.0}, "temperature")):
        with pytest.raises(ConfigError, match=word):
            quick(model, small_digits, **kw)


# -- the study protocol ------------------------------------------------------------------------------


def _bar(rng, vertical: bool, size: int = 16) -> np.ndarray:
    img = rng.integers(0, 40, (size, size)).astype(np.uint8)
    pos = rng.integers(4, size - 5)
    if vertical:
        img[:, pos : pos + 3] = 230
    else:
        img[pos : pos + 3, :] = 230
    return img[..., None]


def _leaky_npz(path: Path, seed: int = 0) -> Path:
    """Two classes, 60 training images each. Class 0: horizontal bars. Class 1: horizontal bars
    for the 10 images the scarce subset (10/class, seed ``seed``) keeps, vertical bars for the 50
    it leaves out; class 1's test images are vertical. So at 10/class, class 1 is learnable only
    from the images outside the subset."""
    rng = np.random.default_rng(42)
    labels = np.repeat([0, 1], 60)
    keep = set(scarce_subset(labels, 10, seed).tolist())
    train = np.stack([_bar(rng, vertical=(y == 1 and i not in keep)) for i, y in enumerate(labels)])
    test_y = np.repeat([0, 1], 40)
    test = np.stack([_bar(rng, vertical=bool(y)) for y in test_y])
    val = np.stack([_bar(rng, vertical=bool(y)) for y in [0, 1, 0, 1]])
    np.savez(path, train_images=train[..., 0], train_labels=labels[:, None], val_images=val[..., 0], val_labels=np.array([[0], [1], [0], [1]]),
             test_images=test[..., 0], test_labels=test_y[:, None])  # fmt: skip
    return path


STUDY = dict(models=["vae"], model_configs={"vae": VAE}, per_class_levels=[10], ratios=[0, 2], seeds=1, budget_steps=150, budget=TINY, device="cpu")


@pytest.mark.slow
def test_per_level_generators_do_not_leak_what_the_classifier_was_denied(tmp_path):
    ds = load_dataset(str(_leaky_npz(tmp_path / "leaky.npz")))
    honest = run_study(ds, cache_dir=tmp_path / "cache", **STUDY)
    leaky = run_study(ds, cache_dir=tmp_path / "cache", scope="shared", **STUDY)

    def gain(res):
        return next(s["gain"] for s in res.summary if s["ratio"] == 2.0)

    base = next(s["mean"] for s in honest.summary if s["ratio"] == 0.0)
    assert base < 0.65  # with 10 real images per class, class 1 looks like class 0
    assert gain(leaky) > 0.25  # a generator that saw the other 50 images teaches the classifier class 1 ...
    assert gain(honest) < 0.1  # ... one trained on exactly the subset cannot
    assert all("one generator for all levels" in c["model_label"] for c in leaky.cells)
    assert any("information from real images the classifier was denied" in n for n in leaky.notes)
    assert "(one generator for all levels)" in leaky.markdown() and "one generator for all levels" in leaky.html()


@pytest.fixture(scope="module")
def breast(tmp_path_factory):
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "breastmnist" / "breastmnist.npz"
    if not path.is_file():
        pytest.skip(f"{path} not present: the study tests read ../shared/data/breastmnist")
    # The first 60 training images of each class (the val and test splits whole), written as a MedMNIST file
    # of its own: the level 'all' then means 120 real images, not 546, so the exact SSIM searches of the privacy
    # score and the memorisation audit take seconds. (A per-class limit at load time is refused by the study,
    # which draws its own subsets.)
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    y = d["train_labels"].reshape(-1)
    keep = np.sort(np.concatenate([np.flatnonzero(y == c)[:60] for c in np.unique(y)]))
    d["train_images"], d["train_labels"] = d["train_images"][keep], d["train_labels"][keep]
    small = tmp_path_factory.mktemp("breast") / "breastmnist.npz"
    np.savez(small, **d)
    return load_dataset(str(small))


SMALL = dict(models=["vae"], model_configs={"vae": VAE}, per_class_levels=[10, "all"], ratios=[0, 1], seeds=2, budget_steps=[12, 16],
             budget=ClassifierBudget(epochs=1, min_steps=20, max_steps=20, batch_size=64), device="cpu")  # fmt: skip


@pytest.fixture(scope="module")
def small_study(breast, tmp_path_factory):
    return run_study(breast, cache_dir=tmp_path_factory.mktemp("study"), **SMALL)


def test_each_generator_was_trained_on_exactly_its_levels_indices(breast, small_study):
    cells = [c for c in small_study.cells if c["ratio"] > 0]
    assert {(c["per_class"], c["seed"]) for c in cells} == {(10, 0), (10, 1), ("all", 0), ("all", 1)}
    for c in cells:
        gen = c["generator"]
        idx = scarce_subset(breast.train_labels, c["per_class"], c["seed"])
        assert gen["train_indices_sha256"] == indices_sha256(idx) == c["subset_indices_sha256"] and gen["n_train"] == len(idx)
        from gda_core.checkpoints import load_run

        run = load_run(gen["checkpoint"], device="cpu")
        again = load_spec(run.data_spec)  # what the run folder says it was trained on, reloaded from its own record
        assert np.array_equal(again.train_images, breast.train_images[idx]) and run.config["train_images"] == len(idx)
        assert data_hash(again.train_images, again.train_labels) == gen["train_data_sha256"]
    assert len({c["generator"]["checkpoint"] for c in cells}) == 4  # one generator per level and seed


def test_study_json_has_the_fields_the_checks_read(small_study):
    d = json.loads(json.dumps(small_study.to_dict()))
    for c in d["cells"]:
        assert {"model", "per_class", "ratio", "seed", "accuracy"} <= set(c)
        assert {"checkpoint", "train_indices_sha256", "n_train"} <= set(c["generator"])
    for s in d["summary"]:
        assert {"model", "per_class", "ratio", "mean", "ci95"} <= set(s) and len(s["ci95"]) == 2 and s["ci95"][0] <= s["mean"] <= s["ci95"][1]
    assert d["claims"] and all(c["verdict"] in (SUPPORTED, CONTRADICTED, INCONCLUSIVE, "no meaningful difference") and c["claim"] for c in d["claims"])
    words = ("helped", "did not help", "No meaningful difference", "Cannot tell at this budget", "One seed")
    assert any(w in line for w in words for line in d["reading"])


def test_a_killed_study_resumes_with_the_same_numbers(breast, small_study, tmp_path):
    stop = threading.Event()
    seen = []

    def progress(frac, msg):
        seen.append(msg)
        if sum("+1x" in m for m in seen) == 2:  # two augmented cells done, in the middle of the study
            stop.set()

    with pytest.raises(Cancelled):
        run_study(breast, cache_dir=tmp_path / "c", progress=progress, cancel=stop, **SMALL)
    again = run_study(breast, cache_dir=tmp_path / "c", **SMALL)
    strip = [{k: v for k, v in c.items() if k != "generator"} for c in again.cells]
    assert strip == [{k: v for k, v in c.items() if k != "generator"} for c in small_study.cells]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"per_class_levels": [200], "budget_steps": 5}, "more than class"),
        ({"ratios": [0, -1]}, "ratio must be in"),
        ({"seeds": 0}, "number of seeds"),
        ({"budget_steps": 0}, "must be positive"),
        ({"budget_steps": None}, "training budget"),
        ({"models": ["vae", "distilled"]}, "made from a trained checkpoint"),
    ],
)
def test_study_bad_input_is_one_line_and_writes_nothing(breast, tmp_path, change, message):
    with pytest.raises(ConfigError, match=message) as exc:
        run_study(breast, cache_dir=tmp_path / "c", **{**SMALL, **change})
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "c").exists()


def test_study_refuses_a_class_too_small_to_split(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path, train_images=rng.integers(0, 255, (21, 16, 16), dtype=np.uint8), train_labels=np.array([0] * 20 + [1])[:, None],
             test_images=rng.integers(0, 255, (4, 16, 16), dtype=np.uint8), test_labels=np.array([[0], [1], [0], [1]]))  # fmt: skip
    ds = load_dataset(str(path))
    with pytest.raises(ConfigError, match="class '1' has 1 training image"):
        run_study(ds, cache_dir=tmp_path / "c", **{**SMALL, "per_class_levels": ["all"], "budget_steps": 5})
    assert not (tmp_path / "c").exists()


# -- sampler settings, quality against cost, training seeds, the CLI ---------------------------------


def _tiny_run(tmp: Path, family: str, ds, **config) -> Path:
    from gda_core.training import train

    return train(family, ds, out=tmp / f"{family}-tiny", steps=6, seed=0, device="cpu", model_config=config or None)


DDPM = {"base_channels": 8, "channel_mults": [1, 2], "attention": False, "num_timesteps": 50}


@pytest.mark.slow
def test_quality_against_cost_curve_has_one_point_per_step_count(small_digits, tmp_path):
    from gda_core.metrics.curve import curve_figure, quality_cost_curve, write_curve

    run = _tiny_run(tmp_path, "ddpm", small_digits, **DDPM)
    curve = quality_cost_curve(run, small_digits, steps=[4, 2], n_samples=60, speed_batch=8, device="cpu", cache_dir=tmp_path / "c",
                               extractor_options=EXT)  # fmt: skip
    pts = curve["points"]
    assert [p["steps"] for p in pts] == [2, 4] and [p["nfe_per_image"] for p in pts] == sorted(p["nfe_per_image"] for p in pts)
    for p in pts:
        assert p["fid_ci95"][0] <= p["fid"] <= p["fid_ci95"][1] and p["images_per_s"] > 0 and 0 <= p["precision"] <= 1
    # No wall-time ordering here (2 steps faster than 4): on a shared 2-core machine it failed 2 runs in 6 while
    # a training ran beside; the cost axis is checked through nfe_per_image, timings belong to bench/.
    assert len(curve_figure(curve).data) == 3
    write_curve(curve, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ConfigError, match="one network pass"):
        quality_cost_curve(_tiny_run(tmp_path, "vae", small_digits, **VAE), small_digits, steps=[2], device="cpu", cache_dir=tmp_path / "c")


@pytest.mark.slow
def test_evaluate_at_chosen_sampler_settings_changes_the_images_and_the_key(small_digits, tmp_path):
    run = _tiny_run(tmp_path, "ddpm", small_digits, **DDPM)
    kw = dict(budget=TINY, augment=(), cache_dir=tmp_path / "c", device="cpu", deepfool_steps=5, kid_subsets=2, extractor_options=EXT,
              n_samples=60, speed_batch=8)  # fmt: skip
    a = evaluate(run, small_digits, steps=2, **kw)
    b = evaluate(run, small_digits, steps=3, sampler="ddim", **kw)
    assert a.provenance["sampling"]["steps"] == 2 and b.provenance["sampling"] == {**b.provenance["sampling"], "steps": 3, "sampler": "ddim"}
    assert a.provenance["settings_sha256"] != b.provenance["settings_sha256"] and a.raw["nfe_per_image"] < b.raw["nfe_per_image"]


@pytest.mark.slow
def test_training_seeds_give_intervals_over_independent_training_runs(small_digits, tmp_path, monkeypatch):
    from gda_core.metrics.replicates import evaluate_training_seeds

    monkeypatch.setenv("GDA_CACHE_DIR", str(tmp_path / "cache"))
    run = _tiny_run(tmp_path, "vae", small_digits, **VAE)
    rep = evaluate_training_seeds(run, small_digits, train_seeds=3, seeds=1, budget=TINY, augment=(), device="cpu", deepfool_steps=5,
                                  kid_subsets=2, extractor_options=EXT, n_samples=60, speed_batch=8)  # fmt: skip
    assert len(rep.provenance["replicas"]) == 3 and rep.provenance["train_seeds"] == [0, 1, 2]
    assert rep.estimate("fidelity").method.startswith("t-interval over 3 training runs")
    from gda_core.checkpoints import load_run

    weights = [load_run(p, device="cpu").weights_hash for p in rep.provenance["replicas"]]
    assert len(set(weights)) == 3  # three independent trainings, not one run evaluated three times


def test_cli_evaluate_with_seeds_and_study_write_what_the_checks_read(small_digits, tmp_path, monkeypatch, capsys):
    from gda_core.cli import main

    monkeypatch.setenv("GDA_CACHE_DIR", str(tmp_path / "cache"))
    run = _tiny_run(tmp_path, "vae", small_digits, **VAE)
    out = tmp_path / "r.json"
    assert main(["evaluate", "--checkpoint", str(run), "--seeds", "2", "--preset", "quick", "--n", "60", "--device", "cpu", "--quiet",
                 "--out", str(out)]) == 0  # fmt: skip
    d = json.loads(out.read_text())
    assert set(d["scores"]) == set(d["intervals"]) == set(AXES) and d["per_class"] and d["provenance"]["seeds"] == [0, 1]
    assert "t-interval over 2 sampling seeds" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:  # argparse's usage errors: the same one-line contract, exit 2
        main(["evaluate", "--checkpoint", str(run), "--seeds", "0", "--out", str(out)])
    assert exc.value.code == 2 and "--seeds must be between 1 and 100" in capsys.readouterr().err
    npz = tmp_path / "bars.npz"
    _leaky_npz(npz)
    study = tmp_path / "study.json"
    args = ["study", "--dataset", str(npz), "--models", "vae", "--per-class", "10", "--ratios", "0,1", "--seeds", "1", "--budget-steps", "5",
            "--set", "vae.latent_dim=8", "--set", "vae.base_channels=8", "--classifier-budget", "quick", "--device", "cpu", "--quiet",
            "--cache", str(tmp_path / "sc"), "--out", str(study)]  # fmt: skip
    assert main(args) == 0
    d = json.loads(study.read_text())
    assert d["cells"] and d["summary"] and d["claims"] and study.with_suffix(".html").is_file()
    assert main([*args[:-2], "--set", "vae.no_such_field=1", "--out", str(tmp_path / "bad.json")]) == 2
    assert "unknown config keys" in capsys.readouterr().err and not (tmp_path / "bad.json").exists()


def test_evaluating_a_shipped_checkpoint_at_other_settings_never_writes_into_it(tmp_path):
    """`compare`/`evaluate` of a shipped checkpoint without a report of these settings caches the new
    report in the user cache: checkpoints/ (and docs/benchmarks.md made from it) stays as shipped."""
    from gda_core.checkpoints import SHIPPED_DIR

    ship = SHIPPED_DIR / "vae-digits"
    if not (ship / "model.safetensors").exists():
        pytest.skip("checkpoints/vae-digits is not shipped")
    before = sorted(p.name for p in (ship / "eval").glob("*")) if (ship / "eval").is_dir() else []
    rep = evaluate(ship, budget=TINY, augment=(1,), cache_dir=tmp_path / "cache", device="cpu", deepfool_steps=5, kid_subsets=3,
                   extractor_options=EXT, n_samples=60, seeds=1)  # fmt: skip
    after = sorted(p.name for p in (ship / "eval").glob("*")) if (ship / "eval").is_dir() else []
    assert after == before
    cached = list((tmp_path / "cache" / "reports").glob("vae-digits-*/*.json"))
    assert [p.stem for p in cached] == [rep.provenance["settings_sha256"]]
    again = evaluate(ship, budget=TINY, augment=(1,), cache_dir=tmp_path / "cache", device="cpu", deepfool_steps=5, kid_subsets=3,
                     extractor_options=EXT, n_samples=60, seeds=1)  # fmt: skip
    assert again.scores == rep.scores  # served from the user cache
