"""Command line for the app's views: ``latent`` (interpolate, traverse, map, neighbours, mix) and
``learn`` (each family's walkthrough images), so a lecture's figures can be scripted.

Every figure is computed by the same engine calls as the Latent space and Learn pages
(``gda_core.latent``, ``gda_core.learn``); this module only lays the results out in files.
Labelled figures are drawn by matplotlib (already a dependency, no browser needed).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataError
from .runtime import atomic_write_bytes, atomic_write_json, atomic_write_text

LATENT_VIEWS = ("interpolate", "traverse", "map", "neighbours", "mix")


# ---------------------------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------------------------


def _open(args):
    from .checkpoints import load_run

    return load_run(args.checkpoint, device=args.device)


def _dataset(run):
    """The real images a run was trained on (its recorded DataSpec); a one-line DataError if absent."""
    from .data import load_dataset

    spec = run.data_spec.to_dict()
    return load_dataset(spec.pop("source"), **spec)


def _label(run, text: str | None) -> int:
    names = run.class_names
    if text is None:
        return 0
    if text in names:
        return names.index(text)
    try:
        v = int(text)
    except ValueError:
        raise ConfigError(f"unknown class '{text}'; classes are {', '.join(names[:20])}") from None
    if not 0 <= v < len(names):
        raise ConfigError(f"class index must be in 0..{len(names) - 1}, got {v}")
    return v


def _upscale(model) -> int:
    return max(1, 96 // model.config.image_size)


def _provenance(run, view: str, settings: dict) -> dict:
    """What made a view's file: the run, its weights and the view's settings (seeds included)."""
    from . import provenance

    return provenance.make(f"latent.{view}" if view in LATENT_VIEWS else view, run=run, settings=settings)


def _write_image(path: Path, image: np.ndarray, upscale: int, prov: dict) -> None:
    from . import provenance
    from .sampling import png_bytes

    atomic_write_bytes(path, provenance.png_with(png_bytes(image, upscale), prov))


def _figure_png(fig, prov: dict) -> bytes:
    import matplotlib.pyplot as plt

    from . import provenance

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=100)
    plt.close(fig)
    return provenance.png_with(buf.getvalue(), prov)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _show(ax, img: np.ndarray) -> None:
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None, vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def labelled_rows_png(rows: list[tuple[str, np.ndarray, list[str]]], title: str, prov: dict) -> bytes:
    """Rows of images (name, uint8 (K, H, W, C), one caption per image) as one captioned figure."""
    plt = _plt()
    k = max(len(r[1]) for r in rows)
    fig, axes = plt.subplots(len(rows), k, figsize=(1.5 * k, 1.75 * len(rows) + 0.4), squeeze=False)
    for i, (name, frames, caps) in enumerate(rows):
        for j in range(k):
            ax = axes[i][j]
            if j < len(frames):
                _show(ax, frames[j])
                ax.set_title(caps[j] if j < len(caps) else "", fontsize=7)
            else:
                ax.axis("off")
        axes[i][0].set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _figure_png(fig, prov)


def curves_png(cols: dict[str, list[float]], keys: list[str], title: str, prov: dict) -> bytes:
    """Training curves (``learn.curves`` columns) against step, one line per key."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for k in keys:
        if k in cols:
            ax.plot(cols["step"], cols[k], label=k, linewidth=1.4)
    ax.set_xlabel("step")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return _figure_png(fig, prov)


# ---------------------------------------------------------------------------------------------
# latent
# ---------------------------------------------------------------------------------------------


