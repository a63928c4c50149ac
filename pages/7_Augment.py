"""Augment: make a synthetic training set (ratio, balance, selection filters) and measure whether
it helps a classifier (utility study). Long work runs as background jobs; every computation is a
gda_core call."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import streamlit as st

from gda_core.augment import FILTER_HELP, MODES, parse_filters, quick_budget, run_study
from gda_core.augment.export import npz_bytes, provenance, zip_bytes
from gda_core.augment.generate import generate_synthetic
from gda_core.augment.select import SelectionContext
from gda_core.augment.select import select as apply_filters
from gda_core.errors import GDAError
from gda_core.metrics import DEFAULT_BUDGET
from gda_core.sampling import image_grid
from pages.ui import common

common.setup()
st.title("Augment")
st.caption(
    "Turn a checkpoint into extra training images: choose how many (a multiple of your real training set), how to balance the classes "
    "and which filters keep only the useful ones. Then check with the utility study whether they actually help a classifier."
)
manager = common.job_manager()
me = common.owner()
ss = st.session_state

MODE_HELP = {
    "balanced": "same class balance as the real training split: each class gets ratio x its own real count",
    "rebalance": "the same number of images (ratio x the real split's size) goes first to the smallest classes, until every class has as many images as the largest; the rest is shared equally",
}


# -- jobs (plain Python calling gda_core; they run in a background thread) ---------------------------


def augment_job(job, *, run_path: str, ratio: float, mode: str, seed: int, spec: str, temperature: float):
    run = common.load_run_cached(run_path)
    ds = common.dataset_for_run(run)
    job.update(progress=0.02, message="sampling")
    synth = generate_synthetic(run, ratio, real_labels=ds.train_labels, mode=mode, seed=seed, temperature=temperature,
                               progress=lambda d, t: job.update(progress=0.02 + 0.6 * d / max(1, t), message=f"sampling {d}/{t}"),
                               cancel=job.cancel_event)  # fmt: skip
    if not spec:
        return {"all": synth, "kept": synth, "report": {"before": synth.class_counts(), "after": synth.class_counts(), "filters": [],
                "kept_index": list(range(len(synth))), "dropped_index": [], "class_names": synth.class_names}, "run_path": run_path}  # fmt: skip
    ctx = SelectionContext.from_dataset(ds, seed=seed, device=run.model.device, cancel=job.cancel_event,
                                        progress=lambda m: job.update(progress=0.7, message=m))  # fmt: skip
    kept, report = apply_filters(synth, parse_filters(spec, seed=seed), ctx)
    return {"all": synth, "kept": kept, "report": report, "run_path": run_path}


def study_job(job, *, dataset, run_paths: list[str], levels, ratios, seeds: int, augs, spec: str | None, budget: str):
    ds = dataset  # resolved by the script thread (session state is not readable from a job thread)
    runs = [common.load_run_cached(p) for p in run_paths]
    return run_study(runs, ds, per_class_levels=levels, ratios=ratios, seeds=seeds, geometric_aug=augs, select=spec or None,
                     budget=quick_budget() if budget == "quick" else DEFAULT_BUDGET, device=str(runs[0].model.device),
                     progress=lambda f, m: job.update(progress=f, message=m), cancel=job.cancel_event)  # fmt: skip


def job_panel(kind: str, key: str, result_key: str) -> None:
    """Progress + cancel for running jobs of ``kind``; collects a finished job's result."""
    running = any(not j.done for j in manager.list(owner=me, kind=kind))

    @st.fragment(run_every=1.0 if running else None)
    def panel() -> None:
        jobs = manager.list(owner=me, kind=kind)
        fresh = False
        for j in jobs:
            if j.status == "done" and j.result is not None and not j.meta.get("collected"):
                ss[result_key] = j.result
                j.meta["collected"] = True
                fresh = True
        common.show_job_progress(jobs, key=f"{key}_cancel", limit=3)
        if fresh:
            st.rerun()

    panel()


# -- 1. generate + select ----------------------------------------------------------------------------

