"""Every output file says what made it: provenance written into sample grids, .npz and .zip exports,
augmented sets, latent views and the comparison CSV, and read back by gda_core.provenance."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gda_core.checkpoints import load_run
from gda_core.errors import DataError
from gda_core.provenance import make, read_provenance
from gda_core.sampling import generate

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"


@pytest.fixture(scope="module")
def vae():
    return load_run(SHIPPED / "vae-digits", device="cpu")


def _common(prov: dict, run) -> None:
    assert prov["checkpoint"] == "vae-digits" and prov["family"] == "vae" and prov["dataset"] == "digits"
    assert prov["weights_sha256"] == run.weights_hash and len(run.weights_hash) == 64
    import gda_core

    assert prov["gda_core_version"] == gda_core.__version__


@pytest.mark.parametrize("suffix", [".png", ".npz", ".zip"])
def test_samples_round_trip(tmp_path, vae, suffix):
    res = generate(vae, 6, 3, seed=11, temperature=0.8)
    out = res.save(tmp_path / f"s{suffix}")
    prov = read_provenance(out)
    _common(prov, vae)
    assert prov["kind"] == "samples" and prov["n"] == 6
    assert prov["seeds"]["first"] == 11 and prov["seeds"]["last"] == 16
    assert prov["settings"]["temperature"] == 0.8 and prov["settings"]["seed"] == 11
    if suffix == ".png":  # the pixels are the grid's, the record rides in a chunk beside them
        assert np.array_equal(np.asarray(Image.open(out))[..., None], res.grid())
    if suffix == ".npz":
        with np.load(out, allow_pickle=False) as z:
            assert z["images"].shape == (6, 16, 16, 1) and z["provenance"].dtype.kind == "U"


def test_augmented_exports_round_trip(tmp_path, vae, small_digits):
    from gda_core.augment import export, generate_synthetic

    s = generate_synthetic(vae, 0.05, real_labels=small_digits.train_labels, seed=4)
    for name in ("a.npz", "a.zip"):
        prov = read_provenance(export(s, tmp_path / name))
        assert prov["kind"] == "augment" and prov["family"] == "vae" and prov["weights_sha256"] == vae.weights_hash
        assert prov["seeds"][0][0] == 4 and prov["total"] == len(s)
    # The exported .npz still loads as a dataset with the record inside it.
    from gda_core.data import load_dataset

    assert len(load_dataset(str(tmp_path / "a.npz")).train_labels) == len(s)


def test_comparison_csv_has_provenance_rows(tmp_path):
    from gda_core.jobs import cached_reports
    from gda_core.metrics import write_comparison
    from gda_core.metrics.evaluation import METRICS_VERSION

    reps = [cached_reports(SHIPPED / n)[0][1] for n in ("vae-digits", "gan-digits")]
    out = write_comparison(reps, ["vae", "=gan"], tmp_path / "c.csv")
    prov = read_provenance(out)["models"]
    assert set(prov) == {"vae", "=gan"}
    for name, rep in zip(("vae", "=gan"), reps, strict=True):
        assert prov[name]["weights_sha256"] == rep.provenance["checkpoint_sha256"]
        assert prov[name]["family"] == rep.provenance["family"] and prov[name]["metrics_version"] == str(METRICS_VERSION)
        assert prov[name]["seeds"] == rep.provenance["seeds"]
    with open(out, newline="") as fh:
        rows = {r[0]: r for r in csv.reader(fh)}
    assert rows["provenance.checkpoint"][3:5] == ["vae-digits", "gan-digits"]


def test_latent_outputs_and_a_hand_made_record(tmp_path, vae):
    from gda_core.latent import gif_bytes, interpolate_seeds
    from gda_core.provenance import gif_with, png_with
    from gda_core.sampling import png_bytes

    frames = interpolate_seeds(vae.model, 0, 1, 2, frames=4)
    prov = make("latent.interpolate", run=vae, settings={"seeds": [0, 1], "label": 2})
    (tmp_path / "f.gif").write_bytes(gif_with(gif_bytes(frames), prov))
    (tmp_path / "f.png").write_bytes(png_with(png_bytes(frames[0]), prov))
    for f in ("f.gif", "f.png"):
        got = read_provenance(tmp_path / f)
        _common(got, vae)
        assert got["seeds"] == [0, 1] and got["settings"]["label"] == 2
    assert Image.open(tmp_path / "f.gif").n_frames == 4 + 2


def test_bad_files_are_one_line_errors(tmp_path):
    np.savez(tmp_path / "obj.npz", provenance=np.array([{"a": 1}], dtype=object))
    Image.new("L", (3, 3)).save(tmp_path / "plain.png")
    with zipfile.ZipFile(tmp_path / "plain.zip", "w") as zf:
        zf.writestr("x.txt", "x")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    (tmp_path / "x.txt").write_text("x")
    cases = {"obj.npz": "no pickle", "plain.png": "carries no", "plain.zip": "carries no", "bad.png": "not a readable image",
             "x.txt": "cannot read provenance", "missing.png": "is not a file"}  # fmt: skip
    for name, fragment in cases.items():
        with pytest.raises(DataError, match=fragment) as exc:
            read_provenance(tmp_path / name)
        assert "\n" not in str(exc.value)


def test_comparison_radar_png_round_trip(tmp_path):
    from gda_core.jobs import cached_reports
    from gda_core.metrics import write_comparison

    rep = cached_reports(SHIPPED / "ddpm-digits")[0][1]
    prov = read_provenance(write_comparison([rep], ["ddpm"], tmp_path / "r.png"))
    assert prov["kind"] == "comparison" and prov["models"]["ddpm"]["weights_sha256"] == rep.provenance["checkpoint_sha256"]
