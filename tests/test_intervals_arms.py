"""Issue 25: arms compared at equal optimisation budget, TRTR retrained per seed, per-class and study
intervals that are hierarchical (seeds outside, a paired bootstrap over the test images inside)."""

from types import SimpleNamespace

import numpy as np
import torch

import gda_core.metrics as metrics
from gda_core.augment import study
from gda_core.augment.study_report import _gain, pack_correct, unpack_correct
from gda_core.metrics import evaluation
from gda_core.metrics.classifier import ClassifierBudget
from gda_core.metrics.summaries import classifier_hierarchical, per_class_summary, wilson
from gda_core.stages import StageCache

BUDGET = ClassifierBudget(epochs=5, min_steps=5, max_steps=200, batch_size=8)
K_CLASSES, N_TRAIN, N_TEST = 3, 30, 12


def _spy(monkeypatch, module):
    """Record (seed, steps) of every classifier the code under test trains (the real trainer runs)."""
    calls, real = [], metrics.train_classifier

    def spy(*a, **kw):
        totals = []
        model = real(*a, **kw, progress=lambda s, t: totals.append(t))
        calls.append((kw.get("seed"), totals[-1]))
        return model

    monkeypatch.setattr(module, "train_classifier", spy)
    return calls


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (N_TRAIN, 1, 16, 16), dtype=torch.uint8, generator=g)
    y = np.arange(N_TRAIN) % K_CLASSES
    tx = torch.randint(0, 256, (N_TEST, 1, 16, 16), dtype=torch.uint8, generator=g)
    return x, y, tx, np.arange(N_TEST) % K_CLASSES


def test_evaluate_arms_train_for_the_same_steps_and_trtr_is_retrained_per_seed(monkeypatch):
    x, y, tx, ty = _data()
    calls = _spy(monkeypatch, evaluation)
    ds = SimpleNamespace(num_classes=K_CLASSES, class_names=["a", "b", "c"])
    plan = SimpleNamespace(ds=ds, labels=np.tile(y, 3), augment=(1, 3), budget=BUDGET, dev=torch.device("cpu"), cancel=None,
                           deepfool_steps=3, seeds=[0, 1])  # fmt: skip
    ref = SimpleNamespace(train_x=x, train_y=y, test_x=tx, test_y=ty, trtr={"must": "not be used for seed 1"})
    raw, items, per_class = {}, {}, {n: {} for n in ds.class_names}
    evaluation._utility(plan, ref, torch.cat([x, x, x]), 1, raw, items, per_class, lambda f: None)
    assert len({steps for _, steps in calls}) == 1, calls  # tstr, real + 1x, real + 3x and TRTR: one step count
    assert len(calls) == 4 and all(seed == 1 for seed, _ in calls)
    assert len(items["trtr_correct"]) == N_TEST and "trtr_acc" in raw and per_class["a"]["trtr_acc"] is not None


def test_study_cells_of_one_level_train_for_the_same_steps(monkeypatch, tmp_path):
    x, y, tx, ty = _data()
    calls = _spy(monkeypatch, metrics)
    ds = SimpleNamespace(num_classes=K_CLASSES, split=lambda name: (tx, ty))
    plan = SimpleNamespace(ds=ds, budget=BUDGET, device=torch.device("cpu"), cancel=None, cache=StageCache(tmp_path))
    real = study.classifier_cell(plan, x, y, 0, False, {"arm": "real"}, n_budget=len(y))
    both = study.classifier_cell(plan, torch.cat([x, x, x, x]), np.tile(y, 4), 0, False, {"arm": "real+3x"}, n_budget=len(y))
    assert calls[0][1] == calls[1][1] == real["classifier_steps"] == both["classifier_steps"]
    assert len(unpack_correct(both["correct"])) == N_TEST


def _items(rng, k, n, p_tstr, p_trtr):
    return [{"tstr_correct": (rng.random(n) < p_tstr).astype(float), "trtr_correct": (rng.random(n) < p_trtr).astype(float)}
            for _ in range(k)]  # fmt: skip


def test_per_class_intervals_do_not_pool_the_shared_test_images():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    same = (rng.random(40) < 0.7).astype(float)
    items = [{"tstr_correct": same, "trtr_correct": np.ones(40)} for _ in range(3)]  # three seeds, identical results
    per_seed = [{"a": {"n_test": 20, "tstr_acc": same[:20].mean(), "trtr_acc": 1.0}, "b": {"n_test": 20, "tstr_acc": same[20:].mean(),
                 "trtr_acc": 1.0}} for _ in range(3)]  # fmt: skip
    row = per_class_summary(per_seed, items, y)["a"]
    lo, hi = row["intervals"]["tstr_acc"]
    pooled = wilson(row["tstr_acc"], 20 * 3)
    assert hi - lo > 1.3 * (pooled[1] - pooled[0])  # the seeds saw the same 20 images, not 60
    assert "paired bootstrap" in row["method"]


def test_per_class_utility_interval_includes_the_real_classifiers_noise():
    rng = np.random.default_rng(1)
    y = np.zeros(60, dtype=int)
    items = _items(rng, 3, 60, 0.6, 0.8)
    est = classifier_hierarchical(items, mask=y == 0)
    t = est["tstr_acc"]
    by_point = (t.lo / est["trtr_acc"].mean, t.hi / est["trtr_acc"].mean)
    u = est["score:utility"]
    assert u.hi - u.lo > by_point[1] - by_point[0]


def test_study_gain_is_hierarchical_and_recomputable_from_the_cells():
    rng = np.random.default_rng(2)
    base = [{"seed": s, "accuracy": 0.0, "correct": pack_correct(rng.random(200) < 0.6)} for s in range(3)]
    aug = [{"seed": s, "accuracy": 0.0, "correct": pack_correct(rng.random(200) < 0.75)} for s in range(3)]
    for c in base + aug:
        c["accuracy"] = float(unpack_correct(c["correct"]).mean())
    g = _gain(aug, base)
    assert g["gain_df"] is not None and g["gain_se"] > 0 and "paired bootstrap" in g["gain_method"]
    assert g["gain_ci95"][0] < g["gain"] < g["gain_ci95"][1]
    assert abs(g["gain"] - np.mean([a["accuracy"] - b["accuracy"] for a, b in zip(aug, base, strict=True)])) < 1e-12
