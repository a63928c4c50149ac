"""gda_core.augment: synthetic-set sizes, selection filters, export round trips, utility study, CLI."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gda_core.augment import (
    ClusterFilter,
    ConfidenceFilter,
    PrivacyFilter,
    RealismFilter,
    SelectionContext,
    SyntheticSet,
    cluster_quotas,
    export_npz,
    export_zip,
    generate_synthetic,
    parse_filters,
    provenance_path,
    run_study,
    select,
    target_counts,
)
from gda_core.checkpoints import Run
from gda_core.data import load_dataset
from gda_core.errors import GDAError
from gda_core.metrics import ClassifierBudget, predict, train_classifier
from gda_core.models import build_model

ROOT = Path(__file__).resolve().parents[1]
VAE_DIGITS = ROOT / "checkpoints" / "vae-digits"
BREAST = Path(__file__).resolve().parents[2] / "shared" / "data" / "breastmnist" / "breastmnist.npz"
TINY = ClassifierBudget(epochs=2, min_steps=20, max_steps=30, batch_size=64)


def _tiny_run(tmp_path: Path, *, image_size=16, channels=1, num_classes=3) -> Run:
    """An untrained VAE wrapped as a Run (sizes and provenance only; the images are noise)."""
    model = build_model("vae", image_size=image_size, channels=channels, num_classes=num_classes, latent_dim=4, base_channels=8).eval()
    cfg = {"class_names": [f"c{i}" for i in range(num_classes)], "data": {"source": "toy", "per_class": None}, "step": 0}
    return Run(model=model, run_dir=tmp_path / "toy-run", config=cfg, weights_hash="0" * 64)


def _synth(images, labels, names) -> SyntheticSet:
    return SyntheticSet(np.asarray(images, dtype=np.uint8), np.asarray(labels), np.arange(len(labels)), list(names))


# -- sizes ------------------------------------------------------------------------------------------


def test_target_counts_balanced_and_rebalance():
    real = np.array([0] * 10 + [1] * 30)
    assert target_counts(real, 2, 1, "balanced") == [10, 30]
    assert target_counts(real, 2, 2, "balanced") == [20, 60]
    assert sum(target_counts(real, 2, 2.5, "balanced")) == 100
    assert target_counts(real, 2, 0, "balanced") == [0, 0]
    # rebalance: the same 40-image budget fills class 0 up to 30, then splits the rest equally.
    assert target_counts(real, 2, 1, "rebalance") == [30, 10]
    assert target_counts(real, 2, 0.25, "rebalance") == [10, 0]  # budget runs out before the majority count
    three = np.array([0] * 5 + [1] * 20 + [2] * 10)
    c = target_counts(three, 3, 2, "rebalance")
    assert sum(c) == 70 and (np.bincount(three) + c).max() - (np.bincount(three) + c).min() <= 1
    with pytest.raises(GDAError):
        target_counts(real, 2, -1)
    with pytest.raises(GDAError):
        target_counts(real, 2, 1, "nonsense")


def test_generate_synthetic_counts_seeds_and_provenance(tmp_path):
    run = _tiny_run(tmp_path)
    real = np.array([0] * 4 + [1] * 8 + [2] * 2)
    s = generate_synthetic(run, 1.5, real_labels=real, mode="balanced", seed=7)
    assert s.class_counts() == [6, 12, 3] and s.images.shape == (21, 16, 16, 1) and s.images.dtype == np.uint8
    assert s.seeds.tolist() == list(range(7, 28))
    r = generate_synthetic(run, 1.5, real_labels=real, mode="rebalance", seed=7)
    assert sum(r.class_counts()) == 21 and (np.bincount(real) + r.class_counts()).tolist() == [12, 12, 11]
    again = generate_synthetic(run, 1.5, real_labels=real, mode="balanced", seed=7)
    assert np.array_equal(again.images, s.images)
    prov = s.provenance()
    assert prov["checkpoint"]["weights_sha256"] == "0" * 64 and prov["sampling"]["ratio"] == 1.5 and prov["seeds"] == [[7, 27]]


def test_shipped_vae_labels_agree_with_real_classifier():
    if not (VAE_DIGITS / "model.safetensors").is_file():
        pytest.skip("checkpoints/vae-digits not present: label agreement needs a trained checkpoint")
    from gda_core.checkpoints import load_run

    run = load_run(VAE_DIGITS, device="cpu")
    ds = load_dataset("digits")
    s = generate_synthetic(run, 0.16, real_labels=ds.train_labels, seed=0)
    assert s.class_counts() == [round(0.16 * c) for c in ds.class_counts()] or sum(s.class_counts()) == round(0.16 * len(ds.train_labels))
    clf = train_classifier(ds.train_images, ds.train_labels, 10, seed=0, budget=ClassifierBudget(epochs=5, min_steps=60, max_steps=80))
    agree = float((predict(clf, s.images).numpy() == s.labels).mean())
    assert agree > 0.5, f"only {agree:.2f} of synthetic images classified as their intended label (chance 0.10)"


# -- filters ----------------------------------------------------------------------------------------


def test_parse_filters_and_errors():
    fs = parse_filters("confidence:0.5, privacy:0.9,realism:0.4:k=5,cluster:0.5:k=4", seed=3)
    assert [type(f) for f in fs] == [ConfidenceFilter, PrivacyFilter, RealismFilter, ClusterFilter]
    assert fs[0].params() == {"keep": 0.5} and fs[1].params() == {"max_ssim": 0.9}
    assert fs[2].k == 5 and fs[3].k == 4 and fs[3].seed == 3
    assert parse_filters(",".join(f.spec() for f in fs))[2].params() == fs[2].params()
    assert parse_filters("") == [] and parse_filters(None) == []
    for bad in ("confidance:0.5", "confidence", "confidence:abc", "confidence:1.5", "privacy:0", "confidence:0.5,,privacy:0.9",
                "privacy:0.9:k=3", "cluster:0.5:k=x", "realism:0.5:n=3"):  # fmt: skip
        with pytest.raises(GDAError):
            parse_filters(bad)


def test_privacy_filter_removes_planted_near_copy():
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (12, 16, 16, 1), dtype=np.uint8)
    fake = rng.integers(0, 256, (6, 16, 16, 1), dtype=np.uint8)
    near = real[4].astype(np.int16)
    near[0, 0, 0] = 255 - near[0, 0, 0]  # a near-copy, not an exact one
    fake[2] = near.astype(np.uint8)
    s = _synth(fake, [0, 0, 1, 1, 0, 1], ["a", "b"])
    ctx = SelectionContext(real, np.arange(12) % 2, 2)
    kept, rep = select(s, [PrivacyFilter(0.9)], ctx)
    assert rep["dropped_index"] == [2] and len(kept) == 5
    assert rep["filters"][0]["before"] == [3, 3] and rep["filters"][0]["after"] == [3, 2]


class _BrightnessClassifier(nn.Module):
    """Two classes: logit of class 1 grows with mean brightness (a known confidence order)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(10.0))

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3)) - 0.5
        return torch.stack([-self.w * m, self.w * m], 1)


