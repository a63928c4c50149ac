"""Shared UI helpers for the pages: session set-up, cached datasets and runs, pickers, display.

Only Streamlit, numpy and plotly here; every computation is a gda_core call.
"""

from __future__ import annotations

import hashlib
import os
import runpy
import time
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from gda_core import fastpath
from gda_core.checkpoints import list_runs, load_run
from gda_core.data import get_dataset_info, list_datasets, load_dataset
from gda_core.errors import DataError, GDAError
from gda_core.jobs import JobQueue
from gda_core.runtime import device_name, resolve_device
from gda_core.server.budgets import apply_data_limits
from gda_core.server.config import ServerConfig, load_config
from gda_core.server.queue import ensure_worker
from gda_core.server.workspaces import Workspace, attempt_password, check_data_source, create_workspace, open_workspace

APP = Path(__file__).resolve().parents[2] / "app.py"  # pages/ui/common.py -> the entry point

DEFAULT_DATA = {
    "source": "digits",
    "image_size": None,
    "channels": "keep",
    "per_class": None,
    "seed": 0,
    "data_dir": None,
    "label": "digits",
}

# One-line help for model-config and training fields shown on the Train page.
FIELD_HELP = {
    "latent_dim": "size of the latent code: bigger can hold more detail but needs more data",
    "base_channels": "width of the network (feature maps in the first layer): bigger is slower and stronger",
    "beta": "weight of the KL term: higher gives a smoother latent space and blurrier images",
    "class_dim": "size of the learned class embedding",
    "g_channels": "width of the generator network",
    "d_channels": "width of the discriminator network",
    "channel_mults": "width multiplier per UNet level, comma-separated (e.g. 1,2,2: three levels)",
    "blocks_per_level": "residual blocks per UNet level: more is slower and stronger",
    "attention": "self-attention in the UNet's middle block (helps global structure)",
    "dropout": "dropout in residual blocks: regularises training on very small datasets",
    "num_timesteps": "length of the noise schedule T (training timesteps)",
    "schedule": "noise schedule: cosine (recommended for small images) or linear (original DDPM)",
    "x0_clip": "how sampling keeps each predicted clean image in range: dynamic (Imagen's thresholding, rescales an "
    "over-saturated prediction as a whole; best measured) or static (clips each pixel at the range limits)",
    "zero_init": "start every residual block at zero (the ADM recipe for long trainings); measured slower to learn in "
    "the first thousand steps, so off by default",
    "cond_drop": "probability of dropping the class label in training (enables classifier-free guidance)",
    "default_steps": "sampling steps used when none are given",
    "default_guidance": "guidance scale used when none is given (1 = no guidance)",
    "batch_size": "images per optimisation step",
    "lr": "learning rate of the optimiser (the family's default when left at its shown value)",
    "ema_decay": "decay of the exponential moving average of the weights used for sampling",
    # LDM
    "latent_channels": "channels of the autoencoder's latent image that the diffusion model works in",
    "downsample": "how much smaller the latent image is than the picture (2 or 4; 0 = chosen from the image size): bigger is faster and blurrier",
    "ae_channels": "width of the autoencoder network",
    "ae_steps": "training steps spent on the autoencoder before the latent diffusion model starts",
    "ae_lr": "learning rate of the autoencoder phase",
    "kl_weight": "weight of the autoencoder's KL term: keeps the latent close to Gaussian (small, e.g. 1e-6)",
    "recon_loss": "autoencoder reconstruction loss: l1 (sharper) or mse",
    "min_snr_gamma": "Min-SNR weighting of the diffusion loss over timesteps (0 = off; 5 is usual). On in the LDM, where it "
    "learned faster; off in the DDPM, where it gave more precise but less varied samples and a worse FID",
    "latent_clip": "predicted latents are clipped to +- this many standard deviations while sampling (must be > 0)",
    # Flow matching
    "time_sampling": "how training times t are drawn: uniform or logit-normal (more weight to the middle of the path)",
    "logit_mean": "mean of the logit-normal time distribution",
    "logit_std": "spread of the logit-normal time distribution",
    "time_scale": "scale from time t in [0, 1] to the network's time embedding",
    "grid_rho": "spacing of the ODE solver's time grid (1 = even; higher = finer near the image end)",
    "default_sampler": "ODE solver used when none is given: heun (2nd order) or euler",
    # RealNVP / Glow
    "levels": "number of multi-scale levels (each halves the resolution and factors out half the dimensions)",
    "steps_per_level": "flow steps (actnorm + 1x1 conv + coupling) per level: more is stronger and slower",
    "hidden_channels": "width of the coupling networks",
    "blocks_per_coupling": "residual blocks in each coupling network",
    "logit_alpha": "squeeze of pixel values before the logit transform (keeps it finite at 0 and 1)",
    # StyleGAN2
    "z_dim": "size of the input noise vector z",
    "w_dim": "size of the style vector w produced by the mapping network",
    "mapping_layers": "layers of the mapping network z -> w",
    "mapping_lr_mul": "learning-rate multiplier of the mapping network (StyleGAN uses 0.01)",
    "mbstd_group": "minibatch-standard-deviation group size in the discriminator (helps variety; 0 = off)",
    "r1_gamma": "strength of the R1 gradient penalty on real images (stabilises training)",
    "r1_every": "apply R1 every N steps (lazy regularisation)",
    "style_mix_prob": "probability of mixing two styles in training (makes the layers' styles independent)",
    "diffaug": "differentiable augmentations applied to real and fake images for the discriminator (small-data regime)",
    "mean_w_samples": "noise samples averaged to find each class's mean style (the truncation centre)",
}
# Shown first on the Train page; other fields go under "Advanced".
MAIN_FIELDS = (
    "latent_dim", "beta", "base_channels", "g_channels", "d_channels", "default_steps", "default_guidance", "channel_mults",
    "z_dim", "ae_steps", "latent_channels", "downsample", "levels", "steps_per_level", "hidden_channels", "default_sampler",
)  # fmt: skip
FIXED_FIELDS = ("image_size", "channels", "num_classes")


