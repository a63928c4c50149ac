"""Augment: make a synthetic training set (ratio, balance, selection filters) and measure whether
it helps a classifier (utility study). Long work runs as background jobs; every computation is a
gda_core call."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import streamlit as st

from gda_core.augment import FILTER_HELP, MODES, plan_study, quick_budget
from gda_core.augment.export import npz_bytes, provenance, zip_bytes
from gda_core.augment.study_report import VERDICT_NOTE
from gda_core.errors import GDAError
from gda_core.metrics import ARCHITECTURES, DEFAULT_BUDGET
from gda_core.metrics.classifier import with_classifier
from gda_core.sampling import image_grid
from pages.ui import checkpoints, datasets, display, progress, session

session.setup()
st.title("Augment")
st.caption(
    "Turn a checkpoint into extra training images: choose how many (a multiple of your real training set), how to balance the classes "
    "and which filters keep only the useful ones. Then check with the utility study whether they actually help a classifier."
)
queue = session.job_queue()
ws = session.workspace()
ss = st.session_state

MODE_HELP = {
    "balanced": "same class balance as the real training split: each class gets ratio x its own real count",
    "rebalance": "the same number of images (ratio x the real split's size) goes first to the smallest classes, until every class has as many images as the largest; the rest is shared equally",
}


# -- jobs (gda_core.server.kinds runs them in worker processes; results come back as files) ----------

RESULTS = {"augment": queue.augment, "study": queue.study}


def job_panel(kind: str, key: str, result_key: str) -> None:
    """Progress + cancel for queued and running jobs of ``kind``; loads a finished job's result."""
    running = any(not j.done for j in queue.list(ws, kind))

    @progress.live(1.0 if running else None)
    def panel() -> None:
        jobs = queue.list(ws, kind)
        seen = ss.setdefault(f"{key}_collected", set())
        fresh = False
        for j in jobs:
            if j.status == "done" and j.id not in seen:
                seen.add(j.id)
                if j is jobs[0] and (result := RESULTS[kind](j)) is not None:
                    ss[result_key] = result
                    fresh = True
        progress.show_job_progress(jobs, key=f"{key}_cancel", limit=3)
        if fresh:
            st.rerun()

    panel()


# -- 1. generate + select ----------------------------------------------------------------------------

