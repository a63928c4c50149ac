"""Screenshots of the app for the README and the guides, taken in a real browser, so they can be
re-made whenever a page changes.

    .venv/bin/python -m bench.screenshots [--only home,compare,...] [--out docs/images]

Starts ``streamlit run app.py`` on a free port of 127.0.0.1 (runs and caches in a temporary
folder, shipped checkpoints visible), drives Debian's chromium through Playwright and writes one
PNG per shot. The guides' shots load the real datasets from ../shared/data (pneumoniamnist for the
clinician, plantvillage_corn for the agronomist) and run a small study on the Augment page (a few
minutes on a CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

from tests.serving import streamlit_server

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def streamlit(tmp: Path):
    """The app with its data in ``tmp`` (one workspace per browser context, shipped checkpoints
    visible); server paths on, because the agronomist's shot opens a file on this computer."""
    with streamlit_server(tmp, tmp / "app", env={"GDA_DATA_DIR": str(SHARED / "pneumoniamnist"), "GDA_ALLOW_SERVER_PATHS": "1"}) as url:
        yield url


def settle(pg, timeout: float = 600) -> None:
    """Wait until the script run has finished (the 'Running...' status widget is gone)."""
    time.sleep(1.5)
    end = time.time() + timeout
    while time.time() < end:
        if pg.locator('[data-testid="stStatusWidget"]').count() == 0:
            time.sleep(0.7)
            if pg.locator('[data-testid="stStatusWidget"]').count() == 0:
                return
        time.sleep(0.3)


def choose(pg, label: str, text: str) -> None:
    box = pg.get_by_role("combobox", name=label, exact=True)
    box.click()
    box.fill(text)
    pg.get_by_role("option").filter(has_text=text).first.click()
    settle(pg)
    pg.keyboard.press("Escape")


def shot(pg, out: Path, name: str, *, full: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(out / f"{name}.png"), full_page=full)
    print(f"wrote {out / name}.png", flush=True)


def goto(pg, url: str, page: str) -> None:
    """Open ``page``: by the sidebar once the app is open, so the browser session (and with it the
    chosen dataset) is kept; a fresh load only for the first page."""
    if pg.url.startswith(url):
        title = page.replace("_", " ") or "Home"
        pg.locator('[data-testid="stSidebarNavLink"]').filter(has_text=title).first.click()
        pg.wait_for_function(f"() => document.querySelector('h1') && document.querySelector('h1').innerText.trim() === {title if page else 'GDA Studio'!r}")
    else:
        pg.goto(f"{url}/{page}")
        pg.wait_for_selector("h1")
    settle(pg)


def dataset(pg, url: str, *, name: str | None = None, path: str | None = None) -> None:
    """Make ``name`` (a registered dataset) or ``path`` (a file on this computer) the current dataset."""
    goto(pg, url, "Data")
    if name is not None:
        choose(pg, "Dataset", name)
    else:
        pg.get_by_text("Local folder or file").first.click()
        settle(pg)
        box = pg.get_by_role("textbox", name="Path on this computer")  # the label also names its help button
        box.fill(path)
        box.press("Enter")
        settle(pg)
        # A file is decoded by a worker, off the server process: wait until the page shows it.
        pg.get_by_text("being decoded in the background").first.wait_for(state="hidden", timeout=900_000)
        settle(pg)


def small_study(pg, url: str) -> None:
    """A small leakage-free study on the Augment page (VAE, 10 and 50 per class, 2 seeds)."""
    goto(pg, url, "Augment")
    models = pg.get_by_role("combobox", name="Model families")
    for _ in range(3):  # clear the default families, then pick the VAE
        pg.locator('[data-testid="stMultiSelect"]').filter(has_text="Model families").locator('[aria-label^="Remove"]').first.click()
        settle(pg)
    models.click()
    models.fill("vae")
    pg.get_by_role("option").filter(has_text="vae").first.click()
    pg.keyboard.press("Escape")
    settle(pg)
    levels = pg.get_by_role("combobox", name="Real images per class")
    levels.click()
    levels.press("Backspace")  # drops the last level, "all": the full training split is not "a few minutes"
    pg.keyboard.press("Escape")
    settle(pg)
    seeds = pg.get_by_role("slider", name="Seeds")
    seeds.focus()
    seeds.press("ArrowLeft")  # 3 -> 2 seeds: still an interval, a third less work
    settle(pg)
    minutes = pg.get_by_role("spinbutton", name="Minutes per generator")  # the label also names its help button
    minutes.fill("0.3")
    minutes.press("Enter")
    settle(pg)
    pg.get_by_role("button", name="Run study").click()
    pg.get_by_text("Does synthetic data help?", exact=False).last.wait_for(timeout=1_800_000)
    pg.get_by_role("heading", name="Reading").wait_for(timeout=1_800_000)
    settle(pg)


def train_small(pg, url: str, family: str, steps: int) -> None:
    """Train ``family`` for ``steps`` steps on the current dataset from the Train page and wait."""
    goto(pg, url, "Train")
    choose(pg, "Model family", family)
    box = pg.get_by_role("spinbutton", name="Steps", exact=True)
    box.fill(str(steps))
    box.press("Enter")
    settle(pg)
    pg.get_by_role("button", name="Start training").click()
    pg.get_by_text("Finished in").wait_for(timeout=1_800_000)
    settle(pg)


def agronomist(pg, url: str, out: Path) -> None:
    dataset(pg, url, path=str(SHARED / "plantvillage_corn" / "plantvillage_corn.npz"))
    shot(pg, out, "agronomist_data")
    train_small(pg, url, "VAE", 400)
    shot(pg, out, "agronomist_train", full=True)


SHOTS = {
    "home": lambda pg, url, out: (goto(pg, url, ""), shot(pg, out, "home")),
    "compare": lambda pg, url, out: (goto(pg, url, "Compare"), shot(pg, out, "compare", full=True)),
    "sample": lambda pg, url, out: (goto(pg, url, "Sample"), shot(pg, out, "sample")),
    "latent": lambda pg, url, out: (goto(pg, url, "Latent_space"), shot(pg, out, "latent_space")),
    "learn": lambda pg, url, out: (goto(pg, url, "Learn"), shot(pg, out, "learn")),
    "train": lambda pg, url, out: (goto(pg, url, "Train"), shot(pg, out, "train")),
    "clinician": lambda pg, url, out: (dataset(pg, url, name="pneumoniamnist"), shot(pg, out, "clinician_data"),
                                        small_study(pg, url), shot(pg, out, "clinician_study", full=True)),
    "agronomist": agronomist,
}  # fmt: skip


def main() -> int:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(SHOTS))
    ap.add_argument("--out", default=str(ROOT / "docs" / "images"))
    args = ap.parse_args()
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp, streamlit(Path(tmp)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        for name in args.only.split(","):
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            pg = ctx.new_page()
            pg.set_default_timeout(300_000)
            SHOTS[name](pg, url, out)
            ctx.close()
        browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
