"""The shared server's hardening (issue 27): each test reproduces one finding of the security review.

No path leaks a workspace's token; a named dataset cannot point its folder anywhere; every job kind
is budgeted before it is queued and in its worker; one workspace cannot crowd out the others; a
locked queue loses no job; imports, exports and the text the pages render from files are checked.
Runs are real (a shipped checkpoint copied into a workspace); jobs run in the real queue.
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import zipfile
from pathlib import Path

import pytest

from gda_core.checkpoints import SHIPPED_DIR, list_runs
from gda_core.errors import CheckpointError, ConfigError, DataError
from gda_core.server import workspaces as wsp
from gda_core.server.config import load_config


def _cfg(tmp_path, **kw):
    return type(load_config(tmp_path / "app"))(app_data=tmp_path / "app", **kw)


def _one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and "Traceback" not in msg, msg
    return msg


def _shipped():
    return next(r for r in list_runs(SHIPPED_DIR, include_shipped=False))


def _run_on_upload(ws, name: str = "mine") -> Path:
    """A run in ``ws`` whose config records an uploaded dataset, as a training on an upload writes it."""
    run = ws.runs / name
    shutil.copytree(_shipped().path, run)
    upload = ws.save_upload(load_config(ws.root.parents[1]), "my-scans.zip", b"PK\x05\x06" + b"\x00" * 18)
    cfg = json.loads((run / "config.json").read_text())
    cfg["data"] = {**cfg.get("data", {}), "source": str(upload), "data_dir": str(ws.root / "datasets")}
    (run / "config.json").write_text(json.dumps(cfg))
    (run / "DATA_CARD.md").write_text(f"# Data\nTrained on {upload}\n")
    return run


# -- 1. a published run leaks its owner's token -------------------------------------------------------


def test_workspace_folder_is_not_named_by_its_token(tmp_path):
    cfg = _cfg(tmp_path)
    ws = wsp.create_workspace(cfg)
    assert ws.id not in str(ws.root) and ws.root.parent == cfg.workspaces_dir
    assert wsp.open_workspace(cfg, ws.id) == ws
    # The folder's name opens nothing: only the token does.
    assert wsp.open_workspace(cfg, ws.root.name) is None


def test_a_folder_named_by_its_token_is_migrated_on_open(tmp_path):
    cfg = _cfg(tmp_path)
    token = "legacyTOKEN_abcdefghijklmnop"
    old = cfg.workspaces_dir / token
    (old / "runs").mkdir(parents=True)
    (old / "workspace.json").write_text(json.dumps({"name": "old"}))
    (old / "state.json").write_text(json.dumps({"data_options": {"source": str(old / "datasets" / "x.npz")}}))
    ws = wsp.open_workspace(cfg, token)
    assert ws is not None and ws.name == "old" and not old.exists() and token not in str(ws.root)
    state = (ws.root / "state.json").read_text()
    assert token not in state and str(ws.root) in state


def test_publishing_a_run_trained_on_an_upload_leaks_no_path(tmp_path):
    cfg = _cfg(tmp_path)
    owner, other = wsp.create_workspace(cfg), wsp.create_workspace(cfg)
    pub = wsp.publish_run(cfg, owner, _run_on_upload(owner), set())
    for f in pub.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".md"):
            text = f.read_text()
            assert owner.id not in text and owner.root.name not in text and str(cfg.app_data) not in text, f
    data = json.loads((pub / "config.json").read_text())["data"]
    assert data["source"] == "private:my-scans.zip" and data["data_dir"] is None
    # What other users see in their pickers: no path, no token.
    info = next(r for r in list_runs(cfg.published_dir, include_shipped=False))
    assert owner.id not in info.label and "/" not in info.dataset
    # And the published run's data is refused to the other user in one line (not read from anywhere).
    with pytest.raises(DataError) as exc:
        wsp.check_data_source(cfg, other, data["source"])
    assert "belongs to the workspace that trained it" in _one_line(exc)


def test_importing_a_run_zip_scrubs_foreign_paths_and_keeps_own_ones(tmp_path):
    cfg = _cfg(tmp_path)
    owner, other = wsp.create_workspace(cfg), wsp.create_workspace(cfg)
    run = _run_on_upload(owner)
    zipped = wsp.run_zip_bytes(run)
    back = wsp.import_run_zip(cfg, other, zipped, "theirs.zip")
    assert owner.id not in (back / "config.json").read_text() + (back / "DATA_CARD.md").read_text()
    assert json.loads((back / "config.json").read_text())["data"]["source"].startswith("private:")
    again = wsp.import_run_zip(cfg, owner, zipped, "mine-again.zip")
    assert json.loads((again / "config.json").read_text())["data"]["source"].startswith(str(owner.root))


def test_run_labels_hold_no_absolute_path(tmp_path):
    cfg = _cfg(tmp_path)
    ws = wsp.create_workspace(cfg)
    _run_on_upload(ws)
    (info,) = list_runs(ws.runs, include_shipped=False)
    assert info.dataset == "my-scans.zip" and str(ws.root) not in info.label


# -- 9. a named dataset's folder --------------------------------------------------------------------


def test_a_named_dataset_cannot_point_its_folder_outside_the_workspace(tmp_path):
    cfg = _cfg(tmp_path)
    ws = wsp.create_workspace(cfg)
    wsp.check_data_source(cfg, ws, "digits")
    wsp.check_data_source(cfg, ws, "digits", str(ws.datasets))
    for where in ("/tmp", str(tmp_path), str(wsp.create_workspace(cfg).root)):
        with pytest.raises(DataError) as exc:
            wsp.check_data_source(cfg, ws, "pathmnist", where)
        assert "data_dir" in _one_line(exc)
