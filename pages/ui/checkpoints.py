"""Runs for the pages: listing and picking checkpoints, loading them once per process, opening one with its data."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from gda_core import fastpath
from gda_core.checkpoints import list_runs, load_run
from gda_core.errors import DataError, GDAError
from pages.ui.datasets import data_options, dataset_for_run
from pages.ui.display import plain, show_error
from pages.ui.session import config, workspace


def runs_dir() -> Path:
    """This workspace's runs folder."""
    return workspace().runs


def all_runs(families: tuple[str, ...] | None = None):
    """Shipped checkpoints, runs published by anyone, and this workspace's runs (shipped first, then newest first)."""
    infos = list_runs(runs_dir(), config().published_dir)
    if families is not None:
        infos = [r for r in infos if r.family in families]
    return infos


@st.cache_resource(show_spinner="Loading model...", max_entries=8)
def _load_run_cached(path: str, mtime: float, device: str):
    # One model object for every session of the process: read-only (the fast path samples private copies).
    run = load_run(path, device=device)
    fastpath.mark_shared(run.model)
    return run


def load_run_cached(path: str | Path):
    """load_run once per (run folder, weights mtime)."""
    p = Path(path)
    try:
        mtime = (p / "model.safetensors").stat().st_mtime
    except OSError:
        mtime = 0.0
    return _load_run_cached(str(p), mtime, "auto")


def run_picker(label: str, *, key: str, families: tuple[str, ...] | None = None, help: str | None = None):
    """A select box of checkpoints; returns the chosen RunInfo or None (with a hint)."""
    infos = all_runs(families)
    if not infos:
        fam = f" of family {', '.join(families)}" if families else ""
        st.info(
            f"No checkpoint{fam} yet. Train one on the **Train** page (runs are saved in `{runs_dir()}`), or add shipped ones under `checkpoints/`."
        )
        return None
    by_path = {str(r.path): r for r in infos}
    remembered = st.session_state.get(f"_{key}")
    paths = list(by_path)
    # Not chosen yet: the first checkpoint of the session's dataset (the pages beside it use that data).
    source = str(data_options().get("source", ""))
    first = next((i for i, p in enumerate(paths) if by_path[p].dataset == source), 0)
    index = paths.index(remembered) if remembered in by_path else first
    choice = st.selectbox(label, paths, index=index, key=key, format_func=lambda p: run_label(by_path[p]),
                          help=help or "Shipped checkpoints, runs published on this server, and your own runs.")  # fmt: skip
    st.session_state[f"_{key}"] = choice
    return by_path[choice]


def run_label(info) -> str:
    """A picker's line for a run: its label, with "published" for runs shared on this server."""
    published = info.path.resolve().parent == config().published_dir.resolve()
    return info.label.replace("(finished)", "(published)") if published else info.label


def open_run(info, *, need_data: bool = True):
    """Load the picked checkpoint and the dataset it was trained on; show the error and stop on failure.

    Returns (run, dataset, path string, weights mtime): the last two key the pages' caches. When the
    run's real images are not on this computer (a shipped MedMNIST checkpoint before its download),
    one message says so with the download offer; with ``need_data=False`` the page goes on with
    dataset None and leaves out what needs real images.
    """
    try:
        run = load_run_cached(info.path)
    except GDAError as exc:
        show_error(exc)
        st.stop()
    try:
        ds = dataset_for_run(run)
    except DataError as exc:
        offer_real_images(run, exc)
        if need_data:
            st.stop()
        ds = None
    except GDAError as exc:
        show_error(exc)
        st.stop()
    return run, ds, str(info.path), info.path.joinpath("model.safetensors").stat().st_mtime


def offer_real_images(run, exc: DataError) -> None:
    """The one message for a run whose training images cannot be read here, and the MedMNIST download
    when they are a MedMNIST set that is simply absent. Another workspace's private data (a published
    run) gets the refusal's own words: no download would help, and no server path is shown."""
    from gda_core.data import default_data_dir
    from gda_core.data.medmnist import MEDMNIST_INFO, download_medmnist

    spec = run.data_spec
    if spec.source not in MEDMNIST_INFO:
        st.info(f"{plain(str(exc))} The parts of this page that show real images are left out; generated images need no data.")
        return
    where = Path(spec.data_dir).expanduser() if spec.data_dir else default_data_dir()
    st.info(f"The real {spec.source} images this checkpoint learnt from are not on this computer, so the parts of this page "
            "that show real images are left out. Generated images need no download.")  # fmt: skip
    if st.button(f"Download {spec.source} (MedMNIST, CC BY 4.0)", key="real_images_download",
                 help=f"Fetch {spec.source}.npz from the official MedMNIST record on Zenodo (MD5-checked) into the app's data folder."):  # fmt: skip
        try:
            with st.spinner("Downloading..."):
                download_medmnist(spec.source, where)
            st.rerun()
        except GDAError as err:
            show_error(err)
