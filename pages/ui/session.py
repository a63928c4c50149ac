"""Per-session set-up every page relies on: the server's settings, the workspace (and its password),
the job queue and its worker, the device, the family lists, widget values kept across pages."""

from __future__ import annotations

import os
import runpy
import time
from pathlib import Path

import streamlit as st

from gda_core.errors import GDAError
from gda_core.jobs import JobQueue
from gda_core.runtime import device_name, resolve_device
from gda_core.server.budgets import apply_data_limits
from gda_core.server.config import ServerConfig, load_config
from gda_core.server.queue import ensure_worker
from gda_core.server.workspaces import Workspace, attempt_password, create_workspace, open_workspace
from pages.ui.display import plain, show_error

APP = Path(__file__).resolve().parents[2] / "app.py"  # pages/ui/session.py -> the entry point

DEFAULT_DATA = {
    "source": "digits",
    "image_size": None,
    "channels": "keep",
    "per_class": None,
    "seed": 0,
    "data_dir": None,
    "label": "digits",
}


def setup(*, entry: bool = False) -> None:
    """Per-session state every page relies on (idempotent). Called first by app.py (``entry=True``)
    and by every page: the workspace (from the URL, kept there so a reload finds it), its password
    when it has one, the server's data budgets, a running worker."""
    if not entry:
        _leave_folder_mode()
    ss = st.session_state
    cfg = config()
    ws = _resolve_workspace(cfg)
    if ws.has_password and not ss.get(f"_auth_{ws.id}"):
        _password_gate(ws)
    ss["owner"] = ws.id
    if "data_options" not in ss:
        ss["data_options"] = _saved_data_options(ws)
    _server_started(cfg)


def config() -> ServerConfig:
    return _config(os.environ.get("GDA_APP_DATA", ""), os.environ.get("GDA_SERVER_CONFIG", ""))


@st.cache_resource(show_spinner=False, ttl=60)
def _config(app_data: str, settings_file: str) -> ServerConfig:
    # Keyed by the variables that choose the data folder and the settings file (tests change them);
    # the arguments are only the cache's key, load_config reads the environment itself.
    cfg = load_config()
    apply_data_limits(cfg)  # this process loads prepared datasets: the same budgets as the workers
    return cfg


def _resolve_workspace(cfg: ServerConfig) -> Workspace:
    """The workspace named by the URL's ``ws`` token, else this session's, else a new one; the token
    is written back to the URL so that a reload or a bookmark returns to it."""
    ss = st.session_state
    token = st.query_params.get("ws") or ss.get("ws")
    ws = open_workspace(cfg, token)
    if ws is None:
        if token and token != ss.get("ws"):
            ss["_unknown_ws"] = True  # told on the page: a mistyped or deleted link gets a fresh workspace
        ws = create_workspace(cfg)
    ss["ws"] = ws.id
    if st.query_params.get("ws") != ws.id:
        st.query_params["ws"] = ws.id
    return ws


def _saved_data_options(ws: Workspace) -> dict:
    """The dataset this workspace used last (kept on disk, so a reload or another tab finds it)."""
    saved = ws.state().get("data_options")
    if not isinstance(saved, dict) or set(saved) - set(DEFAULT_DATA) - {"upload_label"}:
        return dict(DEFAULT_DATA)
    return {**DEFAULT_DATA, **saved}


def set_data_options(options: dict) -> None:
    """Make ``options`` the current dataset of this session and of its workspace."""
    st.session_state["data_options"] = options
    workspace().save_state(data_options=options)


def _password_gate(ws: Workspace) -> None:
    st.title("GDA Studio")
    st.info(f"The workspace {plain(ws.name)} is protected by a password set by the server's owner.")
    with st.form("ws_password"):
        pw = st.text_input("Password", type="password", key="ws_password_input", help="Ask whoever runs this server.")
        if st.form_submit_button("Open"):
            try:
                ok = attempt_password(config(), ws, pw, st.context.ip_address)
            except GDAError as exc:
                show_error(exc)
            else:
                if ok:
                    st.session_state[f"_auth_{ws.id}"] = True
                    st.rerun()
                st.error("wrong password")
    st.stop()


