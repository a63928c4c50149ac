"""Latent space: interpolation, traversal, a 2-D map of real vs synthetic images, near-copies."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from gda_core import latent, provenance
from gda_core.errors import GDAError
from gda_core.jobs import cached_reports
from gda_core.models import display_name
from gda_core.sampling import generate, image_grid
from pages.ui import checkpoints, display, session

session.setup()
st.title("Latent space")
st.caption(
    "Every generated image starts from a point in a latent space (a random code, or the starting noise of a diffusion model). Nearby points give similar images."
)

info = checkpoints.run_picker("Checkpoint", key="latent_run")
if info is None:
    st.stop()
run, ds, PATH, MTIME = checkpoints.open_run(info, need_data=False)
model = run.model
names = run.class_names
IS_DIFF = "steps" in model.controls
SCALE = max(1, 64 // model.config.image_size)


@st.cache_data(show_spinner="Interpolating...", max_entries=32)
def _interp_seeds(path, mtime, a, b, label, frames, method, temperature, steps, guidance):
    return latent.interpolate_seeds(
        checkpoints.load_run_cached(path).model,
        a,
        b,
        label,
        frames=frames,
        method=method,
        temperature=temperature,
        steps=steps,
        guidance=guidance,
    )


@st.cache_data(show_spinner="Encoding and interpolating...", max_entries=32)
def _interp_images(path, mtime, img_a, la, img_b, lb, label, frames, method, steps):
    return latent.interpolate_images(
        checkpoints.load_run_cached(path).model, img_a, la, img_b, lb, label=label, frames=frames, method=method, steps=steps
    )


@st.cache_data(show_spinner="Decoding traversal...", max_entries=32)
def _traverse(path, mtime, seed, label, dims, n_values, temperature):
    return latent.traverse(
        checkpoints.load_run_cached(path).model, seed, label, dims=list(dims), values=np.linspace(-3, 3, n_values), temperature=temperature
    )


@st.cache_data(show_spinner="Mixing styles...", max_entries=32)
def _style_mix(path, mtime, label, rows, cols, crossover, temperature):
    return latent.style_mixing_grid(
        checkpoints.load_run_cached(path).model, label, list(rows), list(cols), crossover, temperature=temperature, pad=2
    )


@st.cache_data(show_spinner="Finding the dimensions that matter...", max_entries=32)
def _top_dims(path, mtime, label, seed):
    return latent.latent_dims_by_effect(checkpoints.load_run_cached(path).model, label, seed=seed, top=8)


def _class_select(label: str, key: str, help: str = "Class the decoder is conditioned on.") -> int:
    return names.index(st.selectbox(label, names, key=key, help=help))


def _show_frames(frames: np.ndarray, name: str, settings: dict) -> None:
    display.show_grid(latent.strip(frames, pad=2), scale=SCALE)
    gif = latent.gif_bytes(frames, upscale=max(2, 128 // model.config.image_size))
    # The file says what made it (python -m gda_core provenance FILE.gif).
    gif = provenance.gif_with(gif, provenance.make("latent.interpolate", run=run, settings=settings))
    g1, g2 = st.columns([1, 3])
    g1.image(gif, caption="Animation (plays back and forth)")
    g2.download_button(
        "Download GIF", gif, f"{info.path.name}_{name}.gif", "image/gif", key=f"gif_{name}", help="The animation as an animated GIF."
    )


HAS_MIX = latent.has_style_mixing(model)
NEEDS_REAL = "This needs the real training images, which are not on this computer (see the message above)."
_tabs = st.tabs(["Interpolation", "Traversal", "Map", "Nearest training images"] + (["Style mixing"] if HAS_MIX else []))
tab_i, tab_t, tab_m, tab_n = _tabs[:4]

with tab_i:
    modes = ["Between two seeds"] + (["Between two real images"] if latent.has_encoder(model) and ds is not None else [])
    mode = st.radio("Interpolate", modes, horizontal=True, key="lat_mode",
                    help="Seeds: walk between the starting points of two random samples. Real images: encode two real images and walk between their codes.")  # fmt: skip
    if not latent.has_encoder(model):
        st.caption(
            f"A {display_name(model.family)} has no encoder, so real images cannot be placed in its latent space: interpolation is between seeds only."
        )
    c = st.columns(4)
    frames = c[0].slider("Frames", 3, 24, 9, key="lat_frames", help="Images along the path, ends included.")
    method = c[1].radio("Path", latent.INTERPOLATIONS, horizontal=True, key="lat_method",
                        help="slerp: along the sphere where Gaussian codes live (recommended); lerp: straight line, its middle frames can look washed out.")  # fmt: skip
    steps = (
        c[2].slider("Denoising steps", 5, 50, 20, key="lat_steps", help="DDIM steps per frame (deterministic, so the path is smooth).")
        if IS_DIFF
        else None
    )
    try:
        if mode == "Between two seeds":
            s = st.columns(4)
            a = int(s[0].number_input("Seed A", 0, 2**31 - 1, 0, key="lat_seed_a", help="Seed of the first image."))
            b = int(s[1].number_input("Seed B", 0, 2**31 - 1, 1, key="lat_seed_b", help="Seed of the last image."))
            with s[2]:
                lab = _class_select("Class", "lat_class")
            temp = s[3].slider("Temperature", 0.1, 2.0, 1.0, 0.05, key="lat_temp", help="Scales both starting latents.")
            guidance = c[3].slider("Guidance", 0.0, 6.0, float(getattr(model.config, "default_guidance", 2.0)), 0.5, key="lat_guid",
                                   help="Classifier-free guidance for every frame.") if IS_DIFF else None  # fmt: skip
            frames_arr = _interp_seeds(PATH, MTIME, a, b, lab, frames, method, temp, steps, guidance)
            _show_frames(frames_arr, "seeds", {"seeds": [a, b], "label": lab, "frames": frames, "method": method, "temperature": temp,
                                               "steps": steps, "guidance": guidance})  # fmt: skip
            if IS_DIFF:
                st.caption(
                    "For diffusion the latent is the starting noise; each frame is decoded with deterministic DDIM, so the walk between two noises is a walk between two images."
                )
        else:
            s = st.columns(4)
            with s[0]:
                la = _class_select("Class of A", "lat_ca", "Class of the first real image.")
            ia = int(s[1].number_input("Image A (index in class)", 0, 10_000, 0, key="lat_ia", help="Which training image of that class."))
            with s[2]:
                lb = _class_select("Class of B", "lat_cb", "Class of the second real image.")
            ib = int(s[3].number_input("Image B (index in class)", 0, 10_000, 1, key="lat_ib", help="Which training image of that class."))
            idx_a = np.flatnonzero(ds.train_labels == la)
            idx_b = np.flatnonzero(ds.train_labels == lb)
            if len(idx_a) == 0 or len(idx_b) == 0:
                st.warning("That class has no training images.")
            else:
                img_a = ds.train_images[idx_a[ia % len(idx_a)]]
                img_b = ds.train_images[idx_b[ib % len(idx_b)]]
                with c[3]:
                    dec_label = _class_select(
                        "Decode as class", "lat_dec", "The class the decoder is told for every frame (A's class by default)."
                    )
                frames_arr = _interp_images(PATH, MTIME, img_a, la, img_b, lb, dec_label, frames, method, steps)
                st.caption("Real A and B (left), then the decoded path:")
                display.show_grid(latent.strip(np.stack([img_a, img_b]), pad=2), scale=SCALE)
                _show_frames(frames_arr, "images", {"real_labels": [la, lb], "real_index_in_class": [ia, ib], "label": dec_label,
                                                    "frames": frames, "method": method, "steps": steps})  # fmt: skip
                if IS_DIFF:
                    st.caption(
                        "Real images are turned into noise by DDIM inversion (running the sampler backwards); the ends reconstruct the inputs only approximately."
                    )
    except GDAError as exc:
        display.show_error(exc)

with tab_t:
    shape = tuple(model.latent_shape())
    if len(shape) != 1:
        st.info(
            f"A {display_name(model.family)}'s latent is image-shaped noise {shape}: single dimensions have no meaning. Use Interpolation to walk between two noises."
        )
    else:
        st.caption(
            f"Start from one seed's {shape[0]}-dimensional code and set one dimension at a time to values from -3 to +3 (the prior's typical range); each row is one dimension."
        )
        t = st.columns(4)
        tseed = int(t[0].number_input("Seed", 0, 2**31 - 1, 0, key="trav_seed", help="The code to start from."))
        with t[1]:
            tlab = _class_select("Class", "trav_class")
        n_values = t[2].slider("Values per row", 3, 13, 7, step=2, key="trav_vals", help="Evenly spaced values from -3 to +3.")
        ttemp = t[3].slider(
            "Temperature", 0.1, 2.0, 1.0, 0.05, key="trav_temp", help="Scales the starting code (dimensions not traversed)."
        )
        try:
            top = _top_dims(PATH, MTIME, tlab, tseed)
            dims = st.multiselect("Dimensions", list(range(shape[0])), default=top, key=f"trav_dims_{info.path.name}",
                                  help="Rows to show. Preselected: the 8 dimensions that change this image most.")  # fmt: skip
            if dims:
                rows = _traverse(PATH, MTIME, tseed, tlab, tuple(dims), n_values, ttemp)
                lc, gc = st.columns([1, 8])
                lc.markdown("<br>".join(f"dim {d}" for d in dims), unsafe_allow_html=True)
                with gc:
                    display.show_grid(latent.grid_rows(rows, pad=2), scale=SCALE)
                    st.caption("Left: -3 · middle: 0 · right: +3")
        except GDAError as exc:
            display.show_error(exc)

with tab_m:
    if ds is None:
        st.info(NEEDS_REAL)
    else:
        st.caption(
            "Real training images and generated ones, projected together to 2-D. Where synthetic points (crosses) sit on real clusters of the same colour, the model matches the data; empty real regions are modes it misses."
        )
        mc = st.columns(5)
        n_real = mc[0].slider(
            "Real images", 50, 1500, 400, 50, key="map_real", help="Training images placed on the map (a class-balanced subset)."
        )
        n_syn = mc[1].slider("Synthetic per class", 2, 100, 20, key="map_syn", help="Generated images per class.")
        method = mc[2].radio(
            "Projection", latent.MAP_METHODS, key="map_method", help="UMAP keeps neighbourhoods (clusters); PCA is linear and faster."
        )
        feats = mc[3].radio("Features", ("pixels", "domain-cnn"), key="map_feats",
                            help="pixels: raw pixels. domain-cnn: features of a small classifier trained on the real data (the one the fidelity metrics use; trained once, then cached).")  # fmt: skip
        mseed = int(mc[4].number_input("Seed", 0, 2**31 - 1, 0, key="map_seed", help="Seeds the subset, the samples and the projection."))
        if st.button(
            "Compute map",
            type="primary",
            key="map_go",
            help="Generate the samples and project everything (UMAP takes a few seconds the first time).",
        ):
            try:
                with st.spinner("Sampling and projecting..."):
                    rng = np.random.default_rng(mseed)
                    take = rng.permutation(len(ds.train_labels))[:n_real]
                    syn = generate(run, n_syn * model.config.num_classes, None, seed=mseed)
                    features = "pixels"
                    if feats == "domain-cnn":
                        from gda_core.metrics import get_extractor

                        features = get_extractor("domain-cnn", ds)
                    m = latent.embed_map(
                        ds.train_images[take], ds.train_labels[take], syn.images, syn.labels, method=method, features=features, seed=mseed
                    )
                st.session_state["latent_map"] = {"run": PATH, "map": m, "images": np.concatenate([ds.train_images[take], syn.images])}
            except GDAError as exc:
                display.show_error(exc)
        saved = st.session_state.get("latent_map")
        if saved and saved["run"] == PATH:
            m = saved["map"]
            fig = go.Figure()
            palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
            for syn_flag, symbol, kind in ((False, "circle", "real"), (True, "x", "synthetic")):
                for c, cname in enumerate(names):
                    sel = np.flatnonzero((m.synthetic == syn_flag) & (m.labels == c))
                    if len(sel) == 0:
                        continue
                    fig.add_trace(go.Scatter(
                        x=m.coords[sel, 0], y=m.coords[sel, 1], mode="markers", name=f"{cname} ({kind})", legendgroup=cname,
                        marker={"symbol": symbol, "color": palette[c % len(palette)], "size": 9 if syn_flag else 6, "opacity": 0.9 if syn_flag else 0.5},
                        customdata=sel, hovertemplate=f"{kind}, class {cname}<br>point %{{customdata}}<extra></extra>",
                    ))  # fmt: skip
            fig.update_layout(height=560, title=f"{m.method.upper()} of {m.features} (circles: real, crosses: synthetic)", margin={"l": 20, "r": 20, "t": 50, "b": 20},
                              xaxis={"showticklabels": False}, yaxis={"showticklabels": False})  # fmt: skip
            event = st.plotly_chart(fig, key="map_chart", on_select="rerun", selection_mode=("points", "box", "lasso"))
            pts = (event.selection.points if event and event.selection else []) or []
            idx = []
            for p in pts:
                cd = p.get("customdata")
                if cd is not None:
                    idx.append(int(cd[0] if isinstance(cd, (list, tuple)) else cd))
            if idx:
                idx = idx[:48]
                st.markdown(f"**Selected: {len(pts)} point(s)** (showing {len(idx)}; real first, then synthetic)")
                idx.sort(key=lambda i: (bool(m.synthetic[i]), int(m.labels[i])))
                display.show_grid(image_grid(saved["images"][idx], nrow=12, pad=2), scale=SCALE)
                st.caption(
                    display.plain(", ".join(f"{'syn' if m.synthetic[i] else 'real'} {names[m.labels[i]]}" for i in idx[:24]))
                    + (" ..." if len(idx) > 24 else "")
                )
            else:
                st.caption("Click a point, or drag a box / lasso, to see those images here.")

with tab_n:
    if ds is None:
        st.info(NEEDS_REAL)
    else:
        st.caption(
            "For each generated image, the most similar training image by SSIM (structural similarity, 1 = identical). Very high values suggest the model copies its training data."
        )
        thr_default, thr_src = latent.NEAR_COPY_THRESHOLD, "default"
        for _p, rep in cached_reports(info.path):
            thr = rep.raw.get("memorization_threshold")
            if thr is not None:
                thr_default, thr_src = (
                    float(min(1.0, thr)),
                    "this model's last evaluation: 99th percentile of real test images' nearest-training SSIM",
                )
                break
        nc = st.columns(4)
        nn_n = nc[0].slider("Generated images", 4, 64, 24, key="nn_n", help="How many samples to check (every pair is compared exactly).")
        nn_seed = int(nc[1].number_input("Seed", 0, 2**31 - 1, 0, key="nn_seed", help="Seed of the generated images."))
        with nc[2]:
            nn_cls = st.selectbox("Class", ["all classes"] + names, key="nn_class", help="Check one class or all.")
        thr = nc[3].slider("Near-copy threshold (SSIM)", 0.5, 1.0, round(thr_default, 3), 0.005, key=f"nn_thr_{info.path.name}",
                           help=f"Pairs at or above this SSIM are flagged. Preset from {thr_src}.")  # fmt: skip
        if st.button(
            "Find nearest training images", type="primary", key="nn_go", help="Generate the images and search the whole training split."
        ):
            try:
                with st.spinner("Searching..."):
                    lab = None if nn_cls == "all classes" else names.index(nn_cls)
                    syn = generate(run, nn_n, lab, seed=nn_seed)
                    nb = latent.nearest_neighbours(syn.images, ds.train_images, threshold=thr)
                st.session_state["latent_nn"] = {"run": PATH, "syn": syn.images, "labels": syn.labels, "nb": nb}
            except GDAError as exc:
                display.show_error(exc)
        saved = st.session_state.get("latent_nn")
        if saved and saved["run"] == PATH:
            nb = saved["nb"]
            flagged = nb.ssim >= thr
            (st.warning if flagged.any() else st.success)(
                f"{int(flagged.sum())} of {len(flagged)} generated images are at or above SSIM {thr:.3f} to a training image."
                + (" Look at them: near-copies leak the training data." if flagged.any() else "")
            )
            order = np.argsort(-nb.ssim)
            per_row = 6
            for r0 in range(0, len(order), per_row):
                cols = st.columns(per_row)
                for col, i in zip(cols, order[r0 : r0 + per_row], strict=False):
                    pair = image_grid(np.stack([saved["syn"][i], ds.train_images[nb.index[i]]]), nrow=2, pad=2)
                    mark = "⚠️ near-copy · " if flagged[i] else ""
                    col.image(
                        display.upscaled(pair, 2 * 48),
                        caption=f"{mark}SSIM {nb.ssim[i]:.3f} · {names[saved['labels'][i]]}",
                        output_format="PNG",
                    )
            st.caption("Each pair: generated (left), nearest training image (right).")

if HAS_MIX:
    with _tabs[4]:
        n_layers = int(model.num_style_layers)
        st.caption(
            f"This model applies a style code at each of its {n_layers} layers. Low layers (coarse, small resolutions) set the overall shape; "
            "high layers (fine) set strokes and texture. Each cell takes the low layers from the source A image above it and the rest from the source B image on its left."
        )
        sm = st.columns(4)
        mix_a = int(
            sm[0].number_input(
                "First seed A", 0, 2**31 - 1, 0, key="mix_seed_a", help="Seed of the first source A image (top row); the others follow."
            )
        )
        n_a = sm[0].slider("A images", 1, 8, 4, key="mix_n_a", help="How many source A images (columns).")
        mix_b = int(
            sm[1].number_input(
                "First seed B",
                0,
                2**31 - 1,
                100,
                key="mix_seed_b",
                help="Seed of the first source B image (left column); the others follow.",
            )
        )
        n_b = sm[1].slider("B images", 1, 8, 4, key="mix_n_b", help="How many source B images (rows).")
        with sm[2]:
            mix_lab = _class_select("Class", "mix_class", "Class of every image in the grid.")
        mix_temp = sm[2].slider("Temperature", 0.0, 1.5, 1.0, 0.05, key="mix_temp",
                                help="Truncation: below 1 pulls every style toward the class's average style (0 = the class average image).")  # fmt: skip
        cross = sm[3].slider("Crossover layer", 0, n_layers, n_layers // 2, key="mix_cross",
                             help=f"Layers below this come from A, the rest from B: 0 = all from B, {n_layers} = all from A.")  # fmt: skip
        try:
            grid = _style_mix(
                PATH, MTIME, mix_lab, tuple(range(mix_a, mix_a + n_a)), tuple(range(mix_b, mix_b + n_b)), int(cross), float(mix_temp)
            )
            display.show_grid(grid, scale=SCALE)
            st.caption(f"Top row: source A · left column: source B · cells: layers 0-{cross - 1} from A, {cross}-{n_layers - 1} from B." if 0 < cross < n_layers
                       else ("Crossover 0: every cell is its row's B image." if cross == 0 else f"Crossover {n_layers}: every cell is its column's A image."))  # fmt: skip
        except GDAError as exc:
            display.show_error(exc)