st.header("1. Generate and select")
info = common.run_picker("Checkpoint", key="aug_run", help="The generative model that makes the images.")
if info is not None:
    try:
        run = common.load_run_cached(info.path)
        ds = common.dataset_for_run(run)
    except GDAError as exc:
        common.show_error(exc)
        ds = None
    if ds is not None:
        counts = ds.class_counts("train")
        st.caption(
            f"Real training split this checkpoint was trained on: {len(ds.train_labels):,} images ("
            + ", ".join(f"{n}: {c}" for n, c in zip(ds.class_names[:12], counts[:12], strict=False))
            + (" ..." if len(counts) > 12 else "") + ")."
        )
        c1, c2 = st.columns(2)
        with c1:
            ratio = st.slider("Ratio (synthetic images per real image)", 0.25, 5.0, 1.0, 0.25, key="aug_ratio",
                              help="1 = as many synthetic images as real training images, 2 = twice as many, ...")  # fmt: skip
            mode = st.radio("Class balance", MODES, horizontal=True, key="aug_mode", help=" · ".join(f"{k}: {v}" for k, v in MODE_HELP.items()))
            st.caption(MODE_HELP[mode])
            seed = int(st.number_input("Seed", 0, 2**31 - 1, 0, key="aug_seed", help="Image i uses seed + i: same seed, same images."))
            temperature = st.slider("Temperature", 0.0, 2.0, 1.0, 0.05, key="aug_temp", help="Scales the sampling noise (1 = as trained).")
        with c2:
            st.markdown("**Selection filters** (applied top to bottom)")
            parts = []
            if st.checkbox("Privacy: drop near-copies", True, key="aug_f_priv", help=FILTER_HELP["privacy"]):
                v = st.slider("max SSIM to nearest training image", 0.5, 1.0, 0.9, 0.01, key="aug_p_priv", help=FILTER_HELP["privacy"])
                parts.append(f"privacy:{v}")
            if st.checkbox("Confidence (top-k)", False, key="aug_f_conf", help=FILTER_HELP["confidence"]):
                v = st.slider("keep fraction per class", 0.05, 1.0, 0.5, 0.05, key="aug_p_conf", help=FILTER_HELP["confidence"])
                parts.append(f"confidence:{v}")
            if st.checkbox("Realism score", False, key="aug_f_real", help=FILTER_HELP["realism"]):
                v = st.slider("keep fraction per class", 0.05, 1.0, 0.5, 0.05, key="aug_p_real", help=FILTER_HELP["realism"])
                parts.append(f"realism:{v}")
            if st.checkbox("Cluster-based", False, key="aug_f_clus", help=FILTER_HELP["cluster"]):
                v = st.slider("keep fraction per class", 0.05, 1.0, 0.5, 0.05, key="aug_p_clus", help=FILTER_HELP["cluster"])
                k = st.slider("clusters per class", 2, 16, 8, key="aug_p_clus_k", help="k of k-means within each class")
                parts.append(f"cluster:{v}:k={k}")
            spec = ",".join(parts)
            st.caption(f"Spec: `{spec or 'none'}` (the same string works with `python -m gda_core augment --select`).")
        n_est = int(round(ratio * len(ds.train_labels)))
        if st.button(f"Generate {n_est:,} images and select", type="primary", key="aug_go",
                     help="Runs in the background; you can switch pages meanwhile."):  # fmt: skip
            manager.start("augment", augment_job, owner=me, title=f"Augment {info.path.name} x{ratio:g}",
                          run_path=str(info.path), ratio=float(ratio), mode=mode, seed=seed, spec=spec, temperature=float(temperature))  # fmt: skip
            st.rerun()

job_panel("augment", "augjob", "aug_result")