def _latent_interpolate(run, args, out: Path) -> str:
    from . import latent

    model, label = run.model, _label(run, args.label)
    if args.real is not None:
        ds = _dataset(run)
        ia, ib = args.real
        n = len(ds.train_labels)
        if not (0 <= ia < n and 0 <= ib < n):
            raise ConfigError(f"--real takes two training-image indices in 0..{n - 1}, got {ia} {ib}")
        la, lb = int(ds.train_labels[ia]), int(ds.train_labels[ib])
        frames = latent.interpolate_images(model, ds.train_images[ia], la, ds.train_images[ib], lb, label=label if args.label else None,
                                           frames=args.frames, method=args.method, steps=args.steps)  # fmt: skip
        settings = {"real_indices": [ia, ib], "real_labels": [la, lb]}
    else:
        frames = latent.interpolate_seeds(model, args.seed_a, args.seed_b, label, frames=args.frames, method=args.method,
                                          temperature=args.temperature, steps=args.steps, guidance=args.guidance)  # fmt: skip
        settings = {"seeds": [args.seed_a, args.seed_b], "temperature": args.temperature, "guidance": args.guidance}
    settings.update(label=label, frames=args.frames, method=args.method, steps=args.steps)
    prov = _provenance(run, "interpolate", settings)
    if out.suffix.lower() == ".gif":
        from . import provenance

        atomic_write_bytes(out, provenance.gif_with(latent.gif_bytes(frames, upscale=_upscale(model)), prov))
    else:
        _write_image(out, latent.strip(frames, pad=2), _upscale(model), prov)
    return f"{len(frames)} frames"


def _latent_traverse(run, args, out: Path) -> str:
    from . import latent

    model, label = run.model, _label(run, args.label)
    dims = [int(d) for d in args.dims.split(",")] if args.dims else latent.latent_dims_by_effect(model, label, seed=args.seed, top=8)
    rows = latent.traverse(model, args.seed, label, dims=dims, values=np.linspace(-3, 3, args.values), temperature=args.temperature)
    prov = _provenance(run, "traverse", {"seed": args.seed, "label": label, "dims": dims, "values": np.linspace(-3, 3, args.values).tolist(),
                                         "temperature": args.temperature, "rows": "one latent dimension per row, -3 (left) to +3 (right)"})  # fmt: skip
    _write_image(out, latent.grid_rows(rows, pad=2), _upscale(model), prov)
    return f"{len(dims)} dimensions x {args.values} values (rows: dims {', '.join(map(str, dims))})"


def _latent_map(run, args, out: Path) -> str:
    from . import latent
    from .sampling import generate

    ds, model = _dataset(run), run.model
    take = np.random.default_rng(args.seed).permutation(len(ds.train_labels))[: args.n_real]
    syn = generate(run, args.per_class * model.config.num_classes, None, seed=args.seed)
    features = "pixels"
    if args.features == "domain-cnn":
        from .metrics import get_extractor

        features = get_extractor("domain-cnn", ds)
    m = latent.embed_map(ds.train_images[take], ds.train_labels[take], syn.images, syn.labels, method=args.method, features=features, seed=args.seed)
    settings = {"seed": args.seed, "n_real": len(take), "synthetic_per_class": args.per_class, "method": m.method, "features": m.features,
                "synthetic_seeds": [int(syn.seeds[0]), int(syn.seeds[-1])], "real_indices_rule": "numpy default_rng(seed).permutation(n_train)[:n_real]"}  # fmt: skip
    prov = _provenance(run, "map", settings)
    csv_path = out.with_suffix(".csv")
    _write_map_csv(csv_path, m, np.r_[take, np.arange(len(syn.images))], run.class_names, prov)
    atomic_write_bytes(out, _map_png(m, run.class_names, prov))
    return f"{len(take)} real + {len(syn.images)} synthetic points; coordinates in {csv_path}"


def _write_map_csv(path: Path, m, index: np.ndarray, names: list[str], prov: dict) -> None:
    from . import provenance

    buf = io.StringIO()
    wr = csv.writer(buf)
    cols = provenance.csv_columns(prov)
    wr.writerow(["point", "kind", "index", "label", "class", "x", "y", *cols])
    for i, (xy, lab, syn) in enumerate(zip(m.coords, m.labels, m.synthetic, strict=True)):
        wr.writerow([i, "synthetic" if syn else "real", int(index[i]), int(lab), provenance.csv_safe(names[int(lab)]), f"{xy[0]:.6g}",
                     f"{xy[1]:.6g}", *cols.values()])  # fmt: skip
    atomic_write_text(path, buf.getvalue())


