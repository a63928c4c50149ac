"""App tests: every page through streamlit's AppTest, hostile uploads, jobs, and the engine helpers
behind the pages (gda_core.latent / learn).

Each test gets its own app data folder (``GDA_APP_DATA``) with one workspace, whose token the pages
are opened with; jobs run in the real queue's worker processes, stopped when the test ends. Pages
run against the shipped checkpoints in ``checkpoints/`` plus, when set, ``$GDA_TEST_RUNS_DIR``'s
runs (copied into the workspace). A page test skips, saying why, when no checkpoint of the family
it needs exists.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from gda_core.checkpoints import list_runs, load_run
from gda_core.errors import ConfigError
from gda_core.jobs import JobQueue
from gda_core.models import display_name
from gda_core.server.config import load_config
from gda_core.server.queue import stop_worker
from gda_core.server.workspaces import create_workspace, open_workspace

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 300


# -- fixtures & helpers -----------------------------------------------------------------------------


_WS: dict[str, str] = {}  # the current test's workspace token, for _open


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    """The runs folder of a fresh workspace in a fresh app data folder, seeded with
    $GDA_TEST_RUNS_DIR's runs if set; the queue's worker is stopped at the end."""
    monkeypatch.setenv("GDA_APP_DATA", str(tmp_path / "app"))
    monkeypatch.setenv("GDA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("GDA_SERVER_CONFIG", raising=False)
    cfg = load_config()
    ws = create_workspace(cfg)
    _WS["token"] = ws.id
    d = ws.runs
    extra = os.environ.get("GDA_TEST_RUNS_DIR")
    if extra and Path(extra).is_dir():
        for r in list_runs(extra, include_shipped=False):
            shutil.copytree(r.path, d / r.path.name, ignore=shutil.ignore_patterns("train_state.pt", ".lock", "eval"))
    yield d
    stop_worker(cfg)


def _run_of(family: str, runs_dir: Path):
    found = [r for r in list_runs(runs_dir) if r.family == family and r.dataset == "digits"]
    if not found:
        pytest.skip(f"no '{family}' checkpoint on digits: ship checkpoints/{family}-digits or set GDA_TEST_RUNS_DIR to a folder of runs")
    return found[0]


def _any_run(runs_dir: Path):
    found = list_runs(runs_dir)
    if not found:
        pytest.skip("no checkpoint at all: ship checkpoints/ or set GDA_TEST_RUNS_DIR to a folder of runs")
    return found[0]


def _open(page: str | None = None, *, run=None, ws: str | None = "current") -> AppTest:
    """Run the app (and switch to ``page``) in the test's workspace (``ws=None``: a browser without
    a workspace link); ``run`` preselects that checkpoint in every picker."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if ws is not None:
        at.query_params["ws"] = _WS["token"] if ws == "current" else ws
    if run is not None:
        for key in ("sample_run", "latent_run", "learn_run"):
            at.session_state[f"_{key}"] = str(run.path)
    at.run()
    if page:
        at.switch_page(f"pages/{page}")
        at.run()
    _ok(at)
    return at


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def _image_urls(at: AppTest) -> list[str]:
    return [u for img in at.get("image") for u in img.value]


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _class_zip(*, corrupt: bool = False, slip: bool = False) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for c in ("cats", "dogs"):
            for i in range(6):
                zf.writestr(f"pets/{c}/{i}.png", _png(rng.integers(0, 255, (16, 16), dtype=np.uint8)))
        if corrupt:
            zf.writestr("pets/cats/broken.png", b"\x89PNG\r\n\x1a\nthis is not really a png")
        if slip:
            zf.writestr("../../evil/0.png", _png(np.zeros((16, 16), np.uint8)))
    return buf.getvalue()


def _select_run(at: AppTest, key: str, info) -> None:
    at.selectbox(key=key).set_value(str(info.path)).run()
    _ok(at)


# -- Home and Data ----------------------------------------------------------------------------------


def test_home_page(runs_dir):
    at = _open()
    assert at.title[0].value == "GDA Studio"
    labels = [m.label for m in at.metric]
    assert labels == ["Current dataset", "Training images", "Device"]
    assert at.metric[0].value == "digits"
    from gda_core.runtime import device_name, resolve_device

    assert at.metric[2].value == device_name(resolve_device("auto"))
    # The path through the app walks every page of the sidebar, in its order, each with what it is for.
    steps = [m.value for m in at.markdown if re.match(r"\d+\. \*\*", m.value)]
    titles = ["Data", "Train", "Sample", "Latent space", "Compare", "Learn", "Augment"]
    assert [re.match(r"\d+\. \*\*(.+?)\*\*", v).group(1) for v in steps] == titles, steps
    assert all(len(v.split("**: ", 1)[1]) > 20 for v in steps), steps


