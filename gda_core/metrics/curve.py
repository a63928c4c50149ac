"""Quality against cost for iterative families: FID, precision and recall against images per
second over a range of sampling steps, each point with its 95 % interval.

The points share the evaluation's stages (``evaluation.py``): the same domain features of the real
training split, synthetic images cached per step count, bootstrap intervals over images for the
quality figures and over timed batches for the speed.
"""

from __future__ import annotations

import dataclasses
import html
import os
import threading
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import ConfigError
from ..runtime import atomic_write_bytes, atomic_write_json, atomic_write_text
from .classifier import DEFAULT_BUDGET
from .evaluation import SamplingSettings, generate, measure_speed, plan_evaluation, real_features, speed_interval
from .fid import fid
from .intervals import bootstrap_mean, bootstrap_stat
from .manifold import prdc_items

FORMAT = "gda-curve/1"


def quality_cost_curve(
    run_or_model,
    dataset=None,
    *,
    steps: Sequence[int] = (5, 10, 20, 50),
    sampler: str | None = None,
    guidance: float | None = None,
    temperature: float = 1.0,
    n_samples: int | None = None,
    seed: int = 0,
    speed_batch: int = 64,
    device: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    extractor_options: dict | None = None,
    progress: Callable[[str, float], None] | None = None,
    cancel: threading.Event | None = None,
) -> dict:
    """One point per step count: FID, precision and recall (bootstrap intervals over images) and
    images/s (interval over timed batches). ``n_samples`` defaults to min(1000, training images)."""
    steps_list = _steps(steps)
    base = dict(n_samples=n_samples, seed=seed, seeds=1, device=device, extractor="domain-cnn", budget=DEFAULT_BUDGET, augment=(),
                speed_batch=speed_batch, sample_batch=256, deepfool_steps=1, kid_subsets=1, cache_dir=cache_dir,
                extractor_options=extractor_options, progress=progress, cancel=cancel)  # fmt: skip
    plan = plan_evaluation(run_or_model, dataset, sampling=SamplingSettings(steps=steps_list[0], guidance=guidance, sampler=sampler,
                                                                            temperature=temperature), **base)  # fmt: skip
    if "steps" not in getattr(plan.model, "controls", ()):
        raise ConfigError(f"{plan.family} makes an image in one network pass: it has no sampling steps to trade for speed")
    if n_samples is None:
        plan.n_main = plan.n_total = min(1000, len(plan.ds.train_labels))
        plan.labels = plan.labels[: plan.n_total]
    ext, _, f_real = real_features(plan)
    points = []
    for i, s in enumerate(steps_list):
        lo, hi = 0.1 + 0.9 * i / len(steps_list), 0.1 + 0.9 * (i + 1) / len(steps_list)
        p = dataclasses.replace(plan, sampling=dataclasses.replace(plan.sampling, steps=s))
        points.append(_point(p, ext, f_real, s, lo, hi))
    return {
        "format": FORMAT, "model": plan.family, "name": getattr(plan.run, "name", plan.family), "dataset": plan.ds.name,
        "n_samples": plan.n_main, "sampler": sampler, "guidance": guidance, "temperature": temperature, "seed": seed,
        "device": plan.dev.type, "checkpoint_sha256": plan.weights_sha, "points": points,
    }  # fmt: skip


def _steps(steps) -> list[int]:
    try:
        out = sorted({int(s) for s in steps})
    except (TypeError, ValueError):
        raise ConfigError(f"steps must be positive integers, got {steps!r}") from None
    if not out or out[0] < 1:
        raise ConfigError(f"steps must be positive integers, got {steps!r}")
    return out


def _point(plan, ext, f_real, steps: int, lo: float, hi: float) -> dict:
    syn = generate(plan, 0, plan.slot(lo, lo + 0.7 * (hi - lo), f"sampling with {steps} steps"))
    f_fake = ext(syn[: plan.n_main])
    items = prdc_items(f_real, f_fake, k_pr=3, k_dc=5, device=plan.dev)
    prec = bootstrap_mean(items["precision"], seed=plan.seeds[0], what="synthetic images")
    rec = bootstrap_mean(items["recall"], seed=plan.seeds[0], what="real images")
    fd = bootstrap_stat(fid, f_real.numpy().astype(np.float64), f_fake.numpy().astype(np.float64), paired=False, n_boot=200,
                        seed=plan.seeds[0], what="images per side")  # fmt: skip
    plan.say(f"timing {steps} steps", lo + 0.8 * (hi - lo))
    sp = measure_speed(plan)
    ips = speed_interval(sp).get("images_per_s")
    return {
        "steps": steps, "nfe_per_image": sp["nfe_per_image"], "images_per_s": sp["images_per_s"],
        "images_per_s_ci95": ips.interval if ips else None, "fid": fd.mean, "fid_ci95": fd.interval,
        "precision": prec.mean, "precision_ci95": prec.interval, "recall": rec.mean, "recall_ci95": rec.interval,
    }  # fmt: skip


