"""Run ``python -m gda_core`` under torchrun (gloo on CPU) for the data-parallel tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nproc: int, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node nproc -m gda_core *args`` on 127.0.0.1, one thread per process
    (the processes write to the captured stderr directly; ``report`` formats it for a failure).
    From ROOT, so that ``-m gda_core`` runs this checkout's package."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1"]
    cmd += ["--master_port", str(free_port()), "-m", "gda_core", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def report(r: subprocess.CompletedProcess, limit: int = 12000) -> str:
    """A failed run's stderr for the assertion message: the processes' own output comes first in
    it and torchrun's summary (which names the rank and signal) last, so keep both ends."""
    err = r.stderr
    if len(err) <= limit:
        return f"exit {r.returncode}\n{err}"
    return f"exit {r.returncode}\n{err[: limit // 2]}\n[... {len(err) - limit} characters ...]\n{err[-limit // 2 :]}"
