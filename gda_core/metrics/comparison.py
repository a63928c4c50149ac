"""Reports side by side: a reading that says when a difference is within noise, warnings when the
reports are not comparable, the paper's claims, the radar with interval bands, and the exports
(HTML / JSON / CSV / PNG)."""

from __future__ import annotations

import csv
import html
import io
import math
from pathlib import Path

from ..errors import ConfigError
from ..runtime import atomic_write_bytes, atomic_write_json, atomic_write_text
from .claims import CLAIMS_NOTE, claim_sentence, claims_from_reports
from .intervals import CONTRADICTED, INCONCLUSIVE, SUPPORTED, difference
from .report import AXES, AXIS_HELP, HEADLINE_RAW, RAW_META, SCHEMA_VERSION, Report

# Plotly's default qualitative palette, shared by the interactive radar and the PNG export.
PALETTE = ("#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880", "#FF97FF", "#FECB52")


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    v = float(v)
    if math.isnan(v):
        return "n/a"
    if v != 0 and (abs(v) >= 1e4 or abs(v) < 1e-3):
        return f"{v:.3g}"
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"


def fmt_with_interval(v, iv) -> str:
    """'0.870 [0.851, 0.889]', or the bare figure where there is no interval."""
    return _fmt(v) if not iv or v is None else f"{_fmt(v)} [{_fmt(iv[0])}, {_fmt(iv[1])}]"


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
    return [str(n) for n in names]


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def axis_reading(axis: str, reports: list[Report], names: list[str]) -> str | None:
    """Who leads on ``axis`` and, from the intervals, who is within noise of the leader."""
    vals = [(n, r) for n, r in zip(names, reports, strict=True) if r.scores.get(axis) is not None]
    if not vals:
        return None
    if len(reports) == 1:
        n, r = vals[0]
        return f"{n} scores {fmt_with_interval(r.scores[axis], r.intervals.get(axis))} on {axis}."
    lead_n, lead_r = max(vals, key=lambda t: t[1].scores[axis])
    head = f"{lead_n} has the highest {axis} ({fmt_with_interval(lead_r.scores[axis], lead_r.intervals.get(axis))})"
    close, lower, unknown = [], [], []
    for n, r in vals:
        if n == lead_n:
            continue
        ea, eb = lead_r.estimate(axis), r.estimate(axis)
        if ea is None or eb is None:
            unknown.append(n)
        elif difference(ea, eb).verdict == INCONCLUSIVE:
            close.append(n)
        else:
            lower.append(n)
    parts = []
    if close:
        parts.append(f"{_join(close)} {'is' if len(close) == 1 else 'are'} within noise of it at this budget")
    if lower:
        parts.append(f"{_join(lower)} {'is' if len(lower) == 1 else 'are'} clearly lower")
    if unknown:
        parts.append(f"{_join(unknown)} {'has' if len(unknown) == 1 else 'have'} no interval to tell (re-evaluate)")
    return head + ("; " + "; ".join(parts) if parts else "") + "."


def _privacy_without_fidelity(reports: list[Report], names: list[str]) -> list[str]:
    """The privacy leader that also has the lowest fidelity, clearly below the fidelity leader, is far from
    every real image (an undertrained or collapsed model), not only from the training ones: say so beside
    its lead, or a reader picks the model that learned nothing as the private one."""
    both = [(n, r) for n, r in zip(names, reports, strict=True)
            if r.scores.get("privacy") is not None and r.scores.get("fidelity") is not None]  # fmt: skip
    if len(both) < 2:
        return []
    pn, pr = max(both, key=lambda t: t[1].scores["privacy"])
    fn, fr = max(both, key=lambda t: t[1].scores["fidelity"])
    low_n = min(both, key=lambda t: t[1].scores["fidelity"])[0]
    ea, eb = fr.estimate("fidelity"), pr.estimate("fidelity")
    if pn == fn or low_n != pn or ea is None or eb is None or difference(ea, eb).verdict != SUPPORTED:
        return []
    return [f"{pn}'s privacy lead comes with the lowest fidelity ({fmt_with_interval(pr.scores['fidelity'], pr.intervals.get('fidelity'))}): "
            "its images are far from every real image, not only from the training ones, so the lead says it has not learned the "
            "data, not that it protects it."]  # fmt: skip