@pytest.mark.parametrize("source,name", [("pneumoniamnist", "chest X-rays"), ("plantvillage_corn", "maize leaves")])
def test_home_offers_chest_xrays_and_maize_leaves_on_sample_and_learn_without_a_download(runs_dir, monkeypatch, tmp_path, source, name):
    """A clinician's or agronomist's first launch: the shipped model of their kind of images is offered
    by name and opens on Sample (generated images need no data) and Learn (which says the real images
    are absent instead of failing), with no data folder and downloads off."""
    monkeypatch.setenv("GDA_DATA_DIR", str(tmp_path / "no-data"))
    monkeypatch.setenv("GDA_ALLOW_DOWNLOAD", "0")
    shipped = [r for r in list_runs(runs_dir) if r.shipped and r.dataset == source]
    if not shipped:
        pytest.skip(f"no shipped checkpoint on {source}")
    at = _open()
    line = next((m.value.replace("\\", "") for m in at.markdown if m.value.replace("\\", "").startswith(f"**{name} ({source})**")), None)
    assert line is not None, [m.value for m in at.markdown]
    # Families by the names the app shows everywhere ("VAE-GAN"), not the registry's keys upper-cased ("VAEGAN").
    assert "VAEGAN" not in line and all(display_name(r.family) in line for r in shipped), line
    at.button(key=f"home_sample_run_{source}").click().run()
    _ok(at)
    assert at.session_state["sample_run"] == str(shipped[0].path)
    assert not _errors(at) and _image_urls(at), "the Sample page shows a grid of generated images"
    at = _open("6_Learn.py", run=shipped[0])
    assert at.session_state["learn_run"] == str(shipped[0].path)
    assert not _errors(at), _errors(at)
    assert any("not on this computer" in i.value or "not found" in i.value for i in at.info), [i.value for i in at.info]


def test_data_page_defaults_and_scarcity(runs_dir):
    at = _open("1_Data.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Train"] == "1,259" and metrics["Classes"] == "10" and metrics["Size"] == "16 px"
    assert at.get("plotly_chart"), "class-count bar chart missing"
    assert len(at.get("image")) == 10, "one image strip per class"
    for w in [*at.radio, *at.selectbox, *at.toggle, *at.number_input, *at.select_slider]:
        assert w.help, f"widget '{w.label}' has no help tooltip"
    at.toggle(key="data_limit").set_value(True).run()
    at.slider(key="data_per_class").set_value(5).run()
    _ok(at)
    assert {m.label: m.value for m in at.metric}["Train"] == "50"
    assert at.session_state["data_options"]["per_class"] == 5
    at.select_slider(key="data_size").set_value(12).run()
    _ok(at)
    assert {m.label: m.value for m in at.metric}["Size"] == "12 px"
    # The choice is used by the other pages (Train shows it).
    at.switch_page("pages/2_Train.py").run()
    _ok(at)
    assert any("50 training images" in c.value for c in at.caption)


def test_data_upload_zip_with_a_corrupt_image_loads_with_a_warning(runs_dir):
    at = _open("1_Data.py")
    at.radio(key="data_src").set_value("Upload a .zip or .npz").run()
    at.file_uploader(key="data_upload").set_value(("pets.zip", _class_zip(corrupt=True), "application/zip")).run()
    _decoded(at)
    assert not _errors(at)
    assert any("broken\\.png" in w.value for w in at.warning), [w.value for w in at.warning]  # shown literally (markdown escaped)
    assert at.session_state["data_options"]["label"] == "pets.zip"
    assert {m.label: m.value for m in at.metric}["Classes"] == "2"


def test_a_reload_after_an_upload_shows_the_uploaded_dataset_not_digits(runs_dir):
    """A new user uploads a zip (decoded by a worker), then reloads the page: a new session of the
    same workspace. Its Data page must show the upload, and must not switch the dataset to digits."""
    at = _open("1_Data.py")
    at.radio(key="data_src").set_value("Upload a .zip or .npz").run()
    at.file_uploader(key="data_upload").set_value(("pets.zip", _class_zip(), "application/zip")).run()
    _decoded(at)
    assert at.session_state["data_options"]["label"] == "pets.zip"
    for page in ("2_Train.py", "1_Data.py"):  # the reload lands on the page the user was on
        again = _open(page)
        if page != "1_Data.py":
            again.switch_page("pages/1_Data.py").run()
            _ok(again)
        assert again.session_state["data_options"]["label"] == "pets.zip", page
        assert {m.label: m.value for m in again.metric}["Classes"] == "2", page
        assert any("pets\\.zip" in h.value for h in again.subheader), [h.value for h in again.subheader]


def test_manage_runs_imports_a_run_zip_in_a_job_and_refuses_a_bad_one_once(runs_dir):
    from gda_core.checkpoints import SHIPPED_DIR
    from gda_core.server.workspaces import run_zip_bytes

    shipped = next(r for r in list_runs(SHIPPED_DIR, include_shipped=False) if r.path.name == "vae-digits")  # offline: digits ship with scikit-learn
    at = _open("2_Train.py")
    at.file_uploader(key="manage_upload").set_value(("bad.zip", b"not a zip at all", "application/zip")).run()
    assert any("not a zip archive" in e for e in _errors(at)), _errors(at)
    at.run()  # a rerun with the same file in the uploader does not try (and refuse) it again
    assert not any("not a zip archive" in e for e in _errors(at))
    at.file_uploader(key="manage_upload").set_value(("theirs.zip", run_zip_bytes(shipped.path), "application/zip")).run()
    _ok(at)
    job = _jobs(at, "import")[0]
    end = time.time() + 240
    while time.time() < end and not JobQueue(load_config()).get(open_workspace(load_config(), _WS["token"]), job.id).done:
        time.sleep(0.5)
    at.run()
    _ok(at)
    assert (runs_dir / "theirs" / "model.safetensors").is_file()
    assert any("Added theirs" in s.value for s in at.success), [s.value for s in at.success]


