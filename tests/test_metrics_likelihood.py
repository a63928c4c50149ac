"""Bits/dim in evaluation: evaluate() measures it on the held-out split for likelihood families, the
Report carries it through JSON and the cache (older cached reports without it still load), and the
comparison outputs and the Compare page show it ("n/a" for models without a likelihood)."""

from __future__ import annotations

import csv
import functools
import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gda_core import checkpoints as ck
from gda_core.errors import ConfigError
from gda_core.jobs import cached_reports
from gda_core.metrics import AXES, ClassifierBudget, Report, compare, evaluate, held_out_bits_per_dim, reading, write_comparison
from gda_core.models import build_model

from .test_app import runs_dir  # noqa: F401 (a fixture)
from .test_metrics_fakes import NoiseModel, config_for

TINY = ClassifierBudget(epochs=1, min_steps=20, max_steps=20)
EXT = {"budget": ClassifierBudget(epochs=1, min_steps=30, max_steps=30)}
FLOW = {"levels": 2, "steps_per_level": 2, "hidden_channels": 8, "class_dim": 4}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return functools.partial(
        evaluate,
        budget=TINY,
        augment=(),
        cache_dir=tmp_path_factory.mktemp("extractors"),
        device="cpu",
        deepfool_steps=5,
        kid_subsets=2,
        n_samples=60,
        speed_batch=16,
        extractor_options=EXT,
    )


def _test_tensors(ds):
    x, y = ds.split("test")
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2), torch.as_tensor(y)


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory, small_digits):
    """A saved (untrained, perturbed so that it is not the identity) RealNVP run folder on the small digits set."""
    torch.manual_seed(0)
    model = build_model("realnvp", image_size=small_digits.image_size, channels=small_digits.channels, num_classes=small_digits.num_classes, **FLOW)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "invconv" not in name:
                p.add_(0.02 * torch.randn_like(p))
    run_dir = tmp_path_factory.mktemp("runs") / "realnvp-digits"
    ck.save_weights(run_dir, model)
    ck.write_config(run_dir, ck.base_config(model, data=small_digits.spec.to_dict(), class_names=small_digits.class_names, seed=0))
    return run_dir


@pytest.fixture(scope="module")
def flow_report(flow_run, small_digits, quick):
    return quick(flow_run, small_digits)


def test_held_out_bits_per_dim_is_batched_and_exact(small_digits, flow_run):
    model = ck.load_run(flow_run, device="cpu").model
    x, y = _test_tensors(small_digits)
    bpd = held_out_bits_per_dim(model, x, y)
    assert np.isfinite(bpd) and 2.0 < bpd < 14.0, bpd
    # Same figure on every call; and for one batch it is the mean of the model's own per-image bits/dim.
    assert held_out_bits_per_dim(model, x, y) == bpd
    few = held_out_bits_per_dim(model, x[:50], y[:50], batch_size=256)
    with torch.inference_mode():
        direct = model.bits_per_dim(x[:50].float() / 255, y[:50]).double().mean().item()
    assert abs(few - direct) < 1e-6
    with pytest.raises(ConfigError, match="no exact likelihood"):
        held_out_bits_per_dim(NoiseModel(config_for(small_digits)), x, y)


def test_evaluate_reports_bits_per_dim_for_likelihood_families(flow_report, flow_run, small_digits):
    rep = flow_report
    model = ck.load_run(flow_run, device="cpu").model
    x, y = _test_tensors(small_digits)
    assert rep.bits_per_dim == pytest.approx(held_out_bits_per_dim(model, x, y), abs=1e-9)
    assert rep.raw["bits_per_dim"] == rep.bits_per_dim
    assert rep.units["bits_per_dim"] == "bits/dim" and rep.better["bits_per_dim"] == "lower" and rep.descriptions["bits_per_dim"]
    assert list(rep.scores) == list(AXES)  # the six axes are unchanged
    data = json.loads(json.dumps(rep.to_dict()))
    assert data["raw"]["bits_per_dim"] == rep.bits_per_dim
    assert Report.from_dict(data).bits_per_dim == rep.bits_per_dim


def test_cache_keeps_bits_per_dim_and_refreshes_old_entries(flow_report, flow_run, small_digits, quick):
    files = list((flow_run / "eval").glob("*.json"))
    assert len(files) == 1
    cached = quick(flow_run, small_digits)
    assert cached.to_dict() == flow_report.to_dict()
    assert cached_reports(flow_run)[0][1].bits_per_dim == flow_report.bits_per_dim
    # An entry written before bits/dim existed: it loads (bits_per_dim None) ...
    old = json.loads(files[0].read_text())
    del old["raw"]["bits_per_dim"], old["units"]["bits_per_dim"], old["better"]["bits_per_dim"], old["descriptions"]["bits_per_dim"]
    files[0].write_text(json.dumps(old))
    assert Report.from_dict(old).bits_per_dim is None
    assert cached_reports(flow_run)[0][1].bits_per_dim is None
    # ... and evaluating the likelihood model again measures it instead of returning the stale entry.
    fresh = quick(flow_run, small_digits)
    assert fresh.bits_per_dim == pytest.approx(flow_report.bits_per_dim, abs=1e-9)
    assert json.loads(files[0].read_text())["raw"]["bits_per_dim"] == fresh.bits_per_dim