def reading(reports: list[Report], names: list[str]) -> list[str]:
    """Plain-language sentences generated from the numbers and their intervals."""
    out = [s for a in AXES if (s := axis_reading(a, reports, names))]
    out += _privacy_without_fidelity(reports, names)
    out += _utility_sentences(reports, names)
    for n, r in zip(names, reports, strict=True):
        mem = r.raw.get("memorization_rate")
        if mem is not None and mem > 0.05:
            out.append(f"{n}: {mem:.0%} of its images are closer to a training image than 99% of real held-out images are: possible memorisation.")
    bpd = [(n, r.bits_per_dim) for n, r in zip(names, reports, strict=True) if r.bits_per_dim is not None]
    if bpd:
        told = ", ".join(f"{n} {v:.2f}" for n, v in bpd)
        none = [n for n, r in zip(names, reports, strict=True) if r.bits_per_dim is None]
        tail = f"; {_join(none)} {'has' if len(none) == 1 else 'have'} no exact likelihood (n/a)" if none else ""
        out.append(f"Bits/dim on held-out images (lower is better, 8 = learned nothing): {told}{tail}.")
    means = [(n, sum(v for v in r.scores.values() if v is not None) / max(1, sum(v is not None for v in r.scores.values())))
             for n, r in zip(names, reports, strict=True)]  # fmt: skip
    if len(means) > 1:
        n, m = max(means, key=lambda t: t[1])
        out.append(f"Averaged over the six axes, {n} is the most balanced ({m:.2f}); weigh the axes by what your task needs.")
    return out


#: The trilemma's slow corner (many network passes per image, the best fidelity and coverage it assumes)
#: and the families built to leave it (Xiao et al. 2022; docs/hybrids.md).
ITERATIVE_FAMILIES = ("ddpm", "ldm", "flow")
HYBRID_FAMILIES = ("ddgan", "vaegan", "distilled")
TRILEMMA_AXES = ("fidelity", "diversity", "speed")


def trilemma_reading(reports: list[Report], names: list[str]) -> list[str]:
    """Whether each non-iterative model escapes the generative trilemma on these reports: sampling clearly
    faster than the iterative model (DDPM, LDM, flow) with the highest fidelity + diversity, while its
    fidelity and diversity are within noise of that model's or higher (intervals of the differences, as
    the reading's). Empty without an iterative model to measure against. A one-pass family that also
    escapes says the iterative model is not in the corner the trilemma gives it at this budget."""
    names = _check(reports, names)
    fam = [str(r.provenance.get("family") or "") for r in reports]
    slow = [(n, r) for n, r, f in zip(names, reports, fam, strict=True) if f in ITERATIVE_FAMILIES]
    if not slow or len(slow) == len(reports):
        return []
    ref_n, ref = max(slow, key=lambda t: (t[1].scores.get("fidelity") or 0) + (t[1].scores.get("diversity") or 0))
    out, one_pass_escapes = [], []
    for n, r, f in zip(names, reports, fam, strict=True):
        if f in ITERATIVE_FAMILIES:
            continue
        ests = {a: (r.estimate(a), ref.estimate(a)) for a in TRILEMMA_AXES}
        unknown = [a for a, (x, y) in ests.items() if x is None or y is None]
        kind = "a hybrid" if f in HYBRID_FAMILIES else "one pass per image"
        if unknown:
            out.append(f"{n} ({kind}): no interval on {_join(unknown)} to tell against {ref_n} (re-evaluate with the full preset).")
            continue
        v = {a: difference(*ests[a]).verdict for a in TRILEMMA_AXES}
        lost = [a for a in ("fidelity", "diversity") if v[a] == CONTRADICTED]
        if v["speed"] != SUPPORTED:
            out.append(f"{n} ({kind}) is not clearly faster than {ref_n} here, so it does not leave the trilemma's slow corner.")
        elif lost:
            out.append(f"{n} ({kind}) does not escape the trilemma here: it samples clearly faster than {ref_n}, "
                       f"but its {_join(lost)} {'is' if len(lost) == 1 else 'are'} clearly lower.")  # fmt: skip
        else:
            out.append(f"{n} ({kind}) escapes the trilemma here: it samples clearly faster than {ref_n}, and its fidelity and "
                       f"diversity are within noise of {ref_n}'s or higher.")  # fmt: skip
            if f not in HYBRID_FAMILIES:
                one_pass_escapes.append(n)
    if one_pass_escapes:
        out.append(f"{_join(one_pass_escapes)} {'does' if len(one_pass_escapes) == 1 else 'do'} so without being a hybrid: at this "
                   f"budget {ref_n} does not hold the quality corner the trilemma gives it, so these reports cannot show a hybrid "
                   "escaping a trade-off that is not there; longer training of the iterative model is the test.")  # fmt: skip
    return out


