"""The command line end to end (subprocesses): list, train, sample, resume, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "GDA_ALLOW_DOWNLOAD": "0"}
    p = subprocess.run([sys.executable, "-m", "gda_core", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}: {p.stderr}")
    return p


@pytest.mark.slow
def test_lists():
    p = cli("datasets", check=True)
    assert "digits" in p.stdout and "pneumoniamnist" in p.stdout
    rows = json.loads(cli("models", "--json", check=True).stdout)
    assert {r["name"] for r in rows} >= {"vae", "gan", "ddpm"}


@pytest.mark.slow
def test_train_sample_resume(tmp_path):
    run = tmp_path / "run"
    p = cli("train", "--dataset", "digits", "--model", "vae", "--steps", "20", "--per-class", "20", "--set", "latent_dim=8",
            "--set", "base_channels=8", "--batch-size", "16", "--out", str(run), "--json", check=True)  # fmt: skip
    events = [json.loads(line) for line in p.stdout.splitlines()]
    assert events[0]["kind"] == "start" and events[-1]["kind"] == "done" and events[-1]["step"] == 20
    cli("train", "--dataset", "digits", "--model", "vae", "--steps", "30", "--per-class", "20", "--batch-size", "16", "--out", str(run), "--resume", check=True)
    assert json.loads((run / "config.json").read_text())["step"] == 30
    cli("sample", "--checkpoint", str(run), "--n", "12", "--label", "3", "--seed", "5", "--out", str(tmp_path / "s.npz"), check=True)
    with np.load(tmp_path / "s.npz", allow_pickle=False) as z:
        assert z["images"].shape == (12, 16, 16, 1) and z["images"].dtype == np.uint8
        assert (z["labels"] == 3).all()
    p = cli("sample", "--checkpoint", str(run), "--n", "10", "--guidance", "3", "--out", str(tmp_path / "g.png"), check=True)
    assert "guidance does not apply to vae" in p.stderr
    assert Image.open(tmp_path / "g.png").size[0] > 16


@pytest.mark.slow
def test_train_cpu_bf16_flag(tmp_path):
    from gda_core import fastpath

    run = tmp_path / "run"
    p = cli("train", "--dataset", "digits", "--model", "vae", "--steps", "4", "--per-class", "10", "--set", "latent_dim=8",
            "--set", "base_channels=8", "--batch-size", "16", "--device", "cpu", "--cpu-bf16", "--out", str(run), check=True)  # fmt: skip
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train_config"]["cpu_bf16"] is True
    native = fastpath.cpu_native_bf16()
    assert cfg["train_precision"] == ("bfloat16" if native else "float32")
    assert ("bfloat16 autocast" if native else "cpu_bf16 ignored") in p.stderr
    # --no-cpu-bf16 is recorded as an explicit float32 choice (a family's default would be null).
    run2 = tmp_path / "run2"
    cli("train", "--dataset", "digits", "--model", "vae", "--steps", "2", "--per-class", "10", "--set", "latent_dim=8",
        "--set", "base_channels=8", "--batch-size", "16", "--device", "cpu", "--no-cpu-bf16", "--out", str(run2), check=True)  # fmt: skip
    cfg2 = json.loads((run2 / "config.json").read_text())
    assert cfg2["train_config"]["cpu_bf16"] is False and cfg2["train_precision"] == "float32"


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["train", "--dataset", "nope", "--model", "vae", "--steps", "1", "--out", "{tmp}/x"], "no dataset named 'nope'"),
        (["train", "--dataset", "digits", "--model", "transformer", "--steps", "1", "--out", "{tmp}/x"], "unknown model 'transformer'"),
        (["train", "--dataset", "digits", "--model", "vae", "--out", "{tmp}/x"], "give a training budget"),
        (["train", "--dataset", "digits", "--model", "vae", "--steps", "0", "--out", "{tmp}/x"], "expected a positive integer"),
        (["train", "--dataset", "digits", "--model", "vae", "--steps", "1", "--image-size", "30", "--out", "{tmp}/x"], "multiple of 4"),
        (["train", "--dataset", "digits", "--model", "vae", "--steps", "1", "--resume", "--out", "{tmp}/x"], "nothing to resume"),
        (["train", "--dataset", "pneumoniamnist", "--data-dir", "{tmp}", "--model", "vae", "--steps", "1", "--out", "{tmp}/x"], "pneumoniamnist.npz not found"),
        (["train", "--dataset", "digits", "--model", "vae", "--steps", "1", "--lr", "-1", "--out", "{tmp}/x"], "learning rate must be a positive number"),
        (["train", "--dataset", "digits", "--model", "vae", "--steps", "1", "--lr", "nan", "--out", "{tmp}/x"], "learning rate must be a positive number"),
        (["sample", "--checkpoint", "{tmp}/missing", "--out", "{tmp}/a.png"], "does not exist"),
        (["sample", "--checkpoint", "{tmp}", "--out", "{tmp}/a.gif"], "must end in .png, .npz or .zip"),
        (["train", "--dataset", "{tmp}/fake.npz", "--model", "vae", "--steps", "1", "--out", "{tmp}/x"], "fake.npz"),
    ],
)
@pytest.mark.slow
def test_bad_input_is_one_line_exit_2(args, fragment, tmp_path):
    (tmp_path / "fake.npz").write_text("this is not an npz")
    p = cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert fragment in lines[0]
    assert "Traceback" not in p.stderr


# ---------------------------------------------------------------------------------------------
# latent and learn: the app's views as files (in-process: a subprocess per call would mostly time
# the torch import; the one-line error contract is checked through a subprocess below)
# ---------------------------------------------------------------------------------------------

SHIPPED = ROOT / "checkpoints"


def run_main(*args: str) -> int:
    from gda_core.cli import main

    return main([*args])


def test_latent_interpolate_png_and_gif(tmp_path, capsys):
    from gda_core.provenance import read_provenance

    png, gif = tmp_path / "i.png", tmp_path / "i.gif"
    assert run_main("latent", "interpolate", "--checkpoint", str(SHIPPED / "vae-digits"), "--frames", "5", "--seed-a", "3", "--seed-b", "9",
                    "--out", str(png)) == 0  # fmt: skip
    up = 96 // 16  # the figures are enlarged to about 96 px a tile
    assert Image.open(png).size == ((5 * (16 + 2) + 2) * up, (16 + 4) * up)
    assert run_main("latent", "interpolate", "--checkpoint", str(SHIPPED / "vae-digits"), "--frames", "5", "--out", str(gif)) == 0
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 5 + 3  # played back and forth: 5 frames, then 3 back
    assert read_provenance(png)["settings"]["seeds"] == [3, 9]
    assert read_provenance(gif)["kind"] == "latent.interpolate"


def test_latent_interpolate_real_images_diffusion(tmp_path):
    out = tmp_path / "r.png"
    assert run_main("latent", "interpolate", "--checkpoint", str(SHIPPED / "ddpm-digits"), "--real", "0", "7", "--frames", "3",
                    "--steps", "4", "--out", str(out)) == 0  # fmt: skip
    assert Image.open(out).size == ((3 * 18 + 2) * 6, 20 * 6)


def test_latent_traverse_map_neighbours_mix(tmp_path):
    from gda_core.provenance import read_provenance

    vae = str(SHIPPED / "vae-digits")
    assert run_main("latent", "traverse", "--checkpoint", vae, "--dims", "0,3", "--values", "5", "--out", str(tmp_path / "t.png")) == 0
    assert Image.open(tmp_path / "t.png").size == ((5 * 18 + 2) * 6, (2 * 18 + 2) * 6)
    assert read_provenance(tmp_path / "t.png")["settings"]["dims"] == [0, 3]

    assert run_main("latent", "map", "--checkpoint", vae, "--n-real", "60", "--per-class", "3", "--out", str(tmp_path / "m.png")) == 0
    Image.open(tmp_path / "m.png").verify()
    import csv

    with open(tmp_path / "m.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 60 + 30 and sum(r["kind"] == "synthetic" for r in rows) == 30
    assert all(np.isfinite(float(r["x"])) and np.isfinite(float(r["y"])) for r in rows)
    assert read_provenance(tmp_path / "m.csv")["checkpoint"] == "vae-digits" == read_provenance(tmp_path / "m.png")["checkpoint"]

    assert run_main("latent", "neighbours", "--checkpoint", str(SHIPPED / "gan-digits"), "--n", "4", "--out", str(tmp_path / "n.png")) == 0
    prov = read_provenance(tmp_path / "n.png")
    assert len(prov["settings"]["ssim"]) == 4 and all(0 <= s <= 1 for s in prov["settings"]["ssim"])
    Image.open(tmp_path / "n.png").verify()

    assert run_main("latent", "mix", "--checkpoint", str(SHIPPED / "stylegan2-digits"), "--count", "2", "--out", str(tmp_path / "x.png")) == 0
    assert Image.open(tmp_path / "x.png").size == ((3 * 18 + 2) * 6, (3 * 18 + 2) * 6)  # a blank corner, 2 A images, 2 B rows


@pytest.mark.parametrize("family,files", [("vae", {"reconstructions.png", "loss_terms.png"}), ("ddpm", {"forward_noising.png", "denoising.png"}),
                                          ("stylegan2", {"gan_losses.png", "gan_scores.png"})])  # fmt: skip
def test_learn_writes_the_walkthrough(tmp_path, family, files):
    from gda_core.provenance import read_provenance

    out = tmp_path / "lecture"
    assert run_main("learn", "--checkpoint", str(SHIPPED / f"{family}-digits"), "--label", "3", "--out", str(out)) == 0
    index = json.loads((out / "index.json").read_text())
    written = {e["file"] for e in index["files"] if e["file"]}
    assert files <= written and "all_curves.png" in written
    for name in written:
        with Image.open(out / name) as im:
            assert im.format == "PNG" and min(im.size) > 100
        assert read_provenance(out / name)["family"] == family
    text = (out / "index.txt").read_text()
    assert all(f"{name}: " in text for name in written)


def test_learn_distilled_beside_its_teacher(tmp_path):
    out = tmp_path / "d"
    assert run_main("learn", "--checkpoint", str(SHIPPED / "distilled-digits"), "--out", str(out)) == 0
    written = {e["file"] for e in json.loads((out / "index.json").read_text())["files"]}
    assert {"student_teacher.png", "student_steps.png"} <= written


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["latent", "interpolate", "--checkpoint", "{tmp}/missing", "--out", "{tmp}/a.png"], "does not exist"),
        (["latent", "wobble", "--checkpoint", str(SHIPPED / "vae-digits"), "--out", "{tmp}/a.png"], "invalid choice: 'wobble'"),
        (["latent", "traverse", "--checkpoint", str(SHIPPED / "vae-digits"), "--out", "{tmp}/a.gif"], "must end in .png"),
        (["latent", "mix", "--checkpoint", str(SHIPPED / "vae-digits"), "--out", "{tmp}/a.png"], "no per-layer styles"),
        (["latent", "traverse", "--checkpoint", str(SHIPPED / "vae-digits"), "--label", "eleven", "--out", "{tmp}/a.png"], "unknown class 'eleven'"),
        (["learn", "--checkpoint", "{tmp}/missing", "--out", "{tmp}/d"], "does not exist"),
        (["provenance", "{tmp}/plain.png"], "carries no GDA Studio provenance"),
    ],
)
def test_view_bad_input_is_one_line(args, fragment, tmp_path, capsys):
    Image.new("L", (4, 4)).save(tmp_path / "plain.png")
    from gda_core.cli import main

    with pytest.raises(SystemExit) if "wobble" in args else _nullcontext():
        assert main([a.replace("{tmp}", str(tmp_path)) for a in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err


def _nullcontext():
    import contextlib

    return contextlib.nullcontext()


def test_view_error_through_the_real_command_line(tmp_path):
    p = cli("latent", "neighbours", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "n.png"))
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "Traceback" not in p.stderr
