"""The Train page's "Sweep" tab: a grid of settings, each trained with several seeds and evaluated in
one background job (gda_core.sweep), then a table and a plot with intervals over the seeds and the
best setting per axis, named only where it is clear of noise."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import streamlit as st

from gda_core.errors import GDAError
from gda_core.metrics import ARCHITECTURES, AXES
from gda_core.models import display_name, get_model_class
from gda_core.server.budgets import check_sweep
from gda_core.sweep import TRAIN_KEYS
from pages.ui import common


def example(family: str) -> str:
    """A two-by-two grid that this family accepts at any image size: its learning rate and 3x it, and
    its first width or code size and twice it (never a number of levels, which small images limit)."""
    cls = get_model_class(family)
    d = cls.Config().to_dict()
    width = next((f for f in ("latent_dim", "base_channels", "g_channels", "hidden_channels", "z_dim") if isinstance(d.get(f), int)), None)
    lr = f"lr={cls.default_lr:g},{cls.default_lr * 3:g}"
    return f"{lr};{width}={d[width]},{2 * d[width]}" if width else lr


def sweep_tab(ws, queue, ds) -> None:
    st.caption("Every combination of the grid's values is trained once per seed and evaluated; each setting's scores come with a 95% "
               "interval over its seeds, and the best setting on an axis is named only where it beats every other beyond that noise.")  # fmt: skip
    families = common.model_families(trainable=True)
    family = st.selectbox("Model family", families, key="sweep_family", format_func=lambda f: f"{display_name(f)}: {get_model_class(f).description}",
                          help="The family whose settings are swept (the distilled student is made from a teacher, not trained).")  # fmt: skip
    cls = get_model_class(family)
    defaults = cls.Config().to_dict()
    # Tuple-valued fields (channel_mults) cannot be written as one value of a comma-separated list.
    fields = [f.name for f in dataclasses.fields(cls.Config) if f.name not in common.FIXED_FIELDS and not isinstance(defaults[f.name], tuple)]
    ex = example(family)
    grid_text = st.text_input("Grid", ex, key=f"sweep_grid_{family}", placeholder=ex,
                              help=f"KEY=V1,V2;KEY2=V1,V2 (every combination is a setting), e.g. {ex}. Training settings: "
                                   f"{', '.join(TRAIN_KEYS)} (lr default {cls.default_lr:g}). {family} config fields (default): "
                                   + ", ".join(f"{f} ({defaults[f]})" for f in fields))  # fmt: skip
    c1, c2, c3, c4 = st.columns(4)
    seeds = int(c1.slider("Seeds per setting", 1, 5, 3, key="sweep_seeds",
                          help="Training seeds of each setting: the replicates of its interval (two or more to name a best setting)."))  # fmt: skip
    steps = int(c2.number_input("Steps per run", 1, 1_000_000, 300, step=50, key="sweep_steps", help="Optimisation steps of each training."))
    preset = c3.radio("Evaluation", ("quick", "full"), horizontal=True, key="sweep_preset",
                      help="quick: 300 samples, a short classifier, one sampling seed per run; full: the default settings, 3 sampling seeds.")  # fmt: skip
    classifier = c4.selectbox("Downstream classifier", list(ARCHITECTURES), key="sweep_classifier", format_func=lambda a: f"{a}: {ARCHITECTURES[a]}",
                              help="The classifier of utility and robustness, trained from scratch for every run.")  # fmt: skip
    problem = None
    try:
        dims = None if ds is None else {"image_size": ds.image_size, "channels": ds.channels, "num_classes": ds.num_classes}
        grid = check_sweep(common.config(), {"family": family, "grid": grid_text, "seeds": seeds, "steps": steps}, dims=dims)
        st.caption(f"{len(grid)} settings x {seeds} seeds = {len(grid) * seeds} trainings of {steps:,} steps, each evaluated with the "
                   f"{preset} preset.")  # fmt: skip
    except GDAError as exc:
        problem = str(exc)
        st.error(common.plain(problem))
    if ds is None:
        st.warning("Pick a dataset on the Data page first.")
    if st.button("Start sweep", type="primary", key="sweep_start", disabled=ds is None or problem is not None,
                 help="Runs in the background; cancel any time and start it again to continue (finished runs are kept)."):  # fmt: skip
        try:
            queue.start_sweep(ws, family=family, dataset=ds, grid=grid_text.strip(), seeds=seeds, steps=steps, preset=preset, classifier=classifier)
            st.rerun()
        except GDAError as exc:
            common.show_error(exc)
    _progress(ws, queue)
    _results(ws, queue)


def _progress(ws, queue) -> None:
    running = any(not j.done for j in queue.list(ws, "sweep"))

    @common.live(1.0 if running else None)
    def panel() -> None:
        jobs = queue.list(ws, "sweep")
        common.show_job_progress(jobs, key="sweep_cancel", limit=3, cancel_help="Stop this sweep; start it again to continue.")
        if running and all(j.done for j in jobs):
            st.rerun()  # it finished: draw its results

    panel()
    last = next(iter(queue.list(ws, "sweep")), None)
    if last is not None and last.status in ("cancelled", "failed") and st.button(
        "Continue this sweep", key="sweep_resume", help="The same sweep again in the same folder: runs already finished are not trained again."
    ):
        try:
            title = last.title if last.title.endswith(" (continued)") else f"{last.title} (continued)"
            queue.submit(ws, "sweep", title, last.params, meta=last.meta)
            st.rerun()
        except GDAError as exc:
            common.show_error(exc)


def _results(ws, queue) -> None:
    job = next((j for j in queue.list(ws, "sweep") if j.status == "done"), None)
    res = queue.sweep(job) if job is not None else None
    if res is None:
        return
    st.subheader("Latest sweep")
    st.markdown(common.plain(f"{job.title} · classifier {res.classifier}"))
    st.dataframe(pd.DataFrame(res.table_rows()), hide_index=True, width="stretch", key="sweep_table")
    st.plotly_chart(res.figure(), key="sweep_chart")
    for axis in AXES:
        st.markdown(f"- {common.plain(res.best(axis)[1])}")
    d1, d2 = st.columns(2)
    d1.download_button("sweep.json", json.dumps(res.to_dict(), indent=2, default=str), "sweep.json", "application/json", key="sweep_dl_json",
                       help="Every run's scores and intervals, the grid, the seeds and the best setting per axis.")  # fmt: skip
    csv = queue.result_file(job, "csv")
    if csv is not None and csv.is_file():
        d2.download_button("sweep.csv", csv.read_bytes(), "sweep.csv", "text/csv", key="sweep_dl_csv",
                           help="The table: each setting's mean over seeds with its interval, per axis.")  # fmt: skip
