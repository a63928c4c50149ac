"""Real-browser tests: Debian's chromium (through Playwright) against ``streamlit run app.py``.

Run with ``pytest -m browser tests/test_browser.py``. Screenshots go to test-output/screenshots/.
Needs /usr/bin/chromium (``apt-get install chromium``) and the Python ``playwright`` package; the
tests skip, saying which is missing, otherwise. Checkpoints: the shipped ones, plus
$GDA_TEST_RUNS_DIR's runs when set (as in test_app.py).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from gda_core.checkpoints import list_runs

from .serving import small_class_zip, streamlit_server

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "test-output" / "screenshots"
# URL of each page: the file name without its number, as in the sidebar's links.
PAGES = {"home": "", "data": "Data", "train": "Train", "sample": "Sample", "latent": "Latent_space", "compare": "Compare", "learn": "Learn",
         "augment": "Augment"}  # fmt: skip

if not Path(CHROMIUM).exists():
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium) to run the browser tests", allow_module_level=True
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")


def _seed_runs(dst: Path) -> None:
    """Copy $GDA_TEST_RUNS_DIR's runs and add two runs with saved evaluations for the Compare page
    (into the app's published area: runs every workspace sees)."""
    from gda_core.metrics import Report

    dst.mkdir(parents=True, exist_ok=True)
    extra = os.environ.get("GDA_TEST_RUNS_DIR")
    if extra and Path(extra).is_dir():
        for r in list_runs(extra, include_shipped=False):
            shutil.copytree(r.path, dst / r.path.name, ignore=shutil.ignore_patterns("train_state.pt", ".lock", "eval"))
    runs = list_runs(dst)
    if not runs:
        return
    for name, k in (("eval-demo-a", 1.0), ("eval-demo-b", 0.6)):
        shutil.copytree(runs[0].path, dst / name, ignore=shutil.ignore_patterns("train_state.pt", ".lock", "eval"))
        raw = {"precision": 0.8 * k, "recall": 0.7 * k, "images_per_s": 3000.0 * k, "tstr_acc": 0.9 * k, "trtr_acc": 0.95,
               "deepfool_rho_tstr": 0.1 * k, "deepfool_rho_trtr": 0.12, "nearest_ssim_mean": 0.5, "memorization_rate": 0.0}  # fmt: skip
        Report.from_raw(raw, provenance={"seed": 0, "n_samples": 100, "device": "CPU"}).save(dst / name / "eval" / "demo.json")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    app_data = tmp / "app"
    runs = app_data / "published"
    _seed_runs(runs)
    with streamlit_server(tmp, app_data) as url:
        yield {"url": url, "runs": runs, "app": app_data}


def _launch(p):
    return p.chromium.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        headless=True,
    )


@pytest.fixture(scope="module")
def browser(server):
    with sync_api.sync_playwright() as p:
        b = _launch(p)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1800})
    pg = ctx.new_page()
    pg.set_default_timeout(120_000)
    yield pg
    ctx.close()


def _settle(pg, timeout: float = 180) -> None:
    """Wait until the script has finished running (the 'Running...' status widget is gone)."""
    time.sleep(1.5)
    end = time.time() + timeout
    while time.time() < end:
        if pg.locator('[data-testid="stStatusWidget"]').count() == 0:
            time.sleep(0.5)
            if pg.locator('[data-testid="stStatusWidget"]').count() == 0:
                return
        time.sleep(0.3)
    raise AssertionError("the app kept running for too long")


def _goto(pg, server, name: str) -> None:
    pg.goto(f"{server['url']}/{PAGES[name]}")
    pg.wait_for_selector("h1")
    _settle(pg)
    assert pg.locator('[data-testid="stException"]').count() == 0, pg.locator('[data-testid="stException"]').first.inner_text()