def test_manage_runs_lists_a_sweep_keeps_one_of_its_runs_and_deletes_the_sweep(runs_dir):
    """A sweep's runs sit in its own folder, out of the run pickers: Manage runs lists the sweep (it counts
    in the quota), copies one of its runs among the user's runs, and deletes the whole sweep."""
    from gda_core.server import workspaces as wsp
    from gda_core.sweep import SweepResult

    src = _run_of("vae", runs_dir)
    sweep = runs_dir / "sweep-vae-digits-test"
    for name in ("setting0-seed0", "setting1-seed0"):
        shutil.copytree(src.path, sweep / name, ignore=shutil.ignore_patterns(".lock", "eval"))
    res = SweepResult("vae", "digits", [{"lr": 1e-3}, {"lr": 3e-4}], [0], 5, None, "quick")
    (sweep / "sweep.json").write_text(json.dumps(res.to_dict()))
    assert not any(sweep in r.path.parents for r in list_runs(runs_dir, include_shipped=False))
    at = _open("2_Train.py")
    _ok(at)
    assert at.selectbox(key="manage_sweep").value == str(sweep)
    assert any("2 trained runs" in c.value for c in at.caption), [c.value for c in at.caption]
    at.selectbox(key=f"manage_sweep_run_{sweep.name}").set_value("setting1-seed0").run()
    at.button(key="manage_sweep_keep").click().run()
    _ok(at)
    kept = runs_dir / f"{sweep.name}-setting1-seed0"
    assert (kept / "model.safetensors").read_bytes() == (sweep / "setting1-seed0" / "model.safetensors").read_bytes()
    assert not (kept / "train_state.pt").exists()  # what a run zip holds, as a download or a publish
    assert kept in [r.path for r in list_runs(runs_dir, include_shipped=False)]
    ws = open_workspace(load_config(), _WS["token"])
    for bad in ("../setting0-seed0", "sweep.json", "nope"):
        with pytest.raises(ConfigError):
            wsp.keep_sweep_run(load_config(), ws, sweep, bad)
    with pytest.raises(ConfigError):
        wsp.delete_sweep(ws, kept, set())  # a run is not a sweep
    at.checkbox(key=f"manage_sweep_confirm_{sweep.name}").check().run()
    at.button(key="manage_sweep_delete").click().run()
    _ok(at)
    assert not sweep.exists() and kept.is_dir()


def test_pages_that_read_a_locked_job_queue_show_one_line_not_a_traceback(runs_dir, monkeypatch):
    """Reading the job list needs the jobs database: held in exclusive mode (a long write elsewhere, a
    backup tool) past the store's wait, every page and its sidebar say so in one line and keep working."""
    import sqlite3

    from gda_core.server.queue import JOBS_DB
    from gda_core.server.store import JobStore

    at = _open("2_Train.py")  # creates the jobs database
    monkeypatch.setattr(JobStore, "timeout_s", 0.3)
    lock = sqlite3.connect(load_config().app_data / JOBS_DB, isolation_level=None)
    lock.execute("PRAGMA locking_mode=EXCLUSIVE")
    lock.execute("BEGIN EXCLUSIVE")
    lock.execute("UPDATE jobs SET title = title")
    lock.execute("COMMIT")  # in exclusive locking mode the lock stays held after the commit
    try:
        for page in ("2_Train.py", "5_Compare.py", "7_Augment.py"):
            at.switch_page(f"pages/{page}")
            at.run()
            _ok(at)
            assert any("job queue is busy" in e for e in _errors(at)), (page, _errors(at))
            assert all("\n" not in e for e in _errors(at))
    finally:
        lock.close()
    at.run()
    _ok(at)
    assert not any("job queue is busy" in e for e in _errors(at))


@pytest.mark.parametrize(
    "name, payload, needle",
    [
        ("evil.zip", _class_zip(slip=True), "unsafe member path"),
        ("notes.npz", b"this is a text file, not an npz archive\n" * 10, "npz"),
        ("empty.zip", b"PK\x05\x06" + b"\x00" * 18, ""),
    ],
)
def test_data_hostile_uploads_show_an_error_and_the_app_keeps_working(runs_dir, name, payload, needle):
    at = _open("1_Data.py")
    at.radio(key="data_src").set_value("Upload a .zip or .npz").run()
    at.file_uploader(key="data_upload").set_value((name, payload, "application/octet-stream")).run()
    _decoded(at)
    errs = _errors(at)
    assert errs, f"{name}: no st.error shown"
    assert "Traceback" not in errs[0] and "\n" not in errs[0]
    assert needle in errs[0]
    # The previous dataset stays in use and the other pages still work.
    assert at.session_state["data_options"]["source"] == "digits"
    at.switch_page("pages/2_Train.py").run()
    _ok(at)
    assert not _errors(at)


def _decoded(at: AppTest) -> None:
    """Wait for the worker to decode the upload, then draw the page again."""
    _wait_for_jobs(at, 180)
    at.run()
    _ok(at)


def test_data_server_paths_are_off_unless_the_owner_turns_them_on(runs_dir, tmp_path, monkeypatch):
    at = _open("1_Data.py")
    assert "Local folder or file" not in at.radio(key="data_src").options
    # The owner's settings file in the app data folder, read by the workers at each job; naming it in
    # GDA_SERVER_CONFIG also gives the page a new cache key, so it reads the setting again at once.
    settings = load_config().app_data / "server.toml"
    settings.write_text("allow_server_paths = true\n")
    monkeypatch.setenv("GDA_SERVER_CONFIG", str(settings))
    at = _open("1_Data.py")
    at.radio(key="data_src").set_value("Local folder or file").run()
    at.text_input(key="data_path").input(str(tmp_path / "nowhere")).run()
    _decoded(at)
    assert any("no such file or folder" in e for e in _errors(at)), _errors(at)


# -- Train ------------------------------------------------------------------------------------------


def _jobs(at: AppTest, kind: str | None = None):
    """The session's workspace's jobs, newest first (read from the job store, as the pages do)."""
    cfg = load_config()
    ws = open_workspace(cfg, at.session_state["owner"])
    assert ws is not None, (at.session_state["owner"], cfg.app_data, _WS, list(cfg.workspaces_dir.iterdir()))
    return JobQueue(cfg).list(ws, kind)


