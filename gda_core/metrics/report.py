"""The evaluation report, the fixed radar normalisation, and model comparisons (HTML / JSON / CSV / PNG)."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..runtime import atomic_write_bytes, atomic_write_json, atomic_write_text
from .speed import speed_score

AXES = ("fidelity", "diversity", "speed", "utility", "robustness", "privacy")
SCHEMA_VERSION = 1

AXIS_HELP = {
    "fidelity": "improved precision (k=3): share of synthetic images that look like real ones",
    "diversity": "improved recall (k=3): share of the real data the synthetic images cover",
    "speed": "log10(images per second) / 5, clipped to [0, 1]: 1 img/s -> 0, 100,000 img/s -> 1",
    "utility": "min(1, TSTR accuracy / TRTR accuracy): how well synthetic data alone trains a classifier",
    "robustness": "min(1, DeepFool rho of the TSTR classifier / rho of the TRTR classifier)",
    "privacy": "1 - mean SSIM of each synthetic image to its nearest training image",
}

# raw key -> (unit, better, one-line description shown as a tooltip)
RAW_META: dict[str, tuple[str, str, str]] = {
    "precision": ("fraction", "higher", "share of synthetic images inside the real data's k-NN manifold (k=3)"),
    "recall": ("fraction", "higher", "share of real training images inside the synthetic data's k-NN manifold (k=3)"),
    "density": ("ratio", "higher", "how many real k-NN balls (k=5) hold each synthetic image, / k; about 1 for matching data"),
    "coverage": ("fraction", "higher", "share of real images whose k-NN ball (k=5) holds at least one synthetic image"),
    "images_per_s": ("img/s", "higher", "images generated per second at batch 64 (median of 3 after a warm-up)"),
    "nfe_per_image": ("evals/img", "lower", "network evaluations needed per generated image"),
    "tstr_acc": ("fraction", "higher", "test accuracy of the classifier trained on synthetic images only"),
    "tstr_bacc": ("fraction", "higher", "balanced (per-class mean) test accuracy of the synthetic-only classifier"),
    "trtr_acc": ("fraction", "higher", "test accuracy of the same classifier trained on the real training split"),
    "trtr_bacc": ("fraction", "higher", "balanced test accuracy of the real-data classifier"),
    "aug_1x_acc": ("fraction", "higher", "test accuracy when training on real + 1x synthetic images"),
    "aug_1x_bacc": ("fraction", "higher", "balanced test accuracy, real + 1x synthetic"),
    "aug_2x_acc": ("fraction", "higher", "test accuracy when training on real + 2x synthetic images"),
    "aug_2x_bacc": ("fraction", "higher", "balanced test accuracy, real + 2x synthetic"),
    "aug_3x_acc": ("fraction", "higher", "test accuracy when training on real + 3x synthetic images"),
    "aug_3x_bacc": ("fraction", "higher", "balanced test accuracy, real + 3x synthetic"),
    "deepfool_rho_tstr": ("||r||/||x||", "higher", "mean relative L2 DeepFool perturbation that fools the synthetic-only classifier"),
    "deepfool_rho_trtr": ("||r||/||x||", "higher", "mean relative L2 DeepFool perturbation that fools the real-data classifier"),
    "nearest_ssim_mean": ("SSIM", "lower", "mean over synthetic images of the SSIM to the nearest training image"),
    "nearest_ssim_p95": ("SSIM", "lower", "95th percentile of the nearest-training-image SSIM"),
    "memorization_rate": ("fraction", "lower", "share of synthetic images closer to a training image than 99% of real test images are"),
    "memorization_threshold": ("SSIM", "info", "99th percentile of nearest-training SSIM of real test images (the memorisation cut-off)"),
    "fid": ("FD (domain feats)", "lower", "Frechet distance on the domain extractor's features (not comparable to Inception FID)"),
    "kid": ("MMD^2", "lower", "kernel inception distance (unbiased, cubic kernel) on the domain features"),
    "kid_std": ("MMD^2", "info", "standard deviation of KID over subsets"),
    "bits_per_dim": (
        "bits/dim",
        "lower",
        "exact negative log-likelihood of the real held-out test images, in bits per pixel value (likelihood families only; "
        "8 = a model that learned nothing)",
    ),
}
# Raw figures shown first, next to the six axes, when a report has them.
HEADLINE_RAW = ("bits_per_dim",)
BPD_HELP = (
    "Bits per dimension on the real held-out test images: how many bits the model needs per pixel value. "
    "Lower is better; 8 is a model that learned nothing. Only models with an exact likelihood (e.g. RealNVP) have it; "
    "compare it only between models evaluated on the same dataset."
)


def normalise_scores(raw: dict) -> dict[str, float | None]:
    """The fixed radar normalisation of METRICS.md; every score in [0, 1] (None when not measured)."""

    def get(k):
        v = raw.get(k)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    def clip(v):
        return None if v is None else float(min(1.0, max(0.0, v)))

    def ratio(a, b):
        if a is None or b is None:
            return None
        if b <= 0:
            return 0.0 if a <= 0 else 1.0
        return clip(a / b)

    ips = get("images_per_s")
    ssim_mean = get("nearest_ssim_mean")
    return {
        "fidelity": clip(get("precision")),
        "diversity": clip(get("recall")),
        "speed": None if ips is None else speed_score(ips),
        "utility": ratio(get("tstr_acc"), get("trtr_acc")),
        "robustness": ratio(get("deepfool_rho_tstr"), get("deepfool_rho_trtr")),
        "privacy": None if ssim_mean is None else clip(1.0 - ssim_mean),
    }


@dataclass
class Report:
    """One model's evaluation: radar ``scores`` (exactly the six AXES), ``raw`` figures with their
    ``units`` / ``better`` / ``descriptions``, ``warnings`` and ``provenance``."""

    scores: dict[str, float | None]
    raw: dict[str, float | None]
    units: dict[str, str] = field(default_factory=dict)
    better: dict[str, str] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)

    @classmethod
    def from_raw(cls, raw: dict, *, warnings: list[str] | None = None, provenance: dict | None = None) -> Report:
        keys = list(raw)
        return cls(
            scores=normalise_scores(raw),
            raw=dict(raw),
            units={k: RAW_META.get(k, ("", "", ""))[0] for k in keys},
            better={k: RAW_META.get(k, ("", "", ""))[1] for k in keys},
            descriptions={k: RAW_META.get(k, ("", "", ""))[2] for k in keys},
            warnings=list(warnings or []),
            provenance=dict(provenance or {}),
        )

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA_VERSION,
            "scores": {k: self.scores.get(k) for k in AXES},
            "raw": dict(self.raw),
            "units": dict(self.units),
            "better": dict(self.better),
            "descriptions": dict(self.descriptions),
            "axis_help": dict(AXIS_HELP),
            "warnings": list(self.warnings),
            "provenance": dict(self.provenance),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Report:
        try:
            scores = d["scores"]
            raw = d["raw"]
        except (KeyError, TypeError):
            raise ConfigError("not a GDA Studio metrics report: missing 'scores' / 'raw'") from None
        if set(scores) != set(AXES):
            raise ConfigError(f"report scores must have exactly the keys {', '.join(AXES)}")
        return cls(
            scores={k: scores[k] for k in AXES},
            raw=dict(raw),
            units=dict(d.get("units", {})),
            better=dict(d.get("better", {})),
            descriptions=dict(d.get("descriptions", {})),
            warnings=list(d.get("warnings", [])),
            provenance=dict(d.get("provenance", {})),
        )

    @property
    def bits_per_dim(self) -> float | None:
        """Held-out bits/dim of a likelihood family; None for the others (and for reports written before it existed)."""
        v = self.raw.get("bits_per_dim")
        try:
            v = float(v) if v is not None and not isinstance(v, bool) else None
        except (TypeError, ValueError):  # a hand-edited or foreign report: show n/a rather than fail
            return None
        return v if v is not None and math.isfinite(v) else None

    def save(self, path) -> None:
        atomic_write_json(path, self.to_dict())


# ---------------------------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------------------------


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    v = float(v)
    if math.isnan(v):
        return "n/a"
    if v != 0 and (abs(v) >= 1e4 or abs(v) < 1e-3):
        return f"{v:.3g}"
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"


def _csv(v):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else v


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _check(reports, names) -> list[str]:
    if not reports:
        raise ConfigError("nothing to compare: no reports")
    names = list(names) if names is not None else [r.provenance.get("name") or f"model {i + 1}" for i, r in enumerate(reports)]
    if len(names) != len(reports):
        raise ConfigError(f"got {len(reports)} reports but {len(names)} names")
    if len(set(names)) != len(names):
        raise ConfigError(f"model names must be unique, got {names}")
    return names


def reading(reports: list[Report], names: list[str]) -> list[str]:
    """Plain-language sentences generated from the numbers: who wins where, and caveats."""
    out = []
    for axis in AXES:
        vals = [(n, r.scores.get(axis)) for n, r in zip(names, reports, strict=True) if r.scores.get(axis) is not None]
        if not vals:
            continue
        best = max(v for _, v in vals)
        winners = [n for n, v in vals if abs(v - best) < 1e-9]
        if len(reports) == 1:
            out.append(f"{names[0]} scores {best:.2f} on {axis}.")
        elif len(winners) == len(vals):
            out.append(f"All models tie on {axis} ({best:.2f}).")
        else:
            out.append(f"{_join(winners)} {'has' if len(winners) == 1 else 'have'} the highest {axis} ({best:.2f}).")
    close = [
        n
        for n, r in zip(names, reports, strict=True)
        if r.raw.get("tstr_acc") is not None and r.raw.get("trtr_acc") and r.raw["tstr_acc"] >= 0.9 * r.raw["trtr_acc"]
    ]
    have_util = [n for n, r in zip(names, reports, strict=True) if r.raw.get("tstr_acc") is not None]
    if have_util:
        if not close:
            out.append("No model's synthetic-only classifier comes within 10% of the accuracy of one trained on real data.")
        elif len(close) == 1 and len(have_util) > 1:
            out.append(f"{close[0]} is the only model whose synthetic-only classifier comes within 10% of real data.")
        else:
            out.append(f"{_join(close)}: the synthetic-only classifier comes within 10% of real data.")
    for n, r in zip(names, reports, strict=True):
        aug = [(k, r.raw.get(f"aug_{k}x_acc")) for k in (1, 2, 3) if r.raw.get(f"aug_{k}x_acc") is not None]
        trtr = r.raw.get("trtr_acc")
        if aug and trtr is not None:
            k, best = max(aug, key=lambda t: t[1])
            if best > trtr + 0.005:
                out.append(f"Adding {n}'s images ({k}x) raises test accuracy from {trtr:.3f} to {best:.3f}.")
        mem = r.raw.get("memorization_rate")
        if mem is not None and mem > 0.05:
            out.append(
                f"{n}: {mem:.0%} of its images are closer to a training image than 99% of real held-out images are: possible memorisation."
            )
    bpd = [(n, r.bits_per_dim) for n, r in zip(names, reports, strict=True) if r.bits_per_dim is not None]
    if bpd:
        told = ", ".join(f"{n} {v:.2f}" for n, v in bpd)
        none = [n for n, r in zip(names, reports, strict=True) if r.bits_per_dim is None]
        tail = f"; {_join(none)} {'has' if len(none) == 1 else 'have'} no exact likelihood (n/a)" if none else ""
        out.append(f"Bits/dim on held-out images (lower is better, 8 = learned nothing): {told}{tail}.")
    means = [
        (n, sum(v for v in r.scores.values() if v is not None) / max(1, sum(v is not None for v in r.scores.values())))
        for n, r in zip(names, reports, strict=True)
    ]
    if len(means) > 1:
        n, m = max(means, key=lambda t: t[1])
        out.append(f"Averaged over the six axes, {n} is the most balanced ({m:.2f}); weigh the axes by what your task needs.")
    return out


def _raw_keys(reports: list[Report]) -> list[str]:
    """The union of the reports' raw figures, headline figures (bits/dim) first."""
    keys: list[str] = []
    for r in reports:
        keys += [k for k in r.raw if k not in keys]
    return [k for k in HEADLINE_RAW if k in keys] + [k for k in keys if k not in HEADLINE_RAW]


