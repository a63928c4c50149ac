"""A real ``streamlit run app.py`` for whatever talks to the server over HTTP: the browser tests,
the WebSocket Host check, the load test (bench/bench_server.py) and the screenshots
(bench/screenshots.py). No pytest import: the bench scripts use it too."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerUrl(str):
    """The server's URL, and the pid of its process (for its memory)."""

    pid: int


@contextlib.contextmanager
def streamlit_server(tmp: Path, app_data: Path, threads: int = 2, env: dict[str, str] | None = None):
    """``streamlit run app.py`` on a free port of 127.0.0.1 with its data in ``app_data`` until the
    block ends (then its queue's worker is stopped too); yields its URL. The repository's
    .streamlit/config.toml applies (the server runs from the checkout); ``env`` adds variables."""
    from gda_core.server.config import load_config
    from gda_core.server.queue import stop_worker

    port = free_port()
    env = {**os.environ, "GDA_APP_DATA": str(app_data), "GDA_ALLOW_DOWNLOAD": "0", "GDA_CACHE_DIR": str(tmp / "cache"),
           "OMP_NUM_THREADS": str(threads), **(env or {})}
    log = open(tmp / "streamlit.log", "w")  # noqa: SIM115 - closed below
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port), "--server.address", "127.0.0.1",
           "--server.headless", "true", "--browser.gatherUsageStats", "false"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = ServerUrl(f"http://127.0.0.1:{port}")
    url.pid = proc.pid
    try:
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"streamlit did not start; see {tmp / 'streamlit.log'}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        stop_worker(load_config(app_data))


def small_class_zip(name: str, seed: int = 0, classes: tuple[str, ...] = ("cats", "dogs"), per_class: int = 8) -> bytes:
    """A zip of ``per_class`` random 16 px grey PNGs per class folder, under a folder ``name``."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for c in classes:
            for i in range(per_class):
                img = io.BytesIO()
                Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(img, format="PNG")
                zf.writestr(f"{name}/{c}/{i}.png", img.getvalue())
    return buf.getvalue()
