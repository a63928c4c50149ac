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