def _utility_sentences(reports: list[Report], names: list[str]) -> list[str]:
    out = []
    pairs = list(zip(names, reports, strict=True))
    have = [(n, r) for n, r in pairs if r.raw.get("tstr_acc") is not None and r.raw.get("trtr_acc")]
    if have:
        close = [n for n, r in have if r.raw["tstr_acc"] >= 0.9 * r.raw["trtr_acc"]]
        if not close:
            out.append("No model's synthetic-only classifier comes within 10% of the accuracy of one trained on real data.")
        elif len(close) == 1 and len(have) > 1:
            out.append(f"{close[0]} is the only model whose synthetic-only classifier comes within 10% of real data.")
        else:
            out.append(f"{_join(close)}: the synthetic-only classifier comes within 10% of real data.")
    for n, r in pairs:
        aug = [(k, r.raw.get(f"aug_{k}x_acc")) for k in (1, 2, 3) if r.raw.get(f"aug_{k}x_acc") is not None]
        trtr = r.raw.get("trtr_acc")
        if not aug or trtr is None:
            continue
        k, best = max(aug, key=lambda t: t[1])
        ea, eb = r.estimate(f"aug_{k}x_acc"), r.estimate("trtr_acc")
        noise = difference(ea, eb).verdict if ea is not None and eb is not None else None
        if best > trtr + 0.005 and noise != INCONCLUSIVE:
            out.append(f"Adding {n}'s images ({k}x) raises test accuracy from {trtr:.3f} to {best:.3f}.")
        elif best > trtr + 0.005:
            out.append(f"Adding {n}'s images ({k}x) moves test accuracy from {trtr:.3f} to {best:.3f}: within noise at this budget.")
    return out


def comparability(reports: list[Report], names: list[str]) -> list[str]:
    """Warnings when reports put side by side were made on different data or budgets."""
    out = []
    checks = (
        ("dataset", lambda p: p.get("dataset_sha256") or (p.get("dataset") or {}).get("name"), "different datasets"),
        ("classifier", lambda p: (p.get("classifier_budget") or {}).get("architecture", "small-cnn"), "different downstream classifiers"),
        ("classifier budget", lambda p: repr({k: v for k, v in (p.get("classifier_budget") or {}).items() if k != "architecture"}),
         "different classifier budgets"),
        ("preset", lambda p: p.get("preset"), "different evaluation presets"),
        ("samples", lambda p: p.get("n_samples"), "different numbers of synthetic images"),
        ("seeds", lambda p: len(p.get("seeds") or [p.get("seed")]), "different numbers of seeds"),
    )
    for _, get, what in checks:
        vals = {n: get(r.provenance) for n, r in zip(names, reports, strict=True)}
        if len({str(v) for v in vals.values()}) > 1:
            detail = ", ".join(f"{n}: {v if v is not None else 'unknown'}" for n, v in vals.items())
            out.append(f"These reports were made with {what} ({detail}); their figures are not directly comparable.")
    old = [n for n, r in zip(names, reports, strict=True) if not r.uncertainty]
    if old:
        out.append(f"{_join(old)}: no intervals in {'this report' if len(old) == 1 else 'these reports'} (made before intervals existed): "
                   "re-evaluate to see the noise.")  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------
# JSON comparison, radar, exports
# ---------------------------------------------------------------------------------------------


