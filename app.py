"""GDA Studio: the Streamlit entry point (page config, shared sidebar, navigation, Home).

Run with ``streamlit run app.py``. Pages live in ``pages/``, their shared helpers in ``pages/ui/``,
and they only call ``gda_core`` (installed by ``make setup``). ``pages`` is imported from this
file's folder, which ``streamlit run`` puts first on sys.path.
"""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

from gda_core.errors import GDAError
from gda_core.models import display_name
from pages.ui import checkpoints, datasets, display, progress, session

ROOT = Path(__file__).resolve().parent

st.set_page_config(page_title="GDA Studio", page_icon=":material/biotech:", layout="wide")
session.setup(entry=True)

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


# The Home page's path through the app: one step per page, keyed by its title, shown in the
# sidebar's order (tests/test_app.py checks that every page has its step).
STEPS = {
    "Data": "pick a built-in dataset, a MedMNIST set or upload your own images; choose how many images per class to keep.",
    "Train": "train a model of one of nine families (VAE, GAN, StyleGAN2, DDPM, latent diffusion, flow matching, RealNVP, "
    "denoising-diffusion GAN, VAE-GAN) in the background, with live loss curves and previews; a tenth, the few-step student, "
    "is distilled from a trained diffusion model.",
    "Sample": "generate images from any checkpoint; move a slider and the grid updates; download PNG, zip or .npz.",
    "Latent space": "walk between two images, turn one latent dimension at a time, map real vs synthetic images, spot near-copies.",
    "Compare": "score several models on six axes, each with its 95% interval; see which differences are real and which are within "
    "noise, and whether the paper's rankings hold on your data.",
    "Learn": "see how each family works on your own data: noising and denoising, reconstructions, GAN dynamics.",
    "Augment": "turn a checkpoint into extra training images (how many, class balance, quality filters), export them, "
    "and run the study: with generators trained on exactly the real images a classifier sees, do their images help it?",
}


def home() -> None:
    st.title("GDA Studio")
    st.markdown(
        "GDA Studio helps you make more training images when you only have a few labelled ones. "
        "You train small generative models (VAEs, GANs, diffusion and flow models) on your images, then sample them, "
        "look inside their latent spaces, compare them on six measures (fidelity, diversity, speed, utility, robustness and privacy) "
        "and add their images to a training set. Everything runs on this server: your images stay in your workspace, which other users "
        "of the server cannot open."
    )
    ds = datasets.current_dataset(show=False)
    c1, c2, c3 = st.columns(3)
    o = datasets.data_options()
    c1.metric("Current dataset", o.get("label") or o["source"], help="Chosen on the Data page; used by Train, Latent space and Learn.")
    c2.metric(
        "Training images",
        f"{len(ds.train_labels):,}" if ds is not None else "n/a",
        help="Images in the training split after the per-class limit.",
    )
    c3.metric("Device", session.device_label(), help="Where models train and sample: the GPU when one is available, else the CPU.")
    shipped_models()
    st.subheader("A path through the app")
    for i, name in enumerate((_title(p) for p in page_files()), 1):
        st.markdown(f"{i}. **{name}**: {STEPS.get(name, '')}")


def shipped_models() -> None:
    """The shipped checkpoints by dataset, each a click away from Sample and Learn (no download:
    generating needs only the weights)."""
    from gda_core.data import dataset_title

    by_data: dict[str, list] = {}
    for r in checkpoints.all_runs():
        if r.shipped:
            by_data.setdefault(r.dataset, []).append(r)
    if not by_data:
        return
    st.subheader("Start from a shipped model")
    st.caption("Trained here on each dataset and evaluated on all six axes: open one on Sample or Learn before training anything.")
    for source, infos in by_data.items():
        a, b, c = st.columns([4, 1, 1], vertical_alignment="center")
        a.markdown(f"**{display.plain(dataset_title(source))}**: {', '.join(display_name(i.family) for i in infos)}")
        for col, page, key in ((b, "pages/3_Sample.py", "sample_run"), (c, "pages/6_Learn.py", "learn_run")):
            title = "Sample" if key == "sample_run" else "Learn"
            if col.button(title, key=f"home_{key}_{source}", help=f"Open the {dataset_title(source)} {display_name(infos[0].family)} on {title}."):
                st.session_state[f"_{key}"] = str(infos[0].path)
                st.switch_page(page)


def _title(path: Path) -> str:
    stem = re.sub(r"^\d+_", "", path.stem)
    return stem.replace("_", " ")


def page_files() -> list[Path]:
    """Every numbered page file, in order: a new page appears by being added to pages/."""
    return sorted(PAGES_DIR.glob("[0-9]*_*.py"), key=lambda p: (int(p.name.split("_", 1)[0]), p.name))


def build_pages() -> list:
    pages = [st.Page(home, title="Home", icon=":material/home:", default=True)]
    for path in page_files():
        title = _title(path)
        # No url_path: the URL is the file's name without its number (/Train, /Latent_space), the name
        # Streamlit's legacy pages/ mode gives the same file, so a deep link that reaches a fresh server
        # in that mode lands on the same page here (see session._leave_folder_mode).
        pages.append(st.Page(str(path), title=title, icon=ICONS.get(title.lower(), ":material/article:")))
    return pages


def sidebar(slot) -> None:
    with slot:
        o = datasets.data_options()
        ds = datasets.current_dataset(show=False)
        st.markdown("**Dataset**")
        if ds is not None:
            st.caption(
                f"{display.plain(o.get('label') or ds.name)}: {len(ds.train_labels):,} training images, {ds.num_classes} classes, {ds.image_size}x{ds.image_size} px, {'grey' if ds.channels == 1 else 'RGB'}"
            )
        else:
            st.caption(f"{display.plain(o.get('label') or o['source'])}: not loaded (see the Data page)")
        st.markdown("**Device**")
        st.caption(session.device_label())
        ws = session.workspace()
        st.markdown("**Workspace**")
        st.caption(f"{display.plain(ws.name)}: your uploads, runs and results are kept under this page's address; bookmark it to come "
                   "back. Anyone with the address can open them, so share it only with whom you trust.")  # fmt: skip
        if st.session_state.pop("_unknown_ws", False):
            st.warning("That workspace link is unknown (mistyped, or deleted by the server's owner): this is a new, empty workspace.")
        try:
            jobs = session.job_queue().list(ws)
        except GDAError:  # a job queue locked beyond its wait: the rest of the sidebar still shows
            jobs = []
            st.caption("Jobs: the job queue is busy; the list is back on the next page view.")
        running = [j for j in jobs if not j.done]
        if running:
            st.markdown("**Jobs**")
            for j in running[:5]:
                st.caption(display.plain(progress.job_status_text(j)))


pg = st.navigation(build_pages())
# The sidebar's slot is placed first but filled after the page ran, so it shows the dataset the page
# just loaded (filled before, it showed the previous one until the next rerun).
slot = st.sidebar.container()
try:
    pg.run()
except GDAError as exc:  # one no page caught (a job queue locked beyond its wait, for one): one line, never a traceback
    display.show_error(exc)
finally:
    sidebar(slot)
