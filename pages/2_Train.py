"""Train: a generative model on the current dataset, in the background, with live curves."""

from __future__ import annotations

import dataclasses
import os

import streamlit as st

from gda_core.checkpoints import list_runs, read_config
from gda_core.errors import ConfigError, GDAError
from gda_core.jobs import unique_run_dir
from gda_core.models import TrainConfig, display_name, get_model_class
from gda_core.runtime import DEVICE_CHOICES
from gda_core.schedulers import X0_CLIPS
from gda_core.training import cpu_bf16_offered
from pages.ui import datasets, display, progress, session, train_fields

session.setup()
st.title("Train")
st.caption(
    "Training runs in the background, in a worker of this server: you can switch pages, reload or come back later. Each start "
    "makes a new run in your workspace; finished runs appear in every model picker."
)
queue = session.job_queue()
ws = session.workspace()
ds = datasets.current_dataset()


def _field_widget(name: str, default, key: str):
    help_ = train_fields.FIELD_HELP.get(name, f"model setting '{name}'")
    if isinstance(default, bool):
        return st.checkbox(name.replace("_", " "), value=default, key=key, help=help_)
    if isinstance(default, int):
        return int(st.number_input(name.replace("_", " "), value=default, step=1, key=key, help=help_))
    if isinstance(default, float):
        return float(st.number_input(name.replace("_", " "), value=default, format="%.4g", key=key, help=help_))
    if isinstance(default, tuple):
        txt = st.text_input(name.replace("_", " "), value=",".join(str(v) for v in default), key=key, help=help_)
        try:
            return tuple(int(v) for v in txt.replace(" ", "").split(",") if v)
        except ValueError:
            raise ConfigError(f"{name} must be comma-separated integers, got '{txt}'") from None
    choices = {"schedule": ("cosine", "linear"), "x0_clip": X0_CLIPS}.get(name)
    if choices and default in choices:
        return st.selectbox(name.replace("_", " "), choices, index=choices.index(default), key=key, help=help_)
    return st.text_input(name.replace("_", " "), value=str(default), key=key, help=help_)


tab_new, tab_sweep, tab_resume, tab_manage = st.tabs(["New run", "Sweep", "Resume a run", "Manage runs"])