def test_models_without_likelihood_have_no_bits_per_dim(small_digits, quick, tmp_path):
    run = SimpleNamespace(model=NoiseModel(config_for(small_digits)), run_dir=tmp_path / "noise", weights_hash="a" * 64, data_spec=small_digits.spec)
    (tmp_path / "noise").mkdir()
    rep = quick(run, small_digits)
    assert "bits_per_dim" not in rep.raw and rep.bits_per_dim is None
    # The cached entry of a model without a likelihood is reused as it is.
    again = quick(run, small_digits)
    assert again.to_dict() == rep.to_dict()


def _old_style_report(name: str) -> Report:
    """A report with no bits_per_dim anywhere (a model without an exact likelihood, or one cached before bits/dim existed),
    of the current metrics version so that the pages draw it (older versions are never drawn beside current ones)."""
    from gda_core.metrics.evaluation import METRICS_VERSION

    raw = {"precision": 0.7, "recall": 0.5, "images_per_s": 900.0, "tstr_acc": 0.8, "trtr_acc": 0.9, "deepfool_rho_tstr": 0.1,
           "deepfool_rho_trtr": 0.1, "nearest_ssim_mean": 0.5}  # fmt: skip
    prov = {"name": name, "metrics_version": METRICS_VERSION}
    return Report.from_dict(json.loads(json.dumps(Report.from_raw(raw, provenance=prov).to_dict())))


def test_comparison_outputs_show_bits_per_dim_or_na(flow_report, tmp_path):
    reps, names = [flow_report, _old_style_report("gan")], ["flow", "gan"]
    bpd = flow_report.bits_per_dim
    cmp = compare(reps, names)
    assert cmp["raw"]["flow"]["bits_per_dim"] == bpd and cmp["raw"]["gan"]["bits_per_dim"] is None
    assert list(cmp["units"])[0] == "bits_per_dim"  # listed first, next to the six axes
    assert any("Bits/dim" in line and "flow" in line and "gan has no exact likelihood" in line for line in reading(reps, names))

    write_comparison(reps, names, tmp_path / "c.csv")
    rows = {r[0]: r for r in csv.reader(io.StringIO((tmp_path / "c.csv").read_text()))}
    assert rows["bits_per_dim"][1:3] == ["bits/dim", "lower"]
    assert float(rows["bits_per_dim"][3]) == pytest.approx(bpd) and rows["bits_per_dim"][4] == "n/a"

    write_comparison(reps, names, tmp_path / "c.html")
    html = (tmp_path / "c.html").read_text()
    row = html[html.index(">bits_per_dim<") :].split("</tr>")[0]
    assert f"{bpd:.3f}" in row and "n/a" in row and "&darr; lower" in row

    write_comparison(reps, names, tmp_path / "c.json")
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["raw"]["flow"]["bits_per_dim"] == bpd and data["raw"]["gan"]["bits_per_dim"] is None

    # A hand-edited value reads as n/a instead of breaking the page.
    for bad in ("abc", float("nan"), [1.0], True):
        d = flow_report.to_dict()
        d["raw"]["bits_per_dim"] = bad
        assert Report.from_dict(d).bits_per_dim is None

    # Old reports only: no bits/dim row and no sentence about it.
    old = [_old_style_report("a"), _old_style_report("b")]
    assert "bits_per_dim" not in compare(old, ["a", "b"])["units"]
    assert not any("Bits/dim" in line for line in reading(old, ["a", "b"]))


def test_compare_page_shows_bits_per_dim(flow_run, flow_report, runs_dir):  # noqa: F811 (the fixture)
    import shutil

    from .test_app import _open

    flow_dir = runs_dir / "flow-model"  # the pages list the workspace's runs
    shutil.copytree(flow_run, flow_dir)
    other = runs_dir / "old-model"
    shutil.copytree(flow_run, other, ignore=shutil.ignore_patterns("eval"))
    _old_style_report("old-model").save(other / "eval" / "old.json")
    at = _open("5_Compare.py")
    at.multiselect(key="compare_sel").set_value([str(flow_dir), str(other)]).run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m for m in at.metric}
    assert metrics["flow-model"].value == f"{flow_report.bits_per_dim:.3f}" and "old-model" not in metrics  # no "n/a" tile
    assert any("No exact likelihood" in c.value and "old" in c.value for c in at.caption)
    assert all(m.help for m in metrics.values())
    table = at.dataframe[0].value
    assert list(table["metric"])[len(AXES)] == "bits_per_dim"  # right after the six axis scores
