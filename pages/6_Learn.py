"""Learn: how each family works, shown on real images and on a checkpoint's own training history."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from gda_core import distill, learn
from gda_core.errors import GDAError
from gda_core.models import display_name, get_model_class, list_models
from gda_core.sampling import image_grid
from pages.ui import checkpoints, datasets, display, session

session.setup()
st.title("Learn")
st.caption("What each family does, in plain words, then the same ideas on real data and on a trained model.")

families = list_models()
tabs = st.tabs([display_name(f) for f in families])
for tab, fam in zip(tabs, families, strict=False):
    cls = get_model_class(fam)
    with tab:
        st.markdown(f"**{cls.description}**")
        st.markdown(cls.how_it_works)
        st.caption(f"Sampling controls it honours: {', '.join(cls.controls)}.")

st.divider()
st.subheader("See it on a checkpoint")
info = checkpoints.run_picker("Checkpoint", key="learn_run", help="Pick a checkpoint of any family to see its ideas in action.")
if info is None:
    st.stop()
run, run_ds, PATH, MTIME = checkpoints.open_run(info, need_data=False)
model = run.model
names = run.class_names
SCALE = max(1, 64 // model.config.image_size)
NEEDS_REAL = "This part needs the real training images, which are not on this computer (see the message above)."


@st.cache_data(show_spinner="Denoising...", max_entries=16)
def _trajectory(path, mtime, label, seed, steps, guidance, show):
    return learn.denoising_trajectory(checkpoints.load_run_cached(path).model, label, seed=seed, steps=steps, guidance=guidance, show=show)


@st.cache_data(show_spinner="Following the flow...", max_entries=16)
def _flow_trajectory(path, mtime, label, seed, steps, sampler, show):
    return learn.flow_trajectory(checkpoints.load_run_cached(path).model, label, seed=seed, steps=steps, sampler=sampler, show=show)


@st.cache_data(show_spinner="Scoring held-out images...", max_entries=8)
def _likelihood_ranking(path, mtime, n):
    run_ = checkpoints.load_run_cached(path)
    ds_ = datasets.dataset_for_run(run_)
    x = ds_.test_images if len(ds_.test_images) else ds_.train_images
    y = ds_.test_labels if len(ds_.test_images) else ds_.train_labels
    return learn.likelihood_ranking(run_.model, x, y, k=8)


def _labelled_strip(frames: np.ndarray, captions: list[str]) -> None:
    cols = st.columns(len(frames))
    for col, f, cap in zip(cols, frames, captions, strict=False):
        col.image(display.upscaled(f, 96), caption=cap, output_format="PNG")


def _learn_ddpm() -> None:
    st.markdown("#### 1. Forward process: adding noise")
    st.caption(
        "Training mixes a real image with Gaussian noise: x_t = √ᾱ_t · x_0 + √(1-ᾱ_t) · ε. At t = 0 the image is clean; near t = 1000 it is pure noise. The network learns to predict ε at every t."
    )
    ds = datasets.current_dataset(show=False) or run_ds
    if ds is None:
        st.info(NEEDS_REAL)
    else:
        _forward_process(ds)
    _reverse_process()


def _forward_process(ds) -> None:
    f = st.columns(4)
    with f[0]:
        cname = st.selectbox("Class", ds.class_names, key="learn_fw_class", help="Class of the real image (from the current dataset).")
    c = ds.class_names.index(cname)
    idx = np.flatnonzero(ds.train_labels == c)
    i = int(f[1].number_input("Image (index in class)", 0, 10_000, 0, key="learn_fw_idx", help="Which training image of that class."))
    n_t = f[2].slider("Timesteps shown", 3, 12, 7, key="learn_fw_n", help="Evenly spaced from 0 to T-1.")
    nseed = int(
        f[3].number_input(
            "Noise seed", 0, 2**31 - 1, 0, key="learn_fw_seed", help="The same noise ε is used at every t, so only the mixing changes."
        )
    )
    if len(idx):
        try:
            ts = learn.default_timesteps(model, n_t)
            frames = learn.forward_noising(model, ds.train_images[idx[i % len(idx)]], ts, seed=nseed)
            sig = learn.signal_fraction(model, ts)
            _labelled_strip(frames, [f"t={t} · signal {s:.2f}" for t, s in zip(ts, sig, strict=False)])
        except GDAError as exc:
            display.show_error(exc)


def _reverse_process() -> None:
    st.markdown("#### 2. Reverse process: removing noise step by step")
    st.caption(
        "Generation starts from pure noise. At each step the network guesses the final image (bottom row, 'predicted x₀') and the sampler moves the noisy image (top row) a little toward it."
    )
    r = st.columns(4)
    with r[0]:
        lab = names.index(st.selectbox("Class", names, key="learn_rv_class", help="Class to generate."))
    rseed = int(r[1].number_input("Seed", 0, 2**31 - 1, 0, key="learn_rv_seed", help="Seed of the starting noise."))
    rsteps = r[2].slider("Steps", 5, 100, int(model.config.default_steps), key="learn_rv_steps", help="DDIM steps (deterministic).")
    rguid = r[3].slider(
        "Guidance", 0.0, 6.0, float(model.config.default_guidance), 0.5, key="learn_rv_guid", help="Classifier-free guidance scale."
    )
    try:
        tr = _trajectory(PATH, MTIME, lab, rseed, rsteps, rguid, 8)
        st.caption("Noisy image x_t after each shown step")
        _labelled_strip(tr.x_t, [f"step {s + 1}/{rsteps} · t={t}" for s, t in zip(tr.steps, tr.timesteps, strict=False)])
        st.caption("The network's guess of the final image at that step")
        _labelled_strip(tr.x0_pred, [f"step {s + 1}" for s in tr.steps])
    except GDAError as exc:
        display.show_error(exc)


def _learn_vae() -> None:
    st.markdown("#### Reconstructions")
    st.caption(
        "Top: real images. Bottom: encoded to the centre of their latent cloud and decoded back. What is lost is what the small latent code could not keep: usually fine detail, so reconstructions look smoother."
    )
    if run_ds is None:
        st.info(NEEDS_REAL)
    else:
        _vae_reconstructions()
    _vae_balance()


def _vae_reconstructions() -> None:
    rc = st.columns(2)
    with rc[0]:
        cname = st.selectbox("Class", ["all classes"] + names, key="learn_vae_class", help="Reconstruct images of one class or a mix.")
    rseed = int(rc[1].number_input("Pick seed", 0, 2**31 - 1, 0, key="learn_vae_seed", help="Which real images are picked."))
    pool = np.arange(len(run_ds.train_labels)) if cname == "all classes" else np.flatnonzero(run_ds.train_labels == names.index(cname))
    pick = np.random.default_rng(rseed).permutation(pool)[:10]
    if len(pick):
        try:
            rec = learn.vae_reconstructions(model, run_ds.train_images[pick], run_ds.train_labels[pick])
            display.show_grid(image_grid(np.concatenate([run_ds.train_images[pick], rec]), nrow=len(pick), pad=2), scale=SCALE)
        except GDAError as exc:
            display.show_error(exc)


def _vae_balance() -> None:
    st.markdown("#### The balance between reconstruction and KL")
    beta = float(getattr(model.config, "beta", 1.0))
    cv = learn.vae_curves(run.history, beta)
    if len(cv.get("step", [])) and "recon" in cv:
        recs = [
            {"step": s, "reconstruction": rv, f"beta x KL (beta={beta:g})": kv}
            for s, rv, kv in zip(cv["step"], cv["recon"], cv.get("beta_kl", cv.get("kl", [])), strict=False)
        ]
        st.plotly_chart(display.curves_figure(recs, title="VAE loss terms per image (lower is better)"), key="learn_vae_curves")
        st.caption("Reconstruction error falls as the decoder learns; the KL term measures how far codes stray from the standard normal prior. "
                   "A larger beta pushes KL down (smoother latent space, blurrier images); a smaller beta lets codes carry more detail.")  # fmt: skip
    else:
        st.info("This checkpoint has no training history to plot.")


def _learn_flow() -> None:
    st.markdown("#### Following the flow from noise to image")
    st.caption(
        "A flow-matching model learns a velocity v: which way, and how fast, to move every pixel at each time t. Sampling follows it "
        "from noise (t = 1) to an image (t = 0). Top row: the state x_t. Bottom row: x_t - t·v, where a straight line at the current "
        "velocity would land; because training paths are straight, this guess is already close to the final image early on."
    )
    r = st.columns(4)
    with r[0]:
        lab = names.index(st.selectbox("Class", names, key="learn_fl_class", help="Class to generate."))
    rseed = int(r[1].number_input("Seed", 0, 2**31 - 1, 0, key="learn_fl_seed", help="Seed of the starting noise."))
    rsteps = r[2].slider("Steps", 2, 100, int(model.config.default_steps), key="learn_fl_steps", help="ODE solver steps.")
    rsampler = r[3].selectbox("Solver", list(model.samplers), key="learn_fl_sampler", help="heun: 2nd order, 2 passes per step; euler: 1 pass.")
    try:
        tr = _flow_trajectory(PATH, MTIME, lab, rseed, rsteps, rsampler, 8)
        st.caption("State x_t at each shown time")
        _labelled_strip(tr.x_t, [f"t={t:.2f}" for t in tr.times])
        st.caption("Straight-line guess of the image from there")
        _labelled_strip(tr.x0_guess, [f"t={t:.2f}" for t in tr.times])
    except GDAError as exc:
        display.show_error(exc)


def _learn_ldm() -> None:
    st.markdown("#### 1. The autoencoder: what the latent space can hold")
    st.caption(
        "Latent diffusion first trains an autoencoder that squeezes each image into a small latent image, then runs diffusion there. "
        "Top: real held-out images. Bottom: encoded and decoded by the autoencoder. Detail lost here cannot come back in samples."
    )
    if run_ds is None:
        st.info(NEEDS_REAL)
    else:
        _ldm_reconstructions()
    _ldm_phases()


def _ldm_reconstructions() -> None:
    rseed = int(st.number_input("Pick seed", 0, 2**31 - 1, 0, key="learn_ldm_seed", help="Which held-out (test) images are picked."))
    pool = run_ds.test_images if len(run_ds.test_images) else run_ds.train_images
    pick = np.random.default_rng(rseed).permutation(len(pool))[:10]
    if len(pick):
        try:
            rec, rep = learn.autoencoder_reconstructions(model, pool[pick])
            display.show_grid(image_grid(np.concatenate([pool[pick], rec]), nrow=len(pick), pad=2), scale=SCALE)
            st.caption(
                f"On these {rep['images']} images: MSE {rep['mse']:.4f} (predicting the mean image: {rep['mean_image_mse']:.4f}), "
                f"PSNR {rep['psnr_db']:.1f} dB. Phase: {'diffusion (autoencoder frozen)' if model.phase == 2 else 'autoencoder still training'}."
            )
        except GDAError as exc:
            display.show_error(exc)


def _ldm_phases() -> None:
    st.markdown("#### 2. Two phases of training")
    cv = learn.curves(run.history, ("ae_loss", "diffusion_loss"))
    if len(cv.get("step", [])) > 1 and len(cv) > 1:
        recs = [dict(zip(cv, vals, strict=False)) for vals in zip(*cv.values(), strict=False)]
        st.plotly_chart(display.curves_figure(recs, title="Autoencoder loss, then latent diffusion loss"), key="learn_ldm_curves")
        st.caption("The autoencoder trains first; once it is frozen, the diffusion model learns to denoise its latents.")
    else:
        st.info("This checkpoint has no training history to plot.")


def _learn_realnvp() -> None:
    st.markdown("#### Which real images does the model find likely?")
    st.caption(
        "A normalizing flow gives every image an exact probability, reported as bits per dimension (lower = more probable; "
        "8 bits/dim is what a model that knows nothing about images scores). Left: the held-out images it finds most probable. "
        "Right: least probable: often unusual, off-centre or mislabelled images, or a class it has seen too little of."
    )
    if run_ds is None:
        st.info(NEEDS_REAL)
    else:
        _likelihood_extremes()
    cv = learn.curves(run.history, ("loss",))
    if len(cv.get("step", [])) > 1 and "loss" in cv:
        recs = [{"step": s, "training bits/dim": v} for s, v in zip(cv["step"], cv["loss"], strict=False)]
        st.plotly_chart(display.curves_figure(recs, title="Training loss = bits/dim on training batches"), key="learn_nvp_curve")


def _likelihood_extremes() -> None:
    pool_x = run_ds.test_images if len(run_ds.test_images) else run_ds.train_images
    try:
        rk = _likelihood_ranking(PATH, MTIME, len(pool_x))
        lc, rc_ = st.columns(2)
        with lc:
            st.caption("Most probable")
            display.show_grid(image_grid(pool_x[rk.most_likely], nrow=4, pad=2), scale=SCALE)
            st.caption(", ".join(f"{rk.bits_per_dim[i]:.2f}" for i in rk.most_likely) + " bits/dim")
        with rc_:
            st.caption("Least probable")
            display.show_grid(image_grid(pool_x[rk.least_likely], nrow=4, pad=2), scale=SCALE)
            st.caption(", ".join(f"{rk.bits_per_dim[i]:.2f}" for i in rk.least_likely) + " bits/dim")
        st.caption(f"Mean over all {len(pool_x)} held-out images: {float(np.mean(rk.bits_per_dim)):.3f} bits/dim.")
    except GDAError as exc:
        display.show_error(exc)


def _learn_gan() -> None:
    st.markdown("#### The two-player game")
    cv = learn.gan_curves(run.history)
    if len(cv.get("step", [])) and "d_loss" in cv:
        recs = [dict(zip(cv, vals, strict=False)) for vals in zip(*cv.values(), strict=False)]
        st.plotly_chart(
            display.curves_figure(recs, ["d_loss", "g_loss"], title="Discriminator and generator losses"), key="learn_gan_loss"
        )
        st.caption("The two losses pull against each other: when the discriminator gets better its loss falls and the generator's rises, and the other way round. "
                   "Healthy training oscillates around a balance; a discriminator loss stuck near 0 means the generator has stopped learning.")  # fmt: skip
        if "d_real" in cv:
            st.plotly_chart(
                display.curves_figure(recs, ["d_real", "d_fake"], title="Discriminator scores on real and generated images"),
                key="learn_gan_scores",
            )
            st.caption(
                "d_real: mean score on real images; d_fake: on generated ones. A gap that stays wide means the discriminator can tell them apart easily."
            )
    else:
        st.info("This checkpoint has no training history to plot.")


@st.cache_data(show_spinner="Denoising in a few large steps...", max_entries=16)
def _ddgan_steps(path, mtime, label, seed, temperature):
    return learn.ddgan_steps(checkpoints.load_run_cached(path).model, label, seed=seed, temperature=temperature)


def _learn_ddgan() -> None:
    t_steps = model.config.denoising_steps
    st.markdown(f"#### The {t_steps} large denoising steps, each shown")
    st.caption(
        f"Generation starts from pure noise and takes only {t_steps} steps (a diffusion model takes dozens). At each step the generator "
        "looks at the noisy image and, with a random code z, proposes a clean image (middle row); then the noise that belongs to the "
        "next, less noisy level is put back (bottom row), and that is the next step's input. Training shows the discriminator pairs "
        "(noisier image, less noisy image): real ones from the data, and ones made this way; the generator learns to make pairs it cannot tell apart."
    )
    r = st.columns(3)
    with r[0]:
        lab = names.index(st.selectbox("Class", names, key="learn_dg_class", help="Class to generate."))
    dseed = int(r[1].number_input("Seed", 0, 2**31 - 1, 0, key="learn_dg_seed", help="Seed of the starting noise and of every step's draws."))
    temp = r[2].slider("Temperature", 0.0, 2.0, 1.0, 0.05, key="learn_dg_temp", help=model.control_help("temperature"))
    try:
        tr = _ddgan_steps(PATH, MTIME, lab, dseed, float(temp))
        caps = [f"step {i + 1}/{t_steps} · signal {s:.2f}" for i, s in enumerate(tr.signal)]
        st.caption("The step's noisy input x_t (signal: how much of the image is left in it)")
        _labelled_strip(tr.x_t, caps)
        st.caption("The generator's proposal for the clean image")
        _labelled_strip(tr.x0_pred, [f"step {i + 1}" for i in range(len(tr.levels))])
        st.caption("The proposal with the next level's noise put back: the next step's input; after the last step, the image")
        _labelled_strip(tr.x_prev, [f"step {i + 1}" + (" · final" if i + 1 == len(tr.levels) else "") for i in range(len(tr.levels))])
    except GDAError as exc:
        display.show_error(exc)
    _learn_gan()


def _learn_vaegan() -> None:
    st.markdown("#### Reconstruction, judged by the critic instead of pixel by pixel")
    st.caption(
        "Top: real images. Middle: this VAE-GAN's reconstructions (encoded to the centre of their latent cloud, decoded back). "
        "Bottom: a plain VAE's, trained on the same data. A VAE is trained to match every pixel, so where it is unsure it "
        "hedges with a blur; the VAE-GAN is trained to match what its discriminator sees, so it keeps strokes crisp, even "
        "where it moves them a little. Sharpness: the edges' strength relative to the real images' (1 = as crisp)."
    )
    if run_ds is None:
        st.info(NEEDS_REAL)
    else:
        _vaegan_against_vae()
    cv = learn.curves(run.history, ("llike", "kl", "pixel"))
    if len(cv.get("step", [])) > 1 and "llike" in cv:
        recs = [dict(zip(cv, vals, strict=False)) for vals in zip(*cv.values(), strict=False)]
        st.plotly_chart(display.curves_figure(recs, title="Reconstruction in the critic's features (llike), KL and pixel terms"), key="learn_vg_curves")
    _learn_gan()


def _vaegan_against_vae() -> None:
    spec = run.data_spec
    c = model.config
    vaes = [r for r in checkpoints.all_runs(("vae",)) if r.dataset == spec.source and (r.image_size, r.channels, r.num_classes) == (c.image_size, c.channels, c.num_classes)]
    rc = st.columns(2)
    vae_path = rc[0].selectbox("VAE to compare with", [str(r.path) for r in vaes], format_func=lambda p: Path(p).name, key="learn_vg_vae",
                               help="A VAE checkpoint trained on the same dataset (shipped ones first).") if vaes else None  # fmt: skip
    rseed = int(rc[1].number_input("Pick seed", 0, 2**31 - 1, 0, key="learn_vg_seed", help="Which real images are picked."))
    pick = np.random.default_rng(rseed).permutation(len(run_ds.train_labels))[:10]
    x, y = run_ds.train_images[pick], run_ds.train_labels[pick]
    try:
        rows, figs = [x, learn.vae_reconstructions(model, x, y)], []
        figs.append(("VAE-GAN", learn.reconstruction_figures(x, rows[1])))
        if vae_path is not None:
            rows.append(learn.vae_reconstructions(checkpoints.load_run_cached(vae_path).model, x, y))
            figs.append(("VAE", learn.reconstruction_figures(x, rows[2])))
        display.show_grid(image_grid(np.concatenate(rows), nrow=len(pick), pad=2), scale=SCALE)
        st.caption(" · ".join(f"{name}: MSE {f['mse']:.4f}, sharpness {f['sharpness']:.2f}" for name, f in figs)
                   + ("" if vae_path else " (no VAE trained on this dataset here to compare with)"))  # fmt: skip
    except GDAError as exc:
        display.show_error(exc)


@st.cache_data(show_spinner="Looking for the teacher...", max_entries=16)
def _teacher_of(path, mtime, runs_root):
    found = distill.find_teacher(checkpoints.load_run_cached(path), runs_root)
    return str(found) if found else None


@st.cache_data(show_spinner="Running the student and its teacher...", max_entries=16)
def _student_teacher(path, mtime, teacher_path, label, seed):
    return learn.student_and_teacher(checkpoints.load_run_cached(path).model, checkpoints.load_run_cached(teacher_path).model, label, seed=seed)


def _learn_distilled() -> None:
    c = model.config
    st.markdown("#### Teacher and student at the same seed")
    st.caption(
        f"This student was distilled from **{display.plain(c.teacher)}** (a {display.plain(display_name(c.teacher_family))}, weights SHA-256 "
        f"{display.plain(c.teacher_sha256[:12])}...) by {display.plain(c.method)} distillation. Both start from the same noise for the same "
        f"seed; the teacher walks to its image in many small steps, the student in {c.steps}, one network pass each."
    )
    teacher_path = _teacher_of(PATH, MTIME, str(checkpoints.runs_dir()))
    if teacher_path is None:
        st.info(f"The teacher {display.plain(c.teacher)} is not among the checkpoints here (or its weights changed), so it cannot be shown beside the student.")
        return
    r = st.columns(2)
    with r[0]:
        lab = names.index(st.selectbox("Class", names, key="learn_ds_class", help="Class to generate."))
    dseed = int(r[1].number_input("Seed", 0, 2**31 - 1, 0, key="learn_ds_seed", help="Seed of the starting noise, shared by both."))
    try:
        res = _student_teacher(PATH, MTIME, teacher_path, lab, dseed)
        _labelled_strip(np.stack([res.teacher, res.student, res.teacher_few]),
                        [f"teacher: {res.teacher_passes} passes", f"student: {c.steps} passes", f"teacher's own sampler at {c.steps} steps"])  # fmt: skip
        st.caption(f"Distance to the teacher's image (mean squared, pixels in 0..1): the student {res.distance['student']:.4f}, "
                   f"the teacher's own sampler cut to {c.steps} steps {res.distance['teacher_few']:.4f}.")  # fmt: skip
        st.caption("The student's steps: the image after each (top) and its guess of the final image there (bottom)")
        _labelled_strip(res.student_steps, [f"after step {i + 1}/{c.steps}" for i in range(c.steps)])
        _labelled_strip(res.student_guesses, [f"guess at step {i + 1}" for i in range(c.steps)])
    except GDAError as exc:
        display.show_error(exc)


WALKTHROUGHS = {"ddpm": _learn_ddpm, "vae": _learn_vae, "flow": _learn_flow, "ldm": _learn_ldm, "realnvp": _learn_realnvp, "gan": _learn_gan,
                "stylegan2": _learn_gan, "ddgan": _learn_ddgan, "vaegan": _learn_vaegan, "distilled": _learn_distilled}  # fmt: skip
if model.family in WALKTHROUGHS:
    WALKTHROUGHS[model.family]()
else:
    st.info(f"No walkthrough for the {model.family} family yet; its how-it-works text is above.")

if run.history:
    with st.expander("All logged training curves of this checkpoint"):
        st.plotly_chart(display.curves_figure(run.history, title="Training history"), key="learn_all_curves")
