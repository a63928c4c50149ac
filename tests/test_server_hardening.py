"""The shared server's hardening (issue 27): each test reproduces one finding of the security review.

No path leaks a workspace's token; a named dataset cannot point its folder anywhere; every job kind
is budgeted before it is queued and in its worker; one workspace cannot crowd out the others; a
locked queue loses no job; imports, exports and the text the pages render from files are checked.
Runs are real (a shipped checkpoint copied into a workspace); jobs run in the real queue.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sqlite3
import time
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
    return next(r for r in list_runs(SHIPPED_DIR, include_shipped=False) if r.path.name == "vae-digits")  # offline: digits ship with scikit-learn


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


# -- 4. fairness ------------------------------------------------------------------------------------


def _queue(tmp_path, monkeypatch, **env):
    from gda_core.jobs import JobQueue

    monkeypatch.setenv("GDA_APP_DATA", str(tmp_path / "app"))
    monkeypatch.delenv("GDA_SERVER_CONFIG", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(f"GDA_{k.upper()}", str(v))
    cfg = load_config()
    return cfg, JobQueue(cfg)


def _tiny_train(q, ws, steps: int = 5, **kw):
    from gda_core.data import load_dataset
    from gda_core.jobs import unique_run_dir

    ds = load_dataset("digits", per_class=10)
    return q.start_training(ws, family="vae", dataset=ds, out=kw.pop("out", None) or unique_run_dir(ws.runs, "vae", "digits"), steps=steps,
                            model_config={"latent_dim": 8, "base_channels": 8}, train_config={"batch_size": 16}, **kw)  # fmt: skip


def test_one_workspace_cannot_queue_more_than_its_cap(tmp_path, monkeypatch):
    cfg, q = _queue(tmp_path, monkeypatch, max_jobs_per_workspace=3)
    a, b = wsp.create_workspace(cfg), wsp.create_workspace(cfg)
    for _ in range(3):
        _tiny_train(q, a)
    with pytest.raises(ConfigError) as exc:
        _tiny_train(q, a)
    assert "max_jobs_per_workspace = 3" in _one_line(exc)
    assert len(q.list(a)) == 3  # the refused job left no row
    _tiny_train(q, b)  # another workspace is not held back


def test_workspaces_take_turns_and_a_capped_workspace_waits(tmp_path, monkeypatch):
    """A burst of one workspace does not push another's job to the back; with one running job per
    workspace, a picked job that has not started yet counts as running."""
    cfg, q = _queue(tmp_path, monkeypatch, max_jobs_per_workspace=40)
    a, b = wsp.create_workspace(cfg), wsp.create_workspace(cfg)
    burst = [q.store.create(workspace=a.id, kind="train", title=f"a{i}", params={}) for i in range(40)]
    mine = q.store.create(workspace=b.id, kind="train", title="b", params={})
    assert q.store.get(mine).queue_position == 2 and q.store.get(burst[1]).queue_position == 3
    assert q.store.pick(max_running=1) == burst[0]
    assert q.store.pick(max_running=1) == mine
    assert q.store.pick(max_running=1) is None  # both workspaces at their cap (picked, not yet claimed)
    q.store.finish(burst[0], "done")
    assert q.store.pick(max_running=1) == burst[1]
    assert q.store.unpick_all() == 2 and q.store.waiting_count() == 40


# -- 5. a locked queue ------------------------------------------------------------------------------


def test_a_locked_queue_refuses_in_one_line_and_leaves_no_job(tmp_path, monkeypatch):
    from gda_core.server import queue as gq
    from gda_core.server.store import QueueError

    monkeypatch.setattr(gq, "QUEUE_TIMEOUT_S", 0.5)
    cfg, q = _queue(tmp_path, monkeypatch)
    ws = wsp.create_workspace(cfg)
    _tiny_train(q, ws)  # creates queue.db
    lock = sqlite3.connect(cfg.app_data / gq.QUEUE_DB, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(QueueError) as exc:
            _tiny_train(q, ws)
        assert "job queue is busy" in _one_line(exc)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert len(q.list(ws)) == 1


def test_a_job_row_without_a_queue_message_gets_its_turn_at_worker_start(tmp_path, monkeypatch):
    from gda_core.server import queue as gq

    cfg, q = _queue(tmp_path, monkeypatch)
    ws = wsp.create_workspace(cfg)
    _tiny_train(q, ws)
    q.store.create(workspace=ws.id, kind="train", title="orphan", params={})  # a crash between the two writes
    huey = gq._huey(str(cfg.app_data))[0]
    assert huey.pending_count() == 1
    assert gq.requeue_orphans(cfg) == 1 and huey.pending_count() == 2
    assert gq.requeue_orphans(cfg) == 0


def test_a_job_store_error_is_one_line(tmp_path):
    from gda_core.server.store import JobStore, QueueError

    store = JobStore(tmp_path / "jobs.db")
    store.timeout_s = 0.2
    lock = sqlite3.connect(tmp_path / "jobs.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(QueueError) as exc:
            store.create(workspace="w", kind="train", title="t", params={})
        assert "try again" in _one_line(exc)
    finally:
        lock.execute("ROLLBACK")
        lock.close()


# -- 3. budgets on every job kind ---------------------------------------------------------------------


def test_resume_and_studies_are_budgeted_when_queued(tmp_path, monkeypatch):
    cfg, q = _queue(tmp_path, monkeypatch)
    ws = wsp.create_workspace(cfg)
    run = ws.runs / "mine"
    shutil.copytree(_shipped().path, run)
    with pytest.raises(ConfigError) as exc:
        _tiny_train(q, ws, steps=10**9, out=run, resume=True)
    assert "max_steps" in _one_line(exc)
    with pytest.raises(ConfigError) as exc:
        _tiny_train(q, ws, steps=10, out=run, resume=True, minutes=10**6)
    assert "max_minutes" in _one_line(exc)
    big = {"models": [f"f{i}" for i in range(10)], "per_class_levels": [5, 10, 20, 50, 100, 200, "all"], "seeds": 5, "budget_minutes": 120}
    with pytest.raises(ConfigError) as exc:
        q.submit(ws, "study", "big", {"options": big, "data": {"source": "digits"}})
    assert "350 trainings" in _one_line(exc) and "max_study_trainings" in _one_line(exc)
    long = {**big, "models": ["vae"], "per_class_levels": [10, 50], "seeds": 4}
    with pytest.raises(ConfigError) as exc:
        q.submit(ws, "study", "long", {"options": long, "data": {"source": "digits"}})
    assert "max_minutes" in _one_line(exc)
    assert q.list(ws) == []


@pytest.mark.slow
def test_the_worker_enforces_budgets_on_a_job_row_written_past_the_app(tmp_path, monkeypatch):
    """A job row that never went through submit (an older app, a hand-written row) is held to the
    same budgets in its worker; a training without a time limit stops at max_minutes."""
    from gda_core.checkpoints import read_config
    from gda_core.server.queue import enqueue, ensure_worker, stop_worker

    cfg, q = _queue(tmp_path, monkeypatch, max_minutes=0.05, job_threads=1)
    ws = wsp.create_workspace(cfg)
    ensure_worker(cfg)
    try:
        runaway = q.store.create(workspace=ws.id, kind="train", title="runaway", params={"steps": 10**9, "out": str(ws.runs / "x")})
        enqueue(cfg, runaway)
        job = _tiny_train(q, ws, steps=cfg.max_steps)  # no minutes: capped at 3 s in the worker
        end = time.time() + 240
        while time.time() < end and not (q.store.get(runaway).done and q.store.get(job.id).done):
            time.sleep(0.5)
        bad, ok = q.store.get(runaway), q.store.get(job.id)
        assert bad.status == "failed" and "max_steps" in bad.error and "\n" not in bad.error
        assert ok.status == "done", ok.error
        conf = read_config(ok.result["run_dir"])
        assert conf["minutes"] == pytest.approx(0.05) and conf["step"] < cfg.max_steps
    finally:
        stop_worker(cfg)


# -- 10. passwords ----------------------------------------------------------------------------------


def test_passwords_cost_2_17_old_hashes_upgrade_and_attempts_are_limited(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path)
    ws = wsp.create_workspace(cfg, password="correct horse")
    rec = json.loads((ws.root / wsp.INFO).read_text())["password"]
    assert rec["n"] == 2**17 and ws.check_password("correct horse") and not ws.check_password("wrong")
    # A hash of the first version (N = 2^14, no "n") still opens, and is re-hashed at the new cost.
    info = json.loads((ws.root / wsp.INFO).read_text())
    info["password"] = {"salt": "00" * 16, "hash": wsp._scrypt("old one", b"\0" * 16, 2**14)}
    (ws.root / wsp.INFO).write_text(json.dumps(info))
    assert ws.check_password("old one") and json.loads((ws.root / wsp.INFO).read_text())["password"]["n"] == 2**17
    # Per client: after 5 wrong ones this address is refused, even with the right password.
    monkeypatch.setattr(wsp, "_scrypt", lambda pw, salt, n=2**17: hashlib.sha256(salt + pw.encode()).hexdigest())
    ws.set_password("pw")
    for _ in range(wsp.MAX_PASSWORD_FAILURES_CLIENT):
        assert wsp.attempt_password(cfg, ws, "nope", "10.0.0.1") is False
    with pytest.raises(ConfigError) as exc:
        wsp.attempt_password(cfg, ws, "pw", "10.0.0.1")
    assert "too many wrong passwords for this address" in _one_line(exc)
    assert wsp.attempt_password(cfg, ws, "pw", "10.0.0.2") is True  # another client is not held back
    # Per workspace: guesses spread over many addresses still stop.
    for i in range(wsp.MAX_PASSWORD_FAILURES_WORKSPACE):
        assert wsp.attempt_password(cfg, ws, "nope", f"10.1.{i}.1") is False
    with pytest.raises(ConfigError) as exc:
        wsp.attempt_password(cfg, ws, "pw", "10.9.9.9")
    assert "this workspace" in _one_line(exc)
    # The owner, whose address opened the workspace before, is not locked out by the stranger's guesses;
    # that address still has its own limit.
    assert wsp.attempt_password(cfg, ws, "pw", "10.0.0.2") is True
    for _ in range(wsp.MAX_PASSWORD_FAILURES_CLIENT):
        assert wsp.attempt_password(cfg, ws, "nope", "10.0.0.2") is False
    with pytest.raises(ConfigError) as exc:
        wsp.attempt_password(cfg, ws, "pw", "10.0.0.2")
    assert "this address" in _one_line(exc)


def test_deployment_guide_serves_over_tls():
    text = (Path(__file__).resolve().parents[1] / "docs" / "deployment.md").read_text()
    first = text[text.index("```") : text.index("```", text.index("```") + 3)]
    assert "0.0.0.0" not in first, first
    assert "TLS" in text and "https://" in text


# -- 2. run-zip import ------------------------------------------------------------------------------


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, v in members.items():
            zf.writestr(k, v)
    return buf.getvalue()


def _run_members() -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(wsp.run_zip_bytes(_shipped().path))) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def test_a_run_zip_is_refused_from_its_declared_sizes_before_anything_is_inflated_or_kept(tmp_path, monkeypatch):
    """A 2.5 MB zip that inflates to hundreds of MiB: refused by the web server from the zip's
    directory (member caps, then the declared total against the quota), nothing saved."""
    cfg, q = _queue(tmp_path, monkeypatch, workspace_quota_bytes=20 * 1024**2)
    ws = wsp.create_workspace(cfg)
    good = _run_members()
    run = next(iter(good)).split("/")[0]
    cases = {
        "eval/": {**good, f"{run}/eval/bomb.json": b"{" + b" " * (300 * 1024**2) + b"}"},
        "quota": {**good, f"{run}/history.json": b"[" + b" " * (15 * 1024**2) + b"]", f"{run}/MODEL_CARD.md": b" " * (15 * 1024**2)},
    }
    for what, members in cases.items():
        data = _zip(members)
        assert len(data) < 3 * 1024**2
        with pytest.raises((CheckpointError, DataError)) as exc:
            q.import_run(ws, data, "bomb.zip")
        assert what in _one_line(exc)
    assert not any(ws.uploads.rglob("*.zip")) and q.list(ws) == []


def test_a_run_zips_saved_evaluations_must_read_as_reports(tmp_path):
    cfg = _cfg(tmp_path)
    ws = wsp.create_workspace(cfg)
    good = _run_members()
    run = next(iter(good)).split("/")[0]
    for bad in (b"[1, 2]", b"not json", b'{"scores": "x", "raw": [1]}'):
        with pytest.raises(CheckpointError) as exc:
            wsp.import_run_zip(cfg, ws, _zip({**good, f"{run}/eval/x.json": bad}), "r.zip")
        assert "not a valid report" in _one_line(exc)
    assert not list(ws.runs.iterdir())


@pytest.mark.slow
def test_a_run_zip_is_imported_by_a_worker_job(tmp_path, monkeypatch):
    from gda_core.server.queue import ensure_worker, stop_worker

    cfg, q = _queue(tmp_path, monkeypatch, job_threads=1)
    ws = wsp.create_workspace(cfg)
    ensure_worker(cfg)
    try:
        job = q.import_run(ws, wsp.run_zip_bytes(_shipped().path), "theirs.zip")
        end = time.time() + 240
        while time.time() < end and not q.get(ws, job.id).done:
            time.sleep(0.5)
        job = q.get(ws, job.id)
    finally:
        stop_worker(cfg)
    assert job.status == "done", job.error
    run = Path(job.result["run_dir"])
    assert run.parent == ws.runs and run.name == "theirs" and (run / "model.safetensors").is_file()
    assert not any(ws.uploads.rglob("*.zip"))  # the upload is gone once imported


# -- 11. evaluation stages --------------------------------------------------------------------------


@pytest.mark.slow
def test_evaluation_stages_are_cached_in_the_workspace_and_go_with_it(tmp_path, monkeypatch):
    """An evaluation's extractor and stage outputs land in the workspace (counted in its quota),
    not in the server's shared cache, and deleting the workspace removes them."""
    from gda_core.server.queue import ensure_worker, stop_worker

    monkeypatch.setenv("GDA_CACHE_DIR", str(tmp_path / "shared-cache"))
    cfg, q = _queue(tmp_path, monkeypatch, job_threads=1)
    ws = wsp.create_workspace(cfg)
    run = ws.runs / "mine"
    shutil.copytree(_shipped().path, run, ignore=shutil.ignore_patterns("eval", "train_state.pt"))
    ensure_worker(cfg)
    try:
        job = q.submit(ws, "evaluate", "evaluate mine", {"run_dir": str(run), "preset": "quick", "sampling": {"n_samples": 60}})
        end = time.time() + 400
        while time.time() < end and not q.get(ws, job.id).done:
            time.sleep(1)
        job = q.get(ws, job.id)
    finally:
        stop_worker(cfg)
    assert job.status == "done", job.error
    cached = [p for p in ws.eval_cache.rglob("*") if p.is_file()]
    assert cached and any("stages" in p.parts for p in cached)
    shared = tmp_path / "shared-cache"
    assert not shared.exists() or not [p for p in shared.rglob("*") if p.is_file() and ("stages" in p.parts or "domain-cnn" in p.name)]
    assert ws.usage_bytes() >= sum(p.stat().st_size for p in cached)
    wsp.delete_workspace(cfg, ws)
    assert not any(p.exists() for p in cached)


