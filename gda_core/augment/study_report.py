"""What a utility study reports: per-cell results, the summary with intervals and gains over the
real-only baseline, the paper's claims, a plain reading, and the table / chart / HTML exports."""

from __future__ import annotations

import html
import io
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..metrics.claims import PAPER_GROUPS, check_claims, claim_sentence
from ..metrics.intervals import INCONCLUSIVE, SUPPORTED, Estimate, difference, over_replicates

FORMAT = "gda-study/2"
METRIC_LABEL = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy"}
SCOPE_NOTE = {
    "per-level": "",
    "shared": "one generator for all levels",
    "checkpoint": "checkpoint used as is",
}


def level_label(level) -> str:
    return "all" if level == "all" else f"{level}/class"


def fmt_ratio(r: float) -> str:
    return f"{int(r)}x" if float(r).is_integer() else f"{r:g}x"


def _ci(est: Estimate | None) -> list[float] | None:
    return None if est is None else [float(est.lo), float(est.hi)]


def _group(cells: list[dict], key) -> dict:
    out: dict = {}
    for c in cells:
        out.setdefault(key(c), []).append(c)
    return out


def _estimate(cells: list[dict], metric: str) -> Estimate | None:
    """An accuracy's interval: over seeds when they differ; where there is one seed, or every
    seed gave the same figure, the widest of the cells' own bootstraps over test images."""
    vals = [c[metric] for c in sorted(cells, key=lambda c: c["seed"])]
    est = over_replicates(vals, what="seeds")
    if est is not None and est.se > 0:
        return Estimate(est.mean, max(0.0, est.lo), min(1.0, est.hi), est.se, est.df, est.n, est.method, est.values)
    boots = [c[f"{metric}_ci95"] for c in cells if c.get(f"{metric}_ci95")]
    if not boots:
        return est
    lo, hi = min(b[0] for b in boots), max(b[1] for b in boots)
    what = "bootstrap over test images (one seed)" if len(cells) == 1 else f"bootstrap over test images ({len(cells)} seeds agree)"
    return Estimate(float(np.mean(vals)), lo, hi, (hi - lo) / 3.92, math.inf, len(cells), what, tuple(vals))


def summarise(cells: list[dict]) -> list[dict]:
    """Mean and 95 % interval per (model, level, geometric aug, selection, ratio), and for ratio > 0
    the gain over the real-only baseline: paired by seed (same real subset and classifier seed)."""
    out = []
    groups = _group(cells, lambda c: (c["model"], c["per_class"], c["geometric_aug"], c["selected"], c["ratio"]))
    for (model, level, aug, sel, ratio), cs in groups.items():
        acc, bacc = _estimate(cs, "accuracy"), _estimate(cs, "balanced_accuracy")
        row = {"model": model, "model_label": cs[0].get("model_label", model), "scope": cs[0].get("scope"), "per_class": level,
               "geometric_aug": aug, "selected": sel, "ratio": ratio, "seeds": len(cs), "n_real": cs[0]["n_real"],
               "n_synthetic": int(round(np.mean([c["n_synthetic"] for c in cs]))), "mean": float(np.mean([c["accuracy"] for c in cs])),
               "ci95": _ci(acc), "balanced_accuracy_mean": float(np.mean([c["balanced_accuracy"] for c in cs])),
               "balanced_accuracy_ci95": _ci(bacc), "interval": acc.method if acc else "none"}  # fmt: skip
        base = groups.get((model, level, aug, False, 0.0))
        if ratio > 0 and base:
            row.update(_gain(cs, base))
        out.append(row)
    return out


def _gain(cells: list[dict], base: list[dict]) -> dict:
    by_seed = {c["seed"]: c["accuracy"] for c in base}
    diffs = [c["accuracy"] - by_seed[c["seed"]] for c in sorted(cells, key=lambda c: c["seed"]) if c["seed"] in by_seed]
    est = over_replicates(diffs, what="seeds (paired)")
    if est is None:
        return {"gain": float(np.mean(diffs)) if diffs else None, "gain_ci95": None, "verdict": "one seed: no interval for the gain"}
    v = "helps" if est.lo > 0 else "hurts" if est.hi < 0 else "within noise"
    return {"gain": est.mean, "gain_ci95": [est.lo, est.hi], "verdict": v}