def compare(reports: list[Report], names: list[str] | None = None) -> dict:
    """A JSON-ready comparison: scores and raw figures per model, the winner per axis and a reading."""
    names = _check(reports, names)
    raw_keys = _raw_keys(reports)
    winners = {}
    for axis in AXES:
        vals = [(n, r.scores.get(axis)) for n, r in zip(names, reports, strict=True) if r.scores.get(axis) is not None]
        if vals:
            best = max(v for _, v in vals)
            winners[axis] = [n for n, v in vals if abs(v - best) < 1e-9]
    return {
        "schema": SCHEMA_VERSION,
        "models": names,
        "axes": list(AXES),
        "axis_help": dict(AXIS_HELP),
        "scores": {n: {k: r.scores.get(k) for k in AXES} for n, r in zip(names, reports, strict=True)},
        "raw": {n: {k: r.raw.get(k) for k in raw_keys} for n, r in zip(names, reports, strict=True)},
        "units": {k: RAW_META.get(k, ("", "", ""))[0] for k in raw_keys},
        "better": {k: RAW_META.get(k, ("", "", ""))[1] for k in raw_keys},
        "descriptions": {k: RAW_META.get(k, ("", "", ""))[2] for k in raw_keys},
        "winners": winners,
        "reading": reading(reports, names),
        "warnings": {n: list(r.warnings) for n, r in zip(names, reports, strict=True)},
        "provenance": {n: dict(r.provenance) for n, r in zip(names, reports, strict=True)},
    }


