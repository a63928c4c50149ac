"""What a utility study reports: per-cell results, the summary with intervals and gains over the
real-only baseline, the paper's claims, a plain reading, and the table / chart / HTML exports."""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..metrics.claims import PAPER_GROUPS, check_claims, claim_sentence
from ..metrics.intervals import INCONCLUSIVE, SUPPORTED, Estimate, difference, hierarchical, over_replicates, t_quantile
from ..metrics.verdicts import A_BETTER, B_BETTER, CANNOT_TELL, EQUIVALENT, MARGINS, Verdict, decide, of_difference

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


def pack_correct(correct) -> dict:
    """Per-test-image 0/1 correctness as packed bits in base64 (``{"n": ..., "bits": ...}``): 10,000 test images take 1.7 kB."""
    c = np.asarray(correct).astype(bool).reshape(-1)
    return {"n": int(len(c)), "bits": base64.b64encode(np.packbits(c).tobytes()).decode("ascii")}


def unpack_correct(packed) -> np.ndarray | None:
    """The float 0/1 vector of ``pack_correct`` (None for a cell made before cells kept it)."""
    if not isinstance(packed, dict) or "bits" not in packed:
        return None
    try:
        bits = np.unpackbits(np.frombuffer(base64.b64decode(packed["bits"]), dtype=np.uint8))[: int(packed["n"])]
    except (ValueError, TypeError, KeyError):
        raise ConfigError("a study cell's 'correct' record is not packed bits") from None
    return bits.astype(np.float64)


def _correct_matrix(cells: list[dict]) -> np.ndarray | None:
    """(seeds, test images) correctness of cells sorted by seed; None where any cell lacks it."""
    rows = [unpack_correct(c.get("correct")) for c in sorted(cells, key=lambda c: c["seed"])]
    if not rows or any(r is None for r in rows) or len({len(r) for r in rows}) != 1:
        return None
    return np.stack(rows)


def _estimate(cells: list[dict], metric: str) -> Estimate | None:
    """An accuracy's interval: seeds (subset, generator, classifier) outside, a bootstrap over the test
    images inside (``hierarchical``). Cells made before they kept their correctness: over seeds when
    they differ, else the widest of the cells' own bootstraps over test images."""
    m = _correct_matrix(cells) if metric == "accuracy" else None
    if m is not None and len(m[0]):
        est = hierarchical([m], seed=0)
        return est.within()
    vals = [c[metric] for c in sorted(cells, key=lambda c: c["seed"])]
    est = over_replicates(vals, what="seeds")
    if est is not None and est.se > 0:
        return est.within()
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
    """Gain over real only, paired by seed (same subset, generator seed and classifier seed): seeds
    outside, a paired bootstrap over the test images inside (the same resampled images for both arms).
    ``gain_se``, ``gain_df`` (None for a bootstrap alone) and ``gain_method`` say what the interval covers."""
    by_seed = {c["seed"]: c for c in base}
    pairs = [(c, by_seed[c["seed"]]) for c in sorted(cells, key=lambda c: c["seed"]) if c["seed"] in by_seed]
    diffs = [c["accuracy"] - b["accuracy"] for c, b in pairs]
    a, b = _correct_matrix([c for c, _ in pairs]), _correct_matrix([b for _, b in pairs])
    if a is not None and b is not None and a.shape == b.shape and a.shape[1]:
        est = hierarchical([a, b], seed=0)
        out = {"gain": est.mean, "gain_ci95": [est.lo, est.hi], "gain_se": est.se, "gain_df": est.df if math.isfinite(est.df) else None,
               "gain_method": est.method}  # fmt: skip
        if len(pairs) < 2:
            return {**out, "verdict": "one seed: no interval for the gain"}
        return {**out, "verdict": "helps" if est.lo > 0 else "hurts" if est.hi < 0 else "within noise"}
    est = over_replicates(diffs, what="seeds (paired)")
    if est is None:
        return {"gain": float(np.mean(diffs)) if diffs else None, "gain_ci95": None, "gain_se": None, "gain_df": None,
                "gain_method": "none", "verdict": "one seed: no interval for the gain"}  # fmt: skip
    v = "helps" if est.lo > 0 else "hurts" if est.hi < 0 else "within noise"
    return {"gain": est.mean, "gain_ci95": [est.lo, est.hi], "gain_se": est.se, "gain_df": est.df, "gain_method": est.method, "verdict": v}


