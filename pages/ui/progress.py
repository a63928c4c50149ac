"""Progress of background jobs: a one-line status, a bar and a Cancel button per job, the latest failures."""

from __future__ import annotations

import functools

import streamlit as st

from gda_core.errors import GDAError
from pages.ui.display import fmt_seconds, plain, show_error
from pages.ui.session import job_queue, workspace


def live(run_every: float | None = None):
    """``st.fragment(run_every=...)`` whose body shows a GDAError as one line instead of a traceback: a job
    queue locked beyond its wait (a long write elsewhere) fails one tick of a live panel, and the next tick
    tries again. The whole-page runs have the same guard in app.py."""

    def wrap(fn):
        @functools.wraps(fn)
        def body(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except GDAError as exc:
                show_error(exc)

        return st.fragment(run_every=run_every)(body)

    return wrap


def job_status_text(j) -> str:
    """What a job is doing, in one line: its place in the queue while it waits."""
    if j.status == "queued":
        where = f"number {j.queue_position} in the queue" if j.queue_position else "queued"
        return f"{j.title}: waiting, {where} ({fmt_seconds(j.waited_s)})"
    return f"{j.title}: {j.message} · {j.progress:.0%} · {fmt_seconds(j.elapsed_s)}"


def show_job_progress(jobs, *, key: str, limit: int, cancel_help: str = "Stop this job.") -> None:
    """Progress bar + Cancel button for each queued or running job, then the latest failures/cancellations."""
    for j in [j for j in jobs if not j.done]:
        a, b = st.columns([6, 1])
        a.progress(j.progress, text=plain(job_status_text(j)))
        if b.button("Cancel", key=f"{key}_{j.id}", help=cancel_help):
            job_queue().cancel(workspace(), j.id)
    for j in jobs[:limit]:
        if j.status == "failed":
            st.error(plain(f"{j.title}: {j.error}"))
        elif j.status == "cancelled":
            st.caption(plain(f"{j.title}: cancelled"))
