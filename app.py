"""GDA Studio: the Streamlit entry point (page config, shared sidebar, navigation, Home).

Run with ``streamlit run app.py``. Pages live in ``pages/`` and only call ``gda_core``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pages import common  # noqa: E402

st.set_page_config(page_title="GDA Studio", page_icon=":material/biotech:", layout="wide")
common.setup(entry=True)

PAGES_DIR = ROOT / "pages"
ICONS = {
    "data": ":material/photo_library:",
    "train": ":material/model_training:",
    "sample": ":material/auto_awesome:",
    "latent space": ":material/scatter_plot:",
    "compare": ":material/radar:",
    "learn": ":material/school:",
    "augment": ":material/library_add:",
}


def home() -> None:
    st.title("GDA Studio")
    st.markdown(
        "GDA Studio helps you make more training images when you only have a few labelled ones. "
        "You train small generative models (a VAE, a GAN or a diffusion model) on your images, then sample them, "
        "look inside their latent spaces and compare them on six measures: fidelity, diversity, speed, utility, robustness and privacy. "
        "Everything runs on this machine; your images never leave it."
    )
    ds = common.current_dataset(show=False)
    c1, c2, c3 = st.columns(3)
    o = common.data_options()
    c1.metric("Current dataset", o.get("label") or o["source"], help="Chosen on the Data page; used by Train, Latent space and Learn.")
    c2.metric(
        "Training images",
        f"{len(ds.train_labels):,}" if ds is not None else "n/a",
        help="Images in the training split after the per-class limit.",
    )
    c3.metric("Device", common.device_label(), help="Where models train and sample: the GPU when one is available, else the CPU.")
    st.subheader("A path through the app")
    steps = [
        ("Data", "pick a built-in dataset, a MedMNIST set or upload your own images; choose how many images per class to keep."),
        ("Train", "train a VAE, GAN or diffusion model in the background with live loss curves and previews."),
        ("Sample", "generate images from any checkpoint; move a slider and the grid updates; download PNG, zip or .npz."),
        ("Latent space", "walk between two images, turn one latent dimension at a time, map real vs synthetic images, spot near-copies."),
        ("Compare", "score several models on six axes, see them on one radar chart and export the report."),
        ("Learn", "see how each family works on your own data: noising and denoising, reconstructions, GAN dynamics."),
    ]
    for i, (name, what) in enumerate(steps, 1):
        st.markdown(f"{i}. **{name}**: {what}")
    st.caption("Tip: shipped checkpoints (digits) let you try Sample, Latent space, Compare and Learn before training anything.")


def _title(path: Path) -> str:
    stem = re.sub(r"^\d+_", "", path.stem)
    return stem.replace("_", " ")


def build_pages() -> list:
    pages = [st.Page(home, title="Home", icon=":material/home:", default=True)]
    # Every numbered page file, in order (new pages such as Augment appear by being added to pages/).
    for path in sorted(PAGES_DIR.glob("[0-9]*_*.py"), key=lambda p: (int(p.name.split("_", 1)[0]), p.name)):
        title = _title(path)
        # No url_path: the URL is the file's name without its number (/Train, /Latent_space), the name
        # Streamlit's legacy pages/ mode gives the same file, so a deep link that reaches a fresh server
        # in that mode lands on the same page here (see common._leave_folder_mode).
        pages.append(st.Page(str(path), title=title, icon=ICONS.get(title.lower(), ":material/article:")))
    return pages


def sidebar() -> None:
    with st.sidebar:
        o = common.data_options()
        ds = common.current_dataset(show=False)
        st.markdown("**Dataset**")
        if ds is not None:
            st.caption(
                f"{o.get('label') or ds.name}: {len(ds.train_labels):,} training images, {ds.num_classes} classes, {ds.image_size}x{ds.image_size} px, {'grey' if ds.channels == 1 else 'RGB'}"
            )
        else:
            st.caption(f"{o.get('label') or o['source']}: not loaded (see the Data page)")
        st.markdown("**Device**")
        st.caption(common.device_label())
        jobs = common.job_manager().list(owner=common.owner())
        running = [j for j in jobs if not j.done]
        if running:
            st.markdown("**Running jobs**")
            for j in running[:5]:
                st.caption(f"{j.title}: {j.progress:.0%}")


pg = st.navigation(build_pages())
sidebar()
pg.run()