def _raw_keys(reports: list[Report]) -> list[str]:
    """The union of the reports' raw figures, headline figures (bits/dim) first."""
    keys: list[str] = []
    for r in reports:
        keys += [k for k in r.raw if k not in keys]
    return [k for k in HEADLINE_RAW if k in keys] + [k for k in keys if k not in HEADLINE_RAW]


def _winners(reports, names) -> dict[str, list[str]]:
    out = {}
    for axis in AXES:
        vals = [(n, r.scores.get(axis)) for n, r in zip(names, reports, strict=True) if r.scores.get(axis) is not None]
        if vals:
            best = max(v for _, v in vals)
            out[axis] = [n for n, v in vals if abs(v - best) < 1e-9]
    return out


def compare(reports: list[Report], names: list[str] | None = None) -> dict:
    """A JSON-ready comparison: scores, intervals and raw figures per model, the leader per axis, a
    reading, comparability warnings and the paper's claims checked on these reports."""
    names = _check(reports, names)
    raw_keys = _raw_keys(reports)
    pairs = list(zip(names, reports, strict=True))

    def meta(k: str, i: int) -> str:  # our own description first, else the one a report carries
        field = ("units", "better", "descriptions")[i]
        return RAW_META.get(k, ("", "", ""))[i] or next((getattr(r, field)[k] for r in reports if k in getattr(r, field)), "")

    return {
        "schema": SCHEMA_VERSION, "models": names, "axes": list(AXES), "axis_help": dict(AXIS_HELP),
        "scores": {n: {k: r.scores.get(k) for k in AXES} for n, r in pairs},
        "intervals": {n: r.intervals for n, r in pairs},
        "raw": {n: {k: r.raw.get(k) for k in raw_keys} for n, r in pairs},
        "raw_intervals": {n: {k: r.raw_intervals.get(k) for k in raw_keys} for n, r in pairs},
        "units": {k: meta(k, 0) for k in raw_keys}, "better": {k: meta(k, 1) for k in raw_keys},
        "descriptions": {k: meta(k, 2) for k in raw_keys},
        "winners": _winners(reports, names), "reading": reading(reports, names), "comparability": comparability(reports, names),
        "claims": claims_from_reports(reports, names),
        "warnings": {n: list(r.warnings) for n, r in pairs}, "provenance": {n: dict(r.provenance) for n, r in pairs},
    }  # fmt: skip


def table_rows(reports: list[Report], names: list[str]) -> list[dict]:
    """The comparison table as display rows: the six scores, then every raw figure, each model's
    cell as 'mean [95% interval]' text (the Compare page and the exports show the same)."""
    cmp = compare(reports, names)
    rows = [{"metric": f"{a} score", "what it measures": AXIS_HELP[a], "unit": "0-1", "better": "higher ↑",
             **{n: fmt_with_interval(cmp["scores"][n][a], (cmp["intervals"][n] or {}).get(a)) for n in names}} for a in AXES]  # fmt: skip
    for k in cmp["units"]:
        arrow = {"higher": "higher ↑", "lower": "lower ↓"}.get(cmp["better"][k], "for information")
        rows.append({"metric": k, "what it measures": cmp["descriptions"][k], "unit": cmp["units"][k], "better": arrow,
                     **{n: fmt_with_interval(cmp["raw"][n].get(k), cmp["raw_intervals"][n].get(k)) for n in names}})  # fmt: skip
    return rows


def per_class_rows(reports: list[Report], names: list[str]) -> list[dict]:
    """One row per (class, model): fidelity, diversity and utility within the class, with intervals."""
    rows = []
    for n, r in zip(names, reports, strict=True):
        for cls, rec in (r.per_class or {}).items():
            ivs = rec.get("intervals") or {}
            rows.append({"class": str(cls), "model": n, "real images": rec.get("n_real"), "test images": rec.get("n_test"),
                         **{fig: fmt_with_interval(rec.get(fig), ivs.get(fig)) for fig in ("fidelity", "diversity", "utility")}})  # fmt: skip
    return sorted(rows, key=lambda row: (row["class"], row["model"]))


def _closed(vals: list[float]) -> list[float]:
    return list(vals) + [vals[0]]