def _wait_for_jobs(at: AppTest, seconds: float) -> None:
    end = time.time() + seconds
    while time.time() < end:
        jobs = _jobs(at)
        if jobs and all(j.done for j in jobs):
            return
        time.sleep(0.5)
    raise AssertionError(f"jobs did not finish in time: {[(j.title, j.status, j.message) for j in _jobs(at)]}")


def _train_small_vae(at: AppTest, steps: int) -> None:
    """Start a VAE run of ``steps`` steps (latent dim 8) from the Train page and wait until it ends."""
    at.selectbox(key="train_family").set_value("vae").run()
    at.number_input(key="train_steps").set_value(steps).run()
    at.number_input(key="train_vae_latent_dim").set_value(8).run()
    at.button(key="train_start").click().run()
    _ok(at)
    _wait_for_jobs(at, 240)
    at.run()
    _ok(at)


def test_train_page_runs_a_short_vae_in_the_background(runs_dir):
    at = _open("2_Train.py")
    for w in [*at.selectbox, *at.number_input, *at.radio, *at.text_input, *at.checkbox]:
        assert w.help, f"widget '{w.label}' has no help tooltip"
    at.number_input(key="train_preview").set_value(6).run()
    _train_small_vae(at, steps=12)
    assert not _errors(at), _errors(at)
    assert any("Finished" in s.value for s in at.success), [s.value for s in at.success]
    assert at.get("plotly_chart"), "loss curves missing"
    assert _image_urls(at), "preview grid missing"
    runs = list_runs(runs_dir, include_shipped=False)
    mine = [r for r in runs if r.family == "vae" and r.step == 12]
    assert mine and mine[0].finished
    assert load_run(mine[0].path, "cpu").model.config.latent_dim == 8
    # A browser without this workspace's link gets a workspace of its own, which does not see this job.
    other = _open("2_Train.py", ws=None)
    assert other.session_state["owner"] != at.session_state["owner"]
    assert any("None yet in this workspace" in c.value for c in other.caption)
    # The finished run is offered by the resume tab.
    assert any(o.startswith(mine[0].path.name) for o in at.selectbox(key="train_resume_run").options)


@pytest.mark.parametrize("native_bf16", [True, False])
@pytest.mark.slow
def test_train_page_offers_bf16_only_on_cpus_with_native_bf16(runs_dir, monkeypatch, native_bf16):
    from gda_core import fastpath

    # The hardware probe decides what the page offers; the training is real, in a worker process,
    # where the machine's own probe decides the precision.
    real_probe = fastpath.cpu_native_bf16()
    monkeypatch.setattr(fastpath, "cpu_native_bf16", lambda: native_bf16)
    at = _open("2_Train.py")
    at.selectbox(key="train_device").set_value("cpu").run()
    boxes = [c for c in at.checkbox if c.key.startswith("train_cpu_bf16")]
    if not native_bf16:
        assert not boxes, "no bf16 choice where it would only be slower"
        return
    # Each family's default: on for the DDPM (measured), off for the VAE (unmeasured).
    at.selectbox(key="train_family").set_value("ddpm").run()
    assert at.checkbox(key="train_cpu_bf16_ddpm").value is True
    at.selectbox(key="train_family").set_value("vae").run()
    box = at.checkbox(key="train_cpu_bf16_vae")
    assert box.value is False and box.help, "off by default for the VAE: float32 training"
    box.check().run()
    _train_small_vae(at, steps=4)
    mine = [r for r in list_runs(runs_dir, include_shipped=False) if r.family == "vae" and r.step == 4]
    assert mine
    cfg = json.loads((mine[0].path / "config.json").read_text())
    assert cfg["train_config"]["cpu_bf16"] is True
    assert cfg["train_precision"] == ("bfloat16" if real_probe else "float32")


def test_train_page_rejects_bad_model_settings(runs_dir):
    at = _open("2_Train.py")
    at.selectbox(key="train_family").set_value("ddpm").run()
    at.text_input(key="train_ddpm_channel_mults").input("1,x").run()
    _ok(at)
    assert any("comma-separated" in e for e in _errors(at))
    assert at.button(key="train_start").disabled
    # The distilled student is made from a teacher, not trained from data: not offered, the way to it said.
    offered = [o.split(":")[0] for o in at.selectbox(key="train_family").options]
    assert "Distilled student" not in offered and "VAE-GAN" in offered, offered
    assert any("gda_core distill" in c.value for c in at.caption)


def test_train_page_sweep_tab_refuses_a_bad_grid_before_submitting(runs_dir):
    at = _open("2_Train.py")
    at.selectbox(key="sweep_family").set_value("vae").run()
    assert at.slider(key="sweep_seeds").value == 3 and at.radio(key="sweep_preset").value == "quick"
    assert "latent_dim" in at.text_input(key="sweep_grid_vae").help  # the family's config fields are listed
    assert any("4 settings x 3 seeds = 12 trainings" in c.value for c in at.caption), [c.value for c in at.caption]
    assert not at.button(key="sweep_start").disabled
    at.text_input(key="sweep_grid_vae").input("warp=1,2").run()
    _ok(at)
    assert [e for e in _errors(at) if "neither a training setting" in e and "\n" not in e], _errors(at)
    assert at.button(key="sweep_start").disabled
    at.text_input(key="sweep_grid_vae").input("lr=1e-4,3e-4;base_channels=8,4096").run()  # over the server's model budget
    assert any("model budget" in e and "base_channels=4096" in e.replace("\\", "") for e in _errors(at)), _errors(at)  # shown literally
    assert at.button(key="sweep_start").disabled
    # The distilled student is not trained from data: not offered here either.
    assert "distilled" not in at.selectbox(key="sweep_family").options