# ---------------------------------------------------------------------------------------------
# Claims
# ---------------------------------------------------------------------------------------------

CLAIM_AXES = {"fidelity": "precision", "privacy": "privacy", "utility": "utility"}


def _axis_estimates(gens: list[dict], axis: str) -> Estimate | None:
    key = CLAIM_AXES[axis]
    vals = [g["scores"].get(key) for g in sorted(gens, key=lambda g: g["seed"]) if g.get("scores")]
    return over_replicates([v for v in vals if v is not None], what="seeds")


def study_claims(generators: list[dict], models: dict[str, str], levels: list) -> list[dict]:
    """The paper's claims at each scarcity level, from the generators' scores over seeds (paired:
    the generators of one level and seed saw the same real subset). Speed: over timed batches."""
    out = []
    speed = {m: _speed_estimate(g) for m, g in _group(generators, lambda g: g["model"]).items()}
    for level in levels:
        at = _group([g for g in generators if g["per_class"] == level], lambda g: g["model"])
        if not at:
            continue
        est = {m: {a: _axis_estimates(gs, a) for a in CLAIM_AXES} | {"speed": speed.get(m)} for m, gs in at.items()}
        claims = check_claims(est, {m: models[m] for m in at}, paired=True, where=f"at {level_label(level)}")
        out += [c for c in claims if c["axis"] != "speed"]
    est = {m: {"speed": s} for m, s in speed.items()}
    out += [c for c in check_claims(est, {m: models[m] for m in speed}) if c["axis"] == "speed"]
    return out


def _speed_estimate(gens: list[dict]) -> Estimate | None:
    rates = next((g["speed"]["rates"] for g in gens if g.get("speed")), None)
    est = over_replicates(rates or [], what="timed batches")
    if est is None:
        return None
    from ..metrics.speed import speed_score

    return est.map(speed_score)


# ---------------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------------


