"""The dataset choice and its loading: cached datasets, the session's current one, uploads decoded by a worker."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import streamlit as st

from gda_core.data import get_dataset_info, list_datasets, load_dataset
from gda_core.errors import GDAError
from gda_core.server.workspaces import check_data_source
from pages.ui.display import plain, show_error
from pages.ui.progress import live
from pages.ui.session import config, job_queue, setup, workspace


def _path_stamp(source: str) -> float:
    """mtime of a path source (so an edited folder / replaced file is reloaded); 0 for names."""
    try:
        return os.stat(source).st_mtime if os.path.exists(source) else 0.0
    except OSError:
        return 0.0


@st.cache_resource(show_spinner="Loading dataset...", max_entries=16)
def _load_dataset_cached(source: str, image_size, channels: str, per_class, seed: int, data_dir, subset_seed, stamp: float):
    return load_dataset(source, image_size=image_size, channels=channels, per_class=per_class, seed=seed, data_dir=data_dir,
                        subset_seed=subset_seed)  # fmt: skip


def load_dataset_cached(source: str, *, image_size=None, channels: str = "keep", per_class=None, seed: int = 0, data_dir=None,
                        subset_seed=None):  # fmt: skip
    """gda_core.data.load_dataset, cached per options (shared, read-only Dataset), for a source this
    workspace may read (a named dataset, its own uploads; server paths only where allowed)."""
    check_data_source(config(), workspace(), str(source), data_dir)
    return _load_dataset_cached(str(source), image_size, channels, per_class, int(seed), data_dir, subset_seed, _path_stamp(str(source)))


def data_options() -> dict:
    setup()
    return st.session_state["data_options"]


def current_dataset(show: bool = True):
    """The session's dataset (from the Data page's options) or None, with the error shown."""
    o = data_options()
    try:
        return load_dataset_cached(
            o["source"],
            image_size=o["image_size"],
            channels=o["channels"],
            per_class=o["per_class"],
            seed=o["seed"],
            data_dir=o["data_dir"],
        )
    except GDAError as exc:
        if show:
            st.error(f"Current dataset could not be loaded: {plain(exc)}")
        return None


def dataset_for_run(run) -> object:
    """The dataset a run was trained on (its recorded DataSpec), cached; refused (DataError) when it
    is another workspace's (a published run's private data)."""
    spec = run.data_spec.to_dict()
    return load_dataset_cached(spec.pop("source"), **spec)


def dataset_names() -> list[str]:
    return [d.name for d in list_datasets()]


def dataset_description(name: str) -> str:
    try:
        return get_dataset_info(name).description
    except GDAError:
        return ""


def save_upload(name: str, data: bytes) -> Path:
    """Write an uploaded file into the workspace's private uploads folder (same bytes -> same path)."""
    return workspace().save_upload(config(), name, data)


def prepared_dataset(source: str, label: str, *, image_size, channels: str, seed: int) -> str | None:
    """The decoded form of an uploaded (or server-path) dataset: an .npz a worker wrote from it.

    Decoding a user's images is the heavy, risky part (archives, image decoders, the data budgets),
    so it happens in a job, never in the web server. Returns the .npz's path when ready; otherwise
    starts (or follows) the job, shows its progress or its one-line error, and returns None.
    """
    ws, q = workspace(), job_queue()
    key = hashlib.sha256(repr((str(source), image_size, channels, int(seed))).encode()).hexdigest()[:12]
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in Path(label).stem)[:40] or "data"
    out = ws.datasets / f"{stem}-{key}.npz"
    if out.is_file():
        return str(out)
    jobs = [j for j in q.list(ws, "prepare") if j.meta.get("key") == key]
    if jobs and jobs[0].status == "failed":
        st.error(plain(jobs[0].error))
        if not st.button("Try again", key=f"prepare_retry_{key}", help="Decode the file again (after the server's limits changed, say)."):
            return None
    elif not jobs or jobs[0].status in ("cancelled", "done"):
        spec = {"source": str(source), "image_size": image_size, "channels": channels, "seed": int(seed)}
        try:
            q.submit(ws, "prepare", f"decode {label}", {"data": spec, "out": str(out), "label": label}, meta={"key": key})
        except GDAError as exc:
            show_error(exc)
            return None
    _follow_prepare(key)
    return None


def prepared_warnings(source: str) -> list[str]:
    """What the worker noticed while decoding an upload (skipped files, resizing), kept beside its .npz."""
    import json

    side = Path(str(source)).with_suffix(".json")
    if not (str(source).endswith(".npz") and workspace().owns(side) and side.is_file()):
        return []
    try:
        warnings = json.loads(side.read_text(encoding="utf-8")).get("warnings", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [str(w) for w in warnings][:50] if isinstance(warnings, list) else []


def _follow_prepare(key: str) -> None:
    @live(1.0)
    def follow() -> None:
        ws, q = workspace(), job_queue()
        jobs = [j for j in q.list(ws, "prepare") if j.meta.get("key") == key]
        if not jobs or jobs[0].done:
            st.rerun()
        j = jobs[0]
        where = f" (number {j.queue_position} in the queue)" if j.status == "queued" and j.queue_position else ""
        st.progress(j.progress, text=f"Decoding your images in the background{where}: {plain(j.message)}")

    follow()