@pytest.mark.slow
def test_train_page_shows_a_finished_sweeps_table_figure_and_best_settings(runs_dir):
    from gda_core.data import load_dataset

    cfg = load_config()
    ws = open_workspace(cfg, _WS["token"])
    tiny = {"n_samples": 120, "budget": {"epochs": 2, "min_steps": 40, "max_steps": 60, "batch_size": 64}, "augment": [1], "deepfool_steps": 5,
            "kid_subsets": 3, "extractor_budget": {"epochs": 2, "min_steps": 60, "max_steps": 60}}  # fmt: skip
    job = JobQueue(cfg).start_sweep(ws, family="vae", dataset=load_dataset("digits", per_class=30), grid="lr=1e-6,3e-3", seeds=2, steps=20,
                                    eval_options=tiny)  # fmt: skip
    at = _open("2_Train.py")  # starts the worker
    _wait_for_jobs(at, 600)
    at.run()
    _ok(at)
    done = JobQueue(cfg).get(ws, job.id)
    assert done.status == "done", done.error
    assert (ws.runs / Path(done.params["out"]).name / "setting1-seed1" / "model.safetensors").is_file()  # under the workspace's runs
    table = next(d.value for d in at.dataframe if "seeds done" in d.value.columns)
    assert list(table["setting"]) == ["lr=1e-06", "lr=0.003"] and list(table["seeds done"]) == [2, 2]
    assert table["utility"].str.count(r"\[").tolist() == [1, 1]  # a mean with its interval over the two seeds
    assert at.get("plotly_chart"), "the sweep's figure is missing"
    text = " ".join(m.value for m in at.markdown)
    assert all(f"{axis}:" in text for axis in ("fidelity", "diversity", "utility", "privacy")), text
    assert "clearly best" in text or "within noise" in text
    assert {b.proto.label for b in at.get("download_button")} >= {"sweep.json", "sweep.csv"}


# -- Sample -----------------------------------------------------------------------------------------


def test_sample_page_vae_updates_with_temperature(runs_dir):
    info = _run_of("vae", runs_dir)
    at = _open("3_Sample.py", run=info)
    _select_run(at, "sample_run", info)
    assert [s.label for s in at.slider] == ["Number of images", "Temperature"]
    assert any("do not apply" in c.value for c in at.caption)
    before = _image_urls(at)
    assert len(before) == 1
    assert len(at.get("download_button")) == 3
    at.slider(key="sample_temperature").set_value(0.3).run()
    _ok(at)
    after = _image_urls(at)
    assert after and after != before
    at.selectbox(key="sample_class").set_value(at.selectbox(key="sample_class").options[3]).run()
    _ok(at)
    assert any("All images: class" in c.value for c in at.caption)


def test_sample_page_diffusion_shows_its_controls(runs_dir):
    info = _run_of("ddpm", runs_dir)
    at = _open("3_Sample.py", run=info)
    _select_run(at, "sample_run", info)
    labels = [s.label for s in at.slider]
    assert {"Guidance", "Steps", "Eta"} <= set(labels)
    at.slider(key="sample_n_ddpm").set_value(4).run()
    at.slider(key="sample_steps_ddpm").set_value(4).run()
    _ok(at)
    assert _image_urls(at)
    for w in [*at.slider, *at.selectbox, *at.number_input]:
        assert w.help


@pytest.mark.parametrize("native_bf16", [True, False])
def test_sample_page_offers_bf16_only_on_cpus_with_native_bf16(runs_dir, monkeypatch, native_bf16):
    from gda_core import fastpath

    # The hardware probe decides what the page offers; the model and the sampling are real (on a CPU
    # without native bf16 the "on" case runs emulated bf16: slower, same arithmetic).
    monkeypatch.setattr(fastpath, "cpu_native_bf16", lambda: native_bf16)
    info = _run_of("ddpm", runs_dir)
    at = _open("3_Sample.py", run=info)
    _select_run(at, "sample_run", info)
    at.slider(key="sample_n_ddpm").set_value(4).run()
    at.slider(key="sample_steps_ddpm").set_value(4).run()
    _ok(at)
    toggles = [t for t in at.toggle if t.key == "sample_fast"]
    if not native_bf16:
        assert not toggles, "no bf16 choice where it would only be slower"
        return
    assert toggles and toggles[0].value is False and toggles[0].help, "off by default: float32 images"
    before = _image_urls(at)
    assert not any("Made in bfloat16" in c.value for c in at.caption)
    at.toggle(key="sample_fast").set_value(True).run()
    _ok(at)
    assert any("Made in bfloat16" in c.value for c in at.caption)
    assert _image_urls(at) and _image_urls(at) != before


# -- Latent space -----------------------------------------------------------------------------------


def test_latent_page_vae_interpolation_traversal_map_neighbours(runs_dir):
    info = _run_of("vae", runs_dir)
    at = _open("4_Latent_space.py", run=info)
    _select_run(at, "latent_run", info)
    assert len(_image_urls(at)) >= 3  # strip + GIF in interpolation, traversal grid
    assert len(at.get("download_button")) >= 1
    at.radio(key="lat_mode").set_value("Between two real images").run()
    _ok(at)
    assert not _errors(at)
    at.radio(key="map_method").set_value("pca").run()
    at.slider(key="map_real").set_value(100).run()
    at.slider(key="map_syn").set_value(3).run()
    at.button(key="map_go").click().run()
    _ok(at)
    assert any(c.key == "map_chart" for c in at.get("plotly_chart")) or at.get("plotly_chart")
    at.slider(key="nn_n").set_value(4).run()
    at.button(key="nn_go").click().run()
    _ok(at)
    assert any("generated images are at or above SSIM" in m.value for m in [*at.warning, *at.success])
    captions = [c for img in at.get("image") for c in img.captions]
    assert sum("SSIM" in c for c in captions) == 4


