"""Utility study: does adding synthetic images help a classifier trained on few real ones?

For every checkpoint x scarcity level (real images per class) x ratio (synthetic images per real
image) x geometric augmentation (off / on) x seed, the fixed downstream classifier
(gda_core.metrics.train_classifier: same architecture, optimiser and budget rule for every cell)
is trained on the real subset plus the synthetic images and tested on the real test split;
accuracy and balanced accuracy are recorded and aggregated as mean +- standard deviation over the
seeds. With a selection spec every cell with synthetic images is also run with the filtered set
(the filters keep a fraction of the ratio x N candidates, so selected rows add fewer images).

Seeds: seed s draws the real subset (stratified, seed s), the classifier initialisation and
shuffling (seed s) and the synthetic images (sampling seeds ``(s + 1) * 1_000_000 + i``). Ratio 0
is the real-only baseline, shared by all checkpoints. Synthetic sets for smaller ratios are the
per-class prefixes of the largest one, so ratios differ only in how many images are added.

Honesty note (also written into every result): the checkpoints are used as they are. A
generator trained on more real images than a scarcity level (for instance on the full training
split, while the study keeps 10 per class) passes information from images the downstream
classifier never saw; an honest low-data study trains one generator per scarcity level on that
very subset. Each checkpoint's own training ``per_class`` is recorded so a reader can tell.
"""

from __future__ import annotations

import html
import io
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import Cancelled, ConfigError

QUICK_BUDGET_KW = {"epochs": 10, "min_steps": 60, "max_steps": 200, "batch_size": 64}
METRIC_LABEL = {"bacc": "balanced accuracy", "acc": "accuracy"}


def quick_budget():
    from ..metrics import ClassifierBudget

    return ClassifierBudget(**QUICK_BUDGET_KW)


def _level_label(level) -> str:
    return "all" if level == "all" else f"{level}/class"


def _parse_levels(levels) -> list:
    out = []
    for lv in levels:
        if isinstance(lv, str) and lv.strip().lower() in ("all", "full", "none"):
            out.append("all")
            continue
        try:
            v = int(lv)
        except (TypeError, ValueError):
            raise ConfigError(f"scarcity level must be a positive integer or 'all', got {lv!r}") from None
        if v < 1:
            raise ConfigError(f"scarcity level must be >= 1 image per class, got {v}")
        out.append(v)
    if not out:
        raise ConfigError("give at least one scarcity level (images per class, or 'all')")
    return list(dict.fromkeys(out))


def _parse_ratios(ratios) -> list[float]:
    out = []
    for r in ratios:
        try:
            v = float(r)
        except (TypeError, ValueError):
            raise ConfigError(f"ratio must be a number, got {r!r}") from None
        if not math.isfinite(v) or v < 0 or v > 50:
            raise ConfigError(f"ratio must be in 0..50, got {r}")
        out.append(v)
    if not out:
        raise ConfigError("give at least one ratio")
    out = sorted(set(out))
    return out


def _parse_seeds(seeds) -> list[int]:
    if isinstance(seeds, (int, np.integer)):
        if seeds < 1 or seeds > 100:
            raise ConfigError(f"number of seeds must be in 1..100, got {seeds}")
        return list(range(int(seeds)))
    out = [int(s) for s in seeds]
    if not out:
        raise ConfigError("give at least one seed")
    return list(dict.fromkeys(out))


def _sd(a: np.ndarray) -> float:
    return float(a.std(ddof=1)) if len(a) > 1 else 0.0


def _fmt_ratio(r: float) -> str:
    return f"{int(r)}x" if float(r).is_integer() else f"{r:g}x"