def _map_png(m, names: list[str], prov: dict) -> bytes:
    from .metrics.comparison import PALETTE

    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 7))
    for c, name in enumerate(names):
        for syn, marker, size, alpha in ((False, "o", 14, 0.45), (True, "x", 30, 0.95)):
            sel = (m.labels == c) & (m.synthetic == syn)
            if sel.any():
                ax.scatter(m.coords[sel, 0], m.coords[sel, 1], marker=marker, s=size, alpha=alpha, color=PALETTE[c % len(PALETTE)],
                           label=f"{name} ({'synthetic' if syn else 'real'})")  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{m.method.upper()} of {m.features} (circles: real, crosses: synthetic)", fontsize=10)
    ax.legend(fontsize=6, ncol=2, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _figure_png(fig, prov)


def _latent_neighbours(run, args, out: Path) -> str:
    from . import latent
    from .sampling import generate

    ds = _dataset(run)
    label = None if args.label is None else _label(run, args.label)
    syn = generate(run, args.n, label, seed=args.seed)
    nb = latent.nearest_neighbours(syn.images, ds.train_images, threshold=args.threshold)
    prov = _provenance(run, "neighbours", {"seeds": [int(syn.seeds[0]), int(syn.seeds[-1])], "n": args.n, "label": label,
                                           "threshold": nb.threshold, "flagged": int(nb.flagged.sum()), "ssim": [round(float(s), 4) for s in nb.ssim],
                                           "train_index": nb.index.tolist()})  # fmt: skip
    atomic_write_bytes(out, _neighbours_png(syn, ds, nb, run.class_names, prov))
    return f"{int(nb.flagged.sum())} of {len(nb.ssim)} at or above SSIM {nb.threshold:g}"


def _neighbours_png(syn, ds, nb, names: list[str], prov: dict) -> bytes:
    from .sampling import image_grid

    plt = _plt()
    order = np.argsort(-nb.ssim, kind="stable")
    cols = min(6, len(order))
    rows = -(-len(order) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 1.45 * rows + 0.5), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(order):
            ax.axis("off")
            continue
        i = order[k]
        _show(ax, image_grid(np.stack([syn.images[i], ds.train_images[nb.index[i]]]), nrow=2, pad=1))
        flag = "near-copy · " if nb.flagged[i] else ""
        ax.set_title(f"{flag}SSIM {nb.ssim[i]:.3f} · {names[int(syn.labels[i])]}", fontsize=7, color="#b00" if nb.flagged[i] else "black")
    fig.suptitle("Each pair: generated (left), its nearest training image by SSIM (right)", fontsize=10)
    fig.tight_layout()
    return _figure_png(fig, prov)


def _latent_mix(run, args, out: Path) -> str:
    from . import latent

    model, label = run.model, _label(run, args.label)
    rows = list(range(args.seed_a, args.seed_a + args.count))
    cols = list(range(args.seed_b, args.seed_b + args.count))
    cross = model.num_style_layers // 2 if args.crossover is None and latent.has_style_mixing(model) else args.crossover
    grid = latent.style_mixing_grid(model, label, rows, cols, cross, temperature=args.temperature, pad=2)
    prov = _provenance(run, "mix", {"label": label, "a_seeds": rows, "b_seeds": cols, "crossover": cross, "temperature": args.temperature})
    _write_image(out, grid, _upscale(model), prov)
    return f"{len(cols)} x {len(rows)} mixes, crossover layer {cross}"


_LATENT = {"interpolate": _latent_interpolate, "traverse": _latent_traverse, "map": _latent_map, "neighbours": _latent_neighbours,
           "mix": _latent_mix}  # fmt: skip
_SUFFIX = {"interpolate": (".png", ".gif")}


def cmd_latent(args) -> int:
    out = Path(args.out)
    allowed = _SUFFIX.get(args.view, (".png",))
    if out.suffix.lower() not in allowed:
        raise ConfigError(f"latent {args.view}: --out must end in {' or '.join(allowed)}, got '{out.name}'")
    run = _open(args)
    what = _LATENT[args.view](run, args, out)
    print(f"wrote {out}: {what}")
    return 0


# ---------------------------------------------------------------------------------------------
# learn
# ---------------------------------------------------------------------------------------------


class _Writer:
    """Writes a walkthrough's files into one folder and keeps the index of what each one shows."""

    def __init__(self, run, out: Path, settings: dict):
        self.run, self.out, self.settings = run, out, settings
        self.index: list[dict] = []

    def prov(self, what: str) -> dict:
        return _provenance(self.run, "learn", {**self.settings, "figure": what})

    def rows(self, name: str, rows, title: str, what: str) -> None:
        self._put(name, labelled_rows_png(rows, title, self.prov(what)), what)

    def curves(self, name: str, cols: dict, keys: list[str], title: str, what: str) -> bool:
        if len(cols.get("step", [])) < 2 or not any(k in cols for k in keys):
            return False
        self._put(name, curves_png(cols, keys, title, self.prov(what)), what)
        return True

    def _put(self, name: str, data: bytes, what: str) -> None:
        atomic_write_bytes(self.out / name, data)
        self.index.append({"file": name, "what": what})

    def note(self, what: str) -> None:
        self.index.append({"file": None, "what": what})


def _real_pool(run):
    """The held-out images (else the training ones) of the run's dataset, or None when absent."""
    try:
        ds = _dataset(run)
    except DataError:
        return None
    return ds


def _learn_ddpm(w: _Writer, model, label: int, seed: int) -> None:
    from . import learn

    ds = _real_pool(w.run)
    if ds is None:
        w.note("forward noising skipped: the real training images are not on this computer")
    else:
        idx = np.flatnonzero(ds.train_labels == label)
        ts = learn.default_timesteps(model, 7)
        frames = learn.forward_noising(model, ds.train_images[idx[0] if len(idx) else 0], ts, seed=seed)
        sig = learn.signal_fraction(model, ts)
        w.rows("forward_noising.png", [("x_t", frames, [f"t={t} · signal {s:.2f}" for t, s in zip(ts, sig, strict=True)])],
               "Forward process: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, the same eps throughout",
               "a real training image noised at evenly spaced timesteps (signal: how much of the image is left)")  # fmt: skip
    tr = learn.denoising_trajectory(model, label, seed=seed, show=8)
    w.rows("denoising.png", [("x_t", tr.x_t, [f"step {s + 1} · t={t}" for s, t in zip(tr.steps, tr.timesteps, strict=True)]),
                             ("predicted x0", tr.x0_pred, [f"step {s + 1}" for s in tr.steps])],
           "Reverse process (deterministic DDIM): the noisy image and the network's guess of the final image",
           "the reverse process from the seed's noise: x_t after each shown step (top) and the predicted clean image (bottom)")  # fmt: skip


def _learn_flow(w: _Writer, model, label: int, seed: int) -> None:
    from . import learn

    tr = learn.flow_trajectory(model, label, seed=seed, show=8)
    caps = [f"t={t:.2f}" for t in tr.times]
    w.rows("flow_trajectory.png", [("x_t", tr.x_t, caps), ("x_t - t v", tr.x0_guess, caps)],
           "Following the flow from noise (t = 1) to an image (t = 0)",
           "the ODE solve from the seed's noise: the state x_t (top) and the straight-line guess x_t - t v of the image (bottom)")  # fmt: skip


def _recon_rows(w: _Writer, model, name: str, what: str, seed: int) -> None:
    from . import learn

    ds = _real_pool(w.run)
    if ds is None:
        w.note(f"{name} skipped: the real training images are not on this computer")
        return
    pick = np.random.default_rng(seed).permutation(len(ds.train_labels))[:10]
    x, y = ds.train_images[pick], ds.train_labels[pick]
    rec = learn.vae_reconstructions(model, x, y)
    f = learn.reconstruction_figures(x, rec)
    names = w.run.class_names
    w.rows(name, [("real", x, [names[int(c)] for c in y]), ("reconstructed", rec, [""] * len(rec))],
           f"Reconstructions: MSE {f['mse']:.4f}, sharpness {f['sharpness']:.2f} (1 = as crisp as the real images)", what)  # fmt: skip


def _learn_vae(w: _Writer, model, label: int, seed: int) -> None:
    from . import learn

    _recon_rows(w, model, "reconstructions.png", "real training images (top) encoded to the posterior mean and decoded (bottom)", seed)
    w.curves("loss_terms.png", learn.vae_curves(w.run.history, float(getattr(model.config, "beta", 1.0))), ["recon", "kl", "beta_kl"],
             "VAE loss terms per image (lower is better)", "reconstruction error and KL against training step")  # fmt: skip


def _learn_gan(w: _Writer, model, label: int, seed: int) -> None:
    from . import learn

    cv = learn.gan_curves(w.run.history)
    w.curves("gan_losses.png", cv, ["d_loss", "g_loss"], "Discriminator and generator losses", "the two-player game: d_loss and g_loss against step")
    w.curves("gan_scores.png", cv, ["d_real", "d_fake"], "Discriminator scores on real and generated images",
             "the discriminator's mean score on real (d_real) and generated (d_fake) images against step")  # fmt: skip


def _learn_ddgan(w: _Writer, model, label: int, seed: int) -> None:
    from . import learn

    tr = learn.ddgan_steps(model, label, seed=seed)
    n = len(tr.levels)
    w.rows("ddgan_steps.png", [("input x_t", tr.x_t, [f"step {i + 1}/{n} · signal {s:.2f}" for i, s in enumerate(tr.signal)]),
                               ("proposal", tr.x0_pred, [f"step {i + 1}" for i in range(n)]),
                               ("re-noised", tr.x_prev, [f"step {i + 1}" for i in range(n)])],
           f"The {n} large denoising steps, each a conditional GAN",
           "each step's noisy input, the generator's clean proposal and the proposal re-noised to the next level (the last: the image)")  # fmt: skip
    _learn_gan(w, model, label, seed)


def _learn_vaegan(w: _Writer, model, label: int, seed: int) -> None:
    from . import learn

    _recon_rows(w, model, "reconstructions.png", "real training images (top) and this VAE-GAN's reconstructions (bottom)", seed)
    w.curves("loss_terms.png", learn.curves(w.run.history, ("llike", "kl", "pixel")), ["llike", "kl", "pixel"],
             "Reconstruction in the critic's features (llike), KL and pixel terms", "the VAE-GAN's loss terms against step")  # fmt: skip
    _learn_gan(w, model, label, seed)


def _learn_ldm(w: _Writer, model, label: int, seed: int) -> None:
    from . import learn

    ds = _real_pool(w.run)
    if ds is None:
        w.note("autoencoder reconstructions skipped: the real images are not on this computer")
    else:
        pool = ds.test_images if len(ds.test_images) else ds.train_images
        x = pool[np.random.default_rng(seed).permutation(len(pool))[:10]]
        rec, rep = learn.autoencoder_reconstructions(model, x)
        w.rows("autoencoder.png", [("real", x, [""] * len(x)), ("autoencoded", rec, [""] * len(rec))],
               f"The autoencoder: MSE {rep['mse']:.4f}, PSNR {rep['psnr_db']:.1f} dB",
               "held-out images (top) through the latent autoencoder and back (bottom): what latent diffusion can at best draw")  # fmt: skip
    w.curves("training_phases.png", learn.curves(w.run.history, ("ae_loss", "diffusion_loss")), ["ae_loss", "diffusion_loss"],
             "Autoencoder loss, then latent diffusion loss", "the two training phases against step")  # fmt: skip


def _learn_realnvp(w: _Writer, model, label: int, seed: int) -> None:
    from . import learn

    ds = _real_pool(w.run)
    if ds is None:
        w.note("likelihood ranking skipped: the real images are not on this computer")
    else:
        x, y = (ds.test_images, ds.test_labels) if len(ds.test_images) else (ds.train_images, ds.train_labels)
        rk = learn.likelihood_ranking(model, x, y, k=8)
        w.rows("likelihood.png", [("most probable", x[rk.most_likely], [f"{rk.bits_per_dim[i]:.2f} b/d" for i in rk.most_likely]),
                                  ("least probable", x[rk.least_likely], [f"{rk.bits_per_dim[i]:.2f} b/d" for i in rk.least_likely])],
               f"Bits per dimension of held-out images (mean {float(np.mean(rk.bits_per_dim)):.3f})",
               "the held-out images the model finds most (top) and least (bottom) probable, with bits/dim")  # fmt: skip
    w.curves("bits_per_dim.png", learn.curves(w.run.history, ("loss",)), ["loss"], "Training loss = bits/dim on training batches",
             "training bits/dim against step")  # fmt: skip


def _learn_distilled(w: _Writer, model, label: int, seed: int) -> None:
    from . import distill, learn
    from .checkpoints import SHIPPED_DIR, load_run

    c = model.config
    teacher = distill.find_teacher(w.run, Path(w.run.run_dir).parent, SHIPPED_DIR)
    if teacher is None:
        w.note(f"student beside teacher skipped: the teacher {c.teacher} is not beside the student nor among the shipped checkpoints")
        return
    res = learn.student_and_teacher(model, load_run(teacher, device=model.device).model, label, seed=seed)
    w.rows("student_teacher.png", [("images", np.stack([res.teacher, res.student, res.teacher_few]),
                                    [f"teacher: {res.teacher_passes} passes", f"student: {c.steps} passes", f"teacher at {c.steps} steps"])],
           f"Distance to the teacher's image: student {res.distance['student']:.4f}, teacher cut to {c.steps} steps {res.distance['teacher_few']:.4f}",
           "the teacher's image, the student's and the teacher's own sampler at the student's step count, from one seed")  # fmt: skip
    w.rows("student_steps.png", [("after step", res.student_steps, [f"step {i + 1}" for i in range(c.steps)]),
                                 ("guess", res.student_guesses, [f"step {i + 1}" for i in range(c.steps)])],
           "The student's steps", "the student's state after each of its steps (top) and its guess of the final image there (bottom)")  # fmt: skip


WALKTHROUGHS = {"ddpm": _learn_ddpm, "vae": _learn_vae, "flow": _learn_flow, "ldm": _learn_ldm, "realnvp": _learn_realnvp, "gan": _learn_gan,
                "stylegan2": _learn_gan, "ddgan": _learn_ddgan, "vaegan": _learn_vaegan, "distilled": _learn_distilled}  # fmt: skip


def write_walkthrough(run, out_dir, *, label: int = 0, seed: int = 0) -> list[dict]:
    """Write a run's Learn-page figures (PNG) into ``out_dir`` with ``index.json`` and ``index.txt``
    saying what each file shows. Returns the index entries (``file`` None: a part that was skipped)."""
    from . import learn

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    w = _Writer(run, out, {"label": label, "seed": seed})
    fam = run.model.family
    if fam in WALKTHROUGHS:
        WALKTHROUGHS[fam](w, run.model, label, seed)
    else:
        w.note(f"no walkthrough for the {fam} family yet")
    keys = learn.loss_keys(run.history)
    if not w.curves("all_curves.png", learn.curves(run.history, keys), keys, "Every logged training curve", "every numeric history column against step"):
        w.note("no training history to plot")
    from . import provenance

    atomic_write_json(out / "index.json", {"checkpoint": run.name, "family": fam, "files": w.index, "provenance": provenance.make("learn", run=run, settings=w.settings)})
    atomic_write_text(out / "index.txt", "".join(f"{e['file'] or '(skipped)'}: {e['what']}\n" for e in w.index))
    return w.index


def cmd_learn(args) -> int:
    run = _open(args)
    index = write_walkthrough(run, args.out, label=_label(run, args.label), seed=args.seed)
    files = [e["file"] for e in index if e["file"]]
    print(f"wrote {len(files)} figures to {args.out} ({', '.join(files)}); index.txt says what each shows")
    return 0


# ---------------------------------------------------------------------------------------------
# provenance
# ---------------------------------------------------------------------------------------------


def cmd_provenance(args) -> int:
    from .provenance import read_provenance

    print(json.dumps(read_provenance(args.file), indent=2, default=str))
    return 0


# ---------------------------------------------------------------------------------------------
# Parsers
# ---------------------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser, out_help: str) -> None:
    p.add_argument("--checkpoint", required=True, help="run folder")
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--device", default="auto")


def _latent_parsers(sub) -> None:
    p = sub.add_parser("interpolate", help="frames between two seeds (or two real images) as a PNG strip or an animated GIF")
    _common(p, "FILE.png (a strip) or FILE.gif (an animation, back and forth)")
    p.add_argument("--seed-a", type=int, default=0)
    p.add_argument("--seed-b", type=int, default=1)
    p.add_argument("--real", type=int, nargs=2, default=None, metavar=("I", "J"), help="interpolate two training images by index (encoder families)")
    p.add_argument("--label", default=None, help="class index or name the decoder is conditioned on (default 0; with --real: A's class)")
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--method", default="slerp", choices=["slerp", "lerp"])
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=None, help="denoising steps per frame (diffusion)")
    p.add_argument("--guidance", type=float, default=None)
    p = sub.add_parser("traverse", help="one latent dimension per row from -3 to +3 (vector latents)")
    _common(p, "FILE.png")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", default=None)
    p.add_argument("--dims", default=None, help="comma-separated dimensions (default: the 8 that change the image most)")
    p.add_argument("--values", type=int, default=7, help="values per row, -3..3")
    p.add_argument("--temperature", type=float, default=1.0)
    p = sub.add_parser("map", help="real and synthetic images projected to 2-D: a PNG scatter and a CSV of coordinates beside it")
    _common(p, "FILE.png (the coordinates go to FILE.csv)")
    p.add_argument("--n-real", type=int, default=400)
    p.add_argument("--per-class", type=int, default=20, help="synthetic images per class")
    p.add_argument("--method", default="pca", choices=["pca", "umap"])
    p.add_argument("--features", default="pixels", choices=["pixels", "domain-cnn"])
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("neighbours", help="each generated image beside its nearest training image, with the SSIM")
    _common(p, "FILE.png")
    p.add_argument("--n", type=int, default=24)
    p.add_argument("--label", default=None, help="one class (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threshold", type=float, default=0.9, help="near-copy SSIM threshold")
    p = sub.add_parser("mix", help="StyleGAN2 style mixing grid")
    _common(p, "FILE.png")
    p.add_argument("--seed-a", type=int, default=0)
    p.add_argument("--seed-b", type=int, default=100)
    p.add_argument("--count", type=int, default=4, help="source images of each kind")
    p.add_argument("--crossover", type=int, default=None, help="first layer taken from B (default: half)")
    p.add_argument("--label", default=None)
    p.add_argument("--temperature", type=float, default=1.0)


def register(subparsers) -> None:
    p = subparsers.add_parser("latent", help="latent-space views to files: interpolate, traverse, map, neighbours, mix")
    sub = p.add_subparsers(dest="view", required=True, parser_class=type(p))
    _latent_parsers(sub)
    p.set_defaults(func=cmd_latent)
    p = subparsers.add_parser("learn", help="each family's walkthrough figures (the Learn page) as PNGs with an index")
    _common(p, "folder for the figures, index.txt and index.json")
    p.add_argument("--label", default=None, help="class of the generated examples (default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_learn)
    p = subparsers.add_parser("provenance", help="print what made a file: a PNG, GIF, .npz, .zip, .csv or .pdf written by GDA Studio")
    p.add_argument("file")
    p.set_defaults(func=cmd_provenance)


__all__ = ["LATENT_VIEWS", "WALKTHROUGHS", "curves_png", "labelled_rows_png", "register", "write_walkthrough"]