def test_latent_page_gan_has_no_real_image_mode(runs_dir):
    info = _run_of("gan", runs_dir)
    at = _open("4_Latent_space.py", run=info)
    _select_run(at, "latent_run", info)
    assert at.radio(key="lat_mode").options == ["Between two seeds"]
    assert any("no encoder" in c.value for c in at.caption)
    assert "Style mixing" not in [t.label for t in at.tabs], "style mixing is for families with per-layer styles only"


def test_latent_page_stylegan2_style_mixing(runs_dir):
    from gda_core.data import load_dataset
    from gda_core.models import TrainConfig
    from gda_core.training import train

    from .test_models import TINY

    out = train("stylegan2", load_dataset("digits", per_class=4), out=runs_dir / "stylegan2-digits-tiny", steps=2,
                model_config=TINY["stylegan2"], train_config=TrainConfig(batch_size=8))  # fmt: skip
    info = next(r for r in list_runs(runs_dir) if r.path == out)
    at = _open("4_Latent_space.py", run=info)
    _select_run(at, "latent_run", info)
    assert "Style mixing" in [t.label for t in at.tabs]
    for key in ("mix_seed_a", "mix_seed_b"):
        assert at.number_input(key=key).help
    for key in ("mix_n_a", "mix_n_b", "mix_temp", "mix_cross"):
        assert at.slider(key=key).help
    assert at.selectbox(key="mix_class").help
    n_layers = load_run(out, "cpu").model.num_style_layers
    assert at.slider(key="mix_cross").max == n_layers
    before = _image_urls(at)
    at.slider(key="mix_n_a").set_value(2).run()
    at.slider(key="mix_cross").set_value(1).run()
    _ok(at)
    assert not _errors(at), _errors(at)
    assert any("layers 0-0 from A, 1-" in c.value for c in at.caption)
    assert _image_urls(at) != before
    at.slider(key="mix_cross").set_value(0).run()
    _ok(at)
    assert any("every cell is its row's B image" in c.value for c in at.caption)


# -- Compare ----------------------------------------------------------------------------------------


def _fake_report_run(runs_dir: Path, info, name: str, scale: float) -> Path:
    """A copy of a checkpoint with a saved evaluation (so the page has something to load quickly)."""
    from gda_core.metrics import Report

    dst = runs_dir / name
    shutil.copytree(info.path, dst, ignore=shutil.ignore_patterns("train_state.pt", ".lock", "eval"))
    raw = {"precision": 0.8 * scale, "recall": 0.6 * scale, "images_per_s": 5000.0 * scale, "nfe_per_image": 1.0, "tstr_acc": 0.85 * scale,
           "trtr_acc": 0.95, "deepfool_rho_tstr": 0.1 * scale, "deepfool_rho_trtr": 0.12, "nearest_ssim_mean": 0.4,
           "memorization_rate": 0.01, "memorization_threshold": 0.93}  # fmt: skip
    from gda_core.metrics.evaluation import METRICS_VERSION

    prov = {"seed": 0, "n_samples": 100, "device": "CPU", "created": name, "metrics_version": METRICS_VERSION}
    Report.from_raw(raw, provenance=prov).save(dst / "eval" / "fake.json")
    return dst


def test_reports_of_an_older_metrics_version_are_not_drawn(runs_dir):
    """A cached report made under other metric definitions is never mixed with current ones."""
    from gda_core.jobs import cached_reports
    from gda_core.metrics import Report

    run = _fake_report_run(runs_dir, _any_run(runs_dir), "model-old", 1.0)
    rep = Report.from_dict(json.loads((run / "eval" / "fake.json").read_text()))
    assert [p.name for p, _ in cached_reports(run)] == ["fake.json"]
    rep.provenance["metrics_version"] = rep.provenance["metrics_version"] - 1
    rep.save(run / "eval" / "fake.json")
    assert cached_reports(run) == []


def test_compare_page_draws_saved_evaluations_at_once_and_exports(runs_dir):
    info = _any_run(runs_dir)
    a = _fake_report_run(runs_dir, info, "model-a", 1.0)
    b = _fake_report_run(runs_dir, info, "model-b", 0.7)
    at = _open("5_Compare.py")
    at.multiselect(key="compare_sel").set_value([str(a), str(b)]).run()  # no button: saved reports are drawn when selected
    _ok(at)
    assert not _errors(at)
    assert at.get("plotly_chart"), "radar chart missing"
    table = at.dataframe[0].value
    assert {"model-a", "model-b", "better", "what it measures"} <= set(table.columns)
    better = dict(zip(table["metric"], table["better"], strict=True))
    assert better["fidelity score"].startswith("higher") and better["nearest_ssim_mean"].startswith("lower")
    assert len(at.get("download_button")) == 5  # HTML, PDF, JSON, CSV, PNG
    assert any("model\\-a" in m.value for m in at.markdown), "plain-language reading missing"
    # These old-style reports carry no intervals: the page says so instead of drawing them as exact.
    assert any("no intervals" in w.value for w in at.warning)