with tab_new:
    families = session.model_families(trainable=True)
    family = st.selectbox(
        "Model family",
        families,
        index=families.index(session.remember("train_family", families[0])),
        key="train_family",
        on_change=session.keep,
        args=("train_family",),
        format_func=lambda f: f"{display_name(f)}: {get_model_class(f).description}",
        help="; ".join(f"{display_name(f)}: {get_model_class(f).description}" for f in families),
    )
    st.caption(session.DISTILL_HINT)
    cls = get_model_class(family)
    defaults = cls.Config().to_dict()
    fields = [f.name for f in dataclasses.fields(cls.Config) if f.name not in train_fields.FIXED_FIELDS]
    main = [f for f in fields if f in train_fields.MAIN_FIELDS]
    advanced = [f for f in fields if f not in train_fields.MAIN_FIELDS]
    mc: dict = {}
    bad: str | None = None
    try:
        c1, c2, c3 = st.columns(3)
        with c1:
            st.markdown("**Budget**")
            budget_kind = st.radio(
                "Budget in",
                ("steps", "minutes"),
                horizontal=True,
                key="train_budget_kind",
                help="Stop after a number of optimisation steps, or after a wall-clock time.",
            )
            if budget_kind == "steps":
                steps = int(
                    st.number_input(
                        "Steps",
                        1,
                        1_000_000,
                        500,
                        step=50,
                        key="train_steps",
                        help="Optimisation steps (one batch each). 500 VAE steps on digits take about a minute on a laptop CPU.",
                    )
                )
                minutes = None
            else:
                minutes = float(
                    st.number_input(
                        "Minutes",
                        0.1,
                        24 * 60.0,
                        2.0,
                        step=0.5,
                        key="train_minutes",
                        help="Wall-clock training time; a checkpoint is saved at the end.",
                    )
                )
                steps = None
            preview_every = int(
                st.number_input(
                    "Preview every (steps)",
                    5,
                    100_000,
                    50,
                    step=5,
                    key="train_preview",
                    help="How often a grid of samples is drawn while training (costs a little time).",
                )
            )
        with c2:
            st.markdown("**Model**")
            for name in main:
                mc[name] = _field_widget(name, defaults[name], f"train_{family}_{name}")
            with st.expander("Advanced model settings"):
                for name in advanced:
                    mc[name] = _field_widget(name, defaults[name], f"train_{family}_{name}")
        with c3:
            st.markdown("**Optimisation**")
            batch = int(
                st.number_input("batch size", 1, 4096, TrainConfig().batch_size, key="train_batch", help=train_fields.FIELD_HELP["batch_size"])
            )
            lr = float(
                st.number_input(
                    "learning rate", 1e-6, 1.0, float(cls.default_lr), format="%.2e", key=f"train_lr_{family}", help=train_fields.FIELD_HELP["lr"]
                )
            )
            seed = int(
                st.number_input(
                    "seed",
                    0,
                    2**31 - 1,
                    0,
                    key="train_seed",
                    help="Seeds the weights' initialisation and the batch order: same seed, same run.",
                )
            )
            device = st.selectbox(
                "device", DEVICE_CHOICES, key="train_device", help=f"auto picks the GPU when there is one (here: {session.device_label()})."
            )
            # Not offered (a GPU, a CPU without native bf16): None, the family's default, which the
            # trainer resolves on the machine that trains (or resumes) the run.
            cpu_bf16 = None
            if cpu_bf16_offered(device):
                cpu_bf16 = st.checkbox(
                    "Faster: bfloat16 on this CPU",
                    cls.cpu_bf16_default,
                    key=f"train_cpu_bf16_{family}",
                    help="This processor does bfloat16 arithmetic natively: each training step runs 1.4-1.7x faster (measured in "
                    "bench/bench_speed.py), at lower precision. "
                    + (
                        "On by default for this family: in the same minutes it trained 1.4-1.7x the steps and scored better than "
                        "float32 on most measures (README, 'Training in bfloat16 on CPU'). Off: float32."
                        if cls.cpu_bf16_default
                        else "Off by default for this family (its quality in bf16 is not measured): float32."
                    ),
                )
        if ds is not None:
            cls.Config.from_dict({**mc, "image_size": ds.image_size, "channels": ds.channels, "num_classes": ds.num_classes})
    except GDAError as exc:
        bad = str(exc)
        st.error(bad)

    if ds is None:
        st.warning("Pick a dataset on the Data page first.")
    else:
        st.caption(
            f"Dataset: **{datasets.data_options().get('label')}**, {len(ds.train_labels):,} training images, {ds.num_classes} classes, {ds.image_size} px."
        )
    if st.button(
        "Start training",
        type="primary",
        disabled=ds is None or bad is not None,
        key="train_start",
        help="Start a new run in the background.",
    ):
        out = unique_run_dir(ws.runs, family, os.path.basename(str(datasets.data_options().get("label") or ds.name)).rsplit(".", 1)[0])
        try:
            queue.start_training(
                ws, family=family, dataset=ds, out=out, steps=steps, minutes=minutes, model_config=mc, seed=seed, device=device,
                train_config=dataclasses.asdict(TrainConfig(batch_size=batch, lr=lr, cpu_bf16=cpu_bf16)), preview_every=preview_every,
            )  # fmt: skip
            st.toast(f"Queued {out.name}")
        except GDAError as exc:
            display.show_error(exc)

with tab_sweep:
    from pages.ui import sweep as sweep_ui

    sweep_ui.sweep_tab(ws, queue, ds)