# -- sweeps (issue 28): budgeted like any job ----------------------------------------------------------


def test_an_oversized_sweep_is_refused_in_one_line_when_queued(tmp_path, monkeypatch):
    from gda_core.data import load_dataset

    cfg, q = _queue(tmp_path, monkeypatch, max_model_params=100_000, max_minutes=10)
    ws = wsp.create_workspace(cfg)
    ds = load_dataset("digits", per_class=10)
    cases = [  # (keywords, what the one line must name)
        ({"grid": "lr=1e-4,2e-4,3e-4,4e-4;latent_dim=4,8,16,32", "seeds": 5, "steps": 10}, ["80 trainings", "max_study_trainings = 60"]),
        ({"grid": "lr=1e-4,3e-4", "seeds": 3, "minutes": 2.0}, ["6 trainings x 2 minutes = 12 minutes", "max_minutes = 10"]),
        ({"grid": "lr=1e-4", "seeds": 2, "steps": 10**9}, ["max_steps"]),
        ({"grid": "base_channels=8,16", "seeds": 2, "steps": 10}, ["base_channels=16", "110,417 parameters", "max_model_params = 100,000"]),
        ({"grid": "warp=1,2", "seeds": 2, "steps": 10}, ["neither a training setting"]),
    ]
    for kw, needles in cases:
        with pytest.raises(ConfigError) as exc:
            q.start_sweep(ws, family="vae", dataset=ds, **kw)
        assert all(n in _one_line(exc) for n in needles), (kw, _one_line(exc))
    # A row submitted without the queue's helper meets the same budget (the trainings, here).
    with pytest.raises(ConfigError) as exc:
        q.submit(ws, "sweep", "big", {"family": "vae", "grid": "lr=1e-4,2e-4,3e-4,4e-4;latent_dim=4,8,16,32", "seeds": 5, "steps": 10,
                                      "data": ds.spec.to_dict(), "out": str(ws.runs / "sw")})  # fmt: skip
    assert "max_study_trainings" in _one_line(exc)
    with pytest.raises(ConfigError) as exc:  # a job row names no cache folder of its own
        q.submit(ws, "sweep", "odd", {"family": "vae", "grid": "lr=1e-4", "seeds": 1, "steps": 10, "eval_options": {"cache_dir": "/"}})
    assert "evaluation options" in _one_line(exc)
    assert q.list(ws) == []
    assert q.start_sweep(ws, family="vae", dataset=ds, grid="base_channels=8", seeds=1, steps=1).kind == "sweep"  # within every budget