def test_compare_page_shows_a_report_files_strings_literally(runs_dir):
    """A published run's report can carry markdown (a link, a tracking image) in its provenance: the
    comparability warnings and the provenance list show it as text, never as a link or an image."""
    import json

    from gda_core.metrics import Report

    info = _any_run(runs_dir)
    a = _fake_report_run(runs_dir, info, "model-a", 1.0)
    b = _fake_report_run(runs_dir, info, "model-b", 0.7)
    link, img = "[click](http://evil.example/)", "![t](http://evil.example/t.png)"
    f = b / "eval" / "fake.json"
    d = json.loads(f.read_text())
    d["provenance"].update(device=link, extractor=img, dataset={"name": link}, n_samples=img)
    Report.from_dict(d).save(f)
    at = _open("5_Compare.py")
    at.multiselect(key="compare_sel").set_value([str(a), str(b)]).run()
    _ok(at)
    shown = [m.value for m in at.markdown] + [w.value for w in at.warning]
    assert any("evil" in t for t in shown), "the planted fields are not shown at all"
    assert not any("](http" in t for t in shown), [t for t in shown if "](http" in t]


def test_compare_page_opens_with_the_shipped_evaluations_drawn(runs_dir):
    """A newcomer's first view: the shipped checkpoints, their saved full evaluations, the radar with
    interval bands, the reading with its noise words, the paper's claims: no button to find."""
    shipped = [r for r in list_runs(runs_dir) if r.shipped]
    if len(shipped) < 2:
        pytest.skip("needs two shipped checkpoints with saved evaluations")
    at = _open("5_Compare.py")
    fig = at.get("plotly_chart")[0]
    assert '"fill":"toself"' in fig.proto.spec.replace(" ", ""), "interval bands missing"
    # Every family shipped on digits is selected and drawn, each with its band (one trace for the
    # score line, one for the band).
    from gda_core.jobs import cached_reports

    digits = [r for r in shipped if r.dataset == "digits"]
    assert sorted(at.multiselect(key="compare_sel").value) == sorted(str(r.path) for r in digits)
    spec = json.loads(fig.proto.spec)
    drawn = {t.get("name", "") for t in spec["data"]}
    evaluated = [r for r in digits if cached_reports(r.path)]
    assert len(evaluated) >= 2 and all(any(r.path.name in n for n in drawn) for r in evaluated), (sorted(drawn), [r.path.name for r in evaluated])
    # One not yet evaluated at this metrics version is named, with what to do, instead of silently left out.
    missing = [r.path.name for r in digits if r not in evaluated]
    if missing:
        assert any(all(m in c.value.replace("\\", "") for m in missing) and "Evaluate selected" in c.value for c in at.caption), missing
    text = " ".join(m.value for m in at.markdown)
    assert "within noise" in text or "clearly" in text
    assert any(w in text for w in ("Supported", "Contradicted", "Cannot tell"))
    if any(r.family in ("ddpm", "ldm", "flow") for r in evaluated):  # the hybrids against the best iterative model
        assert "the trilemma here" in text.replace("\\", "")
    cells = at.dataframe[0].value.iloc[0, 4:]
    assert all("[" in str(c) for c in cells), cells  # every score shown with its interval
    assert not any("Evaluate selected" in i.value for i in at.info)
    # The shipped reports are full: a new evaluation defaults to the same budget, so it is comparable with them.
    assert at.radio(key="compare_preset").value == "full"


def test_compare_sampler_box_offers_the_selected_families_samplers(runs_dir):
    """The sampler is picked from the samplers the selected families offer, not typed."""
    from gda_core.models import get_model_class

    shipped = {r.path.name: str(r.path) for r in list_runs(runs_dir) if r.shipped}
    if not {"ddpm-digits", "flow-digits", "vae-digits"} <= set(shipped):
        pytest.skip("needs the shipped ddpm, flow and vae digits checkpoints")
    at = _open("5_Compare.py")
    at.multiselect(key="compare_sel").set_value([shipped["ddpm-digits"], shipped["flow-digits"], shipped["vae-digits"]]).run()
    _ok(at)
    box = at.selectbox(key="compare_sampler")
    expected = ["default", *get_model_class("ddpm").samplers, *get_model_class("flow").samplers]
    assert box.options == expected and box.value == "default" and not box.disabled
    at.multiselect(key="compare_sel").set_value([shipped["vae-digits"]]).run()
    box = at.selectbox(key="compare_sampler")
    assert box.options == ["default"] and box.disabled  # a one-pass family has no sampler to choose


def test_compare_page_without_results_explains_what_to_do(runs_dir):
    info = _any_run(runs_dir)
    bare = runs_dir / "no-eval-yet"
    shutil.copytree(info.path, bare, ignore=shutil.ignore_patterns("train_state.pt", ".lock", "eval"))
    at = _open("5_Compare.py")
    at.multiselect(key="compare_sel").set_value([str(bare)]).run()
    assert any("Evaluate selected" in i.value for i in at.info)
    assert at.radio(key="compare_preset").help


# -- Augment: the study ------------------------------------------------------------------------------