# -- session --------------------------------------------------------------------------------------


def setup(*, entry: bool = False) -> None:
    """Per-session state every page relies on (idempotent). Called first by app.py (``entry=True``)
    and by every page: the workspace (from the URL, kept there so a reload finds it), its password
    when it has one, the server's data budgets, a running worker."""
    if not entry:
        _leave_folder_mode()
    ss = st.session_state
    cfg = config()
    ws = _resolve_workspace(cfg)
    if ws.has_password and not ss.get(f"_auth_{ws.id}"):
        _password_gate(ws)
    ss["owner"] = ws.id
    if "data_options" not in ss:
        ss["data_options"] = _saved_data_options(ws)
    _server_started(cfg)


def config() -> ServerConfig:
    return _config(os.environ.get("GDA_APP_DATA", ""), os.environ.get("GDA_SERVER_CONFIG", ""))


@st.cache_resource(show_spinner=False, ttl=60)
def _config(app_data: str, settings_file: str) -> ServerConfig:
    # Keyed by the variables that choose the data folder and the settings file (tests change them);
    # the arguments are only the cache's key, load_config reads the environment itself.
    cfg = load_config()
    apply_data_limits(cfg)  # this process loads prepared datasets: the same budgets as the workers
    return cfg


def _resolve_workspace(cfg: ServerConfig) -> Workspace:
    """The workspace named by the URL's ``ws`` token, else this session's, else a new one; the token
    is written back to the URL so that a reload or a bookmark returns to it."""
    ss = st.session_state
    token = st.query_params.get("ws") or ss.get("ws")
    ws = open_workspace(cfg, token)
    if ws is None:
        if token and token != ss.get("ws"):
            ss["_unknown_ws"] = True  # told on the page: a mistyped or deleted link gets a fresh workspace
        ws = create_workspace(cfg)
    ss["ws"] = ws.id
    if st.query_params.get("ws") != ws.id:
        st.query_params["ws"] = ws.id
    return ws


def _saved_data_options(ws: Workspace) -> dict:
    """The dataset this workspace used last (kept on disk, so a reload or another tab finds it)."""
    saved = ws.state().get("data_options")
    if not isinstance(saved, dict) or set(saved) - set(DEFAULT_DATA) - {"upload_label"}:
        return dict(DEFAULT_DATA)
    return {**DEFAULT_DATA, **saved}


def set_data_options(options: dict) -> None:
    """Make ``options`` the current dataset of this session and of its workspace."""
    st.session_state["data_options"] = options
    workspace().save_state(data_options=options)


