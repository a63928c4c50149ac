"""Sample: generate images from any checkpoint; the grid follows the sliders."""

from __future__ import annotations

import streamlit as st

from gda_core.errors import GDAError
from gda_core.models import display_name
from gda_core.sampling import faster_precision, generate, png_bytes
from pages.ui import checkpoints, display, session

session.setup()
st.title("Sample")
st.caption("Pick a checkpoint and move the sliders: the grid updates by itself, and settings you already tried come back instantly.")


@st.cache_data(show_spinner="Generating...", max_entries=64)
def sample_cached(path: str, mtime: float, n: int, label, temperature: float, guidance, steps, seed: int, eta: float, sampler, fast=None):
    run = checkpoints.load_run_cached(path)
    return generate(run, n, label, temperature=temperature, guidance=guidance, steps=steps, seed=seed, eta=eta, sampler=sampler, fast=fast)


info = checkpoints.run_picker("Checkpoint", key="sample_run", help="Shipped checkpoints and the runs you trained (newest first).")
if info is None:
    st.stop()
try:
    run = checkpoints.load_run_cached(info.path)
except GDAError as exc:
    display.show_error(exc)
    st.stop()
model = run.model
controls = set(model.controls)
cfg = model.config
names = run.class_names

left, right = st.columns([1, 2], gap="large")
with left:
    st.caption(f"**{display_name(model.family)}**: {type(model).description}")
    if model.provenance():
        st.caption(f"This checkpoint was {display.plain(model.provenance())}.")
    label_opts = ["all classes"] + names
    cls_choice = st.selectbox(
        "Class", label_opts, key="sample_class", help="Generate one class, or cycle through all classes (one column per class)."
    )
    label = None if cls_choice == "all classes" else names.index(cls_choice)
    # Many network passes per image (diffusion, LDM, flow): fewer images by default so the page answers fast.
    default_n = min(64, 4 * cfg.num_classes) if model.nfe_per_image() <= 1 else min(40, 2 * cfg.num_classes)
    n = st.slider(
        "Number of images",
        1,
        128,
        max(1, default_n),
        key=f"sample_n_{model.family}",
        help="How many images to generate (image i uses seed + i).",
    )
    seed = int(st.number_input("Seed", 0, 2**31 - 1, 0, key="sample_seed", help="Same seed and settings give the same images."))
    temperature = st.slider("Temperature", 0.0, 2.0, 1.0, 0.05, key="sample_temperature", help=model.control_help("temperature"))
    guidance = steps = sampler = None
    eta = 0.0
    if "guidance" in controls:
        guidance = st.slider(
            "Guidance", 0.0, 8.0, float(getattr(cfg, "default_guidance", 2.0)), 0.25, key="sample_guidance", help=model.control_help("guidance")
        )
    if "steps" in controls:
        steps = st.slider(
            "Steps", 1, 1000, int(getattr(cfg, "default_steps", 25)), key=f"sample_steps_{model.family}", help=model.control_help("steps")
        )
    if "sampler" in controls and model.samplers:
        helps = "; ".join(f"{k}: {v}" for k, v in model.sampler_help.items())
        sampler = st.selectbox(
            "Sampler",
            list(model.samplers),
            key=f"sample_sampler_{model.family}",
            help=model.control_help("sampler") + (f" ({helps})" if helps else ""),
        )
    if "eta" in controls:
        eta = st.slider(
            "Eta",
            0.0,
            1.0,
            0.0,
            0.05,
            key="sample_eta",
            help=model.control_help("eta") + " (used by the ddim sampler)",
            disabled=sampler not in (None, "ddim"),
        )
    fast = None
    low = faster_precision(model)
    if low and model.nfe_per_image() > 1:  # many network passes per image: where lower precision saves seconds
        fast = True if st.toggle(
            f"Faster: {low} on this CPU",
            False,
            key="sample_fast",
            help=f"This processor does {low} arithmetic natively: each network pass runs faster (1.3-3.2x measured; "
            "bench/bench_quality.py, bench/bench_speed.py) and the images move by a few grey levels. Off: float32, "
            "the exact images that evaluation and the CLI's default make.",
        ) else None
    missing = [c for c in ("guidance", "steps", "sampler", "eta") if c not in controls]
    if missing:
        st.caption(f"Not shown: {', '.join(missing)}, which do not apply to a {display_name(model.family)}.")

with right:
    try:
        mtime = info.path.joinpath("model.safetensors").stat().st_mtime
        res = sample_cached(str(info.path), mtime, int(n), label, float(temperature), guidance, steps, seed, float(eta), sampler, fast)
    except (GDAError, OSError) as exc:
        display.show_error(exc)
        st.stop()
    nrow = cfg.num_classes if (label is None and cfg.num_classes <= 16) else 8
    grid = res.grid(nrow=nrow)
    scale = max(1, min(6, 640 // grid.shape[1]))
    display.show_grid(grid, scale=scale)
    if label is None and nrow == cfg.num_classes:
        st.caption("Columns, left to right: " + display.plain(", ".join(names)))
    else:
        st.caption(f"All images: class {display.plain(names[label])}" if label is not None else "Classes cycle left to right.")
    for note in res.notes:
        st.caption(note)
    if res.settings["fast"] and res.settings["fast"]["dtype"] and res.settings["fast"]["device_type"] == "cpu":
        st.caption(f"Made in {res.settings['fast']['dtype']} (the faster path): a few grey levels from the float32 images.")
    d1, d2, d3 = st.columns(3)
    base = f"{info.path.name}_seed{seed}"
    d1.download_button(
        "PNG grid", png_bytes(grid, upscale=4, provenance=res.provenance()), f"{base}.png", "image/png", key="dl_png",
        help="The grid above as one PNG (4x enlarged); it records the checkpoint, its weights hash, the settings and seeds (python -m gda_core provenance FILE).",
    )
    d2.download_button(
        "Zip of PNGs",
        res.zip_bytes(),
        f"{base}.zip",
        "application/zip",
        key="dl_zip",
        help="Every image as its own PNG, in one folder per class.",
    )
    d3.download_button(".npz with labels", res.npz_bytes(), f"{base}.npz", "application/octet-stream", key="dl_npz",
                       help="images (uint8 N,H,W,C), labels, seeds and class_names; loads with numpy.load or back into GDA Studio.")  # fmt: skip