def radar_figure(reports: list[Report], names: list[str] | None = None):
    """Plotly radar: per model its scores as a line and, where the report has intervals, the 95 %
    interval as a shaded band (a ring from the upper to the lower bound). Range [0, 1]."""
    import plotly.graph_objects as go

    names = _check(reports, names)
    fig = go.Figure()
    theta = _closed(list(AXES))
    for j, (n, r) in enumerate(zip(names, reports, strict=True)):
        colour = PALETTE[j % len(PALETTE)]
        ivs = r.intervals
        if any(ivs.values()):
            hi = [(ivs[a] or [r.scores.get(a) or 0.0] * 2)[1] for a in AXES]
            lo = [(ivs[a] or [r.scores.get(a) or 0.0] * 2)[0] for a in AXES]
            # One closed path: the upper bounds round, then the lower bounds back (a ring).
            fig.add_trace(go.Scatterpolar(r=_closed(hi) + _closed(lo)[::-1], theta=theta + theta[::-1], fill="toself", fillcolor=colour,
                                          opacity=0.22, line={"width": 0}, hoverinfo="skip", legendgroup=n, showlegend=False, name=f"{n} 95% interval"))  # fmt: skip
        vals = [r.scores.get(a) or 0.0 for a in AXES]
        text = [fmt_with_interval(r.scores.get(a), ivs.get(a)) for a in AXES]
        fig.add_trace(go.Scatterpolar(r=_closed(vals), theta=theta, name=n, legendgroup=n, line={"color": colour, "width": 2.5},
                                      text=_closed(text), hovertemplate="%{theta}: %{text}<extra>" + html.escape(n) + "</extra>"))  # fmt: skip
    fig.update_layout(
        polar={"radialaxis": {"range": [0, 1], "tickvals": [0.25, 0.5, 0.75, 1.0]}},
        showlegend=True,
        title="Extended generative trilemma (higher is better; shaded: 95% interval)",
        margin={"l": 60, "r": 60, "t": 60, "b": 40},
    )
    return fig


def draw_radar(ax, reports: list[Report], names: list[str]) -> None:
    """The radar with its interval bands on a matplotlib polar ``ax`` (the PNG and the PDF report)."""
    import numpy as np

    angles = np.linspace(0, 2 * np.pi, len(AXES), endpoint=False).tolist()
    ang = angles + angles[:1]
    for j, (n, r) in enumerate(zip(names, reports, strict=True)):
        colour = PALETTE[j % len(PALETTE)]
        vals = [r.scores.get(a) or 0.0 for a in AXES]
        ivs = r.intervals
        if any(ivs.values()):
            lo = [(ivs[a] or [v, v])[0] for a, v in zip(AXES, vals, strict=True)]
            hi = [(ivs[a] or [v, v])[1] for a, v in zip(AXES, vals, strict=True)]
            ax.fill_between(ang, lo + lo[:1], hi + hi[:1], color=colour, alpha=0.22, linewidth=0)
        ax.plot(ang, vals + vals[:1], color=colour, linewidth=2.2, label=n)
    ax.set_xticks(angles, list(AXES))
    ax.set_ylim(0, 1)
    ax.set_yticks([0.25, 0.5, 0.75, 1.0])
    ax.set_title("Extended generative trilemma\n(higher is better; shaded: 95% interval)", pad=24)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=min(4, len(names)), frameon=False)


