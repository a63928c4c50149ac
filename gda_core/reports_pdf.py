"""PDF reports of a comparison and of a utility study.

Drawn with matplotlib's ``PdfPages``: matplotlib is already a dependency (the PNG charts), so the
PDF adds no package; its pages are vector output (text stays text and can be searched, the radar
scales without blurring); and it needs no browser (plotly's static export needs Chrome, an
HTML-to-PDF route a browser or TeX).

A comparison: page 1 the radar of the six axes with each model's 95 % interval band, then the
tables (scores and raw figures, each "mean [95% interval]"), the reading and the paper's claims,
warnings, and the provenance of every model. A study: page 1 accuracy against the synthetic ratio
per scarcity level, then the table, the reading (the claims among it) and the generators'
provenance. The provenance record (``gda_core.provenance``) is also the document's ``Subject``, so
``read_provenance(file.pdf)`` reads it back.
"""

from __future__ import annotations

import io
import json
import os
import re
import textwrap
from pathlib import Path

from .errors import DataError
from .runtime import atomic_write_bytes

PAGE = (11.69, 8.27)  # A4 landscape, inches
TOP, BOTTOM, LEFT = 0.92, 0.06, 0.06
LINE = 0.024  # one 9 pt line as a fraction of the page height
WRAP = 150  # characters per line at 9 pt across the page
ROWS_PER_PAGE = 30


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ascii(text: str) -> str:
    """The few non-ASCII signs our sentences use, spelt out: matplotlib's PDF keeps the first 256
    characters of a font as text (searchable, what pdftotext reads) and draws others as shapes."""
    for a, b in ((" ↑", ""), (" ↓", ""), ("↑", ""), ("↓", ""), ("·", "-"), ("≥", ">="), ("≤", "<="), ("×", "x"), ("–", "-"), ("—", "-"), ("±", "+/-"), ("…", "...")):
        text = text.replace(a, b)
    return text