@dataclass
class StudyResult:
    """Per-seed rows, the study's configuration, the checkpoints' provenance and notes."""

    rows: list[dict]
    config: dict
    checkpoints: list[dict]
    notes: list[str] = field(default_factory=list)

    # -- serialisation --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": "gda-study/1", "config": self.config, "checkpoints": self.checkpoints, "notes": self.notes,
                "summary": self.summary(), "reading": self.reading(), "rows": self.rows}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict) -> StudyResult:
        if not isinstance(d, dict) or d.get("format") != "gda-study/1":
            raise ConfigError("not a GDA Studio study result (format gda-study/1)")
        return cls(rows=list(d["rows"]), config=dict(d["config"]), checkpoints=list(d["checkpoints"]), notes=list(d.get("notes", [])))

    # -- aggregation ----------------------------------------------------------------------------
    def summary(self) -> list[dict]:
        """Mean and std over seeds per (model, per_class, geometric_aug, selected, ratio).

        The ratio-0 baseline (no synthetic images) is listed under every model, and under the
        selected variant too, so each line of the chart starts from it.
        """
        groups: dict[tuple, list[dict]] = {}
        variants = [False, True] if any(r["selected"] for r in self.rows) else [False]
        for r in self.rows:
            sel_list = variants if r["ratio"] == 0 else [r["selected"]]
            for sel in sel_list:
                key = (r["model"], r["per_class"], r["geometric_aug"], sel, r["ratio"])
                groups.setdefault(key, []).append(r)
        order = {m["name"]: i for i, m in enumerate(self.checkpoints)}
        levels = self.config.get("per_class_levels", [])
        out = []
        for key, rs in groups.items():
            model, level, aug, sel, ratio = key
            acc = np.array([r["acc"] for r in rs], dtype=np.float64)
            bacc = np.array([r["bacc"] for r in rs], dtype=np.float64)
            out.append({
                "model": model, "per_class": level, "geometric_aug": aug, "selected": sel, "ratio": ratio,
                "n_real": int(round(np.mean([r["n_real"] for r in rs]))), "n_synthetic": int(round(np.mean([r["n_synthetic"] for r in rs]))),
                "acc_mean": float(acc.mean()), "acc_std": _sd(acc), "bacc_mean": float(bacc.mean()), "bacc_std": _sd(bacc), "seeds": len(rs),
            })  # fmt: skip
        out.sort(key=lambda s: (order.get(s["model"], 99), levels.index(s["per_class"]) if s["per_class"] in levels else 99,
                                s["geometric_aug"], s["selected"], s["ratio"]))  # fmt: skip
        return out

    def table(self) -> list[dict]:
        """Display rows: one per (model, scarcity level, aug, selection, ratio), numbers as text."""
        rows = []
        for s in self.summary():
            rows.append({
                "model": s["model"], "real / class": _level_label(s["per_class"]), "geometric aug": "on" if s["geometric_aug"] else "off",
                "selection": (self.config.get("select") or "") if s["selected"] else "none", "synthetic": _fmt_ratio(s["ratio"]),
                "real images": s["n_real"], "synthetic images": s["n_synthetic"],
                "accuracy": f"{s['acc_mean']:.3f} ± {s['acc_std']:.3f}", "balanced accuracy": f"{s['bacc_mean']:.3f} ± {s['bacc_std']:.3f}",
                "seeds": s["seeds"],
            })  # fmt: skip
        return rows

    def markdown(self) -> str:
        rows = self.table()
        if not rows:
            return "(no results)"
        cols = list(rows[0])
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
        return "\n".join(lines)

    # -- reading --------------------------------------------------------------------------------
    def reading(self, metric: str = "bacc") -> list[str]:
        """Plain-language findings, including plainly when synthetic data did not help."""
        what = METRIC_LABEL[metric]
        lines = list(self.notes)
        summ = self.summary()
        idx = {(s["model"], s["per_class"], s["geometric_aug"], s["selected"], s["ratio"]): s for s in summ}
        fam = {c["name"]: c.get("family", "").upper() for c in self.checkpoints}
        levels = self.config.get("per_class_levels", [])
        augs = self.config.get("geometric_aug", [False])
        ratios = [r for r in self.config.get("ratios", []) if r > 0]
        has_zero = 0 in self.config.get("ratios", [])
        if not has_zero:
            lines.append("No ratio 0 (real images only) was run, so there is no baseline to compare the synthetic images with.")
            return lines
        for c in self.checkpoints:
            m = c["name"]
            for level in levels:
                for aug in augs:
                    base = idx.get((m, level, aug, False, 0.0))
                    if base is None:
                        continue
                    b, bs = base[f"{metric}_mean"], base[f"{metric}_std"]
                    parts, better, worse = [], [], []
                    for r in ratios:
                        s = idx.get((m, level, aug, False, r))
                        if s is None:
                            continue
                        v, vs = s[f"{metric}_mean"], s[f"{metric}_std"]
                        d = v - b
                        noise = max(0.01, (bs + vs) / 2)
                        tag = "within the seed-to-seed spread" if abs(d) <= noise else ("higher" if d > 0 else "lower")
                        parts.append(f"+{_fmt_ratio(r)} {v:.3f} ({d:+.3f}, {tag})")
                        (better if tag == "higher" else worse if tag == "lower" else []).append((r, v, d))
                    if not parts:
                        continue
                    head = f"{m} ({fam[m]}) at {_level_label(level)}, geometric aug {'on' if aug else 'off'}: real only {b:.3f} ± {bs:.3f} {what}; " + "; ".join(parts) + "."
                    if better:
                        r, v, d = max(better, key=lambda t: t[2])
                        concl = f" Synthetic data helped: adding {_fmt_ratio(r)} {fam[m]} images raised {what} from {b:.2f} to {v:.2f}."
                        if worse:
                            r2, v2, _ = min(worse, key=lambda t: t[2])
                            concl += f" But {_fmt_ratio(r2)} lowered it to {v2:.2f}."
                    elif worse:
                        r, v, d = min(worse, key=lambda t: t[2])
                        concl = f" Synthetic data did not help: adding {_fmt_ratio(r)} {fam[m]} images lowered {what} from {b:.2f} to {v:.2f}."
                    else:
                        concl = " Synthetic data made no clear difference (every change is within the seed-to-seed spread)."
                    lines.append(head + concl)
                    if self.config.get("select"):
                        sel_parts = []
                        for r in ratios:
                            a, s2 = idx.get((m, level, aug, False, r)), idx.get((m, level, aug, True, r))
                            if a and s2:
                                sel_parts.append(f"{_fmt_ratio(r)}: {a[f'{metric}_mean']:.3f} -> {s2[f'{metric}_mean']:.3f} with {s2['n_synthetic']} of {a['n_synthetic']} images kept")
                        if sel_parts:
                            lines.append(f"  Selection ({self.config['select']}) for {m} at {_level_label(level)}, aug {'on' if aug else 'off'}: " + "; ".join(sel_parts) + ".")
        if len(augs) > 1 and self.checkpoints:
            m0 = self.checkpoints[0]["name"]
            for level in levels:
                a0, a1 = idx.get((m0, level, False, False, 0.0)), idx.get((m0, level, True, False, 0.0))
                if a0 and a1:
                    d = a1[f"{metric}_mean"] - a0[f"{metric}_mean"]
                    lines.append(f"Geometric augmentation alone (random 1-pixel shifts, no synthetic images) at {_level_label(level)}: {what} {a0[f'{metric}_mean']:.3f} -> {a1[f'{metric}_mean']:.3f} ({d:+.3f}).")
        return lines

    # -- charts ---------------------------------------------------------------------------------
    def _lines(self, metric: str):
        """(aug, label, model, level, selected, xs, ys, errs) per line."""
        out = []
        summ = self.summary()
        keys = list(dict.fromkeys((s["geometric_aug"], s["model"], s["per_class"], s["selected"]) for s in summ))
        for aug, m, level, sel in keys:
            pts = [s for s in summ if (s["geometric_aug"], s["model"], s["per_class"], s["selected"]) == (aug, m, level, sel)]
            pts.sort(key=lambda s: s["ratio"])
            label = f"{m} · {_level_label(level)}" + (" · selected" if sel else "")
            out.append((aug, label, m, level, sel, [p["ratio"] for p in pts], [p[f"{metric}_mean"] for p in pts], [p[f"{metric}_std"] for p in pts]))
        return out

    def figure(self, metric: str = "bacc"):
        """Plotly line chart: metric vs ratio, one line per model x scarcity level (error bars = std
        over seeds); one panel per geometric-augmentation setting."""
        import plotly.graph_objects as go
        from plotly.colors import qualitative
        from plotly.subplots import make_subplots

        augs = self.config.get("geometric_aug", [False])
        fig = make_subplots(rows=1, cols=len(augs), shared_yaxes=True,
                            subplot_titles=[f"geometric aug {'on' if a else 'off'}" for a in augs])  # fmt: skip
        palette = qualitative.Plotly
        colours: dict[tuple, str] = {}
        shown: set[str] = set()
        for aug, label, m, level, sel, xs, ys, errs in self._lines(metric):
            colour = colours.setdefault((m, level), palette[len(colours) % len(palette)])
            fig.add_trace(
                go.Scatter(x=xs, y=ys, error_y={"type": "data", "array": errs, "visible": True}, mode="lines+markers", name=label,
                           legendgroup=label, showlegend=label not in shown, line={"color": colour, "dash": "dash" if sel else "solid"}),
                row=1, col=augs.index(aug) + 1,
            )  # fmt: skip
            shown.add(label)
        for i in range(len(augs)):
            fig.update_xaxes(title_text="synthetic images per real image (ratio)", row=1, col=i + 1, tickvals=self.config.get("ratios"))
        fig.update_yaxes(title_text=f"{METRIC_LABEL[metric]} on the real test split", row=1, col=1)
        fig.update_layout(height=420, title=f"Utility of synthetic images ({METRIC_LABEL[metric]}, mean ± std over {len(self.config.get('seeds', []))} seeds)",
                          legend={"orientation": "h", "y": -0.25}, margin={"l": 50, "r": 20, "t": 70, "b": 40})  # fmt: skip
        return fig

    def png(self, metric: str = "bacc", *, width: int = 1400, height: int = 640) -> bytes:
        """The chart drawn with PIL (no browser or kaleido needed): same content as ``figure``."""
        return chart_png(self, metric, width=width, height=height)

    def html(self, metric: str = "bacc") -> str:
        fig = self.figure(metric).to_html(full_html=False, include_plotlyjs=True)
        rows = self.table()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in (rows[0] if rows else []))
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>" for r in rows)
        read = "".join(f"<li>{html.escape(s)}</li>" for s in self.reading(metric))
        ck = "".join(
            f"<li><b>{html.escape(c['name'])}</b> ({html.escape(c.get('family', ''))}): trained on {html.escape(str(c.get('trained_on')))}, "
            f"per_class {html.escape(str(c.get('trained_per_class')))}, weights sha256 {html.escape(str(c.get('weights_sha256', ''))[:16])}</li>"
            for c in self.checkpoints
        )
        return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>GDA Studio utility study</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 6px}}</style></head><body>
