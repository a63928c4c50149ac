"""Shared pytest set-up: one torch thread, no network, real-data location, the digits datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from gda_core.data import load_dataset

# One intra-op thread, here and (OMP_NUM_THREADS) in the processes the tests start, unless the
# environment asks for more: the suite runs on 2-core machines shared with other work, where a
# second thread mostly spins waiting for the first. Measured there (load average 1.4 to 3.4): 40 steps
# of a small DDPM took 8-10 s with one thread and 130-170 s with two.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
# Queue jobs at the tests' own priority (the server's default is niceness 10, below the web server): under
# `make test`'s two test processes (pytest-xdist) a niced job waited behind the other process, and a sweep test
# of 50 s took 380 s. tests/test_server.py checks the default itself.
os.environ.setdefault("GDA_JOB_NICENESS", "0")
# And with the tests' thread count: the worker gives each job cpu_count // workers threads (2 here), which
# beside the other test process spin as above (the Train page's sweep test: 52 s alone, 284 s under xdist).
os.environ.setdefault("GDA_JOB_THREADS", os.environ["OMP_NUM_THREADS"])

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch):
    """Tests never touch the network: named datasets fail fast when their file is absent."""
    monkeypatch.setenv("GDA_ALLOW_DOWNLOAD", "0")


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the checkout (real .npz datasets); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present: real-data tests need the shared datasets beside the checkout")
    return SHARED_DATA


@pytest.fixture(scope="module")
def digits():
    """The built-in digits dataset, whole (1,259 training images, 16x16 grey)."""
    return load_dataset("digits")


@pytest.fixture(scope="module")
def small_digits():
    """Digits with 20 training images per class (200), the full test split."""
    return load_dataset("digits", per_class=20, seed=0)