def radar_figure(reports: list[Report], names: list[str] | None = None):
    """A plotly radar chart: one closed trace per model over the six axes, range [0, 1]."""
    import plotly.graph_objects as go

    names = _check(reports, names)
    fig = go.Figure()
    theta = list(AXES) + [AXES[0]]
    for n, r in zip(names, reports, strict=True):
        vals = [r.scores.get(a) or 0.0 for a in AXES]
        fig.add_trace(
            go.Scatterpolar(
                r=vals + [vals[0]],
                theta=theta,
                name=n,
                fill="toself",
                opacity=0.55,
                hovertemplate="%{theta}: %{r:.3f}<extra>" + n + "</extra>",
            )
        )
    fig.update_layout(
        polar={"radialaxis": {"range": [0, 1], "tickvals": [0.25, 0.5, 0.75, 1.0]}},
        showlegend=True,
        title="Extended generative trilemma (higher is better on every axis)",
        margin={"l": 60, "r": 60, "t": 60, "b": 40},
    )
    return fig


_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127)]


def radar_png(reports: list[Report], names: list[str] | None = None, *, size: int = 900) -> bytes:
    """The radar drawn with PIL (no kaleido / matplotlib needed): PNG bytes."""
    from PIL import Image, ImageDraw, ImageFont

    names = _check(reports, names)
    w, h = size, size
    img = Image.new("RGB", (w, h + 40 + 24 * len(names)), "white")
    d = ImageDraw.Draw(img, "RGBA")
    try:
        font = ImageFont.load_default(size=max(12, size // 50))
    except TypeError:  # very old Pillow
        font = ImageFont.load_default()
    cx, cy, rad = w / 2, h / 2 + 20, w * 0.33
    n_ax = len(AXES)

    def pt(i, v):
        a = -math.pi / 2 + 2 * math.pi * i / n_ax
        return cx + rad * v * math.cos(a), cy + rad * v * math.sin(a)

    d.text((20, 12), "Extended generative trilemma (higher is better on every axis)", fill="black", font=font)
    for ring in (0.25, 0.5, 0.75, 1.0):
        d.polygon([pt(i, ring) for i in range(n_ax)], outline=(200, 200, 200))
        d.text(pt(0, ring), f"{ring:.2f}", fill=(150, 150, 150), font=font)
    for i, axis in enumerate(AXES):
        d.line([pt(i, 0), pt(i, 1)], fill=(190, 190, 190))
        x, y = pt(i, 1.13)
        bbox = d.textbbox((0, 0), axis, font=font)
        d.text((x - (bbox[2] - bbox[0]) / 2, y - (bbox[3] - bbox[1]) / 2), axis, fill="black", font=font)
    for j, (n, r) in enumerate(zip(names, reports, strict=True)):
        col = _PALETTE[j % len(_PALETTE)]
        poly = [pt(i, float(r.scores.get(a) or 0.0)) for i, a in enumerate(AXES)]
        d.polygon(poly, fill=col + (60,), outline=col + (255,))
        d.line(poly + [poly[0]], fill=col + (255,), width=3)
        ly = h + 30 + 24 * j
        d.rectangle([20, ly, 40, ly + 16], fill=col)
        d.text((50, ly), n, fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _html(cmp: dict, fig) -> str:
    import html

    names = cmp["models"]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = []
    for axis in AXES:
        cells = "".join(
            f"<td{' class=best' if n in cmp['winners'].get(axis, []) and len(names) > 1 else ''}>{_fmt(cmp['scores'][n][axis])}</td>"
            for n in names
        )
        rows.append(f"<tr><td title='{html.escape(AXIS_HELP[axis])}'><b>{axis}</b> score</td><td>0-1</td><td>higher</td>{cells}</tr>")
    for k in cmp["units"]:
        better = cmp["better"][k]
        vals = [cmp["raw"][n].get(k) for n in names]
        nums = [v for v in vals if isinstance(v, (int, float)) and not math.isnan(v)]
        best = None
        if nums and better in ("higher", "lower") and len(names) > 1:
            best = max(nums) if better == "higher" else min(nums)
        cells = "".join(f"<td{' class=best' if best is not None and v == best else ''}>{_fmt(v)}</td>" for v in vals)
        arrow = {"higher": "&uarr; higher", "lower": "&darr; lower"}.get(better, "")
        rows.append(
            f"<tr><td title='{html.escape(cmp['descriptions'][k])}'>{k}</td><td>{html.escape(cmp['units'][k])}</td><td>{arrow}</td>{cells}</tr>"
        )
    reading_html = "".join(f"<li>{html.escape(s)}</li>" for s in cmp["reading"])
    warn = "".join(f"<li><b>{html.escape(n)}</b>: {html.escape(w)}</li>" for n in names for w in cmp["warnings"][n])
    prov = "".join(
        f"<li><b>{html.escape(n)}</b>: seed {p.get('seed')}, {p.get('n_samples')} samples, {html.escape(str(p.get('device')))}, "
        f"extractor {html.escape(str(p.get('extractor')))}, checkpoint {html.escape(str(p.get('checkpoint_sha256') or 'n/a')[:12])}</li>"
        for n, p in cmp["provenance"].items()
    )
    plot = fig.to_html(full_html=False, include_plotlyjs=True)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>GDA Studio model comparison</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}.best{{background:#d9f2d9;font-weight:bold}}</style>
</head><body>
<h1>Model comparison</h1>
{plot}
<h2>Reading</h2><ul>{reading_html}</ul>
<h2>Figures</h2><p>Hover a metric name for its meaning. Best value per row highlighted.</p>
<table><tr><th>metric</th><th>unit</th><th>better</th>{head}</tr>{"".join(rows)}</table>
{f"<h2>Warnings</h2><ul>{warn}</ul>" if warn else ""}
<h2>Provenance</h2><ul>{prov}</ul>
</body></html>
"""


def write_comparison(reports: list[Report], names: list[str] | None, out_path) -> Path:
    """Write a comparison as .html (radar + table + reading), .json, .csv or .png (PIL radar)."""
    out = Path(out_path)
    names = _check(reports, names)
    suffix = out.suffix.lower()
    cmp = compare(reports, names)
    if suffix == ".json":
        atomic_write_json(out, cmp)
    elif suffix == ".csv":
        buf = io.StringIO()
        wr = csv.writer(buf)
        wr.writerow(["metric", "unit", "better", *names])
        # "n/a" (as in the HTML table) where a model has no value, e.g. bits/dim of a GAN.
        for axis in AXES:
            wr.writerow([f"score.{axis}", "0-1", "higher", *[_csv(cmp["scores"][n][axis]) for n in names]])
        for k in cmp["units"]:
            wr.writerow([k, cmp["units"][k], cmp["better"][k], *[_csv(cmp["raw"][n].get(k)) for n in names]])
        atomic_write_text(out, buf.getvalue())
    elif suffix == ".png":
        atomic_write_bytes(out, radar_png(reports, names))
    elif suffix in (".html", ".htm"):
        atomic_write_text(out, _html(cmp, radar_figure(reports, names)))
    else:
        raise ConfigError(f"unsupported report type '{suffix or out.name}'; use .html, .json, .csv or .png")
    return out