# ---------------------------------------------------------------------------------------------
# Claims
# ---------------------------------------------------------------------------------------------

CLAIM_AXES = {"fidelity": "precision", "diversity": "recall", "privacy": "privacy", "utility": "utility"}


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
        # One generator per seed at this level: each seed is a training run of the family.
        runs = {m: len({g["seed"] for g in gs}) for m, gs in at.items()}
        claims = check_claims(est, {m: models[m] for m in at}, paired=True, where=f"at {level_label(level)}", runs=runs, steps=_steps(at))
        for c in claims:
            # A score with one seed was measured: what is missing is a second training run to tell the family from the run.
            if c["axis"] in CLAIM_AXES and c.get("reason", "").endswith(" not measured") and min(runs.values()) < 2:
                c["reason"] = (f"one seed so far (one training run per family at {level_label(level)}): comparing families on "
                               f"{c['axis']} needs two or more")  # fmt: skip
        out += [c for c in claims if c["axis"] in CLAIM_AXES]
    est = {m: {"speed": s} for m, s in speed.items()}
    steps = _steps(_group(generators, lambda g: g["model"]))
    out += [c for c in check_claims(est, {m: models[m] for m in speed}, steps=steps) if c["axis"] == "speed"]
    return out


def _steps(by_model: dict[str, list[dict]]) -> dict[str, int | None]:
    """Training steps per model where its generators agree on one figure (None otherwise)."""
    out = {}
    for m, gs in by_model.items():
        got = {g.get("steps") for g in gs}
        out[m] = got.pop() if len(got) == 1 and None not in got else None
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
        cells = list(self.cells)  # with each cell's packed per-test-image correctness, so gains can be recomputed
        # Each row also carries its Holm-corrected verdict (over the ratios of its reading line): the words a reader of the
        # exported file (docs/protocol-results.md) sees, not the uncorrected per-cell one.
        verdicts = reading_verdicts(self.summary)
        # The interval the corrected verdict was read from goes with it (it is wider than the row's 95 % one): a row
        # showing a 95 % interval clear of zero beside "cannot tell" explains itself.
        summary = [{**s, "verdict_corrected": verdict_words(s, v), "verdict_corrected_text": v.text,
                    "verdict_corrected_ci": [v.lo, v.hi], "verdict_corrected_level": v.level} if (v := verdicts.get(_vkey(s))) else s
                   for s in self.summary]  # fmt: skip
        return {"format": FORMAT, "config": self.config, "notes": self.notes, "summary": summary, "claims": self.claims,
                "reading": self.reading(), "generators": self.generators, "cells": cells}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict) -> StudyResult:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ConfigError(f"not a GDA Studio study result (format {FORMAT})")
        try:
            # The corrected verdicts to_dict adds are derived from the rows: recomputed, never read back.
            summary = [{k: v for k, v in s.items() if not k.startswith("verdict_corrected")} if isinstance(s, dict) else s for s in d["summary"]]
            return cls(list(d["cells"]), list(d["generators"]), dict(d["config"]), list(d.get("notes", [])), summary,
                       list(d.get("claims", [])))  # fmt: skip
        except (KeyError, TypeError):
            raise ConfigError("study result is missing cells, generators, config or summary") from None

    # -- reading ---------------------------------------------------------------------------------
    def reading(self) -> list[str]:
        """Plain findings, one line per model, level and augmentation over its ratios: where
        synthetic data helped, hurt, made no meaningful difference, or the budget cannot tell,
        Holm-corrected over the ratios a line summarises; then the study-wide count."""
        lines = list(self.notes)
        verdicts = reading_verdicts(self.summary)
        rows = _group([s for s in self.summary if not s["selected"]], lambda s: (s["model_label"], s["per_class"], s["geometric_aug"]))
        for (label, level, aug), ss in rows.items():
            base = next((s for s in ss if s["ratio"] == 0), None)
            pos = sorted((s for s in ss if s["ratio"] > 0), key=lambda s: s["ratio"])
            if base is None or not pos:
                continue
            found = [(s, verdicts.get(_vkey(s))) for s in pos]
            parts = [f"+{fmt_ratio(s['ratio'])} {s['mean']:.3f} ({_gain_words(s, v)})" for s, v in found]
            aug_txt = ", geometric aug on" if aug else ""
            lines.append(f"{label} at {level_label(level)}{aug_txt}: real only {_mean_ci(base)}; " + "; ".join(parts) + ". " + _conclusion(found))
        lines += _study_wide(self.summary)
        lines += [claim_sentence(c) for c in self.claims]
        return lines

    def table(self) -> list[dict]:
        """Display rows (numbers as text with their intervals; gains with their corrected verdicts)."""
        verdicts = reading_verdicts(self.summary)
        rows = []
        for s in self.summary:
            rows.append({
                "model": s["model_label"], "real / class": level_label(s["per_class"]), "synthetic": fmt_ratio(s["ratio"]),
                "geometric aug": "on" if s["geometric_aug"] else "off", "selection": (self.config.get("select") or "") if s["selected"] else "none",
                "real images": s["n_real"], "synthetic images": s["n_synthetic"], "accuracy [95% CI]": _mean_ci(s),
                "gain over real only": _gain_words(s, verdicts.get(_vkey(s))) if s["ratio"] > 0 else "", "seeds": s["seeds"],
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
<h2>Reading</h2><p>{e(VERDICT_NOTE)}</p><ul>{read}</ul>
<h2>Table</h2><table><tr>{head}</tr>{body}</table>
<h2>Generators</h2><ul>{gens}</ul>
</body></html>
"""


def _mean_ci(s: dict) -> str:
    ci = s.get("ci95")
    return f"{s['mean']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


# ---------------------------------------------------------------------------------------------
# Corrected verdicts of the reading (metrics/verdicts.py)
# ---------------------------------------------------------------------------------------------

#: What the reading's words mean, for the UI and the exports.
VERDICT_NOTE = (
    "Each reading line's gains (one per ratio) are corrected together (Holm), so a null line reads \"helps\" at most 5% of the time; "
    f"\"no meaningful difference\" means the gain is shown to lie within ±{MARGINS['accuracy']:g} accuracy (equivalence test, TOST); "
    "\"cannot tell at this budget\" means neither: more seeds would tell."
)

#: What a gain's verdict reads as in the study.
GAIN_WORDS = {A_BETTER: "helps", B_BETTER: "hurts", EQUIVALENT: "no meaningful difference", CANNOT_TELL: "cannot tell at this budget"}


#: Said beside a verdict that rests on one seed: its interval is a bootstrap over the test images of one (subset,
#: generator, classifier) draw, so it holds the test set's noise but not the spread between seeds, which our own
#: races found larger than many differences. The verdict is kept (it is right about this draw) but never bare.
ONE_SEED = "one seed: seed noise not in the interval"


def _one_seed(s: dict) -> bool:
    return int(s.get("seeds") or 0) < 2


def verdict_words(s: dict, v: Verdict) -> str:
    """A gain's corrected verdict in words, marked where the row rests on one seed."""
    word = GAIN_WORDS[v.verdict]
    return f"{word} ({ONE_SEED})" if _one_seed(s) else word


def _vkey(s: dict) -> tuple:
    return (s["model_label"], s["per_class"], s["geometric_aug"], s["selected"], s["ratio"])


def gain_estimate(s: dict) -> Estimate | None:
    """A summary row's gain as an Estimate: its own record where the row carries one (``gain_estimate``,
    or ``gain_se`` / ``gain_df``), else recovered from its 95 % interval (t over seeds - 1)."""
    if isinstance(s.get("gain_estimate"), dict):
        return Estimate.from_dict(s["gain_estimate"])
    g, ci = s.get("gain"), s.get("gain_ci95")
    if g is None or ci is None:
        return None
    if s.get("gain_se") is not None:
        df = math.inf if s.get("gain_df") is None else float(s["gain_df"])
        return Estimate(float(g), float(ci[0]), float(ci[1]), float(s["gain_se"]), df, int(s.get("seeds", 0)), "gain")
    df = float(s["seeds"] - 1) if s.get("seeds", 0) >= 2 else math.inf
    se = (float(ci[1]) - float(ci[0])) / (2 * t_quantile(df))
    return Estimate(float(g), float(ci[0]), float(ci[1]), se, df, int(s.get("seeds", 0)), "gain")


def _decide_gains(rows: list[dict]) -> dict[tuple, Verdict]:
    rows = [(r, e) for r in rows if r["ratio"] > 0 and (e := gain_estimate(r)) is not None]
    comps = [of_difference(f"+{fmt_ratio(r['ratio'])}", "real only", "accuracy", e) for r, e in rows]
    return {_vkey(r): v for (r, _), v in zip(rows, decide(comps), strict=True)}


def reading_verdicts(summary: list[dict]) -> dict[tuple, Verdict]:
    """Each gain's verdict, Holm-corrected over the ratios of its reading line (one model, level,
    augmentation and selection); key: (model_label, per_class, geometric_aug, selected, ratio)."""
    out: dict[tuple, Verdict] = {}
    for rows in _group(summary, lambda s: (s["model_label"], s["per_class"], s["geometric_aug"], s["selected"])).values():
        out.update(_decide_gains(rows))
    return out


def _gain_words(s: dict, v: Verdict | None = None) -> str:
    g, ci = s.get("gain"), s.get("gain_ci95")
    if g is None:
        return "no baseline"
    if ci is None:
        return f"{g:+.3f}, one seed: no interval"
    word = verdict_words(s, v) if v is not None else s.get("verdict", "")
    return f"{g:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}], {word}"


def _best(v: Verdict, s: dict) -> str:
    return f"+{fmt_ratio(s['ratio'])}, {v.delta:+.3f} accuracy [{v.lo:+.3f}, {v.hi:+.3f}] ({v.level:.1%} interval, Holm over {v.m} ratios)"


def _conclusion(found: list[tuple[dict, Verdict | None]]) -> str:
    told = [(s, v) for s, v in found if v is not None]
    if not told:
        return "One seed: run more seeds to tell a gain from noise."
    return _told(told) + _one_seed_caveat(told)


def _one_seed_caveat(told: list[tuple[dict, Verdict]]) -> str:
    if all(_one_seed(s) for s, _ in told):
        return " One seed: these intervals hold the test images' noise, not the spread between seeds; run more seeds before trusting this."
    return ""


def _told(told: list[tuple[dict, Verdict]]) -> str:
    helps = [(s, v) for s, v in told if v.verdict == A_BETTER]
    hurts = [(s, v) for s, v in told if v.verdict == B_BETTER]
    if helps:
        s, v = max(helps, key=lambda t: t[1].delta)
        out = f"Synthetic data helped: best gain at {_best(v, s)}."
        return out + (f" But +{fmt_ratio(hurts[0][0]['ratio'])} lowered it." if hurts else "")
    if hurts:
        s, v = min(hurts, key=lambda t: t[1].delta)
        return f"Synthetic data did not help: largest loss at {_best(v, s)}."
    margin = told[0][1].margin
    if all(v.verdict == EQUIVALENT for _, v in told):
        return f"No meaningful difference: every change is within ±{margin:g} accuracy."
    return f"Cannot tell at this budget: no change is clearly a gain or a loss, nor shown within ±{margin:g} accuracy; run more seeds."


def _study_wide(summary: list[dict]) -> list[str]:
    """One line corrected over every gain of the study at once (the question "does it help anywhere?")."""
    rows = [s for s in summary if s["ratio"] > 0]
    verdicts = _decide_gains(rows)
    if len({(s["model_label"], s["per_class"], s["geometric_aug"], s["selected"]) for s in rows if _vkey(s) in verdicts}) < 2:
        return []
    helps = [k for k, v in verdicts.items() if v.verdict == A_BETTER]
    hurts = [k for k, v in verdicts.items() if v.verdict == B_BETTER]

    def name(k):
        return f"{k[0]} {level_label(k[1])} +{fmt_ratio(k[4])}" + (" aug" if k[2] else "") + (" selected" if k[3] else "")

    told = f"helped in {len(helps)}" + (f" ({', '.join(map(name, helps))})" if helps else "")
    told += f", hurt in {len(hurts)}" + (f" ({', '.join(map(name, hurts))})" if hurts else "")
    one = sum(1 for s in rows if _vkey(s) in verdicts and _one_seed(s))
    caveat = f" {one} of these gains rest on one seed ({ONE_SEED})." if one else ""
    return [f"Corrected over all {len(verdicts)} gains of this study at once (Holm), synthetic data {told}.{caveat}"]


__all__ = ["FORMAT", "GAIN_WORDS", "ONE_SEED", "VERDICT_NOTE", "PAPER_GROUPS", "SCOPE_NOTE", "SUPPORTED", "StudyResult", "fmt_ratio", "gain_estimate", "level_label",
           "reading_verdicts", "summarise", "verdict_words", "INCONCLUSIVE", "difference"]  # fmt: skip