st.header("1. Generate and select")
info = checkpoints.run_picker("Checkpoint", key="aug_run", help="The generative model that makes the images.")
if info is not None:
    try:
        run = checkpoints.load_run_cached(info.path)
        ds = datasets.dataset_for_run(run)
    except GDAError as exc:
        display.show_error(exc)
        ds = None
    if ds is not None:
        counts = ds.class_counts("train")
        st.caption(
            f"Real training split this checkpoint was trained on: {len(ds.train_labels):,} images ("
            + ", ".join(f"{display.plain(n)}: {c}" for n, c in zip(ds.class_names[:12], counts[:12], strict=False))
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
            try:
                queue.submit(ws, "augment", f"Augment {info.path.name} x{ratio:g}", {"run_path": str(info.path), "ratio": float(ratio),
                             "mode": mode, "seed": seed, "spec": spec, "temperature": float(temperature)})  # fmt: skip
                st.rerun()
            except GDAError as exc:
                display.show_error(exc)

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
                display.show_grid(grid, scale=max(1, min(5, 320 // grid.shape[1])))
            else:
                st.caption("none")
    merge = st.checkbox("Merge with the real train/val/test splits", False, key="aug_merge",
                        help="The download then holds the real images too: a ready-to-train augmented dataset.")  # fmt: skip
    try:
        mds = datasets.dataset_for_run(checkpoints.load_run_cached(res["run_path"])) if merge else None
        d1, d2, d3 = st.columns(3)
        d1.download_button("Zip of PNGs", zip_bytes(kept, merge_with=mds), "augmented.zip", "application/zip", key="aug_dl_zip",
                           help="Class folders of PNGs (train/val/test when merged) with provenance.json inside.")  # fmt: skip
        d2.download_button(".npz (MedMNIST layout)", npz_bytes(kept, merge_with=mds), "augmented.npz", "application/octet-stream",
                           key="aug_dl_npz", help="train_images / train_labels (N, 1), class_names; loads back in GDA Studio.")  # fmt: skip
        d3.download_button("provenance.json", json.dumps(provenance(kept, mds), indent=2, default=str), "augmented.provenance.json",
                           "application/json", key="aug_dl_prov", help="Checkpoint hash, seeds, sampling settings, filters and counts.")  # fmt: skip
    except GDAError as exc:
        display.show_error(exc)

# -- 2. utility study --------------------------------------------------------------------------------

st.header("2. Does synthetic data help? The study")
st.caption(
    "The paper's protocol on your data. For each scarcity level (real images per class) and seed, each generator is trained on exactly "
    "the real images the classifier sees, a fixed small classifier is trained on those real images plus ratio x synthetic ones and "
    "tested on the real test split. Every figure comes with its 95% interval; the reading says where synthetic data helped, where it "
    "did not, and where this budget cannot tell. Uses the current dataset (Data page), without its per-class limit."
)
cur = datasets.current_dataset(show=True)
if cur is not None:
    SOURCES = {
        "per-level": "Train one generator per level (leakage-free)",
        "shared": "One generator per seed on all training images (leaks at scarce levels)",
        "checkpoint": "Existing checkpoints as they are (leak at scarce levels)",
    }
    source = st.radio("Generators", list(SOURCES), format_func=SOURCES.get, key="study_source", horizontal=True,
                      help="A generator trained on more real images than the classifier is given passes it information from images it was "
                           "denied, which flatters synthetic data exactly where data is scarce. The first option avoids that.")  # fmt: skip
    opts: dict = {}
    n_gen = 0
    if source == "checkpoint":
        infos = [r for r in checkpoints.all_runs() if (r.image_size, r.channels, r.num_classes) == (cur.image_size, cur.channels, cur.num_classes)]
        by_path = {str(r.path): r for r in infos}
        sel = st.multiselect("Checkpoints", list(by_path), default=list(by_path)[:1], format_func=lambda p: checkpoints.run_label(by_path[p]),
                             key="study_runs", help="Models whose images are added, used as they are at every level.")  # fmt: skip
        if not infos:
            st.info(f"No checkpoint makes {cur.image_size}x{cur.image_size} {'grey' if cur.channels == 1 else 'RGB'} images of {cur.num_classes} classes like the current dataset.")
        opts["checkpoints"] = [checkpoints.load_run_cached(p) for p in sel]  # checked here; the job loads them again by path
    else:
        g1, g2 = st.columns([3, 1])
        fams = g1.multiselect("Model families", session.model_families(trainable=True), default=["vae", "gan", "ddpm"], key="study_models",
                              help="Each is trained per level and seed with the budget on the right. The distilled student needs a trained "
                                   "teacher: add it under 'Existing checkpoints as they are'.")  # fmt: skip
        minutes = g2.number_input("Minutes per generator", 0.1, 120.0, 1.0, 0.5, key="study_minutes",
                                  help="Training budget of each generator (wall clock). Scarce levels need less than 'all'.")  # fmt: skip
        opts.update(models=fams, budget_minutes=float(minutes), scope=source)
    c1, c2, c3 = st.columns(3)
    levels = c1.multiselect("Real images per class", [5, 10, 20, 50, 100, 200, "all"], default=[10, 50, "all"], key="study_levels",
                            help="Scarcity levels: the real training images kept per class (a seeded stratified subset).")  # fmt: skip
    ratios = c2.multiselect("Ratios", [0, 0.5, 1, 2, 3, 5], default=[0, 1, 2, 3], key="study_ratios",
                            help="Synthetic images per real image; 0 = real images only (the baseline).")  # fmt: skip
    seeds = c3.slider("Seeds", 1, 5, 3, key="study_seeds", help="Repeats of everything (subset, generator, classifier, sampling): 3 or more for intervals.")
    c4, c5, c6 = st.columns(3)
    aug_opts = c4.multiselect("Geometric augmentation", ["off", "on"], default=["off"], key="study_aug",
                              help="The classifier's random 1-pixel shifts: compare synthetic images with cheap classical augmentation.")  # fmt: skip
    spec = c5.text_input("Selection (optional)", "", key="study_spec", placeholder="confidence:0.5,privacy:0.9",
                         help="Also run every cell with these filters, e.g. " + ", ".join(f"{k}:0.5" for k in FILTER_HELP))  # fmt: skip
    budget = c6.radio("Classifier budget", ["quick", "standard"], horizontal=True, key="study_budget",
                      help="quick: at most 200 steps per classifier (CPU-friendly, noisier); standard: the evaluation budget (150-800 steps).")  # fmt: skip
    classifier = c6.selectbox("Downstream classifier", list(ARCHITECTURES), key="study_classifier", format_func=lambda a: f"{a}: {ARCHITECTURES[a]}",
                              help="The classifier every cell trains, from scratch (the paper used VGG and DenseNet; the small CNN is the fastest).")  # fmt: skip
    opts.update(per_class_levels=levels, ratios=ratios, seeds=int(seeds), geometric_aug=[a == "on" for a in aug_opts], select=spec.strip() or None,
                budget=with_classifier(quick_budget() if budget == "quick" else DEFAULT_BUDGET, classifier), device="auto",
                cache_dir=str(ws.study_cache))  # fmt: skip
    if source != "checkpoint":
        n_gen = len(opts["models"]) * len(levels) * int(seeds) if source == "per-level" else len(opts["models"]) * int(seeds)
        st.caption(f"{n_gen} generators to train (about {n_gen * opts['budget_minutes']:.0f} minutes; ones already trained with the same "
                   "settings are reused), then the classifiers.")  # fmt: skip
    problem = None
    try:
        plan_study(cur, **opts)
    except GDAError as exc:
        problem = str(exc)
        st.error(problem)
    if st.button("Run study", type="primary", key="study_go", disabled=problem is not None,
                 help="Runs in the background with progress per cell; cancel any time and resume later (finished cells are kept)."):  # fmt: skip
        job_opts = {k: v for k, v in opts.items() if k not in ("checkpoints", "budget", "cache_dir")}
        job_opts.update(checkpoints=list(sel) if source == "checkpoint" else None, budget=budget, classifier=classifier)
        ss["study_last"] = {"title": f"Study on {datasets.data_options().get('label') or cur.name}", "params": {"data": cur.spec.to_dict(), "options": job_opts}}
        try:
            queue.submit(ws, "study", ss["study_last"]["title"], ss["study_last"]["params"])
            st.rerun()
        except GDAError as exc:
            display.show_error(exc)

job_panel("study", "studyjob", "study_result")
last_study = next(iter(queue.list(ws, "study")), None)
if last_study is not None:
    done_cells = [r["cell"] for r in queue.logs(last_study) if "cell" in r]
    if done_cells:
        with st.expander(f"Cells finished ({len(done_cells)})", expanded=not last_study.done):
            st.dataframe(pd.DataFrame({"cell": done_cells[::-1]}), hide_index=True, width="stretch", key="study_cells")
    if last_study.status in ("cancelled", "failed") and ss.get("study_last") and st.button(
        "Resume study", key="study_resume", help="Start the same study again: generators and cells already finished are reused."
    ):
        queue.submit(ws, "study", f"{ss['study_last']['title']} (resumed)", ss["study_last"]["params"])
        st.rerun()
study = ss.get("study_result")
@st.cache_data(show_spinner="Drawing the PDF...", max_entries=4)
def _study_pdf(key: str, _study) -> bytes:
    return _study.pdf()


if study is not None:
    st.plotly_chart(study.figure(), key="study_chart")
    for w in (study.config.get("duplicates") or {}).get("warnings", []):  # the same images in train and test
        st.warning(display.plain(str(w)))
    st.subheader("Reading")
    st.caption(VERDICT_NOTE)
    for line in study.reading():
        st.markdown(f"- {display.plain(line)}")
    st.subheader("Table")
    st.dataframe(pd.DataFrame(study.table()), hide_index=True, width="stretch")
    d1, d2, d3 = st.columns(3)
    study_json = json.dumps(study.to_dict(), indent=2, default=str)
    d1.download_button("Study (JSON)", study_json, "study.json", "application/json", key="study_dl_json",
                       help="Every cell with its generator's provenance, the summary with intervals, the claims and the reading.")  # fmt: skip
    d2.download_button("Report (HTML)", study.html(), "study.html", "text/html", key="study_dl_html",
                       help="Interactive chart, reading and table in one file.")  # fmt: skip
    d3.download_button("Report (PDF)", _study_pdf(hashlib.sha256(study_json.encode()).hexdigest(), study), "study.pdf", "application/pdf",
                       key="study_dl_pdf", help="Chart, table with intervals, reading, claims and the generators' provenance as a printable PDF.")  # fmt: skip