def test_confidence_filter_keeps_most_confident_per_class():
    levels = [10, 60, 120, 200, 250, 30, 90, 180, 220, 240]
    images = np.stack([np.full((16, 16, 1), v, np.uint8) for v in levels])
    labels = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    ctx = SelectionContext(images, labels, 2, classifier=_BrightnessClassifier())
    kept, rep = select(_synth(images, labels, ["dark", "bright"]), [ConfidenceFilter(0.4)], ctx)
    # class 1 (bright) keeps its two brightest, class 0 (dark) its two darkest.
    assert sorted(rep["kept_index"]) == [3, 4, 5, 6]
    assert rep["after"] == [2, 2] and kept.selection[0]["params"] == {"keep": 0.4}


def test_cluster_quotas_and_filter_keep_coverage():
    q = cluster_quotas([6, 3, 1], 5)
    assert sum(q) == 5 and all(x >= 1 for x in q) and q[0] >= q[1] >= q[2]
    assert cluster_quotas([10, 10], 0) == [0, 0] and cluster_quotas([4, 0, 2], 6) == [4, 0, 2]
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0]])
    blob = np.repeat([0, 1, 2], [20, 10, 10])
    feats = centres[blob] + rng.normal(0, 0.5, (40, 2))
    images = np.zeros((40, 16, 16, 1), np.uint8)
    ctx = SelectionContext(images, np.zeros(40, int), 1, feature_fn=lambda x: feats[: len(x)] if len(x) == 40 else feats)
    f = ClusterFilter(0.5, k=3, seed=0)
    kept, rep = select(_synth(images, np.zeros(40, int), ["only"]), [f], ctx)
    per_blob = np.bincount(blob[rep["kept_index"]], minlength=3)
    assert per_blob.tolist() == [10, 5, 5]
    # Within each blob the kept images are the ones nearest its centre.
    for b in range(3):
        members = np.flatnonzero(blob == b)
        d = np.linalg.norm(feats[members] - feats[members].mean(0), axis=1)
        kept_b = np.intersect1d(members, rep["kept_index"])
        assert d[np.isin(members, kept_b)].max() <= np.sort(d)[len(kept_b) - 1] + 1e-9


