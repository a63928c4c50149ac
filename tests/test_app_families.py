"""Every registered family works in the app pages with no page knowing it by name.

Short real training runs (tiny configs from tests/test_models.py, digits) for the families that
have no shipped checkpoint; then the Sample page shows exactly the controls the family honours,
the Latent space and Learn pages render without an error, and the Compare page's radar takes
every family at once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gda_core.checkpoints import list_runs
from gda_core.data import load_dataset
from gda_core.distill import distill
from gda_core.models import TrainConfig, get_model_class, list_models
from gda_core.training import train

from .test_app import _image_urls, _ok, _open, _select_run, runs_dir  # noqa: F401 (runs_dir: a fixture app_runs uses)
from .test_models import TINY

pytestmark = pytest.mark.timeout(900)

NEW = [f for f in list_models() if f not in ("vae", "gan", "ddpm")]
LEARN_NEEDLE = {"ldm": "The autoencoder", "flow": "Following the flow", "realnvp": "likely", "stylegan2": "two-player game",
                "ddgan": "large denoising steps", "vaegan": "judged by the critic", "distilled": "Teacher and student"}  # fmt: skip


@pytest.fixture(scope="module")
def family_runs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("family_runs")
    ds = load_dataset("digits", per_class=20)
    for fam in NEW:
        cfg = dict(TINY.get(fam, {}))
        if fam == "ldm":
            cfg["ae_steps"] = 10  # both phases, so the Learn page has both curves
        if fam == "distilled":  # a student is distilled from a trained teacher, here a tiny DDPM
            teacher = train("ddpm", ds, out=d / "ddpm-teacher", steps=5, model_config=TINY["ddpm"], train_config=TrainConfig(batch_size=16), seed=0)
            distill(teacher, steps=2, out=d / f"{fam}-tiny", train_steps=10, batch_size=16, seed=0)
            continue
        train(fam, ds, out=d / f"{fam}-tiny", steps=20, model_config=cfg, train_config=TrainConfig(batch_size=16), log_every=5, seed=0)
    return d


@pytest.fixture
def app_runs(family_runs, monkeypatch, request) -> Path:
    """The tiny runs, copied into a fresh workspace (the pages list a workspace's runs, nothing else)."""
    monkeypatch.setenv("GDA_TEST_RUNS_DIR", str(family_runs))
    return request.getfixturevalue("runs_dir")


def _info(fam: str, root: Path):
    return next(r for r in list_runs(root, include_shipped=False) if r.family == fam and r.path.name == f"{fam}-tiny")


@pytest.mark.parametrize("fam", NEW)
def test_sample_page_shows_only_the_family_controls(app_runs, fam):
    info = _info(fam, app_runs)
    at = _open("3_Sample.py", run=info)
    _select_run(at, "sample_run", info)
    at.slider(key=f"sample_n_{fam}").set_value(4).run()
    controls = set(get_model_class(fam).controls)
    if "steps" in controls:
        at.slider(key=f"sample_steps_{fam}").set_value(3).run()
    _ok(at)
    assert _image_urls(at), "no images"
    labels = {w.label for w in [*at.slider, *at.selectbox]}
    assert ("Guidance" in labels) == ("guidance" in controls)
    assert ("Steps" in labels) == ("steps" in controls)
    assert ("Sampler" in labels) == ("sampler" in controls)
    assert ("Eta" in labels) == ("eta" in controls)
    if controls != {"temperature"}:
        return
    assert any("Not shown: guidance, steps, sampler, eta" in c.value for c in at.caption)


@pytest.mark.parametrize("fam", NEW)
def test_latent_and_learn_pages_render(app_runs, fam):
    info = _info(fam, app_runs)
    at = _open("4_Latent_space.py", run=info)
    _select_run(at, "latent_run", info)
    _ok(at)
    assert not [e.value for e in at.error]
    at = _open("6_Learn.py", run=info)
    _select_run(at, "learn_run", info)
    _ok(at)
    assert not [e.value for e in at.error]
    assert any(LEARN_NEEDLE[fam] in m.value for m in at.markdown), [m.value[:60] for m in at.markdown]
    if fam == "ldm":
        assert (info.path / "autoencoder" / "recon.json").exists()
        assert json.loads((info.path / "autoencoder" / "recon.json").read_text())["mse"] >= 0


def test_one_radar_holds_every_family():
    from gda_core.metrics import Report, radar_figure

    reports = []
    for i, _fam in enumerate(list_models()):
        raw = {"precision": 0.5 + 0.05 * i, "recall": 0.4, "images_per_s": 10.0 ** (i % 5), "tstr_acc": 0.8, "trtr_acc": 0.9}
        reports.append(Report.from_raw(raw))
    fig = radar_figure(reports, list_models())
    assert [t.name for t in fig.data] == list_models()


@pytest.mark.slow
def test_latent_and_learn_pages_go_on_without_the_real_images(family_runs, runs_dir, tmp_path):  # noqa: F811 (the fixture)
    """A checkpoint whose training images are not on this computer (a shipped MedMNIST model before
    its download): one message says so, the parts that need real images are left out, the rest works."""
    import shutil

    run = runs_dir / "vaegan-elsewhere"
    shutil.copytree(family_runs / "vaegan-tiny", run)
    cfg = json.loads((run / "config.json").read_text())
    cfg["data"] = {**cfg["data"], "source": "pneumoniamnist", "data_dir": str(tmp_path / "no-data-here")}
    (run / "config.json").write_text(json.dumps(cfg))
    info = next(r for r in list_runs(runs_dir, include_shipped=False) if r.path.name == "vaegan-elsewhere")
    for page, key in (("4_Latent_space.py", "latent_run"), ("6_Learn.py", "learn_run")):
        at = _open(page, run=info)
        _select_run(at, key, info)
        _ok(at)
        assert not [e.value for e in at.error], page
        assert any("are not on this computer" in i.value for i in at.info), page
    assert any(LEARN_NEEDLE["vaegan"] in m.value for m in at.markdown)
