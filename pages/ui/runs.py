"""The Train page's "Manage runs" tab: rename, note, delete, download, upload and publish runs."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from gda_core.checkpoints import list_runs
from gda_core.errors import GDAError
from gda_core.server import workspaces as wsp
from pages.ui import display, progress, session


def manage_runs(ws, queue) -> None:
    cfg = session.config()
    busy = queue.active_paths()
    mine = list_runs(ws.runs, include_shipped=False)
    st.caption(f"Your workspace uses {_size(ws.usage_bytes())} of its {_size(cfg.workspace_quota_bytes)}. Shipped checkpoints and runs "
               "published by others are read-only; you manage your own runs here.")  # fmt: skip
    if mine:
        by_path = {str(r.path): r for r in mine}
        choice = st.selectbox("Run", list(by_path), format_func=lambda p: by_path[p].label, key="manage_run",
                              help="One of your runs.")  # fmt: skip
        info = by_path[choice]
        _run_actions(cfg, ws, info, busy)
    else:
        st.info("No runs in your workspace yet: train one, or upload a run below.")
    _sweeps(cfg, ws, busy)
    _published(cfg, ws)
    up = st.file_uploader("Upload a run (.zip)", type=["zip"], key="manage_upload",
                          help="A run downloaded from GDA Studio: weights (safetensors), config.json and cards. It is checked like any "
                               "checkpoint from an unknown source; pickled weights are refused.")  # fmt: skip
    if up is not None and st.session_state.get("_manage_uploaded") != (up.name, up.size):
        # Marked first: a refused zip is refused once, not again on every rerun while it sits in the uploader.
        st.session_state["_manage_uploaded"] = (up.name, up.size)
        try:
            queue.import_run(ws, up.getvalue(), up.name)
        except GDAError as exc:
            display.show_error(exc)
    if queue.list(ws, "import"):
        _imports(queue, ws, any(not j.done for j in queue.list(ws, "import")))


def _imports(queue, ws, active: bool) -> None:
    @progress.live(1.0 if active else None)
    def status() -> None:
        _import_status(queue, ws)

    status()


def _import_status(queue, ws) -> None:
    jobs = queue.list(ws, "import")
    progress.show_job_progress(jobs, key="import_cancel", limit=1, cancel_help="Stop this import.")
    done = [j for j in jobs[:1] if j.status == "done" and isinstance(j.result, dict)]
    for j in done:
        st.success(f"Added {display.plain(Path(j.result['run_dir']).name)} to your runs.")
        if st.session_state.get("_import_seen") != j.id:
            st.session_state["_import_seen"] = j.id
            st.rerun(scope="app")  # the run pickers above list the new run


def _run_actions(cfg, ws, info, busy: set[str]) -> None:
    path = info.path
    note = st.text_area("Note", wsp.run_note(path), key=f"manage_note_{path.name}", max_chars=2000,
                        help="A few words for yourself: what this run tried, how it looked.")  # fmt: skip
    c1, c2, c3, c4 = st.columns(4)
    try:
        if c1.button("Save note", key="manage_save_note", help="Keep the note with the run (it travels in its zip)."):
            wsp.set_run_note(ws, path, note)
            st.toast("Note saved")
        c2.download_button("Download (.zip)", wsp.run_zip_bytes(path), f"{path.name}.zip", "application/zip", key="manage_download",
                           help="Weights, config, cards, history, preview and saved evaluations (not the training state).")  # fmt: skip
        if c3.button("Publish", key="manage_publish", help="A read-only copy that every user of this server sees in their pickers "
                                                           "(not the data it was trained on)."):  # fmt: skip
            wsp.publish_run(cfg, ws, path, busy)
            st.toast(f"Published {path.name}")
        new = st.text_input("New name", path.name, key=f"manage_name_{path.name}", help="Letters, digits, '.', '-' and '_'.")
        if c4.button("Rename", key="manage_rename", disabled=new == path.name, help="Give the run the name above."):
            wsp.rename_run(ws, path, new.strip(), busy)
            st.rerun()
        if st.checkbox("Delete this run", key=f"manage_confirm_{path.name}", help="Tick, then press the button: there is no undo."):
            if st.button("Delete for good", key="manage_delete", type="primary", help="Remove the run's folder from your workspace."):
                wsp.delete_run(ws, path, busy)
                st.rerun()
    except GDAError as exc:
        display.show_error(exc)


def _sweeps(cfg, ws, busy: set[str]) -> None:
    """A sweep's runs live in its own folder (not in the run pickers): keep one as a run, or delete the sweep."""
    sweeps = wsp.list_sweeps(ws)
    if not sweeps:
        return
    st.markdown("**Your sweeps**")
    by_path = {str(s["path"]): s for s in sweeps}
    choice = st.selectbox("Sweep", list(by_path), key="manage_sweep", format_func=lambda p: f"{Path(p).name} · {by_path[p]['title']}",
                          help="A sweep's runs stay in its folder; its table and plot are on the Sweep tab.")  # fmt: skip
    sw = by_path[choice]
    st.caption(display.plain(f"{len(sw['runs'])} trained runs, {_size(sw['size_bytes'])}" + (" · a sweep job is writing it" if choice in busy else "")))
    try:
        if sw["runs"]:
            a, b = st.columns([3, 1])
            run = a.selectbox("Run of this sweep", sw["runs"], key=f"manage_sweep_run_{Path(choice).name}",
                              help="setting<i>-seed<s>: the i-th setting of the grid (as numbered in the sweep table), trained with seed s.")  # fmt: skip
            if b.button("Keep as a run", key="manage_sweep_keep", help="Copy it among your runs, to sample, compare or publish it."):
                kept = wsp.keep_sweep_run(cfg, ws, choice, run)
                st.toast(f"Added {kept.name} to your runs")
                st.rerun()
        if st.checkbox("Delete this sweep", key=f"manage_sweep_confirm_{Path(choice).name}", help="Tick, then press the button: there is no undo."):
            if st.button("Delete the sweep for good", key="manage_sweep_delete", type="primary",
                         help="Remove the sweep's folder (every run in it) from your workspace."):  # fmt: skip
                wsp.delete_sweep(ws, choice, busy)
                st.rerun()
    except GDAError as exc:
        display.show_error(exc)


def _published(cfg, ws) -> None:
    mine = [r for r in list_runs(cfg.published_dir, include_shipped=False) if wsp.published_by(ws, r.path)]
    if not mine:
        return
    st.markdown("**Runs you published**")
    for r in mine:
        a, b = st.columns([5, 1])
        a.caption(display.plain(r.path.name))
        if b.button("Unpublish", key=f"unpublish_{r.path.name}", help="Remove it from everyone's pickers."):
            try:
                wsp.unpublish_run(cfg, ws, r.path)
                st.rerun()
            except GDAError as exc:
                display.show_error(exc)


def _size(n: int) -> str:
    from gda_core.data.safety import human_bytes

    return human_bytes(n)