def test_realism_filter_prefers_points_inside_the_real_manifold():
    rng = np.random.default_rng(2)
    real_f = rng.normal(0, 1, (50, 4))
    fake_f = np.concatenate([rng.normal(0, 0.3, (5, 4)), rng.normal(0, 0.3, (5, 4)) + 8.0])
    lookup = {50: real_f, 10: fake_f}
    ctx = SelectionContext(np.zeros((50, 16, 16, 1), np.uint8), np.zeros(50, int), 1, feature_fn=lambda x: lookup[len(x)])
    _, rep = select(_synth(np.zeros((10, 16, 16, 1)), np.zeros(10, int), ["x"]), [RealismFilter(0.5)], ctx)
    assert sorted(rep["kept_index"]) == [0, 1, 2, 3, 4]


# -- export -----------------------------------------------------------------------------------------


def test_export_round_trips_through_load_dataset(tmp_path):
    ds = load_dataset("digits")
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 3)
    s = SyntheticSet(rng.integers(0, 256, (30, 16, 16, 1), dtype=np.uint8), labels, np.arange(100, 130), list(ds.class_names),
                     settings={"ratio": 0.02}, checkpoint={"weights_sha256": "ab" * 32}, selection=[{"name": "confidence", "params": {"keep": 0.5}}])  # fmt: skip
    for suffix, writer in ((".zip", export_zip), (".npz", export_npz)):
        p = writer(s, tmp_path / f"merged{suffix}", merge_with=ds)
        back = load_dataset(str(p))
        assert back.class_names == ds.class_names
        assert back.class_counts("train") == (np.array(ds.class_counts("train")) + 3).tolist()
        assert len(back.test_labels) == len(ds.test_labels) and len(back.val_labels) == len(ds.val_labels)
        assert sorted(x.tobytes() for x in back.test_images) == sorted(x.tobytes() for x in ds.test_images)
        alone = load_dataset(str(writer(s, tmp_path / f"alone{suffix}")))
        assert sum(len(alone.split(x)[1]) for x in ("train", "val", "test")) == 30
    with zipfile.ZipFile(tmp_path / "merged.zip") as zf:
        prov = json.loads(zf.read("provenance.json"))
    assert prov["checkpoint"]["weights_sha256"] == "ab" * 32 and prov["seeds"] == [[100, 129]]
    assert prov["selection"][0]["name"] == "confidence" and prov["counts_per_class"]["0"] == 3
    side = json.loads(provenance_path(tmp_path / "merged.npz").read_text())
    assert side["merged_with"]["real_train_counts_per_class"]["0"] == ds.class_counts("train")[0]
    with np.load(tmp_path / "merged.npz") as z:
        assert z["train_labels"].shape[1] == 1 and z["train_labels"].dtype == np.uint8 and z["train_is_synthetic"].sum() == 30