@pytest.mark.slow
def test_the_worker_refuses_an_oversized_sweep_row_in_one_line(tmp_path, monkeypatch):
    """Rows written past the app: one over the trainings budget fails at the worker's check, one whose
    model is too big for the dataset's size fails once the worker has loaded that dataset."""
    from gda_core.data import load_dataset
    from gda_core.server.queue import enqueue, ensure_worker, stop_worker

    cfg, q = _queue(tmp_path, monkeypatch, max_model_params=100_000, job_threads=1)
    ws = wsp.create_workspace(cfg)
    data = load_dataset("digits", per_class=10).spec.to_dict()
    rows = {"max_study_trainings = 60": {"grid": "lr=1e-4,2e-4,3e-4,4e-4;latent_dim=4,8,16,32", "seeds": 5},
            "max_model_params = 100,000": {"grid": "base_channels=8,16", "seeds": 2}}  # fmt: skip
    ids = {}
    for needle, kw in rows.items():
        ids[needle] = q.store.create(workspace=ws.id, kind="sweep", title=needle, params={"family": "vae", "data": data, "steps": 10,
                                                                                          "out": str(ws.runs / "sw"), **kw})  # fmt: skip
        enqueue(cfg, ids[needle])
    ensure_worker(cfg)
    try:
        end = time.time() + 240
        while time.time() < end and not all(q.store.get(i).done for i in ids.values()):
            time.sleep(0.5)
    finally:
        stop_worker(cfg)
    for needle, job_id in ids.items():
        job = q.store.get(job_id)
        assert job.status == "failed" and needle in job.error and "\n" not in job.error, (job.status, job.error)
    assert not (ws.runs / "sw").exists()  # refused before anything was trained