def radar_png(reports: list[Report], names: list[str] | None = None, *, size: int = 900) -> bytes:
    """The radar with its interval bands as a PNG, drawn by matplotlib (no browser needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = _check(reports, names)
    fig, ax = plt.subplots(figsize=(size / 100, size / 100), dpi=100, subplot_kw={"polar": True})
    draw_radar(ax, reports, names)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _html(cmp: dict, fig) -> str:
    """The comparison as one page; every string that came from a report file is escaped."""
    e = html.escape
    names = cmp["models"]
    rows = []
    for axis in AXES:
        cells = "".join(f"<td{' class=best' if n in cmp['winners'].get(axis, []) and len(names) > 1 else ''}>"
                        f"{e(fmt_with_interval(cmp['scores'][n][axis], (cmp['intervals'][n] or {}).get(axis)))}</td>" for n in names)  # fmt: skip
        rows.append(f"<tr><td title='{e(AXIS_HELP[axis])}'><b>{e(axis)}</b> score</td><td>0-1</td><td>higher</td>{cells}</tr>")
    for k in cmp["units"]:
        vals = [cmp["raw"][n].get(k) for n in names]
        nums = [v for v in vals if isinstance(v, (int, float)) and not math.isnan(v)]
        best = (max(nums) if cmp["better"][k] == "higher" else min(nums)) if nums and cmp["better"][k] in ("higher", "lower") and len(names) > 1 else None
        cells = "".join(f"<td{' class=best' if best is not None and v == best else ''}>{e(fmt_with_interval(v, cmp['raw_intervals'][n].get(k)))}</td>"
                        for n, v in zip(names, vals, strict=True))  # fmt: skip
        arrow = {"higher": "&uarr; higher", "lower": "&darr; lower"}.get(cmp["better"][k], "")
        rows.append(f"<tr><td title='{e(cmp['descriptions'][k])}'>{e(k)}</td><td>{e(cmp['units'][k])}</td><td>{arrow}</td>{cells}</tr>")
    li = "".join
    warn = li(f"<li><b>{e(n)}</b>: {e(w)}</li>" for n in names for w in cmp["warnings"][n])
    prov = li(f"<li><b>{e(n)}</b>: seeds {e(str(p.get('seeds') or p.get('seed')))}, {e(str(p.get('n_samples')))} samples, {e(str(p.get('device')))}, "
              f"extractor {e(str(p.get('extractor')))}, checkpoint {e(str(p.get('checkpoint_sha256') or 'n/a')[:12])}</li>"
              for n, p in cmp["provenance"].items())  # fmt: skip
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>GDA Studio model comparison</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}.best{{background:#d9f2d9;font-weight:bold}}</style>
</head><body>
<h1>Model comparison</h1>
{fig.to_html(full_html=False, include_plotlyjs=True)}
{f"<h2>Before you compare</h2><ul>{li(f'<li>{e(w)}</li>' for w in cmp['comparability'])}</ul>" if cmp["comparability"] else ""}
<h2>Reading</h2><ul>{li(f"<li>{e(s)}</li>" for s in cmp["reading"])}</ul>
<h2>The paper's claims on these models</h2><p>{e(CLAIMS_NOTE)}</p><ul>{li(f"<li>{e(claim_sentence(c))}</li>" for c in cmp["claims"])}</ul>
<h2>Figures</h2><p>Mean [95% interval]. Hover a metric name for its meaning. Best value per row highlighted.</p>
<table><tr><th>metric</th><th>unit</th><th>better</th>{li(f"<th>{e(n)}</th>" for n in names)}</tr>{li(rows)}</table>
{f"<h2>Warnings</h2><ul>{warn}</ul>" if warn else ""}
<h2>Provenance</h2><ul>{prov}</ul>
</body></html>
"""


#: A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...), @SUM(...)).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(v):
    """A cell a spreadsheet shows as text: a string that starts like a formula gets a leading
    apostrophe (OWASP's advice for CSV injection). Numbers stay numbers (-0.5 is no formula)."""
    return "'" + v if isinstance(v, str) and v.startswith(FORMULA_STARTS) else v


class _SafeWriter:
    """csv.writer whose every cell goes through :func:`csv_cell` (report keys and names come from files)."""

    def __init__(self, buf):
        self._wr = csv.writer(buf)

    def writerow(self, row) -> None:
        self._wr.writerow([csv_cell(v) for v in row])