class _Doc:
    """Pages of one PDF: figures, flowing text with headings, and paginated tables."""

    def __init__(self, title: str, provenance: dict):
        from matplotlib.backends.backend_pdf import PdfPages

        from . import __version__
        from .provenance import dumps

        self.buf = io.BytesIO()
        self.title = title
        meta = {"Title": title, "Subject": dumps(provenance), "Keywords": "gda_provenance", "Creator": f"GDA Studio {__version__} (matplotlib)"}
        self.pdf = PdfPages(self.buf, metadata=meta)
        self.fig = None
        self.y = TOP
        self.pages = 0

    def add(self, fig) -> None:
        self._flush()
        self._save(fig)

    def _save(self, fig) -> None:
        from matplotlib.text import Text

        # No ligatures: a shaped "fi" is one glyph outside the text encoding, so "fidelity" would
        # not be found by a search or by pdftotext.
        for t in fig.findobj(Text):
            t.set_fontfeatures(["-liga"])
        self.pdf.savefig(fig)
        _plt().close(fig)
        self.pages += 1

    def _page(self):
        self._flush()
        self.fig = _plt().figure(figsize=PAGE)
        self.fig.text(LEFT, 0.965, _ascii(self.title), fontsize=8, color="#666")
        self.y = TOP

    def _flush(self) -> None:
        if self.fig is not None:
            fig, self.fig = self.fig, None
            self._save(fig)

    def heading(self, text: str, *, keep: int = 1) -> None:
        """A section heading; a new page unless it and ``keep`` lines below it fit on this one."""
        if self.fig is None or self.y - (2.5 + min(keep, 30)) * LINE < BOTTOM:
            self._page()
        self.y -= 0.5 * LINE
        self.fig.text(LEFT, self.y, _ascii(text), fontsize=14, weight="bold", va="top")
        self.y -= 1.8 * LINE

    def lines(self, items: list[str], *, bullet: bool = True) -> None:
        for item in items:
            wrapped = textwrap.wrap(_ascii(str(item)), WRAP - 4) or [""]
            for k, line in enumerate(wrapped):
                if self.fig is None or self.y - LINE < BOTTOM:
                    self._page()
                prefix = ("- " if k == 0 else "  ") if bullet else ""
                self.fig.text(LEFT + 0.01, self.y, prefix + line, fontsize=9, va="top", family="DejaVu Sans")
                self.y -= LINE
            self.y -= 0.25 * LINE

    def table(self, heading: str, columns: list[str], rows: list[list[str]], note: str = "") -> None:
        """A table over as many pages as it needs, its heading (continued) on each."""
        self._flush()
        for start in range(0, max(1, len(rows)), ROWS_PER_PAGE):
            chunk = rows[start : start + ROWS_PER_PAGE]
            self._page()
            self.fig.text(LEFT, self.y, _ascii(heading + (" (continued)" if start else "")), fontsize=14, weight="bold", va="top")
            if note:
                self.fig.text(LEFT, self.y - 1.6 * LINE, _ascii(note), fontsize=8, va="top", color="#444")
            ax = self.fig.add_axes((LEFT, BOTTOM, 1 - 2 * LEFT, self.y - 3 * LINE - BOTTOM))
            ax.axis("off")
            if chunk:
                tab = ax.table(cellText=[[_ascii(str(c)) for c in r] for r in chunk], colLabels=[_ascii(c) for c in columns], loc="upper left",
                               cellLoc="left", colLoc="left")  # fmt: skip
                tab.auto_set_font_size(False)
                tab.set_fontsize(7 if len(columns) > 6 else 8)
                tab.auto_set_column_width(col=list(range(len(columns))))
                tab.scale(1, 1.25)
                for (r, _c), cell in tab.get_celld().items():
                    cell.get_text().set_fontfeatures(["-liga"])  # cells' texts are not among the figure's children
                    cell.set_edgecolor("#bbb")
                    if r == 0:
                        cell.set_text_props(weight="bold")
                        cell.set_facecolor("#eee")
            self._flush()

    def close(self) -> bytes:
        self._flush()
        self.pdf.close()
        return self.buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------------------------


def _radar_page(reports, names, cmp: dict):
    from .metrics.comparison import draw_radar, fmt_with_interval
    from .metrics.report import AXES

    plt = _plt()
    fig = plt.figure(figsize=PAGE)
    fig.text(LEFT, 0.95, "Model comparison", fontsize=18, weight="bold", va="top")
    fig.text(LEFT, 0.90, _ascii(f"The six axes of the extended generative trilemma for {', '.join(names)}: higher is better; "
                                "the shaded band is each model's 95% interval."), fontsize=10, va="top")  # fmt: skip
    ax = fig.add_axes((0.04, 0.1, 0.52, 0.68), polar=True)
    draw_radar(ax, reports, names)
    ax.set_title("")  # the page's heading says it
    y = 0.80
    fig.text(0.62, y, "Scores [95% interval]", fontsize=11, weight="bold", va="top")
    for n in names:
        y -= 0.045
        fig.text(0.62, y, _ascii(n), fontsize=9, weight="bold", va="top")
        for a in AXES:
            y -= 0.028
            fig.text(0.64, y, _ascii(f"{a}: {fmt_with_interval(cmp['scores'][n][a], (cmp['intervals'][n] or {}).get(a))}"), fontsize=8, va="top")
        if y < 0.12:
            break
    return fig


def _prov_lines(cmp: dict) -> list[str]:
    out = []
    for n, p in cmp["provenance"].items():
        ds = p.get("dataset") or {}
        out.append(f"{n}: checkpoint {p.get('name')} ({p.get('family')}), weights SHA-256 {p.get('checkpoint_sha256')}")
        out.append(f"{n}: seeds {p.get('seeds')}, {p.get('n_samples')} samples per seed, dataset {ds.get('name') if isinstance(ds, dict) else ds} "
                   f"(train sha256 {str(p.get('dataset_sha256'))[:16]}), extractor {p.get('extractor')}, device {p.get('device')}")  # fmt: skip
        out.append(f"{n}: metrics version {p.get('metrics_version')}, gda_core {p.get('gda_core_version')}, settings {p.get('settings_sha256')}, "
                   f"evaluated {p.get('created')}")  # fmt: skip
    return out


