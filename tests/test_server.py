"""The shared server: the job queue's worker processes, workspaces, budgets and hardening.

Jobs run in the real queue (Huey's consumer, one process per job), on the real digits data and
real tiny models. Each test has its own app data folder; its worker is stopped at the end.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from gda_core.data import load_dataset, safety
from gda_core.errors import CheckpointError, ConfigError, DataError
from gda_core.jobs import JobQueue, unique_run_dir
from gda_core.server import workspaces as wsp
from gda_core.server.budgets import apply_data_limits, check_training
from gda_core.server.config import load_config
from gda_core.server.queue import ensure_worker, stop_worker, worker_running

from .serving import streamlit_server

ROOT = Path(__file__).resolve().parents[1]
TINY_VAE = {"latent_dim": 8, "base_channels": 8}


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A fresh app data folder with two workspaces and a running worker (stopped at the end)."""
    monkeypatch.setenv("GDA_APP_DATA", str(tmp_path / "app"))
    monkeypatch.setenv("GDA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GDA_JOB_THREADS", "1")
    monkeypatch.delenv("GDA_SERVER_CONFIG", raising=False)
    cfg = load_config()
    ensure_worker(cfg)
    yield cfg, JobQueue(cfg), wsp.create_workspace(cfg), wsp.create_workspace(cfg)
    stop_worker(cfg)


def _wait(q: JobQueue, ws, job_id: str, until=lambda j: j.done, timeout: float = 300):
    end = time.time() + timeout
    while time.time() < end:
        job = q.get(ws, job_id)
        if until(job):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {q.get(ws, job_id)} after {timeout} s")


def _train(q, ws, steps: int, *, out=None, seed: int = 0, **kw):
    ds = load_dataset("digits", per_class=10)
    out = out or unique_run_dir(ws.runs, "vae", "digits")
    return q.start_training(ws, family="vae", dataset=ds, out=out, steps=steps, seed=seed, model_config=TINY_VAE,
                            train_config={"batch_size": 16}, **kw)  # fmt: skip


# -- the queue ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_reruns_in_quick_succession_start_one_worker_and_stop_finds_it(tmp_path, monkeypatch):
    """Each page rerun calls ensure_worker; a second call while the first worker is still importing
    torch must not start another (the pid file would name the second, and the first would outlive
    stop_worker: one leaked process of ~700 MB per app folder)."""
    from gda_core.server.store import pid_alive

    monkeypatch.setenv("GDA_APP_DATA", str(tmp_path / "app"))
    monkeypatch.delenv("GDA_SERVER_CONFIG", raising=False)
    cfg = load_config()
    assert ensure_worker(cfg) is True
    pid = int((cfg.app_data / "worker.pid").read_text())
    assert [ensure_worker(cfg) for _ in range(3)] == [False, False, False]
    assert int((cfg.app_data / "worker.pid").read_text()) == pid
    stop_worker(cfg)
    end = time.time() + 30
    while pid_alive(pid) and time.time() < end:
        time.sleep(0.2)
    assert not pid_alive(pid)