# A study run twice through the queue's worker (a generator, then the classifiers of each cell):
# 31 s alone and 121 s beside other work on 2 cores, so it belongs with the long runs of `make test`.
@pytest.mark.slow
def test_augment_page_study_progress_per_cell_cancel_and_resume(runs_dir):

    at = _open("7_Augment.py")
    assert at.radio(key="study_source").value == "per-level"  # the leakage-free protocol is the default
    at.multiselect(key="study_models").set_value(["vae"]).run()
    at.number_input(key="study_minutes").set_value(0.1).run()
    at.multiselect(key="study_levels").set_value([10]).run()
    at.multiselect(key="study_ratios").set_value([0, 1]).run()
    at.slider(key="study_seeds").set_value(1).run()
    at.radio(key="study_budget").set_value("quick").run()
    _ok(at)
    assert any("1 generators to train" in c.value for c in at.caption)
    at.button(key="study_go").click().run()
    job = _jobs(at, "study")[0]
    JobQueue(load_config()).cancel(open_workspace(load_config(), job.workspace), job.id)
    _wait_for_jobs(at, 120)
    at.run()
    assert _jobs(at, "study")[0].status == "cancelled"
    at.button(key="study_resume").click().run()  # the same study again: what finished is reused
    _wait_for_jobs(at, 300)
    at.run()
    _ok(at)
    assert not _errors(at), _errors(at)
    study = at.session_state["study_result"]
    assert {(c["per_class"], c["ratio"]) for c in study.cells} == {(10, 0.0), (10, 1.0)}
    assert study.cells[0]["generator"]["n_train"] == 100  # trained on exactly the 10 images per class the classifier saw
    assert at.get("plotly_chart") and len(at.get("download_button")) >= 2
    cells = next(d.value for d in at.dataframe if list(d.value.columns) == ["cell"])
    assert any("real only" in c for c in cells["cell"]) and any("+1x" in c for c in cells["cell"])
    text = " ".join(m.value for m in at.markdown)
    assert "10/class" in text and any(w in text for w in ("helped", "did not help", "No meaningful difference", "Cannot tell at this budget", "One seed"))


# -- Learn ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family, needle", [("ddpm", "Forward process"), ("vae", "Reconstructions"), ("gan", "two-player game")])
def test_learn_page_per_family(runs_dir, family, needle):
    info = _run_of(family, runs_dir)
    at = _open("6_Learn.py", run=info)
    assert len(at.tabs) >= 3
    _select_run(at, "learn_run", info)
    assert not _errors(at)
    assert any(needle in m.value for m in at.markdown)
    if family == "ddpm":
        at.slider(key="learn_rv_steps").set_value(6).run()
        _ok(at)
        assert len(_image_urls(at)) >= 7 + 2 * 6
    else:
        assert at.get("plotly_chart")


# -- jobs -------------------------------------------------------------------------------------------


# -- engine helpers behind Latent space and Learn ------------------------------------------------------


def test_latent_helpers_shapes_determinism_and_errors(runs_dir):
    import torch

    from gda_core import latent
    from gda_core.data import load_dataset

    a, b = torch.randn(32), torch.randn(32)
    t = torch.linspace(0, 1, 5)
    s = latent.slerp(a, b, t)
    assert torch.allclose(s[0], a, atol=1e-5) and torch.allclose(s[-1], b, atol=1e-5)
    assert torch.allclose(latent.lerp(a, b, t)[2], (a + b) / 2, atol=1e-6)
    # slerp keeps the norm of same-norm endpoints
    bn = b / b.norm() * a.norm()
    assert torch.allclose(latent.slerp(a, bn, t).norm(dim=1), a.norm().expand(5), rtol=1e-4)
    info = _run_of("vae", runs_dir)
    model = load_run(info.path, "cpu").model
    f1 = latent.interpolate_seeds(model, 0, 1, 3, frames=5)
    f2 = latent.interpolate_seeds(model, 0, 1, 3, frames=5)
    assert f1.shape == (5, 16, 16, 1) and f1.dtype == np.uint8 and np.array_equal(f1, f2)
    tr = latent.traverse(model, 0, 2, dims=[0, 3], values=[-3, 0, 3])
    assert tr.shape == (2, 3, 16, 16, 1)
    with pytest.raises(ConfigError):
        latent.traverse(model, 0, 2, dims=[999])
    ds = load_dataset("digits")
    m = latent.embed_map(ds.train_images[:40], ds.train_labels[:40], f1, [3] * 5, method="pca", seed=0)
    assert m.coords.shape == (45, 2) and m.synthetic.sum() == 5
    # A training image is its own nearest neighbour at SSIM 1 and is flagged.
    nb = latent.nearest_neighbours(ds.train_images[[7, 11]], ds.train_images)
    assert list(nb.index) == [7, 11] and np.allclose(nb.ssim, 1.0) and nb.flagged.all()
    assert latent.gif_bytes(f1)[:6] == b"GIF89a"


def test_learn_helpers(runs_dir):
    from gda_core import learn
    from gda_core.data import load_dataset

    ds = load_dataset("digits")
    info = _run_of("ddpm", runs_dir)
    model = load_run(info.path, "cpu").model
    ts = learn.default_timesteps(model, 5)
    frames = learn.forward_noising(model, ds.train_images[0], ts, seed=0)
    assert frames.shape == (5, 16, 16, 1)
    assert np.abs(frames[0].astype(int) - ds.train_images[0].astype(int)).max() <= 3  # t = 0: almost clean
    sig = learn.signal_fraction(model, ts)
    assert sig[0] > 0.99 and sig[-1] < 0.05 and sig == sorted(sig, reverse=True)
    tr = learn.denoising_trajectory(model, 3, seed=0, steps=6, show=4)
    assert tr.x_t.shape == (4, 16, 16, 1) and tr.x0_pred.shape == (4, 16, 16, 1)
    with pytest.raises(ConfigError):
        learn.forward_noising(model, ds.train_images[0], [5000])
    c = learn.curves([{"step": 10, "a": 1.0}, {"step": 20, "b": 2.0}], ["a", "b", "zz"])
    assert c["step"] == [10, 20] and c["a"][0] == 1.0 and np.isnan(c["a"][1]) and "zz" not in c
