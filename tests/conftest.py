"""Shared pytest fixtures: real-data location, no network, small thread count."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)

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