def comparison_pdf(reports, names: list[str] | None = None) -> bytes:
    """The comparison as PDF bytes: radar, tables with intervals, reading, claims, provenance."""
    from .metrics.claims import claim_sentence
    from .metrics.comparison import _check, compare, provenance_record, table_rows

    names = _check(reports, names)
    cmp = compare(reports, names)
    doc = _Doc("GDA Studio - model comparison", provenance_record(cmp))
    doc.add(_radar_page(reports, names, cmp))
    rows = table_rows(reports, names)
    cols = ["metric", "unit", "better", *names]
    doc.table("Scores on the six axes", cols, [[r[c] for c in cols] for r in rows[:6]], "Each cell: mean [95% interval]; scores in [0, 1], higher is better.")
    doc.table("Raw figures", cols, [[r[c] for c in cols] for r in rows[6:]], "Each cell: mean [95% interval]; n/a where a model has no such figure.")
    if cmp["comparability"]:
        doc.heading("Before you compare")
        doc.lines(cmp["comparability"])
    doc.heading("Reading")
    doc.lines(cmp["reading"] or ["(nothing to read: one model)"])
    doc.heading("The paper's claims on these models")
    doc.lines([claim_sentence(c) for c in cmp["claims"]] or ["(no claim can be checked on these models)"])
    warn = [f"{n}: {w}" for n in names for w in cmp["warnings"][n]]
    if warn:
        doc.heading("Warnings")
        doc.lines(warn)
    prov = _prov_lines(cmp)
    doc.heading("Provenance", keep=len(prov))
    doc.lines(prov)
    return doc.close()


def write_comparison_pdf(reports, names, out) -> Path:
    out = Path(out)
    atomic_write_bytes(out, comparison_pdf(reports, names))
    return out


# ---------------------------------------------------------------------------------------------
# Study
# ---------------------------------------------------------------------------------------------


def _study_chart(result):
    from .augment.study_report import level_label
    from .metrics.comparison import PALETTE

    plt = _plt()
    levels = result.config.get("per_class_levels", []) or [None]
    fig = plt.figure(figsize=PAGE)
    fig.text(LEFT, 0.95, _ascii(f"Utility study: {result.config.get('dataset')}"), fontsize=18, weight="bold", va="top")
    n = len(result.config.get("seeds", []))
    fig.text(LEFT, 0.90, _ascii(f"Accuracy on the real test split against synthetic images per real image; mean and 95% interval over {n} seed(s)"),
             fontsize=10, va="top")  # fmt: skip
    axes = fig.subplots(1, len(levels), sharey=True, squeeze=False, gridspec_kw={"left": 0.07, "right": 0.98, "top": 0.8, "bottom": 0.22})[0]
    colours: dict[str, str] = {}
    for level, name, label, dash, xs, ys, lo, hi in result._series():
        ax = axes[levels.index(level)]
        col = colours.setdefault(label, PALETTE[len(colours) % len(PALETTE)])
        ax.errorbar(xs, ys, yerr=[lo, hi], color=col, linestyle={"solid": "-", "dash": "--", "dot": ":"}[dash], marker="o", capsize=4, label=_ascii(name))
    for ax, level in zip(axes, levels, strict=True):
        ax.set_title(f"{level_label(level)} real images" if level is not None else "")
        ax.set_xticks(result.config.get("ratios", []))
        ax.set_xlabel("synthetic images per real image")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy on the real test split")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(5, max(1, len(labels))), frameon=False)
    return fig