@pytest.mark.slow
def test_a_page_view_starts_a_worker_only_when_jobs_wait_and_a_page_submit_starts_one(tmp_path, monkeypatch):
    """A worker imports torch (seconds of CPU, ~700 MB): looking at shipped models starts none; a job
    left queued by a stopped server gets one on the next page view; the pages' queue starts one itself."""
    from streamlit.testing.v1 import AppTest

    from .test_app import APP

    monkeypatch.setenv("GDA_APP_DATA", str(tmp_path / "app"))
    monkeypatch.setenv("GDA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("GDA_SERVER_CONFIG", raising=False)
    cfg = load_config()
    ws = wsp.create_workspace(cfg)

    def view() -> None:
        at = AppTest.from_file(APP, default_timeout=120)
        at.query_params["ws"] = ws.id
        at.run()
        assert not at.exception, [e.value for e in at.exception]

    try:
        view()
        assert not (cfg.app_data / "worker.pid").exists() and not worker_running(cfg)
        # Queued past the pages (as a server that stopped leaves it): the next page view serves it.
        job = JobQueue(cfg).submit(ws, "prepare", "decode digits", {"data": {"source": "digits"}, "out": str(ws.root / "prepared.npz")})
        assert not (cfg.app_data / "worker.pid").exists()
        time.sleep(5.2)  # the pages look for waiting jobs at most once every 5 s
        view()
        assert (cfg.app_data / "worker.pid").exists()
        end = time.time() + 120
        while time.time() < end and not JobQueue(cfg).get(ws, job.id).done:
            time.sleep(0.5)
        assert JobQueue(cfg).get(ws, job.id).done
        stop_worker(cfg)
        assert not worker_running(cfg)
        # The pages' queue (serve=True) starts a worker with the job it queues.
        JobQueue(cfg, serve=True).submit(ws, "prepare", "decode digits", {"data": {"source": "digits"}, "out": str(ws.root / "again.npz")})
        assert (cfg.app_data / "worker.pid").exists()
    finally:
        stop_worker(cfg)


@pytest.mark.slow
def test_jobs_outcomes_and_workspace_isolation(server):
    cfg, q, alice, bob = server
    done = _train(q, alice, 4, preview_every=2)
    bad = q.submit(alice, "prepare", "decode notes.npz", {"data": {"source": str(alice.save_upload(cfg, "notes.npz", b"not an npz" * 9))},
                                                          "out": str(alice.datasets / "x.npz")})  # fmt: skip
    done, bad = _wait(q, alice, done.id), _wait(q, alice, bad.id)
    assert done.status == "done" and Path(done.result["run_dir"]).is_dir() and q.logs(done) and q.preview(done) is not None
    assert bad.status == "failed" and "not an .npz archive" in bad.error and "\n" not in bad.error
    # Bob sees, reads and cancels none of Alice's jobs, and cannot train into her workspace.
    assert q.list(bob) == [] and q.get(bob, done.id) is None and q.cancel(bob, done.id) is False
    with pytest.raises(ConfigError, match="not a run folder of this workspace"):
        _train(q, bob, 2, out=alice.runs / "stolen")
    # Nor read Alice's upload through a dataset path (a published run records its owner's path).
    with pytest.raises(DataError, match="belongs to another workspace"):
        wsp.check_data_source(cfg, bob, str(next(alice.uploads.rglob("notes.npz"))))


@pytest.mark.slow
def test_a_killed_job_fails_with_the_reason_and_the_run_resumes_from_its_checkpoint(server):
    cfg, q, ws, _ = server
    job = _train(q, ws, 2000, checkpoint_every=20)
    out = Path(job.meta["out"])

    def checkpointed(j) -> bool:
        import json

        try:
            return j.done or json.loads((out / "config.json").read_text())["step"] >= 20
        except (OSError, ValueError, KeyError):
            return False

    running = _wait(q, ws, job.id, checkpointed)
    assert running.status == "running" and running.pid
    os.kill(running.pid, signal.SIGKILL)  # what the kernel's out-of-memory killer does
    failed = _wait(q, ws, job.id, timeout=60)
    assert failed.status == "failed" and "SIGKILL" in failed.error and "resume" in failed.error, failed.error
    saved = load_file(str(out / "model.safetensors"))
    import json

    step = json.loads((out / "config.json").read_text())["step"]
    assert worker_running(cfg), "the queue's worker survives a job's death"
    resumed = _train(q, ws, step + 10, out=out, resume=True)
    resumed = _wait(q, ws, resumed.id)
    assert resumed.status == "done", resumed.error
    steps = [r["step"] for r in q.logs(resumed)]
    assert steps and min(steps) > step and max(steps) == step + 10, (step, steps)
    assert json.loads((out / "config.json").read_text())["step"] == step + 10
    assert any(not np.array_equal(saved[k].numpy(), v.numpy()) for k, v in load_file(str(out / "model.safetensors")).items())


@pytest.mark.slow
def test_two_trainings_with_the_same_seed_at_once_give_the_weights_of_each_alone(tmp_path, monkeypatch):
    (tmp_path / "app").mkdir()
    # Both in one workspace: let it run two at once (by default it gets half the workers).
    (tmp_path / "app" / "server.toml").write_text("workers = 2\njob_threads = 1\nmax_running_per_workspace = 2\n")
    monkeypatch.setenv("GDA_APP_DATA", str(tmp_path / "app"))
    monkeypatch.delenv("GDA_SERVER_CONFIG", raising=False)
    cfg = load_config()
    ensure_worker(cfg)
    try:
        q, ws = JobQueue(cfg), wsp.create_workspace(cfg)
        a, b = _train(q, ws, 30, seed=7), _train(q, ws, 30, seed=7)
        a = _wait(q, ws, a.id, lambda j: j.status != "queued")
        b = _wait(q, ws, b.id, lambda j: j.status != "queued")
        a, b = _wait(q, ws, a.id), _wait(q, ws, b.id)
        assert a.started < b.finished and b.started < a.finished, "the two trainings overlapped in time"
        alone = _wait(q, ws, _train(q, ws, 30, seed=7).id)
        weights = [load_file(str(Path(j.result["run_dir"]) / "model.safetensors")) for j in (a, b, alone)]
    finally:
        stop_worker(cfg)
    for other in weights[1:]:
        assert weights[0].keys() == other.keys()
        assert all(np.array_equal(weights[0][k].numpy(), other[k].numpy()) for k in weights[0])


# -- budgets ---------------------------------------------------------------------------------------


@pytest.fixture
def budgets(monkeypatch):
    """Lowered dataset budgets in this process (restored afterwards)."""
    monkeypatch.setattr(safety, "MAX_DATASET_PIXELS", safety.MAX_DATASET_PIXELS)
    monkeypatch.setattr(safety, "MAX_DATASET_BYTES", safety.MAX_DATASET_BYTES)


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_pixel_budget_refuses_a_zip_of_many_plain_images_before_decoding_them(tmp_path, budgets):
    plain = io.BytesIO()
    Image.new("L", (256, 256), 0).save(plain, format="PNG")  # a few hundred bytes, 65,536 pixels
    path = tmp_path / "plain.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for c in ("a", "b"):
            for i in range(40):
                zf.writestr(f"{c}/{i}.png", plain.getvalue())
    assert path.stat().st_size < 100_000
    cfg = load_config(tmp_path / "app")
    apply_data_limits(type(cfg)(app_data=cfg.app_data, max_dataset_pixels=1_000_000))
    with pytest.raises(DataError) as exc:
        load_dataset(path, image_size=16)
    assert "max_dataset_pixels = 1,000,000" in _one_line(exc)


def _lying_npz(path: Path, declared: int) -> None:
    """An .npz of ~1 MB whose train_images member declares ``declared`` bytes (header and zip sizes)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (declared, 1, 1)})
    body = header.getvalue() + b"\0" * (1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("train_images.npy", body)
        zf.writestr("train_labels.npy", _npy(np.zeros(1, np.int64)))
    data = bytearray(path.read_bytes())
    size = struct.pack("<I", declared + len(header.getvalue()))
    data[22:26] = size  # the local header's uncompressed size
    cd = data.index(b"PK\x01\x02")  # the first central-directory entry: train_images.npy
    data[cd + 24 : cd + 28] = size
    path.write_bytes(bytes(data))


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_byte_budget_refuses_an_npz_that_declares_2_gib_from_its_header(tmp_path, budgets):
    path = tmp_path / "bomb.npz"
    _lying_npz(path, 2 * 1024**3 - 4096)
    assert path.stat().st_size < 2_000_000
    cfg = load_config(tmp_path / "app")
    apply_data_limits(type(cfg)(app_data=cfg.app_data, max_dataset_bytes=1024**3))
    with pytest.raises(DataError) as exc:
        load_dataset(path)
    msg = _one_line(exc)
    assert "max_dataset_bytes = 1.0 GiB" in msg and "declares arrays of more than" in msg


def test_model_step_and_time_budgets(tmp_path):
    cfg = type(load_config(tmp_path / "app"))(app_data=tmp_path / "app", max_model_params=1_000_000, max_steps=1000, max_minutes=5)
    mc = {"image_size": 16, "channels": 1, "num_classes": 10}
    assert check_training(cfg, "vae", {**mc, **TINY_VAE}, steps=1000, minutes=None) < 1_000_000
    with pytest.raises(ConfigError) as exc:
        check_training(cfg, "ddpm", {**mc, "base_channels": 256}, steps=10, minutes=None)
    assert "max_model_params = 1,000,000" in _one_line(exc) and "parameters" in str(exc.value)
    with pytest.raises(ConfigError, match="max_steps = 1,000"):
        check_training(cfg, "vae", {**mc, **TINY_VAE}, steps=1001, minutes=None)
    with pytest.raises(ConfigError, match="max_minutes = 5"):
        check_training(cfg, "vae", {**mc, **TINY_VAE}, steps=None, minutes=6)


def test_workspace_quota_and_private_uploads(tmp_path):
    cfg = type(load_config(tmp_path / "app"))(app_data=tmp_path / "app", workspace_quota_bytes=10_000)
    ws = wsp.create_workspace(cfg)
    path = ws.save_upload(cfg, "../../etc/passwd", b"x" * 5000)
    assert path.parent.parent == ws.uploads and path.name == "passwd"
    for p in (ws.root, ws.uploads, path.parent):
        assert p.stat().st_mode & 0o777 == 0o700, p
    with pytest.raises(DataError) as exc:
        ws.save_upload(cfg, "more.zip", b"y" * 6000)
    assert "workspace_quota_bytes" in _one_line(exc)
    wsp.delete_workspace(cfg, ws)
    assert not ws.root.exists()


# -- workspaces and runs -----------------------------------------------------------------------------


def test_tokens_passwords_and_run_zips(tmp_path):
    import shutil

    from gda_core.checkpoints import SHIPPED_DIR, list_runs

    cfg = load_config(tmp_path / "app")
    assert wsp.open_workspace(cfg, "../../etc") is None and wsp.open_workspace(cfg, "x" * 24) is None
    ws = wsp.create_workspace(cfg, password="correct horse")
    assert wsp.open_workspace(cfg, ws.id) == ws and ws.has_password
    assert ws.check_password("correct horse") and not ws.check_password("wrong")
    shipped = next(r for r in list_runs(SHIPPED_DIR, include_shipped=False) if r.path.name == "vae-digits")  # offline: digits ship with scikit-learn
    mine = ws.runs / "mine"
    shutil.copytree(shipped.path, mine)
    data = wsp.run_zip_bytes(mine)
    other = wsp.create_workspace(cfg)
    back = wsp.import_run_zip(cfg, other, data, "mine.zip")
    assert (back / "model.safetensors").read_bytes() == (mine / "model.safetensors").read_bytes()
    # An uploaded run is an untrusted checkpoint: pickles and tampered weights are refused.
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("run/config.json", (mine / "config.json").read_text())
        zf.writestr("run/model.safetensors", b"\x00" * 64)
        zf.writestr("run/train_state.pt", b"pickle")
    with pytest.raises(CheckpointError, match="not part of a run"):
        wsp.import_run_zip(cfg, other, evil.getvalue(), "evil.zip")
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("run/config.json", (mine / "config.json").read_text())
        zf.writestr("run/model.safetensors", b"\x00" * 64)
    with pytest.raises(CheckpointError, match="unreadable safetensors"):
        wsp.import_run_zip(cfg, other, evil.getvalue(), "evil.zip")
    # Publishing: a read-only copy everyone lists; only its publisher can withdraw it.
    pub = wsp.publish_run(cfg, ws, mine, set())
    assert [r.path for r in list_runs(cfg.published_dir, include_shipped=False)] == [pub]
    assert not os.access(pub / "model.safetensors", os.W_OK) or os.geteuid() == 0
    assert (pub / "model.safetensors").stat().st_mode & 0o222 == 0
    with pytest.raises(ConfigError, match="not published from this workspace"):
        wsp.unpublish_run(cfg, other, pub)
    wsp.unpublish_run(cfg, ws, pub)
    assert not pub.exists()


# -- hardening ---------------------------------------------------------------------------------------


def _upgrade(port: int, host: str) -> str:
    """The status line the server answers a WebSocket upgrade of /_stcore/stream with this Host."""
    req = (f"GET /_stcore/stream HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://{host}\r\n\r\n")  # fmt: skip
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(req.encode())
        return s.recv(4096).decode("latin-1").split("\r\n", 1)[0]


@pytest.mark.slow
def test_websocket_upgrade_checks_the_host_header(tmp_path):
    """The repo's .streamlit/config.toml allows 127.0.0.1 and localhost only (DNS rebinding)."""
    with streamlit_server(tmp_path, tmp_path / "app") as url:
        port = int(url.rsplit(":", 1)[1])
        assert " 101 " in _upgrade(port, f"127.0.0.1:{port}") + " "
        assert " 101 " in _upgrade(port, f"localhost:{port}") + " "
        refused = _upgrade(port, f"evil.example:{port}")
        assert " 101 " not in refused + " " and refused.startswith("HTTP/1.1 4"), refused


def test_job_processes_run_below_the_web_servers_priority(tmp_path, monkeypatch):
    """Trainings yield the CPU to the web server (job_niceness, default 10): a job process that
    reaches its body runs at that niceness; an out-of-range setting is one line."""
    import subprocess
    import sys

    monkeypatch.delenv("GDA_SERVER_CONFIG", raising=False)
    monkeypatch.delenv("GDA_JOB_NICENESS", raising=False)  # tests/conftest.py sets 0 for the rest of the suite
    assert load_config(tmp_path / "app").job_niceness == 10
    monkeypatch.setenv("GDA_JOB_NICENESS", "25")
    with pytest.raises(ConfigError, match="job_niceness must be in 0..19"):
        load_config(tmp_path / "app")
    monkeypatch.delenv("GDA_JOB_NICENESS")
    # The job process's own code path on a job row of an unknown kind: it is claimed, niced, then fails at once.
    from gda_core.server.queue import store_for

    cfg = load_config(tmp_path / "app")
    ws = wsp.create_workspace(cfg)
    job_id = store_for(cfg).create(workspace=ws.id, kind="nope", title="a job of an unknown kind", params={})
    code = ("import os, sys; from gda_core.server import kinds; rc = kinds.run_job(sys.argv[1], sys.argv[2]); "
            "print('nice', os.nice(0))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code, str(cfg.app_data), job_id], capture_output=True, text=True, timeout=120)
    assert f"nice {os.nice(0) + 10}" in out.stdout or "nice 19" in out.stdout, out.stdout + out.stderr
    assert "unknown job kind 'nope'" in (store_for(cfg).get(job_id).error or "")