def _password_gate(ws: Workspace) -> None:
    st.title("GDA Studio")
    st.info(f"The workspace {plain(ws.name)} is protected by a password set by the server's owner.")
    with st.form("ws_password"):
        pw = st.text_input("Password", type="password", key="ws_password_input", help="Ask whoever runs this server.")
        if st.form_submit_button("Open"):
            try:
                ok = attempt_password(config(), ws, pw, st.context.ip_address)
            except GDAError as exc:
                show_error(exc)
            else:
                if ok:
                    st.session_state[f"_auth_{ws.id}"] = True
                    st.rerun()
                st.error("wrong password")
    st.stop()


@st.cache_resource(show_spinner=False)
def _worker_checks() -> dict:
    return {}


def _server_started(cfg: ServerConfig) -> None:
    """Start the queue's worker when none serves this data folder (at most one check every 5 s)."""
    last = _worker_checks()
    key = str(cfg.app_data)
    if time.time() - last.get(key, 0.0) > 5.0:
        last[key] = time.time()
        ensure_worker(cfg)


def workspace() -> Workspace:
    setup()
    ws = open_workspace(config(), st.session_state["ws"])
    if ws is None:  # deleted by the server owner while this tab was open
        st.session_state.pop("ws", None)
        st.query_params.pop("ws", None)
        st.rerun()
    return ws


def _leave_folder_mode() -> None:
    """Run a page inside app.py when Streamlit started it on its own.

    Until app.py has called ``st.navigation`` once in a server process, Streamlit treats the
    ``pages/`` folder as a legacy multipage app: a first request for a deep link such as ``/Train``
    (a bookmark, a tab reconnecting to a restarted server) runs pages/2_Train.py by itself, without
    app.py's page set-up, shared sidebar and navigation. Here the page hands over to app.py, which
    runs it in its navigation (app.py's pages keep the folder's URL names, so it is the same page),
    and the direct run stops. Nothing is lost: this happens before the page has drawn anything, in
    the same script run, so widget events are kept.
    A no-op once app.py has run in this server process, and on a Streamlit without that mode.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:
        return
    if not getattr(PagesManager, "uses_pages_directory", None):
        return
    PagesManager.uses_pages_directory = False
    runpy.run_path(str(APP), run_name="__main__")
    st.stop()


def owner() -> str:
    """This session's workspace id (what owns its jobs)."""
    return workspace().id


def job_queue() -> JobQueue:
    """The job queue of this server's data folder (jobs live in worker processes and on disk)."""
    return _job_queue(str(config().app_data))


@st.cache_resource(show_spinner=False)
def _job_queue(app_data: str) -> JobQueue:  # keyed by the data folder
    return JobQueue(config())


@st.cache_resource(show_spinner=False)
def device_label() -> str:
    try:
        return device_name(resolve_device("auto"))
    except GDAError as exc:
        return f"unavailable ({exc})"


_MARKDOWN_SPECIAL = "\\`*_{}[]<>()#+-.!|~$"


def plain(text: object) -> str:
    """Text shown literally inside st.markdown: user-provided names (classes, files, runs) and
    sentences that quote them must not be read as markdown (links, emphasis, tables)."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in str(text))


def model_families(*, trainable: bool = False) -> list[str]:
    """The registered generative families, in registry order; ``trainable``: only those trained from
    data alone (the distilled student is made from a trained teacher instead)."""
    from gda_core.models import get_model_class, list_models

    return [f for f in list_models() if not trainable or get_model_class(f).trainable_from_scratch]


DISTILL_HINT = ("The few-step **distilled** student is not trained from data: it is made from a trained DDPM or flow checkpoint with "
                "`python -m gda_core distill --checkpoint <run> --steps 2` (a shipped one, `checkpoints/distilled-digits`, is on Sample and Learn).")  # fmt: skip


@st.cache_resource(show_spinner=False)
def iterative_families() -> tuple[str, ...]:
    """Families whose sampling takes a number of steps (the ones with a quality-against-cost curve)."""
    from gda_core.models import get_model_class, list_models

    return tuple(f for f in list_models() if "steps" in get_model_class(f).controls)


def show_error(exc: BaseException) -> None:
    """A user-facing one-line error (never a traceback), shown literally: messages quote file and
    class names from users' archives, which must not be read as markdown."""
    st.error(plain(
        str(exc)
        if isinstance(exc, GDAError)
        else f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    ))