def _err(points, key):
    return {"type": "data", "symmetric": False, "array": [p[f"{key}_ci95"][1] - p[key] for p in points],
            "arrayminus": [p[key] - p[f"{key}_ci95"][0] for p in points]}  # fmt: skip


def curve_figure(curve: dict):
    """Plotly: FID (left) and precision / recall (right) against images per second, log x axis;
    each point labelled with its step count, error bars = 95 % intervals."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    pts = curve["points"]
    x = [p["images_per_s"] for p in pts]
    labels = [f"{p['steps']} steps" for p in pts]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("FID (lower is better)", "precision and recall (higher is better)"))
    fig.add_trace(go.Scatter(x=x, y=[p["fid"] for p in pts], error_y=_err(pts, "fid"), mode="lines+markers+text", text=labels,
                             textposition="top center", name="FID"), row=1, col=1)  # fmt: skip
    for key in ("precision", "recall"):
        fig.add_trace(go.Scatter(x=x, y=[p[key] for p in pts], error_y=_err(pts, key), mode="lines+markers", name=key, text=labels,
                                 hovertemplate="%{text}: %{y:.3f}<extra>" + key + "</extra>"), row=1, col=2)  # fmt: skip
    for c in (1, 2):
        fig.update_xaxes(type="log", title_text="images per second (log scale)", row=1, col=c)
    fig.update_layout(height=420, title=f"Quality against cost: {html.escape(str(curve['name']))} on {html.escape(str(curve['dataset']))}",
                      margin={"l": 50, "r": 20, "t": 70, "b": 40})  # fmt: skip
    return fig


def curve_png(curve: dict) -> bytes:
    """The same two panels drawn by matplotlib."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = curve["points"]
    x = [p["images_per_s"] for p in pts]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=100)

    def yerr(key):
        return [[p[key] - p[f"{key}_ci95"][0] for p in pts], [p[f"{key}_ci95"][1] - p[key] for p in pts]]

    a.errorbar(x, [p["fid"] for p in pts], yerr=yerr("fid"), marker="o", capsize=4)
    for p in pts:
        a.annotate(f"{p['steps']} steps", (p["images_per_s"], p["fid"]), textcoords="offset points", xytext=(4, 6), fontsize=8)
    a.set_title("FID (lower is better)")
    for key in ("precision", "recall"):
        b.errorbar(x, [p[key] for p in pts], yerr=yerr(key), marker="o", capsize=4, label=key)
    b.set_title("precision and recall (higher is better)")
    b.legend()
    for ax in (a, b):
        ax.set_xscale("log")
        ax.set_xlabel("images per second (log scale)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"Quality against cost: {curve['name']} on {curve['dataset']}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_curve(curve: dict, out) -> None:
    """Write a curve as .json, .html (interactive chart + table) or .png."""
    from pathlib import Path

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".json":
        atomic_write_json(out, curve)
    elif suffix == ".png":
        atomic_write_bytes(out, curve_png(curve))
    elif suffix in (".html", ".htm"):
        rows = "".join(f"<tr><td>{p['steps']}</td><td>{p['images_per_s']:.1f}</td><td>{p['fid']:.3f} [{p['fid_ci95'][0]:.3f}, {p['fid_ci95'][1]:.3f}]</td>"
                       f"<td>{p['precision']:.3f}</td><td>{p['recall']:.3f}</td></tr>" for p in curve["points"])  # fmt: skip
        body = curve_figure(curve).to_html(full_html=False, include_plotlyjs=True)
        atomic_write_text(out, f"<!doctype html><html><head><meta charset='utf-8'><title>Quality against cost</title></head><body>{body}"
                               f"<table border=1><tr><th>steps</th><th>img/s</th><th>FID [95% CI]</th><th>precision</th><th>recall</th></tr>{rows}"
                               "</table></body></html>")  # fmt: skip
    else:
        raise ConfigError(f"--out must end in .json, .html or .png, got '{out.name}'")


__all__ = ["curve_figure", "curve_png", "quality_cost_curve", "write_curve"]
