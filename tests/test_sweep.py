"""The hyper-parameter sweep: a grid parsed and checked before anything trains, every (setting,
seed) trained and evaluated, the planted best setting found (and only where it is clear), a killed
sweep resumed without retraining, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gda_core.data import load_dataset
from gda_core.errors import ConfigError
from gda_core.metrics import ClassifierBudget
from gda_core.sweep import SweepResult, parse_grid, run_sweep

TINY_EVAL = {"n_samples": 120, "budget": ClassifierBudget(epochs=2, min_steps=40, max_steps=60, batch_size=64), "augment": (1,),
             "deepfool_steps": 5, "kid_subsets": 3, "extractor_options": {"budget": ClassifierBudget(epochs=2, min_steps=60, max_steps=60)}}  # fmt: skip


def test_grid_is_every_combination_and_bad_keys_are_one_line():
    g = parse_grid("lr=1e-4,3e-4; latent_dim=8,16", "vae")
    assert g == [{"lr": 1e-4, "latent_dim": 8}, {"lr": 1e-4, "latent_dim": 16}, {"lr": 3e-4, "latent_dim": 8}, {"lr": 3e-4, "latent_dim": 16}]
    for bad, msg in [("lr", "KEY=V1"), ("warp=1,2", "neither a training setting"), ("lr=", "no values"), ("latent_dim=-3", "latent_dim"),
                     ("lr=1;lr=2", "twice"), ("", "empty")]:  # fmt: skip
        with pytest.raises(ConfigError, match=msg) as exc:
            parse_grid(bad, "vae")
        assert "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match="teacher"):  # the distilled student is made from a teacher, never swept from data
        parse_grid("lr=1e-3", "distilled")


def test_best_is_named_only_when_clear_of_noise():
    def fake(vals_a, vals_b):
        runs = [{"setting": i, "seed": s, "scores": {"fidelity": v}} for i, vals in enumerate((vals_a, vals_b)) for s, v in enumerate(vals)]
        return SweepResult("vae", "digits", [{"lr": 1}, {"lr": 2}], [0, 1, 2], 10, None, "quick", runs)

    idx, sentence = fake([0.80, 0.82, 0.81], [0.40, 0.42, 0.41]).best("fidelity")
    assert idx == 0 and "clearly best" in sentence
    idx, sentence = fake([0.50, 0.70, 0.60], [0.55, 0.62, 0.58]).best("fidelity")
    assert idx is None and "within noise" in sentence


@pytest.mark.slow
def test_sweep_finds_a_planted_best_setting_and_resumes(tmp_path, capsys):
    ds = load_dataset("digits")
    # lr = 1e-6 leaves the VAE untrained after 60 steps: the planted worse setting.
    res = run_sweep(ds, "vae", "lr=1e-6,3e-3", out=tmp_path / "sw", seeds=3, steps=60, device="cpu", eval_options=TINY_EVAL)
    assert len(res.runs) == 6 and {r["seed"] for r in res.runs} == {0, 1, 2}
    # Utility (a classifier trained on its images) is the planted difference: clear at 3 seeds.
    idx, sentence = res.best("utility")
    assert idx == 1 and "lr=0.003" in sentence, sentence
    rows = res.table_rows()
    assert rows[1]["utility"].count("[") == 1 and rows[0]["seeds done"] == 3
    saved = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert saved["best"]["utility"]["setting"] == 1
    assert (tmp_path / "sw" / "sweep.csv").read_text().startswith("setting,")
    fig = res.figure()
    assert len(fig.data) == 12
    # Killed after its fifth run: the sixth is done again, the others are not retrained.
    saved["runs"] = saved["runs"][:5]
    (tmp_path / "sw" / "sweep.json").write_text(json.dumps(saved))
    weights = tmp_path / "sw" / "setting0-seed0" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    again = run_sweep(ds, "vae", "lr=1e-6,3e-3", out=tmp_path / "sw", seeds=3, steps=60, device="cpu", eval_options=TINY_EVAL)
    assert weights.stat().st_mtime_ns == before and len(again.runs) == 6
    assert np.isclose(again.estimates("utility")[1].mean, res.estimates("utility")[1].mean)


def test_cli_sweep_bad_grid_is_one_line(capsys):
    from gda_core.cli import main

    assert main(["sweep", "--dataset", "digits", "--model", "vae", "--grid", "warp=1,2", "--steps", "5", "--out", "/tmp/never"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


def _finished_sweep_file(out, classifier: str) -> None:
    """A finished one-setting, one-seed sweep's file, as run_sweep writes it (nothing left to train)."""
    res = SweepResult("vae", "digits", [{"lr": 1e-3}], [0], 5, None, "quick", [{"setting": 0, "seed": 0, "run": "setting0-seed0",
                      "scores": {"fidelity": 0.5}, "intervals": {}}], classifier=classifier)  # fmt: skip
    out.mkdir(parents=True)
    (out / "sweep.json").write_text(json.dumps(res.to_dict()))


def test_the_classifier_is_recorded_and_a_sweep_of_another_one_is_not_resumed(tmp_path, capsys):
    import threading

    from gda_core.cli import main
    from gda_core.errors import Cancelled
    from gda_core.metrics.classifier import with_classifier

    ds = load_dataset("digits", per_class=10)
    _finished_sweep_file(tmp_path / "a", "vgg11")
    stop = threading.Event()
    stop.set()  # anything left to train raises Cancelled at once
    same = run_sweep(ds, "vae", "lr=1e-3", out=tmp_path / "a", seeds=1, steps=5, device="cpu", cancel=stop,
                     eval_options={"budget": with_classifier(TINY_EVAL["budget"], "vgg11")})  # fmt: skip
    assert same.classifier == "vgg11" and len(same.runs) == 1
    with pytest.raises(Cancelled, match="after 0 of 1 runs"):  # the small CNN's sweep starts afresh
        run_sweep(ds, "vae", "lr=1e-3", out=tmp_path / "a", seeds=1, steps=5, device="cpu", cancel=stop, eval_options=TINY_EVAL)
    # The CLI's --classifier reaches the sweep: its finished file is resumed, not trained again.
    _finished_sweep_file(tmp_path / "b", "vgg11")
    assert main(["sweep", "--dataset", "digits", "--model", "vae", "--grid", "lr=1e-3", "--seeds", "1", "--steps", "5", "--classifier", "vgg11",
                 "--device", "cpu", "--out", str(tmp_path / "b")]) == 0  # fmt: skip
    assert json.loads((tmp_path / "b" / "sweep.json").read_text())["classifier"] == "vgg11"
    assert "setting0-seed0" not in {p.name for p in (tmp_path / "b").iterdir()}