<h1>Utility study: {html.escape(str(self.config.get('dataset')))}</h1>
{fig}
<h2>Reading</h2><ul>{read}</ul>
<h2>Table</h2><table><tr>{head}</tr>{body}</table>
<h2>Checkpoints</h2><ul>{ck}</ul>
</body></html>
"""


# ---------------------------------------------------------------------------------------------
# PIL chart
# ---------------------------------------------------------------------------------------------

_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127)]


def chart_png(result: StudyResult, metric: str = "bacc", *, width: int = 1400, height: int = 640) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    def font(size):
        try:
            return ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1
            return ImageFont.load_default()

    f_small, f_mid, f_big = font(14), font(16), font(20)
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    augs = result.config.get("geometric_aug", [False])
    ratios = result.config.get("ratios", [0.0])
    lines = result._lines(metric)
    vals = [y + e for *_, ys, es in lines for y, e in zip(ys, es, strict=True)] + [y - e for *_, ys, es in lines for y, e in zip(ys, es, strict=True)]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    pad = max(0.02, (hi - lo) * 0.08)
    lo, hi = max(0.0, lo - pad), min(1.0, hi + pad)
    if hi <= lo:
        hi = lo + 0.05
    n_seeds = len(result.config.get("seeds", []))
    d.text((20, 12), f"Utility of synthetic images: {METRIC_LABEL[metric]} on the real test split (mean ± std over {n_seeds} seeds) - {result.config.get('dataset')}", fill="black", font=f_big)
    legend_w = 330
    left, top, bottom = 100, 60, height - 70
    panel_w = (width - left - legend_w - 40 * (len(augs) - 1)) // max(1, len(augs))
    xmin, xmax = min(ratios), max(ratios)
    xspan = (xmax - xmin) or 1.0
    colours: dict[tuple, tuple] = {}
    for pi, aug in enumerate(augs):
        x0 = left + pi * (panel_w + 40)
        x1 = x0 + panel_w

        def px(x, x0=x0):
            return x0 + 15 + (x - xmin) / xspan * (panel_w - 30)

        def py(y):
            return bottom - (y - lo) / (hi - lo) * (bottom - top)

        d.rectangle([x0, top, x1, bottom], outline=(120, 120, 120))
        d.text((x0 + 5, top - 22), f"geometric augmentation {'on' if aug else 'off'}", fill="black", font=f_mid)
        ticks = np.linspace(lo, hi, 6)
        for t in ticks:
            y = py(t)
            d.line([x0, y, x1, y], fill=(230, 230, 230))
            if pi == 0:
                d.text((x0 - 42, y - 8), f"{t:.2f}", fill="black", font=f_small)
        for r in ratios:
            x = px(r)
            d.line([x, bottom, x, bottom + 5], fill="black")
            d.text((x - 10, bottom + 8), _fmt_ratio(r), fill="black", font=f_small)
        d.text((x0 + panel_w // 2 - 150, bottom + 30), "synthetic images per real image (ratio)", fill="black", font=f_mid)
        for a, _label, m, level, sel, xs, ys, es in lines:
            if a != aug:
                continue
            col = colours.setdefault((m, level), _COLOURS[len(colours) % len(_COLOURS)])
            pts = [(px(x), py(y)) for x, y in zip(xs, ys, strict=True)]
            if len(pts) > 1:
                if sel:
                    for (ax, ay), (bx, by) in zip(pts, pts[1:], strict=False):
                        for t0 in np.arange(0, 1, 0.1):
                            d.line([ax + (bx - ax) * t0, ay + (by - ay) * t0, ax + (bx - ax) * (t0 + 0.05), ay + (by - ay) * (t0 + 0.05)], fill=col, width=3)
                else:
                    d.line(pts, fill=col, width=3)
            for (x, y), yv, e in zip(pts, ys, es, strict=True):
                d.line([x, py(yv - e), x, py(yv + e)], fill=col, width=2)
                d.line([x - 5, py(yv - e), x + 5, py(yv - e)], fill=col, width=2)
                d.line([x - 5, py(yv + e), x + 5, py(yv + e)], fill=col, width=2)
                d.ellipse([x - 4, y - 4, x + 4, y + 4], fill=col)
    # y label (rotated)
    lab = Image.new("RGB", (320, 24), "white")
    ImageDraw.Draw(lab).text((0, 2), METRIC_LABEL[metric], fill="black", font=f_mid)
    lab = lab.rotate(90, expand=True)
    img.paste(lab, (8, top + (bottom - top) // 2 - 160))
    # legend
    lx, ly = width - legend_w + 10, top
    d.text((lx, ly), "model · real images per class", fill="black", font=f_mid)
    ly += 26
    seen = set()
    for _a, label, m, level, sel, *_ in lines:
        if label in seen:
            continue
        seen.add(label)
        col = colours.get((m, level), (0, 0, 0))
        d.line([lx, ly + 8, lx + 30, ly + 8], fill=col, width=3 if not sel else 1)
        d.text((lx + 38, ly), label, fill="black", font=f_small)
        ly += 20
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Running a study
# ---------------------------------------------------------------------------------------------


def _model_name(run, used: list[str]) -> str:
    name = run.name
    while name in used:
        name = f"{name}'"
    return name


def run_study(
    checkpoints: Sequence,
    dataset,
    *,
    per_class_levels: Sequence = (10, 50, "all"),
    ratios: Sequence = (0, 1, 2, 3),
    seeds: int | Sequence[int] = 3,
    geometric_aug: Sequence[bool] = (False, True),
    select=None,
    mode: str = "balanced",
    budget=None,
    selection_budget=None,
    temperature: float = 1.0,
    guidance: float | None = None,
    steps: int | None = None,
    device: str = "cpu",
    progress: Callable[[float, str], None] | None = None,
    cancel: threading.Event | None = None,
) -> StudyResult:
    """Run the utility study (module docstring) and return a :class:`StudyResult`.

    ``checkpoints``: run folders or loaded Runs (same image size, channels and classes as
    ``dataset``). ``per_class_levels``: real images per class (ints or "all"). ``ratios``:
    synthetic images per real image (0 = real only). ``seeds``: a count or a list.
    ``select``: None, a spec string ("confidence:0.5,privacy:0.9") or a list of filters.
    ``budget``: the downstream classifier's ClassifierBudget (default: DEFAULT_BUDGET);
    ``selection_budget`` for the selection filters' real-data classifier (default: ``budget``).
    ``progress(fraction, message)``; ``cancel`` raises Cancelled between steps.
    """
    from ..checkpoints import Run, load_run
    from ..data.base import stratified_subset
    from ..metrics import DEFAULT_BUDGET, accuracy, train_classifier
    from ..runtime import resolve_device
    from .generate import checkpoint_info, generate_synthetic, target_counts
    from .select import SelectionContext, parse_filters
    from .select import select as run_select

    levels = _parse_levels(per_class_levels)
    ratio_list = _parse_ratios(ratios)
    seed_list = _parse_seeds(seeds)
    augs = [bool(a) for a in dict.fromkeys(geometric_aug)]
    if not augs:
        raise ConfigError("geometric_aug must list at least one of False / True")
    if not checkpoints:
        raise ConfigError("give at least one checkpoint")
    budget = budget or DEFAULT_BUDGET
    dev = resolve_device(device)
    filters = parse_filters(select) if isinstance(select, str) else (list(select) if select else [])
    select_spec = ",".join(f.spec() for f in filters) if filters else None

    runs = []
    names: list[str] = []
    for c in checkpoints:
        run = c if isinstance(c, Run) else load_run(c, device=dev)
        mc = run.model.config
        if (mc.image_size, mc.channels, mc.num_classes) != (dataset.image_size, dataset.channels, dataset.num_classes):
            raise ConfigError(
                f"{run.name} makes {mc.image_size}x{mc.image_size}x{mc.channels} images of {mc.num_classes} classes but the dataset has "
                f"{dataset.image_size}x{dataset.image_size}x{dataset.channels} images of {dataset.num_classes} classes; load the dataset with the checkpoint's image size and channels"
            )
        runs.append(run)
        names.append(_model_name(run, names))
    ck_info = [{**checkpoint_info(r), "name": n} for r, n in zip(runs, names, strict=True)]
    test_x, test_y = dataset.split("test")
    if len(test_y) == 0:
        raise ConfigError(f"dataset '{dataset.name}' has no test split to measure on")
    train_x, train_y = dataset.split("train")
    k = dataset.num_classes
    pos_ratios = [r for r in ratio_list if r > 0]

    notes = [
        "The generative checkpoints were used as they are, not retrained per scarcity level. "
        + " ".join(
            f"{c['name']} was trained on {c['trained_on']} with "
            + (f"{c['trained_per_class']} images per class." if c["trained_per_class"] else "all its training images (no per-class limit).")
            for c in ck_info
        )
        + " Where a generator saw more real images than a scarcity level keeps, its synthetic images carry information from real images the"
        " classifier was not given, which flatters synthetic data at that level; an honest low-data study trains one generator per level on that very subset."
    ]
    for c in ck_info:
        if str(c["trained_on"]) not in (str(dataset.spec.source), dataset.name):
            notes.append(f"{c['name']} was trained on '{c['trained_on']}', the study measures on '{dataset.name}'.")

    n_train_per = len(augs) * (1 + len(runs) * len(pos_ratios) * (2 if filters else 1))
    total_units = len(levels) * len(seed_list) * (n_train_per + len(runs) + (1 if filters else 0))
    done_units = [0]

    def tick(msg: str, units: int = 1) -> None:
        done_units[0] += units
        if progress is not None:
            progress(min(1.0, done_units[0] / max(1, total_units)), msg)
        if cancel is not None and cancel.is_set():
            raise Cancelled("study cancelled")

    def fit_eval(x, y, seed, aug) -> tuple[float, float]:
        clf = train_classifier(x, y, k, seed=seed, budget=budget, device=dev, cancel=cancel, augment=aug)
        return accuracy(clf, test_x, test_y)

    rows: list[dict] = []
    for level in levels:
        for seed in seed_list:
            if cancel is not None and cancel.is_set():
                raise Cancelled("study cancelled")
            idx = np.arange(len(train_y)) if level == "all" else stratified_subset(train_y, int(level), seed)
            rx, ry = train_x[idx], train_y[idx]
            base = {"per_class": level, "n_real": int(len(ry)), "seed": seed}
            # Real-only baseline, shared by every model.
            if 0.0 in ratio_list:
                for aug in augs:
                    acc, bacc = fit_eval(rx, ry, seed, aug)
                    for n in names:
                        rows.append({**base, "model": n, "ratio": 0.0, "n_synthetic": 0, "geometric_aug": aug, "selected": False, "acc": acc, "bacc": bacc})
                    tick(f"{_level_label(level)}, seed {seed}: real only, aug {'on' if aug else 'off'}")
            else:
                tick("", len(augs))
            ctx = None
            if filters:
                ctx = SelectionContext(rx, ry, k, seed=seed, device=dev, budget=selection_budget or budget, cancel=cancel)
                ctx.get_classifier()
                tick(f"{_level_label(level)}, seed {seed}: selection classifier")
            for run, name in zip(runs, names, strict=True):
                if not pos_ratios:
                    tick("", 1)
                    continue
                big_counts = target_counts(ry, k, max(pos_ratios), mode)
                synth_all = generate_synthetic(run, max(pos_ratios), real_labels=ry, mode=mode, seed=(seed + 1) * 1_000_000,
                                               temperature=temperature, guidance=guidance, steps=steps, counts=big_counts, cancel=cancel)  # fmt: skip
                tick(f"{_level_label(level)}, seed {seed}: sampled {len(synth_all)} images from {name}")
                for r in pos_ratios:
                    synth = synth_all.per_class_prefix(target_counts(ry, k, r, mode))
                    variants = [(False, synth)]
                    if filters:
                        kept, _ = run_select(synth, filters, ctx)
                        variants.append((True, kept))
                    for sel, s in variants:
                        x = np.concatenate([rx, s.images]) if len(s) else rx
                        y = np.concatenate([ry, s.labels]) if len(s) else ry
                        for aug in augs:
                            acc, bacc = fit_eval(x, y, seed, aug)
                            rows.append({**base, "model": name, "ratio": r, "n_synthetic": int(len(s)), "geometric_aug": aug, "selected": sel, "acc": acc, "bacc": bacc})
                            tick(f"{_level_label(level)}, seed {seed}: {name} +{_fmt_ratio(r)}{' selected' if sel else ''}, aug {'on' if aug else 'off'}")
    config = {
        "dataset": dataset.name, "dataset_spec": dataset.spec.to_dict(), "test_images": int(len(test_y)),
        "per_class_levels": levels, "ratios": ratio_list, "seeds": seed_list, "geometric_aug": augs, "mode": mode,
        "select": select_spec, "budget": budget.to_dict(), "selection_budget": (selection_budget or budget).to_dict() if filters else None,
        "sampling": {"temperature": temperature, "guidance": guidance, "steps": steps}, "device": str(dev),
        "classifier": "gda_core.metrics.train_classifier (fixed SmallCNN); geometric aug = its random 1-pixel shifts",
    }  # fmt: skip
    return StudyResult(rows=rows, config=config, checkpoints=ck_info, notes=notes)