with tab_resume:
    mine = [r for r in list_runs(ws.runs, include_shipped=False)]
    if not mine:
        st.info("No runs in your workspace yet.")
    else:
        by_path = {str(r.path): r for r in mine}
        choice = st.selectbox(
            "Run",
            list(by_path),
            format_func=lambda p: by_path[p].label,
            key="train_resume_run",
            help="A run of yours; it continues from its last checkpoint with its own settings and dataset.",
        )
        info = by_path[choice]
        extra = int(
            st.number_input(
                "More steps",
                1,
                1_000_000,
                200,
                step=50,
                key="train_resume_steps",
                help=f"Train this many steps past the last checkpoint (step {info.step}).",
            )
        )
        if st.button("Resume", key="train_resume", help="Continue the run in the same folder."):
            try:
                cfg = read_config(info.path)
                spec = dict(cfg.get("data") or {})
                rds = datasets.load_dataset_cached(spec.get("source", ""), image_size=spec.get("image_size"), channels=spec.get("channels", "keep"),
                                                 per_class=spec.get("per_class"), seed=spec.get("seed", 0), data_dir=spec.get("data_dir"))  # fmt: skip
                queue.start_training(ws, family=info.family, dataset=rds, out=info.path, steps=int(cfg.get("step", info.step)) + extra, resume=True)
                st.toast(f"Resuming {info.path.name}")
            except GDAError as exc:
                display.show_error(exc)

with tab_manage:
    from pages.ui import runs as run_ui

    run_ui.manage_runs(ws, queue)

st.divider()
st.subheader("Your training jobs")
running_now = any(not j.done for j in queue.list(ws, "train"))
STATUS = {"running": "🟢 running", "queued": "⏳ queued", "done": "✅ done", "failed": "❌ failed", "cancelled": "⏹ cancelled"}


@progress.live(1.0 if running_now else None)
def jobs_panel() -> None:
    jobs = queue.list(ws, "train")
    if not jobs:
        st.caption("None yet in this workspace. Start one above.")
        return
    seen = st.session_state.setdefault("train_seen_done", set())
    newly_done = [j.id for j in jobs if j.done and j.id not in seen]
    if not running_now and any(not j.done for j in jobs):
        st.rerun()  # a job started elsewhere (another tab): poll from now on
    for j in jobs[:20]:
        with st.container(border=True):
            head, btn = st.columns([5, 1])
            place = f" (number {j.queue_position} in the queue)" if j.status == "queued" and j.queue_position else ""
            head.markdown(f"**{display.plain(j.title)}** · {STATUS[j.status]}{place}")
            if not j.done:
                if btn.button("Cancel", key=f"cancel_{j.id}", help="Stop after the current step; a checkpoint is saved so you can resume."):
                    queue.cancel(ws, j.id)
                eta = f", about {display.fmt_seconds(j.eta_s)} left" if j.eta_s is not None else ""
                text = progress.job_status_text(j) if j.status == "queued" else f"{j.message} · {j.progress:.0%}{eta} · elapsed {display.fmt_seconds(j.elapsed_s)}"
                st.progress(j.progress, text=display.plain(text))
            elif j.status == "failed":
                st.error(display.plain(j.error))
            elif j.status == "cancelled":
                st.warning(f"{display.plain(j.error)} (use the Resume tab)")
            else:
                st.success(f"Finished in {display.fmt_seconds(j.elapsed_s)}: {display.plain(j.message)}")
            if j is jobs[0] or not j.done:
                _curves_and_preview(j)
    if newly_done:
        seen.update(newly_done)
        st.rerun()


def _curves_and_preview(j) -> None:
    logs = queue.logs(j)
    cc, pc = st.columns([3, 2])
    with cc:
        if logs:
            st.plotly_chart(display.curves_figure(logs, title="Losses (lower is usually better; GAN losses oscillate)"), key=f"curves_{j.id}")
        else:
            st.caption("Loss curves appear after the first logged steps.")
    with pc:
        preview = queue.preview(j)
        if preview is not None:
            display.show_grid(preview, caption="Latest samples (one row per class)", scale=max(1, min(4, 360 // preview.shape[1])))
        else:
            st.caption("A preview grid appears at the first preview step.")


jobs_panel()
