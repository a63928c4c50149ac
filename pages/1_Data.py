"""Data: choose the dataset every other page uses, see its images and class balance."""

from __future__ import annotations

import json
import os

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from gda_core.data import default_data_dir
from gda_core.data.duplicates import split_duplicates
from gda_core.errors import GDAError
from gda_core.sampling import image_grid
from pages.ui import datasets, display, session

session.setup()


@st.cache_resource(show_spinner="Looking for duplicates between the splits...", max_entries=16)
def _split_duplicates(_ds, key: str):
    # ``key``: the dataset's options (the Dataset itself is cached per options by datasets.load_dataset_cached).
    return split_duplicates(_ds)


def show_duplicates(ds) -> None:
    """Warn, with the count, of images that are in two splits (the same scan in train and test)."""
    dups = _split_duplicates(ds, json.dumps(datasets.data_options(), sort_keys=True, default=str))
    for w in dups.warnings():
        st.warning(display.plain(w))
    if not dups.exact + dups.near:
        st.caption("No exact or near duplicates between train, validation and test (perceptual hash, confirmed by pixel correlation).")
        return
    with st.expander("Examples of duplicates (each pair: the earlier split left, its copy right)"):
        for p in (p for p in dups.pairs if p.total):
            pairs = [(i, j) for i, j in p.exact_pairs] + [(i, j) for i, j, _ in p.near_pairs]
            st.markdown(f"**{p.a} / {p.b}**: {p.exact} exact, {p.near} near")
            tiles = np.stack([img for i, j in pairs[:8] for img in (ds.split(p.a)[0][i], ds.split(p.b)[0][j])])
            display.show_grid(image_grid(tiles, nrow=8, pad=2), scale=max(1, 48 // ds.image_size))


st.title("Data")
st.caption("Choose the images your models learn from. The choice is kept for this browser tab and used by Train, Latent space and Learn.")

# Reading paths on the server is for a server's owner working alone; off unless they turn it on.
SOURCES = ("Built-in or MedMNIST", "Upload a .zip or .npz") + (("Local folder or file",) if session.config().allow_server_paths else ())
SIZES = ("native", 8, 12, 16, 20, 24, 28, 32, 48, 64, 96, 128)
opts = dict(datasets.data_options())
# A new session (a reload) remembers no radio choice: start from the kind of the current dataset, or
# "Built-in" would select digits and make it the workspace's dataset in place of the user's upload.
_KIND = SOURCES[1] if opts.get("upload_label") and os.path.exists(str(opts["source"])) else SOURCES[0]

left, right = st.columns([1, 2], gap="large")
with left:
    src_kind = st.radio(
        "Source",
        SOURCES,
        index=SOURCES.index(session.remember("data_src", _KIND)) if session.remember("data_src", _KIND) in SOURCES else 0,
        key="data_src",
        on_change=session.keep,
        args=("data_src",),
        help="Built-in digits work offline; MedMNIST sets are downloaded once; or bring your own images.",
    )
    source, label, raw = None, None, None  # raw: a user's file, decoded by a worker once the options below are known
    if src_kind == SOURCES[0]:
        names = datasets.dataset_names()
        cur = opts["source"] if opts["source"] in names else "digits"
        name = st.selectbox(
            "Dataset",
            names,
            index=names.index(cur),
            key="data_name",
            help="digits: 1,797 handwritten digits, offline. *mnist: MedMNIST medical sets (28x28), CC BY 4.0.",
        )
        st.caption(datasets.dataset_description(name))
        source, label = name, name
        if name != "digits":
            data_dir = default_data_dir()
            path = data_dir / f"{name}.npz"
            if path.is_file():
                st.success(f"File present: `{path}`")
            else:
                st.info(
                    f"`{name}.npz` is not in `{data_dir}` yet. Download it (about 4 to 200 MB), or put the file there by hand if this computer is offline."
                )
                if st.button(
                    "Download",
                    key="data_download",
                    help=f"Fetch {name}.npz from the official MedMNIST record on Zenodo (MD5-checked) into {data_dir}.",
                ):
                    from gda_core.data.medmnist import download_medmnist

                    bar = st.progress(0.0, text="Downloading...")

                    def _progress(done: int, total: int | None) -> None:
                        bar.progress(min(1.0, done / total) if total else 0.0, text=f"Downloading... {done / 1e6:.1f} MB")

                    try:
                        download_medmnist(name, data_dir, _progress)
                        bar.progress(1.0, text="Downloaded")
                        st.rerun()
                    except GDAError as exc:
                        bar.empty()
                        display.show_error(exc)
    elif src_kind == SOURCES[1]:
        up = st.file_uploader(
            "Dataset file",
            type=["zip", "npz"],
            key="data_upload",
            help="A .zip of class folders (zip/<class>/<image>, optionally train/val/test first) or an .npz in MedMNIST layout (train_images, train_labels, ...). Up to 200 MB.",
        )
        if up is not None:
            try:
                raw, label = str(datasets.save_upload(up.name, up.getvalue())), up.name
            except GDAError as exc:
                display.show_error(exc)
        elif opts.get("upload_label") and os.path.exists(opts["source"]):
            source, label = opts["source"], opts["upload_label"]
            st.caption(f"Using the earlier upload **{display.plain(label)}**.")
        else:
            st.caption("No file yet.")
    else:
        typed = st.text_input(
            "Path on this computer",
            value=opts["source"] if os.path.isabs(str(opts["source"])) else "",
            key="data_path",
            help="A folder with one sub-folder per class, a .zip of such a folder, or an .npz file.",
            placeholder="/home/me/images",
        )
        if typed.strip():
            raw, label = os.path.expanduser(typed.strip()), os.path.basename(typed.strip().rstrip("/")) or typed.strip()

    st.divider()
    size = st.select_slider(
        "Image size (px)",
        options=SIZES,
        value=opts["image_size"] if opts["image_size"] in SIZES else "native",
        key="data_size",
        help="Images are resized to this square size. Small sizes train fast; 'native' keeps the dataset's own size (digits: 16).",
    )
    channels = st.radio(
        "Channels",
        ("keep", "grey", "rgb"),
        index=("keep", "grey", "rgb").index(opts["channels"]),
        horizontal=True,
        key="data_channels",
        help="keep: as stored; grey: convert colour to one channel; rgb: three channels.",
    )
    limit = st.toggle(
        "Limit images per class (scarcity)",
        value=opts["per_class"] is not None,
        key="data_limit",
        help="Simulate the data-scarce regime: keep only a few training images per class (a seeded random subset).",
    )
    per_class = None
    if limit:
        per_class = st.slider(
            "Images per class",
            min_value=1,
            max_value=500,
            value=int(opts["per_class"] or 20),
            key="data_per_class",
            help="Training images kept per class. Validation and test splits are not reduced.",
        )
    seed = st.number_input(
        "Subset seed",
        0,
        2**31 - 1,
        int(opts["seed"]),
        key="data_seed",
        help="Seed of the per-class subset and of any train/val/test split made here.",
    )

if raw is not None:
    # The upload's (or path's) decoded form, made off the web server; None until the job is done.
    with left:
        source = datasets.prepared_dataset(raw, label, image_size=None if size == "native" else int(size), channels=channels, seed=int(seed))

new_opts = dict(opts)
if source is not None:
    new_opts.update(
        source=source,
        label=label,
        image_size=None if size == "native" else int(size),
        channels=channels,
        per_class=per_class,
        seed=int(seed),
    )
    if raw is not None:
        new_opts["upload_label"] = label

with right:
    if source is None:
        st.info("Choose a file or path on the left; the current dataset stays in use until then." if raw is None else
                "Your images are being decoded in the background; the current dataset stays in use until then.")  # fmt: skip
        ds = datasets.current_dataset()
    else:
        try:
            ds = datasets.load_dataset_cached(
                new_opts["source"],
                image_size=new_opts["image_size"],
                channels=new_opts["channels"],
                per_class=new_opts["per_class"],
                seed=new_opts["seed"],
            )
        except GDAError as exc:
            display.show_error(exc)
            st.caption("The app keeps using the previous dataset: " + display.plain(datasets.data_options().get("label")))
            ds = None
        else:
            if new_opts != datasets.data_options():
                session.set_data_options(new_opts)
    if ds is not None:
        st.subheader(display.plain(datasets.data_options().get("label") or ds.name))
        if ds.description:
            st.caption(ds.description)
        m = st.columns(6)
        m[0].metric("Train", f"{len(ds.train_labels):,}", help="Images the generative models learn from.")
        m[1].metric("Validation", f"{len(ds.val_labels):,}", help="Held-out images (not used for training).")
        m[2].metric("Test", f"{len(ds.test_labels):,}", help="Held-out images used by the Compare page's utility and privacy metrics.")
        m[3].metric("Classes", ds.num_classes, help="Number of labels.")
        m[4].metric("Size", f"{ds.image_size} px", help="Every image is this many pixels wide and high.")
        m[5].metric("Colour", "grey" if ds.channels == 1 else "RGB", help="One channel (grey) or three (RGB).")
        for w in ds.warnings + datasets.prepared_warnings(datasets.data_options()["source"]):
            st.warning(display.plain(w))
        show_duplicates(ds)
        counts = ds.class_counts("train")
        fig = go.Figure(go.Bar(x=ds.class_names, y=counts, marker_color="#4c78a8", hovertemplate="%{x}: %{y} images<extra></extra>"))
        fig.update_layout(
            title="Training images per class", height=280, margin={"l": 40, "r": 10, "t": 40, "b": 40}, xaxis={"type": "category"}
        )
        st.plotly_chart(fig, key="data_counts")
        st.markdown("**Real images per class**")
        per_row = 12
        shown = ds.class_names[:30]
        for c, cname in enumerate(shown):
            idx = np.flatnonzero(ds.train_labels == c)[:per_row]
            col_name, col_imgs = st.columns([1, 6])
            col_name.markdown(f"{display.plain(cname[:28])}  \n{counts[c]} imgs")
            if len(idx):
                with col_imgs:
                    display.show_grid(image_grid(ds.train_images[idx], nrow=per_row, pad=2), scale=max(1, 48 // ds.image_size))
        if len(ds.class_names) > len(shown):
            st.caption(f"... and {len(ds.class_names) - len(shown)} more classes.")