def _study_provenance(result) -> dict:
    from . import __version__

    c = result.config
    gens = [{k: g.get(k) for k in ("model", "family", "per_class", "seed", "checkpoint", "weights_sha256", "train_indices_sha256", "n_train", "steps")}
            for g in result.generators]  # fmt: skip
    return {"kind": "study", "dataset": c.get("dataset"), "seeds": c.get("seeds"), "settings": {k: c.get(k) for k in c if k != "seeds"},
            "generators": gens, "gda_core_version": __version__}  # fmt: skip


def study_pdf(result) -> bytes:
    """A StudyResult as PDF bytes: the chart, the table with intervals, the reading (claims among
    it), the generators and the study's settings."""
    from .augment.study_report import fmt_ratio, level_label

    prov = _study_provenance(result)
    doc = _Doc(f"GDA Studio - utility study: {result.config.get('dataset')}", prov)
    doc.add(_study_chart(result))
    rows = result.table()
    cols = list(rows[0]) if rows else ["model"]
    doc.table("Results", cols, [[r[c] for c in cols] for r in rows], "Accuracy: mean [95% interval]; gain: paired by seed against real only.")
    doc.heading("Reading")
    doc.lines(result.reading() or ["(no results)"])
    c = result.config
    doc.heading("Provenance", keep=1 + len(prov["generators"]))
    doc.lines([f"dataset {c.get('dataset')}; levels {', '.join(level_label(x) for x in c.get('per_class_levels', []))}; ratios "
               f"{', '.join(fmt_ratio(r) for r in c.get('ratios', []))}; seeds {c.get('seeds')}; generators {c.get('scope')}; budget "
               f"{c.get('generator_budget')}; gda_core {prov['gda_core_version']}"]  # fmt: skip
              + [f"{g['model']} {level_label(g['per_class'])}, seed {g['seed']}: {g['checkpoint']} ({g['family']}), weights SHA-256 {g['weights_sha256']}, "
                 f"{g['n_train']} training images (indices sha256 {str(g['train_indices_sha256'])[:16]}), {g['steps']} steps" for g in prov["generators"]])  # fmt: skip
    return doc.close()


# ---------------------------------------------------------------------------------------------
# Reading back
# ---------------------------------------------------------------------------------------------

_SUBJECT = re.compile(rb"/Subject\s*\(((?:\\.|[^\\)])*)\)", re.S)
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f", b"(": b"(", b")": b")", b"\\": b"\\"}


def _pdf_string(raw: bytes) -> bytes:
    """A PDF literal string's bytes with its backslash escapes undone (PDF 1.7, 7.3.4.2)."""
    out, i = bytearray(), 0
    while i < len(raw):
        ch = raw[i : i + 1]
        if ch == b"\\" and i + 1 < len(raw):
            nxt = raw[i + 1 : i + 2]
            if nxt in _ESCAPES:
                out += _ESCAPES[nxt]
                i += 2
                continue
            octal = re.match(rb"[0-7]{1,3}", raw[i + 1 : i + 4])
            if octal:
                out.append(int(octal.group(), 8) & 0xFF)
                i += 1 + len(octal.group())
                continue
            i += 1
            continue
        out += ch
        i += 1
    return bytes(out)


def read_pdf_provenance(path: str | os.PathLike) -> dict:
    """The provenance record in a GDA Studio PDF's ``Subject`` (the info dictionary, uncompressed)."""
    p = Path(path)
    data = p.read_bytes()
    if not data.startswith(b"%PDF"):
        raise DataError(f"{p.name} is not a PDF")
    m = _SUBJECT.search(data)
    if m is None:
        raise DataError(f"{p.name} carries no GDA Studio provenance record")
    try:
        out = json.loads(_pdf_string(m.group(1)).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DataError(f"{p.name}: its Subject is not a GDA Studio provenance record") from None
    if not isinstance(out, dict):
        raise DataError(f"{p.name}: its Subject is not a GDA Studio provenance record")
    return out


__all__ = ["comparison_pdf", "read_pdf_provenance", "study_pdf", "write_comparison_pdf"]
