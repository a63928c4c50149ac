"""Compare: several checkpoints on the six axes, each score with its 95 % interval; what is within
noise, whether the reports are comparable, the paper's claims on these models, per-class figures,
quality against cost, exports."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from gda_core.errors import GDAError
from gda_core.jobs import cached_reports
from gda_core.metrics import (
    ARCHITECTURES,
    AXES,
    AXIS_HELP,
    BPD_HELP,
    CLAIMS_NOTE,
    claim_sentence,
    claims_from_reports,
    comparability,
    per_class_rows,
    radar_figure,
    reading,
    table_rows,
    trilemma_reading,
    write_comparison,
)
from gda_core.metrics.comparison import reports_digest
from gda_core.metrics.curve import curve_figure
from gda_core.metrics.memorisation import AUDIT_HELP, privacy_rows
from gda_core.models import get_model_class
from pages.ui import checkpoints, display, progress, session

session.setup()
st.title("Compare")
st.caption(
    "Score models on the six axes of the extended generative trilemma. Every score is in [0, 1], higher is better, and comes with its "
    "95% interval (the shaded band on the radar): where two models' intervals say their difference could be noise, the reading says so."
)
queue = session.job_queue()
ws = session.workspace()
reports: dict[str, object] = st.session_state.setdefault("compare_reports", {})
collected: set[str] = st.session_state.setdefault("compare_collected", set())

infos = checkpoints.all_runs()
if not infos:
    st.info("No checkpoints yet: train models on the Train page, or add shipped ones under `checkpoints/`.")
    st.stop()
by_path = {str(r.path): r for r in infos}
# First view: every shipped family of the dataset with the most of them (one radar, comparable reports).
shipped_by_data: dict[str, list[str]] = {}
for p, r in by_path.items():
    if r.shipped:
        shipped_by_data.setdefault(r.dataset, []).append(p)
widest = max(shipped_by_data.values(), key=len, default=[])
default = session.remember("compare_sel", widest or list(by_path)[:2])
selected = st.multiselect(
    "Checkpoints to compare",
    list(by_path),
    default=[p for p in default if p in by_path],
    format_func=lambda p: checkpoints.run_label(by_path[p]),
    key="compare_sel",
    on_change=session.keep,
    args=("compare_sel",),
    help="Pick two or more. Each is scored against the dataset it was trained on. Saved evaluations are drawn at once.",
)
# A newcomer sees the saved evaluations of the selected checkpoints straight away (shipped ones have them).
if not st.session_state.get("compare_cleared"):
    for p in selected:
        if p not in reports and (cached := cached_reports(p, ws)):
            reports[p] = cached[0][1]

c0, c1 = st.columns([1, 2])
classifier = c0.selectbox("Downstream classifier", list(ARCHITECTURES), key="compare_classifier", format_func=lambda a: f"{a}: {ARCHITECTURES[a]}",
                          help="The classifier of utility and robustness, trained from scratch on each model's images (the small CNN made "
                               "every shipped report; the paper used VGG and DenseNet). Recorded in the report and part of its cache key.")  # fmt: skip
# The budget of the reports on screen (the shipped ones are full): a new evaluation made at another
# budget would sit beside them under a "not directly comparable" warning.
# Decided once per session: a default that changed between reruns would reset the user's choice.
full_shown = st.session_state.setdefault("compare_full_default", any(len(r.provenance.get("seeds") or []) > 1 for r in reports.values()))
preset = c0.radio(
    "Evaluation budget",
    ("quick", "full"),
    index=1 if full_shown else 0,
    horizontal=True,
    key="compare_preset",
    help="quick: 300 samples, short classifier training, one seed (about a minute per model on a CPU; bootstrap intervals). "
    "full: as many samples as training images, the standard classifier budget and 3 seeds (the figures to report; the shipped "
    "checkpoints' reports are full, so it is the default beside them).",
)
with c1.expander("Sampler settings for the evaluation (iterative models)"):
    s1, s2, s3, s4 = st.columns(4)
    steps = s1.number_input("steps (0 = default)", 0, 1000, 0, key="compare_steps", help="Sampling steps of diffusion and flow models.")
    guidance = s2.number_input("guidance (0 = default)", 0.0, 20.0, 0.0, 0.5, key="compare_guidance", help="Classifier-free guidance scale.")
    # The samplers the selected families offer (the registry's, as on the Sample page); each model
    # gets the chosen one only where its family offers it, and its own default elsewhere.
    offered = {f: list(get_model_class(f).samplers) for f in dict.fromkeys(by_path[p].family for p in selected)}
    choices = ["default", *dict.fromkeys(x for names_ in offered.values() for x in names_)]
    sampler = s3.selectbox("sampler", choices, key="compare_sampler", disabled=len(choices) == 1,
                           help="default: each family's own. " + ("; ".join(f"{f}: {', '.join(v)}" for f, v in offered.items() if v)
                                                                 or "None of the selected families has a choice of sampler."))  # fmt: skip
    temperature = s4.number_input("temperature", 0.0, 2.0, 1.0, 0.05, key="compare_temp", help="Scale of the starting noise (1 = as trained).")
sampling = {"steps": int(steps) or None, "guidance": float(guidance) or None, "sampler": None if sampler == "default" else sampler,
            "temperature": float(temperature)}  # fmt: skip


def sampling_for(p: str) -> dict:
    """The sampling settings for one checkpoint: the chosen sampler only if its family offers it."""
    return {**sampling, "sampler": sampling["sampler"] if sampling["sampler"] in offered.get(by_path[p].family, []) else None}

with st.expander("About the six axes", expanded=False):
    for a in AXES:
        st.markdown(f"- **{a}**: {AXIS_HELP[a]}")

b1, b2 = st.columns(2)
if b1.button("Evaluate selected", type="primary", key="compare_eval", disabled=not selected,
             help="Run the evaluations in the background (results already computed with the same settings are reused instantly)."):  # fmt: skip
    busy = {j.meta.get("run_dir") for j in queue.list(ws, "evaluate") if not j.done}
    try:
        for p in selected:
            if p not in busy:
                queue.submit(ws, "evaluate", f"evaluate {Path(p).name} ({preset}, {classifier})",
                             {"run_dir": p, "preset": preset, "sampling": sampling_for(p), "classifier": classifier},
                             meta={"run_dir": p, "preset": preset})  # fmt: skip
        st.rerun()
    except GDAError as exc:
        display.show_error(exc)
if b2.button("Clear results", key="compare_clear", help="Forget the results shown here (saved evaluations stay on disk)."):
    reports.clear()
    st.session_state["compare_cleared"] = True

eval_running = any(not j.done for j in queue.list(ws, "evaluate"))


@progress.live(1.0 if eval_running else None)
def eval_jobs() -> None:
    jobs = queue.list(ws, "evaluate")
    fresh = False
    for j in jobs:
        if j.status == "done" and j.id not in collected:
            collected.add(j.id)
            rep = queue.report(j)
            if rep is not None:
                reports[j.meta.get("run_dir")] = rep
                fresh = True
    progress.show_job_progress(jobs, key="ecancel", limit=8, cancel_help="Stop this evaluation.")
    if fresh:
        st.rerun()


eval_jobs()

shown = [p for p in selected if p in reports]
missing = [by_path[p].path.name for p in selected if p not in reports]
if missing and shown:
    st.caption(f"No saved evaluation yet for {display.plain(', '.join(missing))}: press **Evaluate selected**.")
if not shown:
    st.info("No results yet for the selected checkpoints: press **Evaluate selected**.")
    st.stop()

names: list[str] = []
for p in shown:
    n = Path(p).name
    names.append(n if n not in names else f"{n} ({len(names) + 1})")
reps = [reports[p] for p in shown]

for w in comparability(reps, names):
    st.warning(display.plain(w))  # quotes names and settings from report files
st.plotly_chart(radar_figure(reps, names), key="compare_radar", theme=None)  # plotly colours: distinct per model

# Exact likelihood, next to the six axes, when at least one model has one (flows such as RealNVP).
# Only the models that have one get a tile: nine "n/a" tiles beside one figure hid it.
if with_bpd := [(n, r) for n, r in zip(names, reps, strict=False) if r.bits_per_dim is not None]:
    st.markdown("**Bits per dimension on held-out images** (lower is better; 8 = learned nothing)")
    bpd_cols = st.columns(min(len(with_bpd), 4))
    for i, (n, r) in enumerate(with_bpd):
        bpd_cols[i % len(bpd_cols)].metric(n, f"{r.bits_per_dim:.3f}", help=BPD_HELP)
    if without := [n for n, r in zip(names, reps, strict=False) if r.bits_per_dim is None]:
        st.caption(display.plain(f"No exact likelihood (a flow such as RealNVP has one): {', '.join(without)}."))

st.subheader("Reading")
for line in reading(reps, names):
    st.markdown(f"- {display.plain(line)}")
if tri := trilemma_reading(reps, names):
    st.markdown("**The trilemma**: does a fast model keep the fidelity and diversity of the best iterative one (DDPM, LDM, flow) here?")
    for line in tri:
        st.markdown(f"- {display.plain(line)}")

st.subheader("The paper's claims on these models")
st.caption(CLAIMS_NOTE)
for c in claims_from_reports(reps, names):
    icon = {"supported": "✅", "contradicted": "❌", "no meaningful difference": "🟰"}.get(c["verdict"], "➖")
    st.markdown(f"{icon} {display.plain(claim_sentence(c))}")

st.subheader("Figures")
st.caption("Each cell: mean [95% interval]. How each interval was made is listed under Provenance.")
table = pd.DataFrame(table_rows(reps, names))
st.dataframe(table, hide_index=True, column_config={"what it measures": st.column_config.TextColumn(width="large")}, key="compare_table")

# Beside privacy (in the table above): the audit that tells a copy from a blur.
st.markdown("**Privacy and memorisation**")
st.caption(AUDIT_HELP)
st.dataframe(pd.DataFrame(privacy_rows(reps, names)), hide_index=True, key="compare_memorisation",
             column_config={"verdict": st.column_config.TextColumn(width="large")})  # fmt: skip

pc = per_class_rows(reps, names)
if pc:
    with st.expander("Per class: fidelity, diversity and utility within each class (minority classes first to check)"):
        st.dataframe(pd.DataFrame(pc), hide_index=True, key="compare_per_class")

warn = [(n, w) for n, r in zip(names, reps, strict=False) for w in r.warnings]
if warn:
    with st.expander(f"Warnings ({len(warn)})"):
        for n, w in warn:
            st.markdown(f"- **{display.plain(n)}**: {display.plain(w)}")
with st.expander("Provenance (seeds, sample counts, device, checkpoint hashes, how each interval was made)"):
    for n, r in zip(names, reps, strict=False):
        p = r.provenance
        methods = sorted({e.method for e in r.uncertainty.values()})
        # Every field is the report file's: shown literally (a published run's could carry a link or an image).
        line = (f"seeds {p.get('seeds') or p.get('seed')}, {p.get('n_samples')} samples, {p.get('device')}, extractor {p.get('extractor')}, "
                f"checkpoint sha256 {str(p.get('checkpoint_sha256') or 'n/a')[:12]}, {p.get('time_s')} s; intervals: {'; '.join(methods) or 'none'}")  # fmt: skip
        st.markdown(f"- **{display.plain(n)}**: {display.plain(line)}")

# -- quality against cost ---------------------------------------------------------------------------
iterative = [p for p in selected if by_path[p].family in session.iterative_families()]
if iterative:
    with st.expander("Quality against cost: FID, precision and recall against images/s over sampling steps"):
        q1, q2 = st.columns([2, 3])
        which = q1.selectbox("Model", iterative, format_func=lambda p: checkpoints.run_label(by_path[p]), key="curve_run")
        steps_list = q2.multiselect("Steps", [2, 4, 5, 10, 20, 25, 50, 100], default=[5, 10, 25, 50], key="curve_steps")
        if st.button("Draw the curve", key="curve_go", disabled=not steps_list, help="Samples at each step count in the background."):
            try:
                queue.submit(ws, "curve", f"quality against cost of {Path(which).name}", meta={"run_dir": which},
                             params={"run_dir": which, "steps": list(steps_list), "sampling": {k: v for k, v in sampling_for(which).items() if k != "steps"}})  # fmt: skip
                st.rerun()
            except GDAError as exc:
                display.show_error(exc)
        curve_running = any(not j.done for j in queue.list(ws, "curve"))

        @progress.live(1.0 if curve_running else None)
        def curve_jobs() -> None:
            jobs = queue.list(ws, "curve")
            progress.show_job_progress(jobs, key="qcancel", limit=3, cancel_help="Stop this curve.")
            curves = [c for c in (queue.curve(j) for j in jobs if j.status == "done") if c is not None]
            if curves:
                st.plotly_chart(curve_figure(curves[0]), key="curve_chart", theme=None)

        curve_jobs()


@st.cache_data(show_spinner=False, max_entries=16)
def export_bytes(kind: str, key: str, _reps, _names) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        out = write_comparison(_reps, _names, Path(tmp) / f"comparison.{kind}")
        return out.read_bytes()


st.subheader("Export")
# The cache is shared by every session: keyed by the reports' own bytes, never by fields a file sets.
key = reports_digest(reps, names)
e = st.columns(5)
try:
    for col, kind, mime, label, hint in (
        (e[0], "html", "text/html", "HTML report", "Radar, table, reading, claims and provenance in one self-contained web page."),
        (e[1], "pdf", "application/pdf", "PDF report", "Radar, tables with intervals, reading, claims and provenance as a printable PDF."),
        (e[2], "json", "application/json", "JSON", "All scores, intervals and raw figures, machine-readable."),
        (e[3], "csv", "text/csv", "CSV", "The figures table with interval bounds and each model's provenance, for a spreadsheet."),
        (e[4], "png", "image/png", "Radar PNG", "The radar chart with its interval bands as an image."),
    ):
        col.download_button(label, export_bytes(kind, key, reps, names), f"comparison.{kind}", mime, key=f"exp_{kind}", help=hint)
except GDAError as exc:
    display.show_error(exc)
