"""Load test of the shared server: N browser sessions against one ``streamlit run``, while two long
trainings keep workers busy.

    .venv/bin/python -m bench.bench_server [--sessions 8] [--workers 3] [--long-minutes 20]

Each session is its own Playwright browser context (Debian's chromium; nothing is downloaded), so
its own workspace: it uploads a small dataset (decoded by a worker), trains a tiny VAE, samples
from it and opens Compare. Meanwhile two long DDPM trainings of another workspace occupy two of the
workers, as a class's or a team's long runs would. Recorded in bench/results/server_load.json:
sessions held (finished every step), each page's response time (navigation or click until the
script has finished: p50 / p95), queue wait of the sessions' jobs (submitted -> started), jobs lost
(any job that did not end as expected), cross-workspace leaks (another session's run or dataset
name found in a session's pages), the web server's peak memory (VmHWM) and the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.bench_speed import _cpu_model
from gda_core.runtime import atomic_write_json
from tests.serving import small_class_zip, streamlit_server

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


STATUS = '[data-testid="stStatusWidget"]'


async def _settle(pg, timeout: float = 600) -> float:
    """Wait until the script run has finished: at least a second, then the status widget ('Running...')
    unseen for 0.3 s. Returns when it was last seen (this call's start if never), so that a response
    time ends when the page was ready, not when this wait was sure of it."""
    start = last = time.perf_counter()
    while time.perf_counter() < start + timeout:
        now = time.perf_counter()
        if await pg.locator(STATUS).count():
            last = now
        elif now - start >= 1.0 and now - last >= 0.3:
            return last
        await asyncio.sleep(0.1)
    raise TimeoutError("the app kept running")


class Session:
    def __init__(self, i: int, url: str, shots: Path):
        self.i, self.url, self.token, self.times, self.error = i, url, None, [], None
        self.pages: list[str] = []
        self.step, self.shots = "start", shots  # where a lost session stopped, and its screenshot

    async def timed(self, what: str, pg, action=None) -> None:
        """Time ``action`` (a navigation or a click) until the script run it caused has finished."""
        self.step = what
        t0 = time.perf_counter()
        if action is not None:
            await action
        self.times.append((what, await _settle(pg) - t0))

    async def open(self, pg, page: str) -> None:
        async def go():
            await pg.goto(f"{self.url}/{page}" + (f"?ws={self.token}" if self.token else ""))
            await pg.wait_for_selector("h1")

        await self.timed(page or "Home", pg, go())
        if await pg.locator('[data-testid="stException"]').count():
            raise RuntimeError(f"exception on {page}")
        self.pages.append(await pg.content())  # searched for other sessions' names afterwards

    async def run(self, browser) -> None:
        ctx = await browser.new_context(viewport={"width": 1400, "height": 1600})
        try:
            pg = await ctx.new_page()
            pg.set_default_timeout(1_200_000)
            await self.open(pg, "Data")
            self.token = pg.url.split("ws=")[1].split("&")[0]
            await pg.get_by_text("Upload a .zip or .npz").click()
            await _settle(pg)
            await pg.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
                files=[{"name": f"set{self.i}.zip", "mimeType": "application/zip", "buffer": small_class_zip(f"set{self.i}", self.i, ("left", "right"), 12)}])
            self.step = "Data: wait for the decoded upload"
            await pg.get_by_role("heading", name=f"set{self.i}.zip").wait_for()
            await self.open(pg, "Train")
            box = pg.get_by_role("combobox", name="Model family", exact=True)
            await box.click()
            await box.fill("VAE")
            await pg.get_by_role("option").filter(has_text="VAE").first.click()
            await _settle(pg)
            steps = pg.get_by_label("Steps", exact=True)
            await steps.fill("20")
            await self.timed("Train: set steps", pg, steps.press("Enter"))
            await self.timed("Train: start", pg, pg.get_by_role("button", name="Start training").click())
            self.step = "Train: wait for 'Finished in'"
            await pg.get_by_text("Finished in").wait_for()
            await self.open(pg, "Sample")
            await self.open(pg, "Compare")
            await self.open(pg, "Train")
        except Exception as exc:  # noqa: BLE001 - a lost session is a result, not a crash of the bench
            self.error = f"{self.step}: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            with contextlib.suppress(Exception):  # what the page showed then, for whoever reads the error
                await pg.screenshot(path=str(self.shots / f"session{self.i}.png"), full_page=True)
        finally:
            await ctx.close()


async def _sessions(url: str, n: int, shots: Path) -> list[Session]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        sessions = [Session(i, url, shots) for i in range(n)]
        await asyncio.gather(*(s.run(browser) for s in sessions))
        await browser.close()
    return sessions


def _peak_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _start_long_trainings(cfg, minutes: float) -> list[str]:
    from gda_core.data import load_dataset
    from gda_core.jobs import JobQueue, unique_run_dir
    from gda_core.server.workspaces import create_workspace

    q, ws = JobQueue(cfg), create_workspace(cfg, name="long runs")
    ds = load_dataset("digits")
    return [q.start_training(ws, family="ddpm", dataset=ds, out=unique_run_dir(ws.runs, "ddpm", "digits"), minutes=minutes, seed=s).id
            for s in (0, 1)]  # fmt: skip


def _pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 3) if xs else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--workers", type=int, default=3, help="queue workers: two for the long trainings, the rest for the sessions' jobs")
    ap.add_argument("--long-minutes", type=float, default=20.0)
    ap.add_argument("--browser-nice", type=int, default=5,
                    help="CPU niceness of the browsers (0-19): they stand for users' own machines, and on a 2-core box at the web "
                         "server's priority they take the CPU the server answers with; the job processes sit at 10")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "server_load.json"))
    args = ap.parse_args()
    from gda_core.server.config import load_config
    from gda_core.server.queue import ensure_worker, store_for

    tmp = Path(tempfile.mkdtemp(prefix="gda-load-"))
    app = tmp / "app"
    app.mkdir()
    (app / "server.toml").write_text(f"workers = {args.workers}\njob_threads = 1\n")
    os.environ.update(GDA_APP_DATA=str(app), GDA_CACHE_DIR=str(tmp / "cache"), GDA_ALLOW_DOWNLOAD="0", OMP_NUM_THREADS="1")
    cfg = load_config()
    load_before = os.getloadavg()
    with streamlit_server(tmp, app, threads=1) as url:
        urllib.request.urlopen(url, timeout=60).read()
        ensure_worker(cfg)
        long_ids = _start_long_trainings(cfg, args.long_minutes)
        time.sleep(5)
        # From here on this process and what it starts (Playwright's driver, chromium) run at the browsers'
        # niceness; the web server and the worker were started before, at their own.
        os.nice(max(0, min(19, args.browser_nice)))
        t0 = time.perf_counter()
        sessions = asyncio.run(_sessions(url, args.sessions, tmp))
        wall = time.perf_counter() - t0
        peak = _peak_kib(url.pid)
        store = store_for(cfg)
        jobs = [j for s in sessions if s.token for j in store.list(s.token)]
        long_jobs = [store.get(i) for i in long_ids]
    times = [t for s in sessions for _, t in s.times]
    names = {s.i: [f"set{s.i}"] + [Path(j.meta.get("out", "")).name for j in jobs if j.workspace == s.token and j.meta.get("out")] for s in sessions}
    leaks = sum(1 for s in sessions for html in s.pages for o in sessions if o.i != s.i for n in names[o.i] if n and n in html)
    lost = [j.title for j in jobs if j.status != "done"] + [j.title for j in long_jobs if j.status == "failed"]
    waits = [j.waited_s for j in jobs if j.started]
    result = {
        "meta": {"command": "python -m bench.bench_server " + " ".join(sys.argv[1:]), "date": datetime.now(UTC).isoformat(timespec="seconds"),
                 "cpu": _cpu_model(), "cpus": os.cpu_count(), "threads": 1, "python": platform.python_version(), "wall_s": round(wall, 1),
                 "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "settings": {"sessions": args.sessions, "workers": args.workers, "job_threads": 1, "long_trainings": 2, "browser_niceness": args.browser_nice,
                     "long_training": f"ddpm on digits, {args.long_minutes:g} minutes each"},
        "sessions_held": sum(1 for s in sessions if s.error is None), "session_errors": [s.error for s in sessions if s.error],
        "page_response_s": {"p50": _pct(times, 50), "p95": _pct(times, 95), "max": round(max(times), 3) if times else None, "n": len(times),
                            "by_step_p50": {k: _pct([t for s in sessions for w, t in s.times if w == k], 50)
                                            for k in sorted({w for s in sessions for w, _ in s.times})}},
        "queue_wait_s": {"p50": _pct(waits, 50), "p95": _pct(waits, 95), "max": round(max(waits), 1) if waits else None, "jobs": len(waits)},
        "jobs_lost": len(lost), "jobs_lost_titles": lost[:20], "cross_workspace_leaks": leaks,
        "server_peak_rss_mib": round(peak / 1024, 1) if peak else None,
        "median_session_timed_s": round(statistics.median([sum(t for _, t in s.times) for s in sessions]), 1) if sessions else None,
    }  # fmt: skip
    atomic_write_json(args.out, result)
    print(f"screenshots of lost sessions, the server's and the worker's logs: {tmp}")
    print(f"wrote {args.out}: {result['sessions_held']}/{args.sessions} sessions held, p95 {result['page_response_s']['p95']} s, "
          f"jobs lost {len(lost)}, leaks {leaks}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