@st.cache_resource(show_spinner=False)
def _worker_checks() -> dict:
    return {}


def _server_started(cfg: ServerConfig) -> None:
    """Start the queue's worker when jobs wait or run and none serves this data folder (at most one
    check every 5 s): jobs left queued by a stopped server run, and a job whose worker died is reaped.
    A new job starts the worker itself (the pages' queue serves), so a session that only looks at
    models never pays for a worker process."""
    last = _worker_checks()
    key = str(cfg.app_data)
    if time.time() - last.get(key, 0.0) > 5.0:
        last[key] = time.time()
        try:
            active = job_queue().has_active()
        except GDAError:  # the job store is locked or unreadable: start the worker as if jobs waited
            active = True
        if active:
            ensure_worker(cfg)


def workspace() -> Workspace:
    setup()
    ws = open_workspace(config(), st.session_state["ws"])
    if ws is None:  # deleted by the server owner while this tab was open
        st.session_state.pop("ws", None)
        st.query_params.pop("ws", None)
        st.rerun()
    return ws


def _leave_folder_mode() -> None:
    """Run a page inside app.py when Streamlit started it on its own.

    Until app.py has called ``st.navigation`` once in a server process, Streamlit treats the
    ``pages/`` folder as a legacy multipage app: a first request for a deep link such as ``/Train``
    (a bookmark, a tab reconnecting to a restarted server) runs pages/2_Train.py by itself, without
    app.py's page set-up, shared sidebar and navigation. Here the page hands over to app.py, which
    runs it in its navigation (app.py's pages keep the folder's URL names, so it is the same page),
    and the direct run stops. Nothing is lost: this happens before the page has drawn anything, in
    the same script run, so widget events are kept.
    A no-op once app.py has run in this server process, and on a Streamlit without that mode.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:
        return
    if not getattr(PagesManager, "uses_pages_directory", None):
        return
    PagesManager.uses_pages_directory = False
    runpy.run_path(str(APP), run_name="__main__")
    st.stop()


def owner() -> str:
    """This session's workspace id (what owns its jobs)."""
    return workspace().id


def job_queue() -> JobQueue:
    """The job queue of this server's data folder (jobs live in worker processes and on disk)."""
    return _job_queue(str(config().app_data))


@st.cache_resource(show_spinner=False)
def _job_queue(app_data: str) -> JobQueue:  # keyed by the data folder
    return JobQueue(config(), serve=True)


@st.cache_resource(show_spinner=False)
def device_label() -> str:
    try:
        return device_name(resolve_device("auto"))
    except GDAError as exc:
        return f"unavailable ({exc})"


def model_families(*, trainable: bool = False) -> list[str]:
    """The registered generative families, in registry order; ``trainable``: only those trained from
    data alone (the distilled student is made from a trained teacher instead)."""
    from gda_core.models import get_model_class, list_models

    return [f for f in list_models() if not trainable or get_model_class(f).trainable_from_scratch]


DISTILL_HINT = ("The few-step **distilled** student is not trained from data: it is made from a trained DDPM or flow checkpoint with "
                "`python -m gda_core distill --checkpoint <run> --steps 2` (a shipped one, `checkpoints/distilled-digits`, is on Sample and Learn).")  # fmt: skip


@st.cache_resource(show_spinner=False)
def iterative_families() -> tuple[str, ...]:
    """Families whose sampling takes a number of steps (the ones with a quality-against-cost curve)."""
    from gda_core.models import get_model_class, list_models

    return tuple(f for f in list_models() if "steps" in get_model_class(f).controls)


def remember(key: str, default):
    """Value a widget last had (widgets' own state is dropped when their page is not shown)."""
    return st.session_state.get(f"_{key}", default)


def keep(key: str) -> None:
    """Copy a widget's value to a key that survives page switches."""
    if key in st.session_state:
        st.session_state[f"_{key}"] = st.session_state[key]