def reports_digest(reports: list[Report], names: list[str]) -> str:
    """A cache key for a comparison's exports: the SHA-256 of the reports' whole content and the
    names. Fields a report's file sets (checkpoint hash, date) are no key: a run uploaded under a
    shipped name with those copied would get another user's cached export, or give them its own."""
    import hashlib
    import json

    h = hashlib.sha256()
    for name, rep in zip(names, reports, strict=True):
        h.update(json.dumps([str(name), rep.to_dict()], sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def _csv_text(cmp: dict) -> str:
    buf = io.StringIO()
    wr = _SafeWriter(buf)
    names = cmp["models"]
    wr.writerow(["metric", "unit", "better", *names, *[f"{n} 95% low" for n in names], *[f"{n} 95% high" for n in names]])

    def bounds(iv, i):
        return _csv(iv[i]) if iv else "n/a"

    # "n/a" (as in the HTML table) where a model has no value, e.g. bits/dim of a GAN.
    for axis in AXES:
        ivs = [(cmp["intervals"][n] or {}).get(axis) for n in names]
        wr.writerow([f"score.{axis}", "0-1", "higher", *[_csv(cmp["scores"][n][axis]) for n in names], *[bounds(iv, 0) for iv in ivs],
                     *[bounds(iv, 1) for iv in ivs]])  # fmt: skip
    for k in cmp["units"]:
        ivs = [cmp["raw_intervals"][n].get(k) for n in names]
        wr.writerow([k, cmp["units"][k], cmp["better"][k], *[_csv(cmp["raw"][n].get(k)) for n in names], *[bounds(iv, 0) for iv in ivs],
                     *[bounds(iv, 1) for iv in ivs]])  # fmt: skip
    # One row per provenance field, each model's value in its column (the CSV has a column per
    # model, so per-model provenance fits its cells); gda_core.provenance.read_provenance reads them.
    for field, values in _provenance_rows(cmp):
        wr.writerow([f"provenance.{field}", "", "", *values, *[""] * (2 * len(names))])
    return buf.getvalue()


CSV_PROVENANCE = ("checkpoint", "family", "weights_sha256", "metrics_version", "seeds", "dataset", "settings_sha256", "gda_core_version")


def _prov_field(p: dict, field: str):
    if field == "checkpoint":
        return p.get("name")
    if field == "weights_sha256":
        return p.get("checkpoint_sha256")
    if field == "dataset":
        return (p.get("dataset") or {}).get("name") if isinstance(p.get("dataset"), dict) else p.get("dataset")
    return p.get(field)


def provenance_record(cmp: dict) -> dict:
    """What made a comparison: per model its checkpoint, family, weights hash, metrics version and
    seeds (from the reports), as written into the comparison's PNG, CSV and PDF."""
    from .. import __version__

    return {"kind": "comparison", "models": {n: {f: _prov_field(cmp["provenance"][n], f) for f in CSV_PROVENANCE} for n in cmp["models"]},
            "gda_core_version": __version__}  # fmt: skip


def _provenance_rows(cmp: dict) -> list[tuple[str, list]]:
    """(field, one text cell per model) for the comparison CSV's provenance rows."""
    from ..provenance import csv_value

    return [(f, [csv_value(_prov_field(cmp["provenance"][n], f)) for n in cmp["models"]]) for f in CSV_PROVENANCE]


def write_comparison(reports: list[Report], names: list[str] | None, out_path) -> Path:
    """Write a comparison as .html (radar + table + reading + claims), .json, .csv, .png (radar) or
    .pdf (radar, tables, reading, claims, provenance: ``gda_core.reports_pdf``)."""
    out = Path(out_path)
    names = _check(reports, names)
    suffix = out.suffix.lower()
    if suffix not in (".json", ".csv", ".png", ".html", ".htm", ".pdf"):
        raise ConfigError(f"unsupported report type '{suffix or out.name}'; use .html, .json, .csv, .png or .pdf")
    if suffix == ".pdf":
        from ..reports_pdf import write_comparison_pdf

        return write_comparison_pdf(reports, names, out)
    cmp = compare(reports, names)
    if suffix == ".png":
        from ..provenance import png_with

        atomic_write_bytes(out, png_with(radar_png(reports, names), provenance_record(cmp)))
        return out
    if suffix == ".json":
        atomic_write_json(out, cmp)
    elif suffix == ".csv":
        atomic_write_text(out, _csv_text(cmp))
    else:
        atomic_write_text(out, _html(cmp, radar_figure(reports, names)))
    return out


__all__ = ["PALETTE", "SUPPORTED", "axis_reading", "comparability", "compare", "fmt_with_interval", "per_class_rows", "provenance_record", "radar_figure", "radar_png",
           "reading", "table_rows", "write_comparison"]  # fmt: skip