res = ss.get("aug_result")
if res is not None:
    synth_all, kept, report = res["all"], res["kept"], res["report"]
    st.subheader(f"Result: {len(kept):,} of {len(synth_all):,} images kept")
    names = report["class_names"]
    table = {"class": names, "generated": report["before"]}
    for rec in report["filters"]:
        table[f"after {rec['spec']}"] = rec["after"]
    st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch")
    kept_idx, dropped_idx = np.array(report["kept_index"], int), np.array(report["dropped_index"], int)
    rng = np.random.default_rng(0)
    g1, g2 = st.columns(2)
    for col, idx, title in ((g1, kept_idx, "Kept"), (g2, dropped_idx, "Dropped")):
        with col:
            st.markdown(f"**{title}** ({len(idx):,})")
            if len(idx):
                show = np.sort(rng.choice(idx, size=min(32, len(idx)), replace=False))
                grid = image_grid(synth_all.images[show], nrow=8)
                common.show_grid(grid, scale=max(1, min(5, 320 // grid.shape[1])))
            else:
                st.caption("none")
    merge = st.checkbox("Merge with the real train/val/test splits", False, key="aug_merge",
                        help="The download then holds the real images too: a ready-to-train augmented dataset.")  # fmt: skip
    try:
        mds = common.dataset_for_run(common.load_run_cached(res["run_path"])) if merge else None
        d1, d2, d3 = st.columns(3)
        d1.download_button("Zip of PNGs", zip_bytes(kept, merge_with=mds), "augmented.zip", "application/zip", key="aug_dl_zip",
                           help="Class folders of PNGs (train/val/test when merged) with provenance.json inside.")  # fmt: skip
        d2.download_button(".npz (MedMNIST layout)", npz_bytes(kept, merge_with=mds), "augmented.npz", "application/octet-stream",
                           key="aug_dl_npz", help="train_images / train_labels (N, 1), class_names; loads back in GDA Studio.")  # fmt: skip
        d3.download_button("provenance.json", json.dumps(provenance(kept, mds), indent=2, default=str), "augmented.provenance.json",
                           "application/json", key="aug_dl_prov", help="Checkpoint hash, seeds, sampling settings, filters and counts.")  # fmt: skip
    except GDAError as exc:
        common.show_error(exc)

# -- 2. utility study --------------------------------------------------------------------------------

st.header("2. Utility study")
st.caption(
    "Does adding synthetic images help? A fixed small classifier is trained on a few real images per class plus ratio x synthetic "
    "images and tested on the real test split, for several seeds. Uses the current dataset (Data page)."
)
cur = common.current_dataset(show=True)
if cur is not None:
    infos = [r for r in common.all_runs() if (r.image_size, r.channels, r.num_classes) == (cur.image_size, cur.channels, cur.num_classes)]
    if not infos:
        st.info(f"No checkpoint makes {cur.image_size}x{cur.image_size} {'grey' if cur.channels == 1 else 'RGB'} images of {cur.num_classes} classes like the current dataset: train one on the Train page.")
    else:
        by_path = {str(r.path): r for r in infos}
        sel = st.multiselect("Checkpoints", list(by_path), default=list(by_path)[:1], format_func=lambda p: by_path[p].label, key="study_runs",
                             help="Models whose images are added. They are used as they are (see the note in the results).")  # fmt: skip
        c1, c2, c3 = st.columns(3)
        levels = c1.multiselect("Real images per class", [5, 10, 20, 50, 100, 200, "all"], default=[10, 50, "all"], key="study_levels",
                                help="Scarcity levels: the real training images kept per class (a seeded stratified subset).")  # fmt: skip
        ratios = c2.multiselect("Ratios", [0, 0.5, 1, 2, 3, 5], default=[0, 1, 2, 3], key="study_ratios",
                                help="Synthetic images per real image; 0 = real images only (the baseline).")  # fmt: skip
        seeds = c3.slider("Seeds", 1, 5, 3, key="study_seeds", help="Repeats per cell (subset, classifier and sampling seeds); the table shows mean ± std.")
        c4, c5, c6 = st.columns(3)
        aug_opts = c4.multiselect("Geometric augmentation", ["off", "on"], default=["off", "on"], key="study_aug",
                                  help="The classifier's random 1-pixel shifts: compare synthetic images with cheap classical augmentation.")  # fmt: skip
        spec = c5.text_input("Selection (optional)", "", key="study_spec", placeholder="confidence:0.5,privacy:0.9",
                             help="Also run every cell with these filters, e.g. " + ", ".join(f"{k}:0.5" for k in FILTER_HELP))  # fmt: skip
        budget = c6.radio("Classifier budget", ["quick", "standard"], horizontal=True, key="study_budget",
                          help="quick: at most 200 steps per classifier (CPU-friendly, noisier); standard: the evaluation budget (150-800 steps).")  # fmt: skip
        ok = bool(sel and levels and ratios and aug_opts)
        spec_error = None
        try:
            parse_filters(spec)
        except GDAError as exc:
            spec_error = str(exc)
            st.error(spec_error)
        n_cells = len(levels) * seeds * len(aug_opts) * (1 + len(sel) * len([r for r in ratios if r > 0]) * (2 if spec.strip() else 1))
        if st.button(f"Run study ({n_cells} classifier trainings)", type="primary", key="study_go", disabled=not ok or spec_error is not None,
                     help="Runs in the background with progress; the table, chart and reading appear when it ends."):  # fmt: skip
            manager.start("study", study_job, owner=me, title=f"Study on {cur.name}", dataset=cur, run_paths=sel, levels=levels, ratios=ratios,
                          seeds=int(seeds), augs=[a == "on" for a in aug_opts], spec=spec.strip() or None, budget=budget)  # fmt: skip
            st.rerun()

job_panel("study", "studyjob", "study_result")
study = ss.get("study_result")
if study is not None:
    for note in study.notes:
        st.warning(note)
    st.plotly_chart(study.figure(), key="study_chart")
    st.subheader("Reading")
    for line in study.reading()[len(study.notes):]:
        st.markdown(f"- {line}")
    st.subheader("Table")
    st.dataframe(pd.DataFrame(study.table()), hide_index=True, width="stretch")
    d1, d2 = st.columns(2)
    d1.download_button("Study (JSON)", json.dumps(study.to_dict(), indent=2, default=str), "study.json", "application/json", key="study_dl_json",
                       help="Every per-seed row, the summary, the reading and the configuration.")  # fmt: skip
    d2.download_button("Report (HTML)", study.html(), "study.html", "text/html", key="study_dl_html",
                       help="Interactive chart, reading and table in one file.")  # fmt: skip
