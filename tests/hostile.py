"""Helpers shared by the reliability, security and bench tests: run the CLI or a bench module
(subprocess or in-process), check the one-line error contract, snapshot folders, and a driver that
kills training mid-write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The kill/resume tests compare weights bit for bit across processes: pin the thread count so every
# process reduces in the same order (and so the tests stay light on a shared 2-core machine).
ENV = {
    **os.environ,
    "GDA_ALLOW_DOWNLOAD": "0",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}

# A real but tiny training run on the offline digits dataset.
TINY_TRAIN = ["--dataset", "digits", "--model", "vae", "--set", "latent_dim=8", "--set", "base_channels=8", "--per-class", "20", "--batch-size", "16"]


def train_args(out: Path, steps: int, *extra: str, checkpoint_every: int = 25) -> list[str]:
    return ["train", *TINY_TRAIN, "--steps", str(steps), "--checkpoint-every", str(checkpoint_every), "--json", "--out", str(out), *extra]


def module(name: str, *args: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    """``python -m NAME ARGS`` in a subprocess (from ROOT: ``-m`` puts the working folder first on
    sys.path, so it runs this checkout's code whatever .venv has installed), e.g. ``bench.bench_protocol``."""
    return subprocess.run([sys.executable, "-m", name, *args], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=timeout, **kw)


def cli(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """``python -m gda_core ARGS`` in a subprocess."""
    return module("gda_core", *args, timeout=timeout, **kw)


def module_ok(name: str, *args: str, timeout: float = 600) -> str:
    """:func:`module` that must succeed; its stdout (the tail of both streams in the failure message)."""
    out = module(name, *args, timeout=timeout)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out.stdout


def popen(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gda_core", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV, **kw)


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def main_inprocess(args: list[str], capfd) -> tuple[int, str]:
    """Run the CLI's ``main`` in this process; return (exit code, captured stderr)."""
    from gda_core.cli import main

    capfd.readouterr()
    rc = main([str(a) for a in args])
    return rc, capfd.readouterr().err


def assert_one_line_error(rc: int, stderr: str, *fragments: str) -> str:
    """Exit code 2, exactly one stderr line ``error: ...`` holding every fragment, no traceback."""
    assert rc == 2, f"exit code {rc}, stderr: {stderr}"
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for frag in fragments:
        assert frag in lines[0], f"{frag!r} not in {lines[0]!r}"
    return lines[0]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with (size, mtime_ns): compare two snapshots to prove nothing was written."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out


# Runs `python -m gda_core ARGV...` but SIGKILLs itself inside a checkpoint write:
# GDA_KILL_IN_WRITE="NAME:N:WHEN" kills on the N-th os.replace whose target is NAME, WHEN = "before"
# (the temp file is complete, and then half-truncated, but not renamed) or "after" (renamed, the
# rest of the checkpoint not yet written).
KILL_DRIVER = r"""
import os, runpy, signal, sys
name, nth, when = os.environ["GDA_KILL_IN_WRITE"].split(":")
nth = int(nth)
real_replace = os.replace
seen = [0]

def replace(src, dst, *a, **kw):
    if os.path.basename(os.fspath(dst)) == name:
        seen[0] += 1
        if seen[0] == nth:
            if when == "before":
                size = os.path.getsize(src)
                with open(src, "r+b") as fh:
                    fh.truncate(size // 2)
                os.kill(os.getpid(), signal.SIGKILL)
            real_replace(src, dst, *a, **kw)
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, *a, **kw)

os.replace = replace
sys.argv = ["gda_core", *sys.argv[1:]]
runpy.run_module("gda_core", run_name="__main__")
"""


def run_kill_in_write(args: list[str], spec: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", KILL_DRIVER, *args], capture_output=True, text=True, cwd=ROOT, env={**ENV, "GDA_KILL_IN_WRITE": spec}, timeout=timeout
    )