@dataclass
class StudyResult:
    """Cells (one classifier each), the generators behind them, the summary, claims and notes."""

    cells: list[dict]
    generators: list[dict]
    config: dict
    notes: list[str] = field(default_factory=list)
    summary: list[dict] = field(default_factory=list)
    claims: list[dict] = field(default_factory=list)

    @classmethod
    def build(cls, cells, generators, config, notes) -> StudyResult:
        models = {g["model"]: g["family"] for g in generators}
        claims = study_claims(generators, models, config["per_class_levels"]) if config.get("scope") == "per-level" else []
        return cls(cells, generators, config, notes, summarise(cells), claims)

    def to_dict(self) -> dict:
        cells = [{k: v for k, v in c.items() if k != "correct"} for c in self.cells]
        return {"format": FORMAT, "config": self.config, "notes": self.notes, "summary": self.summary, "claims": self.claims,
                "reading": self.reading(), "generators": self.generators, "cells": cells}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict) -> StudyResult:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ConfigError(f"not a GDA Studio study result (format {FORMAT})")
        try:
            return cls(list(d["cells"]), list(d["generators"]), dict(d["config"]), list(d.get("notes", [])), list(d["summary"]),
                       list(d.get("claims", [])))  # fmt: skip
        except (KeyError, TypeError):
            raise ConfigError("study result is missing cells, generators, config or summary") from None

    # -- reading ---------------------------------------------------------------------------------
    def reading(self) -> list[str]:
        """Plain findings: where synthetic data helped, where it did not, where the budget cannot tell."""
        lines = list(self.notes)
        rows = _group([s for s in self.summary if not s["selected"]], lambda s: (s["model_label"], s["per_class"], s["geometric_aug"]))
        for (label, level, aug), ss in rows.items():
            base = next((s for s in ss if s["ratio"] == 0), None)
            pos = sorted((s for s in ss if s["ratio"] > 0), key=lambda s: s["ratio"])
            if base is None or not pos:
                continue
            parts = [f"+{fmt_ratio(s['ratio'])} {s['mean']:.3f} ({_gain_words(s)})" for s in pos]
            aug_txt = ", geometric aug on" if aug else ""
            lines.append(f"{label} at {level_label(level)}{aug_txt}: real only {_mean_ci(base)}; " + "; ".join(parts) + ". " + _conclusion(pos))
        lines += [claim_sentence(c) for c in self.claims]
        return lines

    def table(self) -> list[dict]:
        """Display rows (numbers as text with their intervals)."""
        rows = []
        for s in self.summary:
            rows.append({
                "model": s["model_label"], "real / class": level_label(s["per_class"]), "synthetic": fmt_ratio(s["ratio"]),
                "geometric aug": "on" if s["geometric_aug"] else "off", "selection": (self.config.get("select") or "") if s["selected"] else "none",
                "real images": s["n_real"], "synthetic images": s["n_synthetic"], "accuracy [95% CI]": _mean_ci(s),
                "gain over real only": _gain_words(s) if s["ratio"] > 0 else "", "seeds": s["seeds"],
            })  # fmt: skip
        return rows

    def markdown(self) -> str:
        rows = self.table()
        if not rows:
            return "(no results)"
        cols = list(rows[0])
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        return "\n".join(lines + ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows])

    # -- charts ----------------------------------------------------------------------------------
    def _series(self):
        """(level, label, dash, xs, ys, lo, hi) per line: accuracy against ratio."""
        keys = list(dict.fromkeys((s["per_class"], s["model_label"], s["selected"], s["geometric_aug"]) for s in self.summary))
        for level, label, sel, aug in keys:
            pts = sorted((s for s in self.summary if (s["per_class"], s["model_label"], s["selected"], s["geometric_aug"]) == (level, label, sel, aug)),
                         key=lambda s: s["ratio"])  # fmt: skip
            name = label + (" · selected" if sel else "") + (" · geometric aug" if aug else "")
            dash = "dash" if sel else "dot" if aug else "solid"
            lo = [p["mean"] - p["ci95"][0] if p["ci95"] else 0.0 for p in pts]
            hi = [p["ci95"][1] - p["mean"] if p["ci95"] else 0.0 for p in pts]
            yield level, name, label, dash, [p["ratio"] for p in pts], [p["mean"] for p in pts], lo, hi

    def figure(self):
        """Plotly: accuracy on the real test split against the synthetic ratio, one panel per
        scarcity level, one line per model; error bars are 95 % intervals."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        from ..metrics.comparison import PALETTE

        levels = self.config.get("per_class_levels", [])
        fig = make_subplots(rows=1, cols=max(1, len(levels)), shared_yaxes=True, subplot_titles=[f"{level_label(lv)} real images" for lv in levels])
        colours: dict[str, str] = {}
        shown: set[str] = set()
        for level, name, label, dash, xs, ys, lo, hi in self._series():
            col = colours.setdefault(label, PALETTE[len(colours) % len(PALETTE)])
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name, legendgroup=name, showlegend=name not in shown,
                                     error_y={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo},
                                     line={"color": col, "dash": dash}), row=1, col=levels.index(level) + 1)  # fmt: skip
            shown.add(name)
        for i in range(len(levels)):
            fig.update_xaxes(title_text="synthetic images per real image", tickvals=self.config.get("ratios"), row=1, col=i + 1)
        fig.update_yaxes(title_text="accuracy on the real test split", row=1, col=1)
        n = len(self.config.get("seeds", []))
        fig.update_layout(height=440, title=f"Does synthetic data help? {self.config.get('dataset')} (mean and 95% interval over {n} seed{'s' * (n != 1)})",
                          legend={"orientation": "h", "y": -0.25}, margin={"l": 50, "r": 20, "t": 70, "b": 40})  # fmt: skip
        return fig

    def png(self, *, width: int = 1400, height: int = 520) -> bytes:
        """The same chart drawn by matplotlib (no browser needed)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from ..metrics.comparison import PALETTE

        levels = self.config.get("per_class_levels", []) or [None]
        fig, axes = plt.subplots(1, len(levels), figsize=(width / 100, height / 100), dpi=100, sharey=True, squeeze=False)
        colours: dict[str, str] = {}
        for level, name, label, dash, xs, ys, lo, hi in self._series():
            ax = axes[0][levels.index(level)]
            col = colours.setdefault(label, PALETTE[len(colours) % len(PALETTE)])
            ax.errorbar(xs, ys, yerr=[lo, hi], color=col, linestyle={"solid": "-", "dash": "--", "dot": ":"}[dash], marker="o", capsize=4, label=name)
        for ax, level in zip(axes[0], levels, strict=True):
            ax.set_title(f"{level_label(level)} real images" if level is not None else "")
            ax.set_xticks(self.config.get("ratios", []))
            ax.set_xlabel("synthetic images per real image")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("accuracy on the real test split")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(6, max(1, len(labels))), frameon=False)
        fig.suptitle(f"Does synthetic data help? {self.config.get('dataset')} (mean and 95% interval over seeds)")
        fig.tight_layout(rect=(0, 0.1, 1, 0.95))
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        return buf.getvalue()

    def pdf(self) -> bytes:
        """The study as a PDF (chart, table with intervals, reading and claims, provenance); drawn by
        ``gda_core.reports_pdf``."""
        from ..reports_pdf import study_pdf

        return study_pdf(self)

    def html(self) -> str:
        e = html.escape
        rows = self.table()
        head = "".join(f"<th>{e(c)}</th>" for c in (rows[0] if rows else []))
        body = "".join("<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in r.values()) + "</tr>" for r in rows)
        read = "".join(f"<li>{e(s)}</li>" for s in self.reading())
        gens = "".join(
            f"<li><b>{e(str(g['model_label']))}</b> {e(level_label(g['per_class']))}, seed {e(str(g['seed']))}: {e(str(g['checkpoint']))}, "
            f"{e(str(g['n_train']))} training images (indices sha256 {e(str(g['train_indices_sha256'])[:16])}), {e(str(g.get('steps')))} steps</li>"
            for g in self.generators
        )  # fmt: skip
        c = self.config
        what = (f"{e(str(c.get('dataset')))}: levels {e(', '.join(level_label(x) for x in c.get('per_class_levels', [])))}; ratios "
                f"{e(', '.join(fmt_ratio(r) for r in c.get('ratios', [])))}; seeds {e(str(c.get('seeds')))}; generators {e(str(c.get('scope')))}, "
                f"budget {e(str(c.get('generator_budget')))}")  # fmt: skip
        return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>GDA Studio utility study</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 6px}}</style></head><body>