def _shot(pg, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _choose(pg, label: str, option_text: str) -> None:
    """Pick the first option containing ``option_text`` in the select box (combobox) labelled ``label``."""
    box = pg.get_by_role("combobox", name=label, exact=True)
    box.click()
    box.fill(option_text)
    pg.get_by_role("option").filter(has_text=option_text).first.click()
    _settle(pg)


def _needs(server, family: str):
    runs = [r for r in list_runs(server["runs"]) if r.family == family and r.dataset == "digits"]
    if not runs:
        pytest.skip(f"no '{family}' checkpoint on digits (ship checkpoints/ or set GDA_TEST_RUNS_DIR)")
    return runs[0]


def test_every_page_opens(page, server):
    for name in PAGES:
        _goto(page, server, name)
        assert page.locator("h1").first.inner_text().strip()
        assert page.locator('[data-testid="stSidebarNav"]').count() == 1
        _shot(page, name)
    # The sidebar lists the product's pages and nothing else (no helper module of pages/ as a page).
    links = [t.strip().splitlines()[-1].strip() for t in page.locator('[data-testid="stSidebarNavLink"]').all_inner_texts()]
    assert links == ["Home", "Data", "Train", "Sample", "Latent space", "Compare", "Learn", "Augment"], links


def test_sample_temperature_slider_changes_the_image(page, server):
    info = _needs(server, "vae")
    _goto(page, server, "sample")
    _choose(page, "Checkpoint", info.path.name + " ")
    img = page.locator('[data-testid="stImage"] img').first
    before_src = img.get_attribute("src")
    before = page.request.get(before_src if before_src.startswith("http") else server["url"] + before_src).body()
    slider = page.locator('[data-testid="stSlider"]').filter(has_text="Temperature").locator('input[type="range"]')
    slider.focus()
    for _ in range(8):
        slider.press("ArrowLeft")
    _settle(page)
    assert slider.get_attribute("aria-valuetext") == "0.60"
    # The rerun starts after the slider's debounce: wait for the grid to be replaced.
    after_src = before_src
    end = time.time() + 120
    while after_src == before_src and time.time() < end:
        time.sleep(0.5)
        after_src = page.locator('[data-testid="stImage"] img').first.get_attribute("src")
    _settle(page)
    after_src = page.locator('[data-testid="stImage"] img').first.get_attribute("src")
    after = page.request.get(after_src if after_src.startswith("http") else server["url"] + after_src).body()
    assert after_src != before_src and after != before and after[:4] == b"\x89PNG"
    _shot(page, "sample_temperature_0.60")


def test_short_training_runs_to_completion(page, server):
    _goto(page, server, "train")
    _choose(page, "Model family", "VAE")
    steps = page.get_by_label("Steps", exact=True)
    steps.fill("30")
    steps.press("Enter")
    _settle(page)
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Finished in").wait_for(timeout=480_000)
    _settle(page)
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= 1
    _shot(page, "train_finished")
    mine = list((server["app"] / "workspaces").glob("*/runs"))
    finished = [r for r in list_runs(*mine, include_shipped=False) if r.family == "vae" and r.step == 30 and r.finished]
    assert finished, "the finished run is not in a workspace's runs folder"


def test_compare_shows_the_radar_chart(page, server):
    if not (server["runs"] / "eval-demo-a").is_dir():
        pytest.skip("no checkpoint to build a comparison from")
    _goto(page, server, "compare")
    box = page.get_by_role("combobox", name="Checkpoints to compare")
    for name in ("eval-demo-a", "eval-demo-b"):
        box.click()
        box.fill(name)
        page.get_by_role("option").filter(has_text=name).first.click()
        _settle(page)
    page.keyboard.press("Escape")  # saved evaluations are drawn as soon as their checkpoints are selected
    _settle(page)
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    chart.wait_for()
    assert chart.locator(".polarlayer, g.polar").count() >= 1, "the chart is not a radar (polar) chart"
    assert page.get_by_text("Reading").count() >= 1
    _shot(page, "compare_radar")


def test_a_deep_link_as_the_first_request_opens_that_page(browser, tmp_path):
    """A fresh server whose very first request is /Train (a bookmark, a link in a report) shows the
    Train page inside the app: shared sidebar, the app's pages only, no 'Page not found'."""
    with streamlit_server(tmp_path, tmp_path / "app") as url:
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            pg = ctx.new_page()
            pg.set_default_timeout(180_000)
            pg.goto(f"{url}/{PAGES['train']}")
            pg.wait_for_selector("h1")
            _settle(pg)
            assert pg.locator("h1").first.inner_text().strip() == "Train"
            links = [t.strip().splitlines()[-1].strip() for t in pg.locator('[data-testid="stSidebarNavLink"]').all_inner_texts()]
            assert links == ["Home", "Data", "Train", "Sample", "Latent space", "Compare", "Learn", "Augment"], links
            assert pg.get_by_text("Page not found").count() == 0
            assert pg.get_by_text("Device").count() >= 1  # app.py's shared sidebar ran
            # the app adds the workspace token (?ws=...) to the URL: the path alone is the page
            assert urlparse(pg.url).path.rstrip("/").endswith("/Train"), pg.url
            _shot(pg, "deep_link_first_request")
        finally:
            ctx.close()


def _token(pg) -> str:
    return parse_qs(urlparse(pg.url).query)["ws"][0]


def _open_ws(pg, server, name: str, token: str | None) -> None:
    pg.goto(f"{server['url']}/{PAGES[name]}" + (f"?ws={token}" if token else ""))
    pg.wait_for_selector("h1")
    _settle(pg)
    assert pg.locator('[data-testid="stException"]').count() == 0


def _start_training(pg, steps: str) -> None:
    _choose(pg, "Model family", "VAE")
    box = pg.get_by_label("Steps", exact=True)
    box.fill(steps)
    box.press("Enter")
    _settle(pg)
    pg.get_by_role("button", name="Start training").click()
    _settle(pg)


@pytest.mark.slow
def test_workspaces_are_private_and_survive_a_reload_with_the_running_job(browser, server):
    """Alice uploads a dataset and trains; Bob (another browser, no link) sees none of it; Alice's
    job killed with SIGKILL shows failed with the reason while the server keeps serving; after a
    reload Alice still has her dataset, her runs and her running job, and cancels it."""
    import signal

    from gda_core.server.config import load_config
    from gda_core.server.queue import store_for

    alice_ctx = browser.new_context(viewport={"width": 1400, "height": 1800})
    bob_ctx = browser.new_context(viewport={"width": 1400, "height": 1800})
    try:
        alice, bob = alice_ctx.new_page(), bob_ctx.new_page()
        for pg in (alice, bob):
            pg.set_default_timeout(240_000)
        _open_ws(alice, server, "data", None)
        token = _token(alice)
        alice.get_by_text("Upload a .zip or .npz").click()
        _settle(alice)
        alice.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
            files=[{"name": "pets.zip", "mimeType": "application/zip", "buffer": small_class_zip("pets")}])
        alice.get_by_role("heading", name="pets.zip").wait_for()
        _open_ws(alice, server, "train", token)
        _start_training(alice, "5000")
        store = store_for(load_config(server["app"]))
        job = next(j for j in store.list(token, "train"))
        end = time.time() + 240
        while store.get(job.id).status != "running" and time.time() < end:
            time.sleep(0.5)
        os.kill(store.get(job.id).pid, signal.SIGKILL)
        alice.get_by_text("SIGKILL").first.wait_for()
        _start_training(alice, "5000")
        jobs = store.list(token, "train")
        run_names = [Path(j.meta["out"]).name for j in jobs]
        assert len(run_names) == 2
        second = Path(jobs[0].meta["out"])
        end = time.time() + 240
        while not (second / "model.safetensors").exists() and time.time() < end:  # its first checkpoint
            time.sleep(0.5)
        # Bob: a workspace of his own, where none of Alice's data, runs or jobs appear.
        _open_ws(bob, server, "train", None)
        assert _token(bob) != token
        assert bob.get_by_text("None yet in this workspace").count() == 1
        for name in ("data", "sample", "train"):
            _open_ws(bob, server, name, _token(bob))
            html = bob.content()
            assert "pets" not in html and not any(r in html for r in run_names), name
        # Alice reloads: her dataset, her runs and the running job are there; she cancels it.
        alice.reload()
        alice.wait_for_selector("h1")
        _settle(alice)
        assert _token(alice) == token
        assert alice.get_by_text("pets.zip").count() >= 1  # the sidebar's current dataset
        alice.get_by_role("button", name="Cancel").first.click()
        alice.get_by_text("⏹ cancelled").first.wait_for()
        alice.get_by_role("tab", name="Resume a run").click()
        assert alice.get_by_text(second.name).count() >= 1
        _shot(alice, "workspace_after_reload_cancelled")
    finally:
        alice_ctx.close()
        bob_ctx.close()