# -- study ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def breast_vae(tmp_path_factory):
    if not BREAST.is_file():
        pytest.skip(f"{BREAST} not present: the study test needs ../shared/data/breastmnist")
    from gda_core.training import train

    ds = load_dataset(str(BREAST))
    out = train("vae", ds, out=tmp_path_factory.mktemp("runs") / "vae-breast", steps=30, seed=0, device="cpu",
                model_config={"latent_dim": 8, "base_channels": 8})  # fmt: skip
    return ds, out


def test_study_with_a_checkpoint_as_is_is_labelled_and_reproducible(breast_vae, tmp_path):
    """The explicit 'checkpoint used as is' option: one checkpoint at every level, its rows labelled,
    the same numbers on a second run, the selection filter's cells beside the plain ones."""
    ds, run_dir = breast_vae
    kw = dict(checkpoints=[run_dir], per_class_levels=(10,), ratios=(0, 1), seeds=1, geometric_aug=(False,), select="confidence:0.5",
              budget=TINY, device="cpu")  # fmt: skip
    a = run_study(ds, cache_dir=tmp_path / "a", **kw)
    b = run_study(ds, cache_dir=tmp_path / "b", **kw)
    assert [(c["accuracy"], c["balanced_accuracy"]) for c in a.cells] == [(c["accuracy"], c["balanced_accuracy"]) for c in b.cells]
    assert {(c["ratio"], c["selected"], c["n_synthetic"]) for c in a.cells} == {(0.0, False, 0), (1.0, False, 20), (1.0, True, 10)}
    assert all(c["n_real"] == 20 and c["model_label"] == "vae-breast (checkpoint used as is)" for c in a.cells)
    gen = a.cells[0]["generator"]
    assert gen["scope"] == "checkpoint" and gen["n_train"] == len(ds.train_labels) and gen["train_indices_sha256"]
    assert "used at every level" in a.notes[0] and "denied" in a.notes[0]
    d = json.loads(json.dumps(a.to_dict()))
    assert not d["claims"]  # claims need generators trained per level
    table = a.table()
    assert len(table) == 3 and {"accuracy [95% CI]", "gain over real only", "synthetic"} <= set(table[0])
    assert any("10/class" in line for line in a.reading())
    assert len(a.figure().data) == 2 and a.png()[:8] == b"\x89PNG\r\n\x1a\n"
    assert type(a).from_dict(d).summary == a.summary


# -- CLI --------------------------------------------------------------------------------------------


def test_cli_augment_and_bad_spec(tmp_path, capsys):
    if not (VAE_DIGITS / "model.safetensors").is_file():
        pytest.skip("checkpoints/vae-digits not present")
    from gda_core.cli import main

    assert main(["augment", "--checkpoint", str(VAE_DIGITS), "--ratio", "0.05", "--select", "confidence:bad", "--out", str(tmp_path / "a.npz")]) == 2
    assert "not a number" in capsys.readouterr().err
    out = tmp_path / "a.npz"
    assert main(["augment", "--checkpoint", str(VAE_DIGITS), "--ratio", "0.05", "--rebalance", "--merge", "--quiet", "--out", str(out)]) == 0
    back = load_dataset(str(out))
    assert len(back.train_labels) == 1259 + round(0.05 * 1259)
    assert json.loads(provenance_path(out).read_text())["sampling"]["mode"] == "rebalance"
