"""An on-disk cache for the outputs of pipeline stages (evaluation, study), content-addressed.

Each stage output is stored under ``<root>/<stage>/<key>.json`` (figures) or ``.npz`` (arrays,
read back with ``allow_pickle=False``), where ``key`` is a hash of everything the output depends
on. Writes are atomic (temp file + rename), so a run killed at any moment leaves only whole
entries: re-running recomputes exactly the stages that had not finished, and a run with one more
seed computes only that seed. ``hits`` / ``misses`` record what was reused, for the report's
provenance and for tests.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .runtime import _json_default, atomic_write_bytes, atomic_write_json

MAX_JSON_BYTES = 64_000_000


def stage_key(**parts: Any) -> str:
    """A short stable hash of the JSON of ``parts`` (sorted keys)."""
    blob = json.dumps(parts, sort_keys=True, default=_json_default).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


class StageCache:
    """Content-addressed stage outputs under ``root`` (None: a cache that stores nothing)."""

    def __init__(self, root: str | os.PathLike | None):
        self.root = Path(root).expanduser() if root is not None else None
        self.hits: list[str] = []
        self.misses: list[str] = []

    def _path(self, stage: str, key: str, suffix: str) -> Path | None:
        return None if self.root is None else self.root / stage / f"{key}{suffix}"

    def json(self, stage: str, key: str, compute: Callable[[], Any]) -> Any:
        """The cached JSON output of ``stage`` for ``key``, else ``compute()`` stored atomically."""
        path = self._path(stage, key, ".json")
        if path is not None and path.is_file() and path.stat().st_size <= MAX_JSON_BYTES:
            try:
                out = json.loads(path.read_text(encoding="utf-8"))
                self.hits.append(f"{stage}/{key}")
                return out
            except (OSError, ValueError):
                pass  # a damaged entry (disk trouble): recompute and overwrite
        out = compute()
        self.misses.append(f"{stage}/{key}")
        if path is not None:
            atomic_write_json(path, out)
        return out

    def arrays(self, stage: str, key: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Like ``json`` for a dict of numpy arrays (stored as one .npz, never pickled)."""
        path = self._path(stage, key, ".npz")
        if path is not None and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    out = {k: z[k] for k in z.files}
                self.hits.append(f"{stage}/{key}")
                return out
            except (OSError, ValueError, EOFError):
                pass
        out = {k: np.asarray(v) for k, v in compute().items()}
        self.misses.append(f"{stage}/{key}")
        if path is not None:
            buf = io.BytesIO()
            np.savez(buf, **out)
            atomic_write_bytes(path, buf.getvalue())
        return out

    def prune(self, stage: str, max_bytes: int) -> None:
        """Delete the oldest entries of ``stage`` until it holds at most ``max_bytes`` (large,
        cheap-to-recompute outputs such as synthetic images must not fill a disk)."""
        if self.root is None or not (self.root / stage).is_dir():
            return
        files = []
        for p in (self.root / stage).iterdir():
            try:
                st = p.stat()
            except OSError:
                continue
            if p.is_file() and not p.name.startswith("."):
                files.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in files)
        for _, size, p in sorted(files):
            if total <= max_bytes:
                break
            p.unlink(missing_ok=True)
            total -= size

    def summary(self) -> dict:
        """Which stage outputs were reused and which computed (for provenance)."""
        return {"root": str(self.root) if self.root else None, "reused": len(self.hits), "computed": len(self.misses)}
