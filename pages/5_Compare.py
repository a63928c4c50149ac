"""Compare: score several checkpoints on six axes, radar chart, raw figures, reading, exports."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from gda_core.errors import GDAError
from gda_core.jobs import cached_reports, start_evaluation
from gda_core.metrics import AXES, AXIS_HELP, BPD_HELP, HEADLINE_RAW, RAW_META, radar_figure, reading, write_comparison
from pages.ui import common

common.setup()
st.title("Compare")
st.caption(
    "Score models on the six axes of the extended generative trilemma. Every score is in [0, 1] and higher is better; "
    "the raw figures behind them say which way is better one by one."
)
manager = common.job_manager()
me = common.owner()
reports: dict[str, object] = st.session_state.setdefault("compare_reports", {})

infos = common.all_runs()
if not infos:
    st.info("No checkpoints yet: train models on the Train page, or add shipped ones under `checkpoints/`.")
    st.stop()
by_path = {str(r.path): r for r in infos}
default = common.remember("compare_sel", [p for p in by_path if by_path[p].shipped][:3] or list(by_path)[:2])
selected = st.multiselect(
    "Checkpoints to compare",
    list(by_path),
    default=[p for p in default if p in by_path],
    format_func=lambda p: by_path[p].label,
    key="compare_sel",
    on_change=common.keep,
    args=("compare_sel",),
    help="Pick two or more. Each is scored against the dataset it was trained on.",
)
preset = st.radio(
    "Evaluation budget",
    ("quick", "full"),
    horizontal=True,
    key="compare_preset",
    help="quick: 300 samples and short classifier training (about a minute per model on a CPU, noisier). full: as many samples as training images and the standard classifier budget (the figures to report).",
)

with st.expander("About the six axes", expanded=False):
    for a in AXES:
        st.markdown(f"- **{a}**: {AXIS_HELP[a]}")

c1, c2, c3 = st.columns(3)
if c1.button("Evaluate selected", type="primary", key="compare_eval", disabled=not selected,
             help="Run the evaluations in the background (results already computed with the same settings are reused instantly)."):  # fmt: skip
    busy = {j.meta.get("run_dir") for j in manager.list(owner=me, kind="evaluate") if not j.done}
    for p in selected:
        if p not in busy:
            start_evaluation(manager, owner=me, run_dir=p, preset=preset)
    st.rerun()
if c2.button(
    "Load cached evaluations",
    key="compare_load",
    disabled=not selected,
    help="Use the latest saved evaluation of each selected checkpoint (from its eval/ folder).",
):
    missing = []
    for p in selected:
        cached = cached_reports(p)
        if cached:
            reports[p] = cached[0][1]
        else:
            missing.append(by_path[p].path.name)
    if missing:
        st.warning(f"No saved evaluation for: {', '.join(missing)}. Press Evaluate selected.")
if c3.button("Clear results", key="compare_clear", help="Forget the results shown here (saved evaluations stay on disk)."):
    reports.clear()

eval_running = any(not j.done for j in manager.list(owner=me, kind="evaluate"))


@st.fragment(run_every=1.0 if eval_running else None)
def eval_jobs() -> None:
    jobs = manager.list(owner=me, kind="evaluate")
    fresh = False
    for j in jobs:
        p = j.meta.get("run_dir")
        if j.status == "done" and j.result is not None and not j.meta.get("collected"):
            reports[p] = j.result
            j.meta["collected"] = True
            fresh = True
    common.show_job_progress(jobs, key="ecancel", limit=8, cancel_help="Stop this evaluation.")
    if fresh:
        st.rerun()


eval_jobs()

shown = [p for p in selected if p in reports]
if not shown:
    st.info("No results yet for the selected checkpoints: press **Evaluate selected** (or **Load cached evaluations**).")
    st.stop()

names: list[str] = []
for p in shown:
    n = Path(p).name
    names.append(n if n not in names else f"{n} ({len(names) + 1})")
reps = [reports[p] for p in shown]

st.plotly_chart(radar_figure(reps, names), key="compare_radar", theme=None)  # plotly colours: distinct per model

# Exact likelihood, next to the six axes, when at least one model has one (flows such as RealNVP).
if any(r.bits_per_dim is not None for r in reps):
    st.markdown("**Bits per dimension on held-out images** (lower is better; 8 = learned nothing)")
    bpd_cols = st.columns(min(len(names), 4))
    for i, (n, r) in enumerate(zip(names, reps, strict=False)):
        bpd_cols[i % len(bpd_cols)].metric(n, "n/a" if r.bits_per_dim is None else f"{r.bits_per_dim:.3f}", help=BPD_HELP)

st.subheader("Reading")
for line in reading(reps, names):
    st.markdown(f"- {line}")

st.subheader("Figures")
rows = []
for a in AXES:
    rows.append({"metric": f"{a} score", "what it measures": AXIS_HELP[a], "unit": "0-1", "better": "higher ↑",
                 **{n: r.scores.get(a) for n, r in zip(names, reps, strict=False)}})  # fmt: skip
raw_keys: list[str] = []
for r in reps:
    raw_keys += [k for k in r.raw if k not in raw_keys]
raw_keys = [k for k in HEADLINE_RAW if k in raw_keys] + [k for k in raw_keys if k not in HEADLINE_RAW]  # bits/dim next to the axes
for k in raw_keys:
    unit, better, desc = RAW_META.get(k, ("", "", ""))
    for r in reps:
        unit = unit or r.units.get(k, "")
        better = better or r.better.get(k, "")
        desc = desc or r.descriptions.get(k, "")
    arrow = {"higher": "higher ↑", "lower": "lower ↓"}.get(better, "for information")
    rows.append(
        {
            "metric": k,
            "what it measures": desc,
            "unit": unit,
            "better": arrow,
            **{n: r.raw.get(k) for n, r in zip(names, reps, strict=False)},
        }
    )
table = pd.DataFrame(rows)
st.dataframe(
    table,
    hide_index=True,
    column_config={
        "what it measures": st.column_config.TextColumn(width="large"),
        **{n: st.column_config.NumberColumn(format="%.4g") for n in names},
    },
    key="compare_table",
)

warn = [(n, w) for n, r in zip(names, reps, strict=False) for w in r.warnings]
if warn:
    with st.expander(f"Warnings ({len(warn)})"):
        for n, w in warn:
            st.markdown(f"- **{n}**: {w}")
with st.expander("Provenance (seeds, sample counts, device, checkpoint hashes)"):
    for n, r in zip(names, reps, strict=False):
        p = r.provenance
        st.markdown(f"- **{n}**: seed {p.get('seed')}, {p.get('n_samples')} samples, {p.get('device')}, extractor {p.get('extractor')}, "
                    f"checkpoint sha256 {str(p.get('checkpoint_sha256') or 'n/a')[:12]}, {p.get('time_s')} s")  # fmt: skip


@st.cache_data(show_spinner=False, max_entries=16)
def export_bytes(kind: str, key: tuple, _reps, _names) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        out = write_comparison(_reps, _names, Path(tmp) / f"comparison.{kind}")
        return out.read_bytes()


st.subheader("Export")
key = tuple((n, str(r.provenance.get("checkpoint_sha256")), str(r.provenance.get("created"))) for n, r in zip(names, reps, strict=False))
e = st.columns(4)
try:
    e[0].download_button(
        "HTML report",
        export_bytes("html", key, reps, names),
        "comparison.html",
        "text/html",
        key="exp_html",
        help="Radar, table, reading and provenance in one self-contained web page.",
    )
    e[1].download_button(
        "JSON",
        export_bytes("json", key, reps, names),
        "comparison.json",
        "application/json",
        key="exp_json",
        help="All scores and raw figures, machine-readable.",
    )
    e[2].download_button(
        "CSV",
        export_bytes("csv", key, reps, names),
        "comparison.csv",
        "text/csv",
        key="exp_csv",
        help="The figures table for a spreadsheet.",
    )
    e[3].download_button(
        "Radar PNG",
        export_bytes("png", key, reps, names),
        "comparison.png",
        "image/png",
        key="exp_png",
        help="The radar chart as an image.",
    )
except GDAError as exc:
    common.show_error(exc)