<h1>Utility study: {e(str(c.get("dataset")))}</h1><p>{what}</p>
{self.figure().to_html(full_html=False, include_plotlyjs=True)}
<h2>Reading</h2><ul>{read}</ul>
<h2>Table</h2><table><tr>{head}</tr>{body}</table>
<h2>Generators</h2><ul>{gens}</ul>
</body></html>
"""


def _mean_ci(s: dict) -> str:
    ci = s.get("ci95")
    return f"{s['mean']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _gain_words(s: dict) -> str:
    g, ci = s.get("gain"), s.get("gain_ci95")
    if g is None:
        return "no baseline"
    if ci is None:
        return f"{g:+.3f}, one seed: no interval"
    return f"{g:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}], {s['verdict']}"


def _conclusion(pos: list[dict]) -> str:
    helps = [s for s in pos if s.get("verdict") == "helps"]
    hurts = [s for s in pos if s.get("verdict") == "hurts"]
    if helps:
        best = max(helps, key=lambda s: s["gain"])
        out = f"Synthetic data helped: +{fmt_ratio(best['ratio'])} raised accuracy by {best['gain']:+.3f}."
        return out + (f" But +{fmt_ratio(hurts[0]['ratio'])} lowered it." if hurts else "")
    if hurts:
        worst = min(hurts, key=lambda s: s["gain"])
        return f"Synthetic data did not help: +{fmt_ratio(worst['ratio'])} lowered accuracy by {worst['gain']:+.3f}."
    if all(s.get("gain_ci95") is None for s in pos):
        return "One seed: run more seeds to tell a gain from noise."
    return "No clear difference: every change is within noise at this budget."


__all__ = ["FORMAT", "PAPER_GROUPS", "SCOPE_NOTE", "SUPPORTED", "StudyResult", "fmt_ratio", "level_label", "summarise", "INCONCLUSIVE",
           "difference"]  # fmt: skip