@pytest.mark.slow
def test_a_reload_after_uploading_and_training_shows_the_upload_on_the_data_page(browser, server):
    """As a new user: upload a zip, train on it, reload. The Data page shows the upload (it showed
    the built-in digits, and made them the workspace's dataset)."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1800})
    try:
        pg = ctx.new_page()
        pg.set_default_timeout(240_000)
        _open_ws(pg, server, "data", None)
        token = _token(pg)
        pg.get_by_text("Upload a .zip or .npz").click()
        _settle(pg)
        pg.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
            files=[{"name": "crops.zip", "mimeType": "application/zip", "buffer": small_class_zip("crops")}])  # fmt: skip
        pg.get_by_role("heading", name="crops.zip").wait_for()
        _open_ws(pg, server, "train", token)
        _start_training(pg, "20")
        pg.get_by_text("Finished in").wait_for(timeout=480_000)
        for name in ("train", "data"):
            if name == "data":
                _open_ws(pg, server, "data", token)
            pg.reload()
            pg.wait_for_selector("h1")
            _settle(pg)
            assert _token(pg) == token
        pg.get_by_role("heading", name="crops.zip").wait_for(timeout=60_000)
        assert pg.get_by_role("heading", name="digits").count() == 0
        _shot(pg, "data_after_reload")
    finally:
        ctx.close()