# -- datasets -------------------------------------------------------------------------------------


def _path_stamp(source: str) -> float:
    """mtime of a path source (so an edited folder / replaced file is reloaded); 0 for names."""
    try:
        return os.stat(source).st_mtime if os.path.exists(source) else 0.0
    except OSError:
        return 0.0


@st.cache_resource(show_spinner="Loading dataset...", max_entries=16)
def _load_dataset_cached(source: str, image_size, channels: str, per_class, seed: int, data_dir, subset_seed, stamp: float):
    return load_dataset(source, image_size=image_size, channels=channels, per_class=per_class, seed=seed, data_dir=data_dir,
                        subset_seed=subset_seed)  # fmt: skip


def load_dataset_cached(source: str, *, image_size=None, channels: str = "keep", per_class=None, seed: int = 0, data_dir=None,
                        subset_seed=None):  # fmt: skip
    """gda_core.data.load_dataset, cached per options (shared, read-only Dataset), for a source this
    workspace may read (a named dataset, its own uploads; server paths only where allowed)."""
    check_data_source(config(), workspace(), str(source), data_dir)
    return _load_dataset_cached(str(source), image_size, channels, per_class, int(seed), data_dir, subset_seed, _path_stamp(str(source)))


def data_options() -> dict:
    setup()
    return st.session_state["data_options"]


def current_dataset(show: bool = True):
    """The session's dataset (from the Data page's options) or None, with the error shown."""
    o = data_options()
    try:
        return load_dataset_cached(
            o["source"],
            image_size=o["image_size"],
            channels=o["channels"],
            per_class=o["per_class"],
            seed=o["seed"],
            data_dir=o["data_dir"],
        )
    except GDAError as exc:
        if show:
            st.error(f"Current dataset could not be loaded: {plain(exc)}")
        return None


def dataset_for_run(run) -> object:
    """The dataset a run was trained on (its recorded DataSpec), cached; refused (DataError) when it
    is another workspace's (a published run's private data)."""
    spec = run.data_spec.to_dict()
    return load_dataset_cached(spec.pop("source"), **spec)


def dataset_names() -> list[str]:
    return [d.name for d in list_datasets()]


def dataset_description(name: str) -> str:
    try:
        return get_dataset_info(name).description
    except GDAError:
        return ""


def save_upload(name: str, data: bytes) -> Path:
    """Write an uploaded file into the workspace's private uploads folder (same bytes -> same path)."""
    return workspace().save_upload(config(), name, data)


def prepared_dataset(source: str, label: str, *, image_size, channels: str, seed: int) -> str | None:
    """The decoded form of an uploaded (or server-path) dataset: an .npz a worker wrote from it.

    Decoding a user's images is the heavy, risky part (archives, image decoders, the data budgets),
    so it happens in a job, never in the web server. Returns the .npz's path when ready; otherwise
    starts (or follows) the job, shows its progress or its one-line error, and returns None.
    """
    ws, q = workspace(), job_queue()
    key = hashlib.sha256(repr((str(source), image_size, channels, int(seed))).encode()).hexdigest()[:12]
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in Path(label).stem)[:40] or "data"
    out = ws.datasets / f"{stem}-{key}.npz"
    if out.is_file():
        return str(out)
    jobs = [j for j in q.list(ws, "prepare") if j.meta.get("key") == key]
    if jobs and jobs[0].status == "failed":
        st.error(plain(jobs[0].error))
        if not st.button("Try again", key=f"prepare_retry_{key}", help="Decode the file again (after the server's limits changed, say)."):
            return None
    elif not jobs or jobs[0].status in ("cancelled", "done"):
        spec = {"source": str(source), "image_size": image_size, "channels": channels, "seed": int(seed)}
        try:
            q.submit(ws, "prepare", f"decode {label}", {"data": spec, "out": str(out), "label": label}, meta={"key": key})
        except GDAError as exc:
            show_error(exc)
            return None
    _follow_prepare(key)
    return None


