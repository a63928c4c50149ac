"""Data-parallel training under torchrun (gloo on CPU) and gradient accumulation."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from gda_core import checkpoints as ck
from gda_core.models.layers import optimizer_step
from gda_core.training.distributed import SINGLE, DistContext, SyncedOptimizer, shard

from .torchrun import ROOT, report, torchrun


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "gda_core", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


TINY_DDPM = ["--model", "ddpm", "--set", "base_channels=8", "--set", "channel_mults=[1,2]", "--set", "num_timesteps=100"]


@pytest.mark.slow
def test_torchrun_gloo_trains_checkpoints_once_resumes_and_loads_in_one_process(tmp_path):
    out = tmp_path / "run"
    common = ["train", "--dataset", "digits", *TINY_DDPM, "--batch-size", "16", "--out", str(out), "--checkpoint-every", "10"]
    r = torchrun(2, *common, "--steps", "20", "--json")
    assert r.returncode == 0, report(r)
    events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    # Only process 0 reports and writes: one event per checkpoint, not one per process.
    ckpt_steps = [e["step"] for e in events if e["kind"] == "checkpoint"]
    assert ckpt_steps == [0, 10, 20, 20], ckpt_steps
    assert sum(e["kind"] == "done" for e in events) == 1
    assert "x 2 processes (gloo)" in next(e["message"] for e in events if e["kind"] == "start")
    cfg = ck.read_config(out)
    assert cfg["world_size"] == 2 and cfg["step"] == 20 and cfg["finished"]
    assert not list(out.glob(".*.tmp")), "no temp files left behind"
    hist = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in hist] == [10, 20]

    # Resume under torchrun to 30 steps: continues from 20, same folder and format.
    r = torchrun(2, *common, "--steps", "30", "--resume")
    assert r.returncode == 0, report(r)
    assert r.stdout.count("run saved to") == 1
    cfg = ck.read_config(out)
    assert cfg["step"] == 30
    assert [h["step"] for h in json.loads((out / "history.json").read_text())] == [10, 20, 30]

    # The data-parallel checkpoint is an ordinary run: a single process samples from it...
    png = tmp_path / "s.png"
    r = _cli("sample", "--checkpoint", str(out), "--n", "4", "--steps", "3", "--out", str(png))
    assert r.returncode == 0, report(r)
    assert png.stat().st_size > 100
    # ...and resumes it with a different number of processes (the data order is global).
    r = _cli("train", "--dataset", "digits", *TINY_DDPM, "--batch-size", "16", "--out", str(out), "--steps", "35", "--resume")
    assert r.returncode == 0, report(r)
    assert ck.read_config(out)["step"] == 35


@pytest.mark.slow
def test_torchrun_gan_with_accumulation_keeps_processes_in_sync(tmp_path):
    # A GAN steps two optimisers per train_step and its spectral-norm buffers change in every
    # forward: the trainer checks at the end that both processes hold identical weights.
    out = tmp_path / "gan"
    r = torchrun(
        2, "train", "--dataset", "digits", "--model", "gan", "--set", "g_channels=16", "--set", "d_channels=16",
        "--steps", "12", "--batch-size", "16", "--grad-accum", "2", "--out", str(out),
    )  # fmt: skip
    assert r.returncode == 0, report(r)
    cfg = ck.read_config(out)
    assert cfg["train_config"]["grad_accum"] == 2 and cfg["world_size"] == 2


def test_shard_covers_the_global_batch_once():
    idx = torch.arange(64)
    parts = [p for r in range(4) for p in shard(idx, DistContext(rank=r, world_size=4), 2)]
    assert len(parts) == 8 and all(len(p) == 8 for p in parts)
    assert torch.equal(torch.cat(parts), idx)
    assert [len(p) for p in shard(torch.arange(10), SINGLE, 3)] == [4, 3, 3]


def test_accumulated_step_equals_full_batch_step():
    torch.manual_seed(0)
    x, y = torch.randn(16, 5), torch.randn(16, 2)
    full = nn.Linear(5, 2)
    acc = nn.Linear(5, 2)
    acc.load_state_dict(full.state_dict())
    opt_full = torch.optim.AdamW(full.parameters(), lr=0.1)
    opt_acc = SyncedOptimizer(torch.optim.AdamW(acc.parameters(), lr=0.1), accum=4)
    for _ in range(3):
        opt_full.zero_grad()
        nn.functional.mse_loss(full(x), y).backward()
        optimizer_step(opt_full, full.parameters(), max_norm=0.5)
        for i, part in enumerate(torch.arange(16).chunk(4)):
            opt_acc.micro = i
            opt_acc.zero_grad()
            nn.functional.mse_loss(acc(x[part]), y[part]).backward()
            optimizer_step(opt_acc, acc.parameters(), max_norm=0.5)
    for a, b in zip(full.parameters(), acc.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    # A plain optimizer.step() call on the wrapper also waits for the last micro-batch.
    before = [p.detach().clone() for p in acc.parameters()]
    opt_acc.micro = 0
    opt_acc.zero_grad()
    acc(x).sum().backward()
    opt_acc.step()
    assert all(torch.equal(a, b) for a, b in zip(before, acc.parameters(), strict=True))


@pytest.mark.slow
def test_batch_smaller_than_accumulation_is_a_clear_error(tmp_path):
    r = _cli("train", "--dataset", "digits", "--model", "vae", "--steps", "2", "--batch-size", "2", "--grad-accum", "4", "--out", str(tmp_path / "r"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: batch size 2 is smaller than processes x accumulation steps")


@pytest.mark.parametrize("accum", [1, 2])
@pytest.mark.slow
def test_trainer_accumulation_runs_and_loss_falls(tmp_path, accum):
    from gda_core.data import load_dataset
    from gda_core.models import TrainConfig
    from gda_core.training import train

    ds = load_dataset("digits")
    out = train("vae", ds, out=tmp_path / f"a{accum}", steps=60, train_config=TrainConfig(batch_size=32, grad_accum=accum), log_every=10)
    hist = json.loads((out / "history.json").read_text())
    assert hist[-1]["loss"] < 0.8 * hist[0]["loss"]