def prepared_warnings(source: str) -> list[str]:
    """What the worker noticed while decoding an upload (skipped files, resizing), kept beside its .npz."""
    import json

    side = Path(str(source)).with_suffix(".json")
    if not (str(source).endswith(".npz") and workspace().owns(side) and side.is_file()):
        return []
    try:
        warnings = json.loads(side.read_text(encoding="utf-8")).get("warnings", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [str(w) for w in warnings][:50] if isinstance(warnings, list) else []


def _follow_prepare(key: str) -> None:
    @st.fragment(run_every=1.0)
    def follow() -> None:
        ws, q = workspace(), job_queue()
        jobs = [j for j in q.list(ws, "prepare") if j.meta.get("key") == key]
        if not jobs or jobs[0].done:
            st.rerun()
        j = jobs[0]
        where = f" (number {j.queue_position} in the queue)" if j.status == "queued" and j.queue_position else ""
        st.progress(j.progress, text=f"Decoding your images in the background{where}: {plain(j.message)}")

    follow()


# -- runs -----------------------------------------------------------------------------------------


def runs_dir() -> Path:
    """This workspace's runs folder."""
    return workspace().runs


def all_runs(families: tuple[str, ...] | None = None):
    """Shipped checkpoints, runs published by anyone, and this workspace's runs (shipped first, then newest first)."""
    infos = list_runs(runs_dir(), config().published_dir)
    if families is not None:
        infos = [r for r in infos if r.family in families]
    return infos


@st.cache_resource(show_spinner="Loading model...", max_entries=8)
def _load_run_cached(path: str, mtime: float, device: str):
    # One model object for every session of the process: read-only (the fast path samples private copies).
    run = load_run(path, device=device)
    fastpath.mark_shared(run.model)
    return run


def load_run_cached(path: str | Path):
    """load_run once per (run folder, weights mtime)."""
    p = Path(path)
    try:
        mtime = (p / "model.safetensors").stat().st_mtime
    except OSError:
        mtime = 0.0
    return _load_run_cached(str(p), mtime, "auto")


def run_picker(label: str, *, key: str, families: tuple[str, ...] | None = None, help: str | None = None):
    """A select box of checkpoints; returns the chosen RunInfo or None (with a hint)."""
    infos = all_runs(families)
    if not infos:
        fam = f" of family {', '.join(families)}" if families else ""
        st.info(
            f"No checkpoint{fam} yet. Train one on the **Train** page (runs are saved in `{runs_dir()}`), or add shipped ones under `checkpoints/`."
        )
        return None
    by_path = {str(r.path): r for r in infos}
    remembered = st.session_state.get(f"_{key}")
    paths = list(by_path)
    # Not chosen yet: the first checkpoint of the session's dataset (the pages beside it use that data).
    source = str(data_options().get("source", ""))
    first = next((i for i, p in enumerate(paths) if by_path[p].dataset == source), 0)
    index = paths.index(remembered) if remembered in by_path else first
    choice = st.selectbox(label, paths, index=index, key=key, format_func=lambda p: run_label(by_path[p]),
                          help=help or "Shipped checkpoints, runs published on this server, and your own runs.")  # fmt: skip
    st.session_state[f"_{key}"] = choice
    return by_path[choice]


def run_label(info) -> str:
    """A picker's line for a run: its label, with "published" for runs shared on this server."""
    published = info.path.resolve().parent == config().published_dir.resolve()
    return info.label.replace("(finished)", "(published)") if published else info.label


def remember(key: str, default):
    """Value a widget last had (widgets' own state is dropped when their page is not shown)."""
    return st.session_state.get(f"_{key}", default)


def keep(key: str) -> None:
    """Copy a widget's value to a key that survives page switches."""
    if key in st.session_state:
        st.session_state[f"_{key}"] = st.session_state[key]


# -- display --------------------------------------------------------------------------------------


def upscaled(images: np.ndarray, target: int = 64) -> np.ndarray:
    """Nearest-neighbour upscale of uint8 (..., H, W, C) so the smaller side is about ``target`` px;
    single-channel images become (…, H, W) for st.image."""
    h = images.shape[-3]
    f = max(1, int(round(target / h)))
    out = images.repeat(f, axis=-3).repeat(f, axis=-2) if f > 1 else images
    return out[..., 0] if out.shape[-1] == 1 else out


def show_grid(grid: np.ndarray, *, caption: str | None = None, scale: int = 4, width: str | int = "content") -> None:
    """Show a uint8 grid image enlarged with crisp pixels."""
    img = grid.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else grid
    st.image(img[..., 0] if img.shape[-1] == 1 else img, caption=caption, width=width, output_format="PNG")


def curves_figure(records: list[dict], keys: list[str] | None = None, *, title: str = "Training losses", height: int = 320) -> go.Figure:
    """Plotly line chart of history records (one line per key, x = step)."""
    fig = go.Figure()
    if records:
        keys = keys or [k for k in records[-1] if k not in ("step", "time_s")]
        steps = [r.get("step", i) for i, r in enumerate(records)]
        for k in keys:
            ys = [r.get(k) for r in records]
            if any(v is not None for v in ys):
                fig.add_trace(go.Scatter(x=steps, y=ys, mode="lines", name=k))
    fig.update_layout(
        title=title, height=height, margin={"l": 40, "r": 20, "t": 40, "b": 40}, xaxis_title="step", legend={"orientation": "h", "y": -0.25}
    )
    return fig


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(max(0, s))
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s")


def job_status_text(j) -> str:
    """What a job is doing, in one line: its place in the queue while it waits."""
    if j.status == "queued":
        where = f"number {j.queue_position} in the queue" if j.queue_position else "queued"
        return f"{j.title}: waiting, {where} ({fmt_seconds(j.waited_s)})"
    return f"{j.title}: {j.message} · {j.progress:.0%} · {fmt_seconds(j.elapsed_s)}"


def show_job_progress(jobs, *, key: str, limit: int, cancel_help: str = "Stop this job.") -> None:
    """Progress bar + Cancel button for each queued or running job, then the latest failures/cancellations."""
    for j in [j for j in jobs if not j.done]:
        a, b = st.columns([6, 1])
        a.progress(j.progress, text=plain(job_status_text(j)))
        if b.button("Cancel", key=f"{key}_{j.id}", help=cancel_help):
            job_queue().cancel(workspace(), j.id)
    for j in jobs[:limit]:
        if j.status == "failed":
            st.error(plain(f"{j.title}: {j.error}"))
        elif j.status == "cancelled":
            st.caption(plain(f"{j.title}: cancelled"))


def open_run(info, *, need_data: bool = True):
    """Load the picked checkpoint and the dataset it was trained on; show the error and stop on failure.

    Returns (run, dataset, path string, weights mtime): the last two key the pages' caches. When the
    run's real images are not on this computer (a shipped MedMNIST checkpoint before its download),
    one message says so with the download offer; with ``need_data=False`` the page goes on with
    dataset None and leaves out what needs real images.
    """
    try:
        run = load_run_cached(info.path)
    except GDAError as exc:
        show_error(exc)
        st.stop()
    try:
        ds = dataset_for_run(run)
    except DataError as exc:
        offer_real_images(run, exc)
        if need_data:
            st.stop()
        ds = None
    except GDAError as exc:
        show_error(exc)
        st.stop()
    return run, ds, str(info.path), info.path.joinpath("model.safetensors").stat().st_mtime


def offer_real_images(run, exc: DataError) -> None:
    """The one message for a run whose training images cannot be read here, and the MedMNIST download
    when they are a MedMNIST set that is simply absent. Another workspace's private data (a published
    run) gets the refusal's own words: no download would help, and no server path is shown."""
    from gda_core.data import default_data_dir
    from gda_core.data.medmnist import MEDMNIST_INFO, download_medmnist

    spec = run.data_spec
    if spec.source not in MEDMNIST_INFO:
        st.info(f"{plain(str(exc))} The parts of this page that show real images are left out; generated images need no data.")
        return
    where = Path(spec.data_dir).expanduser() if spec.data_dir else default_data_dir()
    st.info(f"The real {spec.source} images this checkpoint learnt from are not on this computer, so the parts of this page "
            "that show real images are left out. Generated images need no download.")  # fmt: skip
    if st.button(f"Download {spec.source} (MedMNIST, CC BY 4.0)", key="real_images_download",
                 help=f"Fetch {spec.source}.npz from the official MedMNIST record on Zenodo (MD5-checked) into the app's data folder."):  # fmt: skip
        try:
            with st.spinner("Downloading..."):
                download_medmnist(spec.source, where)
            st.rerun()
        except GDAError as err:
            show_error(err)
