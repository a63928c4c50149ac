"""Write docs/benchmarks.md, docs/protocol-results.md and docs/deployment.md from the result files, so prose and numbers cannot drift.

    python -m bench.make_docs            # (re)write the pages; `make docs` runs this
    python -m bench.make_docs --check    # exit 1, naming the page, when a page is not what the results give

The prose lives in ``docs/<page>.template.md``. Every figure a page shows comes from a result file
(``bench/results/*.json``, and the shipped checkpoints' ``checkpoints/*/eval/*.json``) through a
placeholder; the template itself holds no measured figure (``stray_figures`` checks it):

    {{table:NAME}} / {{table:NAME:ARG}}   a whole table, drawn by TABLES[NAME] (ARG: a result file's stem)
    {{value:SOURCE:PATH|FORMAT}}          one figure in a sentence
    {{run:SOURCE}}                        how a result was made: command, date, CPU, threads, load
    {{protocol:NAME}}                     one dataset's study (protocol page), or "not run yet"

SOURCE is a result file's stem (``engine_cpu``) or a view computed here from the results (VIEWS:
``speed_zen5``, ``ttq_seeds``, ...: ratios, means, win counts, ranges). PATH walks into it with
dots: ``rows.ours.fid``; ``[3]`` or ``3`` picks a list item, ``[key=value&key2=value2]`` the one list
item with those fields, ``[any text]`` a key holding dots. FORMAT is a Python format spec
(``.2f``, ``,``, ``.0%``), one of FORMATS (``int``, ``words``, ``list``, ``code``, ``date``, ``hours``), or
``range:SPEC:UNIT`` for a ``{min, max}`` pair (``1.4x to 1.8x``, or one figure when both read the same).
An HTML comment that starts ``<!-- template`` is a note to the maintainer and is left out of the page.

A view may also check a sentence of the prose against the data (``_claim``): if the data stop
saying what the sentence says, rendering fails with that sentence's reason, rather than print a
page whose words and numbers disagree.

Tables are Jinja2 templates (``table``: a head line, then row lines, cells parted by `` | ``). Jinja2
comes with streamlit, so this needs the project's venv (``make docs`` runs it there) but not torch
or gda_core: the standard library and jinja2 only.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import jinja2

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("benchmarks.md", "protocol-results.md", "deployment.md", "hybrids.md")
PROTOCOL_DATASETS = {  # page name -> (result file stem, command that makes it)
    "breastmnist": ("protocol_breastmnist", "python -m bench.bench_protocol --data breastmnist"),
    "plantvillage_corn": ("protocol_plantvillage_corn", "python -m bench.bench_protocol --data plantvillage_corn"),
    "breastmnist_shared": ("protocol_breastmnist_shared", "python -m bench.bench_protocol --data breastmnist --scope shared"),
}
AXES = ("fidelity", "diversity", "speed", "utility", "robustness", "privacy")  # a report's six scores, in the app's order
PLACEHOLDER = re.compile(r"\{\{\s*(table|value|run|protocol)\s*:\s*([^{}]*?)\s*\}\}")


class DocsError(Exception):
    """A placeholder that cannot be filled, or a sentence the data no longer support."""


def _claim(ok: bool, why: str) -> None:
    if not ok:
        raise DocsError(f"the prose no longer matches the results: {why}; rewrite that sentence in the template")


# -------------------------------------------------------------------------------------------------
# Loading
# -------------------------------------------------------------------------------------------------


class Results:
    """Every result file of one checkout, read once; views are computed on first use."""

    def __init__(self, root: Path = ROOT):
        self.root = Path(root)
        self.files = {p.stem: json.loads(p.read_text()) for p in sorted((self.root / "bench" / "results").glob("*.json"))}
        self._views: dict[str, object] = {}

    def __getitem__(self, name: str):
        if name in self.files:
            return self.files[name]
        if name in VIEWS:
            if name not in self._views:
                self._views[name] = VIEWS[name](self)
            return self._views[name]
        raise DocsError(f"no result file bench/results/{name}.json and no view {name!r}")

    def has(self, name: str) -> bool:
        return name in self.files


# -------------------------------------------------------------------------------------------------
# Paths and formats
# -------------------------------------------------------------------------------------------------

_STEP = re.compile(r"\[([^\]]*)\]|([^.\[\]]+)")


def lookup(obj, path: str):
    """``obj`` walked along ``path`` (see the module docstring)."""
    for m in _STEP.finditer(path):
        bracket, plain = m.group(1), m.group(2)
        if bracket is not None and "=" in bracket and isinstance(obj, list):
            want = dict(c.split("=", 1) for c in bracket.split("&"))
            hits = [x for x in obj if isinstance(x, dict) and all(str(x.get(k)) == v for k, v in want.items())]
            if len(hits) != 1:
                raise DocsError(f"{path}: {len(hits)} items match [{bracket}]")
            obj = hits[0]
            continue
        key = bracket if bracket is not None else plain
        if isinstance(obj, list) and key.lstrip("-").isdigit() and -len(obj) <= int(key) < len(obj):
            obj = obj[int(key)]
        elif isinstance(obj, dict) and key in obj:
            obj = obj[key]
        else:
            raise DocsError(f"{path}: no {key!r} here")
    return obj


_WORDS = "zero one two three four five six seven eight nine ten eleven twelve".split()


def _words(v) -> str:
    return _WORDS[int(v)] if float(v).is_integer() and 0 <= v < len(_WORDS) else f"{v:,}"


def _list(v) -> str:
    items = [str(x) for x in v]
    return "none" if not items else items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


FORMATS: dict[str, Callable] = {
    "int": lambda v: f"{round(v):,}",
    "words": _words,
    "list": _list,
    "code": lambda v: f"`{v}`",
    "date": lambda v: str(v)[:10],
    "hours": lambda v: f"{v / 3600:.1f} h",
}


def _range(v: dict, spec: str) -> str:
    """``range:.1f:x`` on ``{"min": 1.41, "max": 1.77}`` -> ``1.4x to 1.8x`` (one figure when both read the same)."""
    _, num, unit = (spec.split(":") + ["", ""])[:3]
    lo, hi = format(v["min"], num) + unit, format(v["max"], num) + unit
    return lo if lo == hi else f"{lo} to {hi}"


def fmt(value, spec: str = "") -> str:
    if value is None:
        return "-"
    if spec.startswith("range:"):
        return _range(value, spec)
    if spec in FORMATS:
        return FORMATS[spec](value)
    if spec:
        return format(value, spec)
    return str(value)


def f2(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def f3(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def pct(v, digits: int = 1) -> str:
    return "-" if v is None else f"{100 * v:.{digits}f}%"


def ci(v, lo_hi, digits: int = 3) -> str:
    """A figure with its interval, when the result file has one."""
    if v is None:
        return "-"
    return f"{v:.{digits}f}" + (f" [{lo_hi[0]:.{digits}f}, {lo_hi[1]:.{digits}f}]" if lo_hi else "")


def spread(values: list[float], digits: int = 3) -> str:
    """Mean ± sample standard deviation over seeds or runs."""
    if len(values) < 2:
        return f"{values[0]:.{digits}f}" if values else "-"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def md_table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def table(template: str, **ctx) -> str:
    """A markdown table from a Jinja2 template: its first line is the head, every other non-blank line a
    row, cells parted by `` | `` (the separator row is drawn from the head)."""
    lines = [line for line in _template(template).render(**ctx).split("\n") if line.strip()]
    head = ["| " + lines[0] + " |", "|" + "---|" * len(lines[0].split(" | "))]
    return "\n".join(head + ["| " + line + " |" for line in lines[1:]])


@functools.cache
def _template(text: str) -> jinja2.Template:
    return _env().from_string(text)


def _strict(fn: Callable) -> Callable:
    """A filter that names a missing field (StrictUndefined raises when read as text) instead of
    failing inside ``format`` with a message that names none."""

    def filtered(value, *args):
        if isinstance(value, jinja2.Undefined):
            str(value)
        return fn(value, *args)

    return filtered


@functools.cache
def _env() -> jinja2.Environment:
    # StrictUndefined: a key a result file lacks fails the page (rendering names the placeholder), as a
    # KeyError did when the rows were built by hand, instead of leaving a blank cell.
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    filters = dict(f=format, f2=f2, f3=f3, pct=pct, ci=ci, ratio=_x, rate=_r, level=_level, ratio_txt=_ratio_txt, signed_ci=_signed_ci)
    env.filters.update({name: _strict(fn) for name, fn in filters.items()})
    env.globals.update(sorted=sorted, set=set)
    return env


def cpu_label(cpu: str | None) -> str:
    """A readable name for the CPU a result file records (virtual machines often say only "AMD EPYC")."""
    cpu = cpu or ""
    if "family 26" in cpu:
        return "Zen 5 EPYC"
    if "Zen 4" in cpu:
        return "Zen 4 EPYC"
    if "AVX2" in cpu:
        return "AVX2-only EPYC"
    if "Xeon" in cpu:
        return "Xeon (AMX)"
    return (cpu + " (generation not recorded)") if cpu else "not recorded"


def _meta(doc: dict) -> dict:
    return doc.get("meta") or doc.get("env") or doc.get("bench") or doc


def run_line(r: Results, source: str) -> str:
    """``{{run:SOURCE}}``: the command and what the file says about the machine."""
    doc = r[source]
    m = _meta(doc)
    parts = [f"`{m['command']}`" if m.get("command") else "command not recorded"]
    parts.append(f"run {str(m['date'])[:10]}" if m.get("date") else "date not recorded")
    cpu = m.get("cpu") or doc.get("cpu")
    parts.append(f"CPU: {cpu_label(cpu)}" if cpu else "CPU not recorded")
    threads = m.get("threads") or m.get("cpu_threads")
    if threads:
        parts.append(f"{threads} torch thread{'s' * (threads != 1)}")
    before = m.get("loadavg_before") or m.get("load_avg_start") or m.get("load_start")
    after = m.get("loadavg_after") or m.get("load_avg_end") or m.get("load_end")
    if before and after:
        parts.append(f"load average {before[0]:.1f} before, {after[0]:.1f} after")
    elif doc.get("loadavg_during"):
        parts.append(f"load average {doc['loadavg_during']}")
    if m.get("wall_s") or m.get("wall_s_total") or doc.get("wall_s"):
        parts.append(f"{(m.get('wall_s') or m.get('wall_s_total') or doc.get('wall_s')) / 60:.0f} min in all")
    where = f'`bench/results/{m["file"]}.json`, run "{m["run"]}"' if m.get("file") else f"`bench/results/{source}.json`"
    return "Run: " + "; ".join(parts) + f" ({where})."


# -------------------------------------------------------------------------------------------------
# Shipped checkpoints (their evaluation reports)
# -------------------------------------------------------------------------------------------------

SHIPPED = ("vae-digits", "gan-digits", "ddpm-digits")


def _latest_report(folder: Path) -> dict | None:
    """The newest report in a checkpoint's eval folder (None when it holds none)."""
    reports = [json.loads(p.read_text()) for p in sorted((folder / "eval").glob("*.json"))]
    return max(reports, key=lambda d: str(d.get("provenance", {}).get("created", ""))) if reports else None


def _shipped(r: Results) -> dict:
    out = {}
    for name in SHIPPED:
        folder = r.root / "checkpoints" / name
        rep = _latest_report(folder)
        if rep is None:
            raise DocsError(f"checkpoints/{name}/eval holds no report")
        cfg = json.loads((folder / "config.json").read_text())
        out[name] = {**rep, "steps": cfg.get("step")}
    rates = [d["raw"]["memorization_rate"] for d in out.values()]
    ssim = [d["raw"]["nearest_ssim_mean"] for d in out.values()]
    best_div = max(out, key=lambda n: out[n]["scores"]["diversity"])
    _claim(best_div == "ddpm-digits", "the shipped DDPM no longer has the highest diversity")
    return {
        **out,
        "memorisation_min": min(rates),
        "memorisation_max": max(rates),
        "ssim_min": min(ssim),
        "ssim_max": max(ssim),
        "interval_note": "Each figure shows its 95 % interval as the report gives it."
        if any(d.get("intervals") and any(d["intervals"].values()) for d in out.values())
        else "These reports were written before evaluation gave intervals (one sampling seed), so no figure here has one; "
        "`python -m bench.train_shipped --eval-only` re-evaluates them with the full preset, and this table then shows the intervals.",
    }


def t_shipped(r: Results) -> str:
    return table("""\
checkpoint | steps | fidelity | diversity | speed | utility | robustness | privacy | img/s (CPU) | TSTR / TRTR acc | memorisation rate | FID
{% for name in names %}{% set d = s[name] %}{% set iv, raw, riv = d.get("intervals") or {}, d.raw, d.get("raw_intervals") or {} %}
{{ name }} | {{ d.steps }} | {% for a in axes %}{{ d.scores[a]|ci(iv.get(a), 2) }} | {% endfor %}\
{{ raw.images_per_s|ci(riv.get("images_per_s"), 0) }} | {{ raw.tstr_acc|ci(riv.get("tstr_acc")) }} / {{ raw.trtr_acc|ci(riv.get("trtr_acc")) }} | \
{{ raw.memorization_rate|ci(riv.get("memorization_rate")) }} | {{ raw.fid|ci(riv.get("fid"), 2) }}
{% endfor %}""", s=r["shipped"], names=SHIPPED, axes=AXES)


def t_shipped_families(r: Results, ds: str) -> str:
    """One dataset's shipped checkpoints (bench/results/shipped_families.json): the six scores with their
    intervals, then the radar, the trilemma reading and the app's reading, each a generated sentence."""
    d = r["shipped_families"]["datasets"].get(ds)
    if d is None:
        raise DocsError(f"no shipped checkpoint on {ds}: run python -m bench.shipped_families")
    rows = [[c["name"], c["family"], f"{c['steps']:,}", c["seeds"], *(ci(c["scores"][a], c["intervals"][a], 2) for a in AXES)]
            for c in d["checkpoints"]]  # fmt: skip
    out = [md_table(["checkpoint", "family", "steps", "sampling seeds", *AXES], rows)]
    if d["missing"]:
        out.append(f"\nNot in the table (no report of the current metrics version yet): {', '.join(d['missing'])}; "
                   "`python -m bench.train_shipped --eval-only --only NAME` makes it.")  # fmt: skip
    out += _radar_and_readings(d, f"The radar of every shipped checkpoint on {d['title']}", "here")
    return "\n".join(out)


def _radar_and_readings(d: dict, alt: str, where: str) -> list[str]:
    """The radar, the trilemma reading and the app's reading of a results entry (``image``, ``trilemma``, ``reading``)."""
    out = []
    if d.get("image"):
        out.append(f"\n![{alt}]({d['image']})")
    if d.get("trilemma"):
        out.append(f"\n**Do the hybrids escape the trilemma {where}?**\n\n" + "\n".join(f"- {x}" for x in d["trilemma"]))
    if d.get("reading"):
        out.append("\n**The reading, as Compare gives it:**\n\n" + "\n".join(f"- {x}" for x in d["reading"]))
    return out


def t_shipped_provenance(r: Results) -> str:
    # No "seconds" column: a report's time_s is its last evaluate call's, which reuses cached stages
    # (a re-aggregation reads 0 s after the hour the seeds took), so it would mislead.
    return table("""\
checkpoint | evaluated | sampling seeds | synthetic images per seed | device | intervals
{% for name in names %}{% set p = s[name].provenance %}{% set methods = sorted(set((s[name].get("interval_methods") or {}).values())) %}
{{ name }} | {{ (p.get("created", "")|string)[:10] }} | {{ (p.get("seeds") or [p.get("seed")])|join(", ") }} | {{ p.get("n_samples")|f(",") }} | \
{{ p.get("device") }} | {{ methods|join("; ") if methods else "none (report written before intervals)" }}
{% endfor %}""", s=r["shipped"], names=SHIPPED)


# A part of `make checkpoints` is quiet where the load average was below QUIET_START when it started and below
# QUIET_END when it ended: the job's own two threads bring the load to about 2, a second heavy job beside it to 3 or more.
QUIET_START, QUIET_END = 1.5, 2.5


def t_make_checkpoints(r: Results) -> str:
    """Each `make checkpoints` entry (bench/results/train_shipped.json): training (each part, where it resumed)
    and evaluation seconds with the load average at their start and end, and whether every part was quiet."""
    entries = r["train_shipped"]["entries"]

    def parts(e: dict, part: str) -> list[tuple[float, float]]:
        if part == "train" and e.get("train_parts"):
            return [(x["load_start"], x["load_end"]) for x in e["train_parts"]]
        a, b = e.get(f"{part}_load_start"), e.get(f"{part}_load_end")
        return [(a, b)] if a is not None and b is not None else []

    def loads(ps: list[tuple[float, float]]) -> str:
        return ", then ".join(f"{a:.2f} -> {b:.2f}" for a, b in ps) or "not recorded"

    rows, total = [], {}
    for name in sorted(entries, key=lambda n: (entries[n].get("dataset") or n.split("-", 1)[1], n)):
        e = entries[name]
        rep = _latest_report(r.root / "checkpoints" / name)
        st = (rep or {}).get("provenance", {}).get("stages") or {}
        tp, ep = parts(e, "train"), parts(e, "eval")
        quiet = bool(tp and ep) and all(a < QUIET_START and b < QUIET_END for a, b in tp + ep)
        n_parts = len(e.get("train_parts") or [])
        train = f"{e['train_s']:,.0f}" + (f" in {n_parts} parts" if n_parts > 1 else "") if "train_s" in e else "not recorded (an earlier round)"
        rows.append([name, train, loads(tp), f"{e['eval_s']:,.0f}" if "eval_s" in e else "not evaluated",
                     f"{st.get('computed', '?')} / {st.get('reused', '?')}", loads(ep), "yes" if quiet else "no"])  # fmt: skip
        ds = e.get("dataset") or name.split("-", 1)[1]
        total[ds] = total.get(ds, 0.0) + float(e.get("train_s", 0.0)) + float(e.get("eval_s", 0.0))
    out = [md_table(["entry", "train s", "train load (start -> end)", "eval s", "stages computed / reused", "eval load (start -> end)",
                     "quiet"], rows)]  # fmt: skip
    out.append(f"\nQuiet: every part started below load {QUIET_START} and ended below {QUIET_END}. Recorded seconds per dataset "
               "(train + evaluate, where recorded): " + "; ".join(f"{ds} {s / 3600:.1f} h" for ds, s in sorted(total.items())) + ".")  # fmt: skip
    return "\n".join(out)

# -------------------------------------------------------------------------------------------------
# Engine throughput, sample quality, x0 clipping, families
# -------------------------------------------------------------------------------------------------


def t_engine(r: Results) -> str:
    return table("""\
family | shape | parameters | train precision | train img/s | sample img/s | NFE/img
{% for x in rows %}
{{ x.family }} | {{ x.shape }} | {{ x.params|f(",") }} | {{ x.train_precision }} | {{ x.train_images_per_s|f(".1f") }} | \
{{ x.sample_images_per_s|f(".1f") }} | {{ x.nfe_per_image|f(".0f") }}
{% endfor %}""", rows=r["engine_cpu"]["rows"])


def _engine(r: Results) -> dict:
    rows = {(x["family"], x["shape"]): x for x in r["engine_cpu"]["rows"]}
    out = {}
    for shape in sorted({s for _, s in rows}):
        ddpm, flow = rows[("ddpm", shape)], rows[("flow", shape)]
        _claim(
            ddpm["train_precision"] == "bfloat16" and flow["train_precision"] == "float32",
            "engine_cpu: the DDPM/flow rows are no longer bf16/float32, so they no longer show what bf16 training buys",
        )
        out[shape] = {"bf16_gain": ddpm["train_images_per_s"] / flow["train_images_per_s"]}
    gains = [v["bf16_gain"] for v in out.values()]
    return {**out, "bf16_gain_min": min(gains), "bf16_gain_max": max(gains)}


def t_quality_models(r: Results) -> str:
    return table("""\
model | recognised as requested class | precision | recall | FID (domain features) | time for the set
{% for x in rows %}
{{ x.model }} | {{ x.recognised|pct }} | {{ x.precision|f3 }} | {{ x.recall|f3 }} | {{ x.fid|f2 }} | {{ x.seconds|f(".2f") }} s
{% endfor %}""", rows=r["quality_cpu"]["models"])


def t_quality_samplers(r: Results) -> str:
    return table("""\
DDPM sampler | steps | recognised | precision | recall | FID | time for the set
{% for x in rows %}
{{ x.sampler }} | {{ x.steps }} | {{ x.recognised|pct }} | {{ x.precision|f3 }} | {{ x.recall|f3 }} | {{ x.fid|f2 }} | {{ x.seconds|f(".2f") }} s
{% endfor %}""", rows=r["quality_cpu"]["samplers"])


def t_quality_bf16(r: Results) -> str:
    q = r["quality_cpu"]
    return table("""\
model | arithmetic | recognised | precision | recall | FID | mean / max change, uint8 levels | time for the set | speed-up
{% for x in q.fast_path_precision %}{% set b = base[x.model] %}
{{ x.model }} | float32 (default) | {{ b.recognised|pct }} | {{ b.precision|f3 }} | {{ b.recall|f3 }} | {{ b.fid|f2 }} | - | {{ x.seconds_default|f(".2f") }} s | -
{{ x.model }} | {{ x.dtype }} (fast=True) | {{ x.recognised|pct }} | {{ x.precision|f3 }} | {{ x.recall|f3 }} | {{ x.fid|f2 }} | \
{{ x.mean_level_change|f(".3f") }} / {{ x.max_level_change }} | {{ x.seconds|f(".2f") }} s | {{ x.speedup|f(".2f") }}x
{% endfor %}""", q=q, base={x["model"]: x for x in q["models"]})


def _quality(r: Results) -> dict:
    q = r["quality_cpu"]
    s = {(x["sampler"], x["steps"]): x for x in q["samplers"]}
    fast = {x["model"]: x for x in q["fast_path_precision"]}
    base = {x["model"]: x for x in q["models"]}
    _claim(
        s[("dpmpp", 10)]["recall"] > s[("ddim", 10)]["recall"],
        "quality_cpu: DPM-Solver++ at 10 steps no longer keeps more recall than DDIM at 10",
    )
    _claim(
        abs(fast["ddpm"]["fid"] - base["ddpm"]["fid"]) < 0.05 and abs(fast["ddpm"]["recall"] - base["ddpm"]["recall"]) < 0.01,
        "quality_cpu: bf16 no longer leaves the DDPM's FID and recall where they were",
    )
    fid_moves = {m: abs(fast[m]["fid"] - base[m]["fid"]) for m in fast}
    recall_moves = {m: abs(fast[m]["recall"] - base[m]["recall"]) for m in fast}
    return {
        "dpmpp10_time_share": s[("dpmpp", 10)]["seconds"] / s[("ddim", 50)]["seconds"],
        "fid_move_max": max(fid_moves.values()),
        "recall_move_max": max(recall_moves.values()),
        "samplers": {f"{k[0]}{k[1]}": v for k, v in s.items()},
        "fast": fast,
        "base": base,
    }


X0_LABELS = {
    "dynamic": "ours, dynamic thresholding (default)",
    "static": "ours, static clip",
    "diffusers": "diffusers DDIMScheduler defaults",
}


def t_x0_clip(r: Results, source: str) -> str:
    return table("""\
network | x0 handling | FID (lower better) | precision | recall | density | coverage
{% for net, variants in nets.items() %}{% set best = best_key(variants) %}
{% for k, v in variants.items() %}{% set fid = v.fid|f(".3f") %}
{{ net }} | {{ labels.get(k, k) }} | {{ "**" ~ fid ~ "**" if k == best else fid }} | {{ v.precision|f3 }} | {{ v.recall|f3 }} | {{ v.density|f3 }} | \
{{ v.coverage|f3 }}
{% endfor %}{% endfor %}""", nets=r[source]["rows"], labels=X0_LABELS, best_key=lambda vs: min(vs, key=lambda k: vs[k]["fid"]))


def _x0(r: Results) -> dict:
    """Dynamic thresholding is the only choice good on both networks: the claim of the x0 section."""
    out = {}
    for source in ("x0_clip_cpu", "x0_clip_1400_cpu"):
        nets = list(r[source]["rows"].values())
        out[source] = {k: [n[k]["fid"] for n in nets] for k in nets[0]}
    first = out["x0_clip_cpu"]
    worst = {k: max(v / min(first[j][i] for j in first) for i, v in enumerate(first[k])) for k in first}
    _claim(
        worst["dynamic"] < min(worst["static"], worst["diffusers"]), "x0_clip_cpu: dynamic thresholding is no longer the best worst case"
    )
    return out


#: How the all-families-at-one-budget run with intervals is made, per dataset (``{{table:families_budget:NAME}}``).
FAMILIES_BUDGET = {  # dataset -> (results file stem, command)
    "digits": ("families_digits_cpu", "python -m bench.bench_families --dataset digits --minutes 3 --seeds 3 --threads 2"),
    "pneumoniamnist": ("families_pneumoniamnist_cpu", "python -m bench.bench_families --dataset pneumoniamnist --minutes 5 --seeds 3 --threads 2"),
}


def t_families_budget(r: Results, ds: str) -> str:
    """Every family trained for the same minutes on one dataset, each evaluated over three sampling seeds
    (bench/results/families_<ds>_cpu.json): scores with intervals, the radar, the trilemma reading and the
    app's reading, each family's train/eval time and load; "not run yet" or "partial" where it is."""
    if ds not in FAMILIES_BUDGET:
        raise DocsError(f"unknown dataset {ds!r} (FAMILIES_BUDGET in bench/make_docs.py)")
    stem, command = FAMILIES_BUDGET[ds]
    if not r.has(stem):
        return f"Not run yet. To make it: `{command}` (hours on 2 cores; it resumes from `bench/results/{stem}.json`, then `make docs`)."
    d = r[stem]
    out = []
    if d.get("units_done", 0) < d.get("units_total", 0):
        out.append(f"**Partial: {d['units_done']} of {d['units_total']} families finished.** The same command continues with the rest.\n")
    rows = [[x["family"] + (f" ({x['sampler_steps']} steps)" if x.get("sampler_steps") else ""), f"{x['train_steps']:,}",
             *(ci(x["scores"][a], (x.get("intervals") or {}).get(a), 2) for a in AXES),
             f"{x['train_time_s']:,.0f} / {x['eval_time_s']:,.0f}",
             f"{x['load_start']:.2f} -> {x['load_end']:.2f}" if x.get("load_start") is not None else "not recorded"]
            for x in d["rows"]]  # fmt: skip
    out.append(md_table(["family", "steps", *AXES, "train / eval s", "load average"], rows))
    out += _radar_and_readings(d, f"Every family on {ds} after the same minutes of training, with 95 % bands", "at this budget")
    out.append("\n" + run_line(r, stem))
    return "\n".join(out)


# -------------------------------------------------------------------------------------------------
# Speed against diffusers (bench/results/speed_cpu.json: one run per CPU and thread count)
# -------------------------------------------------------------------------------------------------

SPEED_RUNS = {  # view name -> the run's key in speed_cpu.json
    "speed_zen5": "AMD EPYC (family 26 model 2), threads=1",
    "speed_xeon": "Intel(R) Xeon(R) Processor, threads=1",
    "speed_zen4": "AMD EPYC (Zen 4, AVX512-BF16), threads=1",
    "speed_avx2": "AMD EPYC (AVX2, an earlier machine), threads=2",
}


def _run(r: Results, alias: str) -> dict:
    runs = r["speed_cpu"]["runs"]
    if SPEED_RUNS[alias] not in runs:
        raise DocsError(f"speed_cpu.json has no run {SPEED_RUNS[alias]!r} (update SPEED_RUNS in bench/make_docs.py)")
    return runs[SPEED_RUNS[alias]]


def _ratio(group: dict, a: str, b: str) -> dict | None:
    """Images/s of ``a`` over ``b``: the ratio of the medians, and its range over the rounds (the
    variants ran round-robin, so round i of ``a`` and of ``b`` saw the same machine)."""
    if a not in group or b not in group:
        return None
    va, vb = group[a], group[b]
    per_round = [wb / wa for wa, wb in zip(va.get("wall_all", []), vb.get("wall_all", []), strict=False)]
    return {
        "x": va["images_per_s"] / vb["images_per_s"],
        "cpu": va["images_per_cpu_s"] / vb["images_per_cpu_s"],
        "lo": min(per_round) if per_round else None,
        "hi": max(per_round) if per_round else None,
        "rounds": len(per_round),
    }


def _rate(v: dict | None) -> dict | None:
    if v is None:
        return None
    walls = v.get("wall_all") or []
    batch = v["images_per_s"] * v["wall_s"]
    return {"x": v["images_per_s"], "lo": batch / max(walls) if walls else None, "hi": batch / min(walls) if walls else None}


def _speed(run: dict, key: str) -> dict:
    cpu = key.rsplit(", threads=", 1)[0]  # the run's key names the CPU better than its meta on a VM
    out: dict = {"meta": {**run["meta"], "cpu": cpu, "file": "speed_cpu", "run": key}, "cpu": cpu_label(cpu), "shapes": {}}
    pk, pk16 = run["peak"], run.get("peak_bf16")
    out["peak_gflops"] = pk["flops_per_s"] / 1e9
    out["peak_matmul_gflops"] = pk.get("matmul_flops_per_s", pk["flops_per_s"]) / 1e9
    out["peak_bf16_gflops"] = pk16["flops_per_s"] / 1e9 if pk16 else None
    util = []
    for s in run["shapes"]:
        sp, tr, fl = s["sampling"], s["training"], s["flops"]
        d = {
            "sample": {k: _rate(v) for k, v in sp.items()},
            "train": {k: _rate(v) for k, v in tr.items()},
            "sample_ratio": {
                "plain": _ratio(sp, "ours", "diffusers"),
                "fast": _ratio(sp, "ours_fast", "diffusers"),
                "fast_fast": _ratio(sp, "ours_fast", "diffusers_fast"),
                "fast_plain": _ratio(sp, "ours_fast", "ours"),
                "example": _ratio(sp, "ours_fast", "diffusers_ref"),
            },
            "train_ratio": {
                "fp32": _ratio(tr, "ours", "diffusers"),
                "bf16_vs_fp32": _ratio(tr, "ours_bf16", "diffusers"),
                "bf16_bf16": _ratio(tr, "ours_bf16", "diffusers_bf16"),
                "channels_last": _ratio(tr, "ours_channels_last", "ours"),
                "example": _ratio(tr, "ours", "diffusers_ref"),
                "example_bf16": _ratio(tr, "ours_bf16", "diffusers_ref"),
                "example_over_ours": _ratio(tr, "diffusers_ref", "ours"),
                "example_over_ours_bf16": _ratio(tr, "diffusers_ref", "ours_bf16"),
            },
            "params": s["params"],
            "widths": s.get("diffusers_ref_widths"),
            "default_precision": s.get("training_default_precision"),
            "gflop_pass": fl["sampling_pass"] / 1e9,
            "gflop_pass_example": fl.get("sampling_pass_diffusers_ref", 0) / 1e9 or None,
        }
        if d["gflop_pass_example"]:
            d["flop_ratio_example"] = d["gflop_pass"] / d["gflop_pass_example"]
        steps = s["sampling_steps"]
        low = s["fast_plan"]["ours"]["dtype"] is not None and pk16 is not None
        rows = [
            (
                "sampling pass, float32",
                "float32",
                fl["sampling_pass"],
                fl["sampling_pass_diffusers"],
                (sp["ours"] if low else sp["ours_fast"])["wall_s"] / steps,
                sp["diffusers"]["wall_s"] / steps,
                pk,
            )
        ]
        if low:
            rows.append(
                (
                    "sampling pass, fast path bfloat16",
                    "bfloat16",
                    fl["sampling_pass"],
                    fl["sampling_pass_diffusers"],
                    sp["ours_fast"]["wall_s"] / steps,
                    sp["diffusers_fast"]["wall_s"] / steps,
                    pk16,
                )
            )
        rows.append(
            (
                "training step, float32",
                "float32",
                fl["train_step"],
                fl["train_step_diffusers"],
                tr["ours"]["wall_s"],
                tr["diffusers"]["wall_s"],
                pk,
            )
        )
        if "ours_bf16" in tr and pk16 is not None:
            rows.append(
                (
                    "training step, bfloat16",
                    "bfloat16",
                    fl["train_step"],
                    fl["train_step_diffusers"],
                    tr["ours_bf16"]["wall_s"],
                    tr["diffusers_bf16"]["wall_s"],
                    pk16,
                )
            )
        for what, prec, fo, fd, to, td, p in rows:
            util.append(
                {
                    "shape": s["shape"],
                    "what": what,
                    "precision": prec,
                    "gflop_ours": fo / 1e9,
                    "gflop_diffusers": fd / 1e9,
                    "ours_gflops": fo / to / 1e9,
                    "ours_share": fo / to / p["flops_per_s"],
                    "diffusers_gflops": fd / td / 1e9,
                    "diffusers_share": fd / td / p["flops_per_s"],
                }
            )
        out["shapes"][s["shape"]] = d
    out["util"] = util
    for prec in ("float32", "bfloat16"):
        shares = [u[k] for u in util if u["precision"] == prec for k in ("ours_share", "diffusers_share")]
        out[f"util_{prec}"] = {"min": min(shares), "max": max(shares)} if shares else None
    sl = run["slider"]
    quick = [x["median_ms"] for x in sl if x["model"].split()[0] in ("vae", "gan")]
    ddpm = [x for x in sl if x["model"].startswith("ddpm")]
    out["slider"] = {
        "quick_min_ms": min(quick),
        "quick_max_ms": max(quick),
        "all_pass": all(x["pass"] for x in sl if x["pass"] is not None),
        "ddpm_min": min(ddpm, key=lambda x: x["median_ms"]),
        "ddpm_max": max(ddpm, key=lambda x: x["median_ms"]),
    }
    cl = [d["train_ratio"]["channels_last"]["x"] for d in out["shapes"].values() if d["train_ratio"]["channels_last"]]
    out["channels_last_train"] = {"min": min(cl), "max": max(cl)} if cl else None
    return out


def _speed_checks(r: Results) -> dict:
    """The judgements of "against the 1.5x targets", checked on the Zen 5 and Xeon runs."""
    out = {}
    zen5 = r["speed_zen5"]["shapes"].values()
    _claim(
        all(d["sample_ratio"]["fast"]["x"] >= 1.5 for d in zen5),
        "speed_zen5: the fast path no longer samples 1.5x diffusers at every shape",
    )
    _claim(
        all(d["train_ratio"]["bf16_vs_fp32"]["x"] >= 1.5 for d in zen5), "speed_zen5: bf16 training is no longer 1.5x diffusers' float32"
    )
    for alias in ("speed_zen5", "speed_xeon"):
        v = r[alias]["shapes"]
        _claim(all(d["train_ratio"]["fp32"]["x"] < 1.5 for d in v.values()), f"{alias}: float32 training now meets 1.5x: rewrite 'not met'")
    cl = [d["train_ratio"]["channels_last"]["x"] for a in ("speed_zen5", "speed_xeon") for d in r[a]["shapes"].values()]
    out["channels_last_train"] = {"min": min(cl), "max": max(cl)}
    return out


def _speed_view(alias: str) -> Callable[[Results], dict]:
    return lambda r: _speed(_run(r, alias), SPEED_RUNS[alias])


def _x(rt: dict | None, bold: bool = False) -> str:
    """A ratio with its range over the timed rounds: ``2.30x (2.24-2.38)``."""
    if rt is None:
        return "-"
    head = f"**{rt['x']:.2f}x**" if bold else f"{rt['x']:.2f}x"
    return head + (f" ({rt['lo']:.2f}-{rt['hi']:.2f})" if rt.get("lo") is not None else "")


def _r(v: dict | None, digits: int = 2) -> str:
    """A rate with its range over the timed rounds."""
    if v is None:
        return "-"
    return f"{v['x']:.{digits}f}" + (f" ({v['lo']:.{digits}f}-{v['hi']:.{digits}f})" if v.get("lo") is not None else "")


def t_speed_sampling(r: Results, alias: str) -> str:
    return table("""\
shape | params ours / diffusers | ours | ours fast | diffusers | diffusers + same fast path | ours / diffusers | ours fast / diffusers | \
ours fast / diffusers fast
{% for shape, d in shapes.items() %}{% set s, q = d.sample, d.sample_ratio %}
{{ shape }} | {{ d.params.ours|f(",") }} / {{ d.params.diffusers|f(",") }} | {{ s.ours|rate }} | {{ s.ours_fast|rate }} | {{ s.diffusers|rate }} | \
{{ s.get("diffusers_fast")|rate }} | {{ q.plain|ratio }} | {{ q.fast|ratio(True) }} | {{ q.fast_fast|ratio }}
{% endfor %}""", shapes=r[alias]["shapes"])


def t_speed_example(r: Results, alias: str) -> str:
    return table("""\
shape | params ours / example layout (widths) | GFLOP per pass ours / example | sampling img/s ours fast / example | ratio | \
training img/s ours float32 / example | ratio
{% for shape, d in shapes.items() %}
{{ shape }} | {{ d.params.ours|f(",") }} / {{ d.params.diffusers_ref|f(",") }} ({{ d.widths|join(", ") }}) | \
{{ d.gflop_pass|f(".1f") }} / {{ d.gflop_pass_example|f(".1f") }} | {{ d.sample.ours_fast|rate }} / {{ d.sample.diffusers_ref|rate }} | \
{{ d.sample_ratio.example|ratio }} | {{ d.train.ours|rate(1) }} / {{ d.train.diffusers_ref|rate(1) }} | {{ d.train_ratio.example|ratio }}
{% endfor %}""", shapes=r[alias]["shapes"])


def t_speed_training(r: Results, alias: str) -> str:
    return table("""\
shape | ours float32 | ours float32, channels_last | diffusers float32 (its default) | ours / diffusers | ours bf16 (the DDPM's default) | \
diffusers + same bf16 autocast | ours bf16 / diffusers float32 | ours bf16 / diffusers bf16
{% for shape, d in shapes.items() %}{% set t, q = d.train, d.train_ratio %}
{{ shape }} | {{ t.ours|rate(1) }} | {{ t.ours_channels_last|rate(1) }} | {{ t.diffusers|rate(1) }} | {{ q.fp32|ratio(True) }} | \
{{ t.get("ours_bf16")|rate(1) }} | {{ t.get("diffusers_bf16")|rate(1) }} | {{ q.bf16_vs_fp32|ratio(True) }} | {{ q.bf16_bf16|ratio }}
{% endfor %}""", shapes=r[alias]["shapes"])


def t_speed_util(r: Results, alias: str) -> str:
    return table("""\
shape | what (batch 64) | GFLOP per call ours / diffusers | ours GFLOP/s | % of peak | diffusers GFLOP/s | % of peak
{% for u in rows %}
{{ u.shape }} | {{ u.what }} | {{ u.gflop_ours|f(".2f") }} / {{ u.gflop_diffusers|f(".2f") }} | {{ u.ours_gflops|f(".1f") }} | \
{{ (100 * u.ours_share)|f(".0f") }}% | {{ u.diffusers_gflops|f(".1f") }} | {{ (100 * u.diffusers_share)|f(".0f") }}%
{% endfor %}""", rows=r[alias]["util"])


def t_speed_slider(r: Results, alias: str) -> str:
    rows = {(x["model"], x["batch"]): x for x in _run(r, alias)["slider"]}
    return table("""\
model | batch | plain ms | fast-path ms | budget | pass
{% for key, x in rows.items() if not key[0].endswith("(fast)") %}{% set model, batch = key %}{% set fx = rows.get((model ~ " (fast)", batch)) %}
{{ model }} | {{ batch }} | {{ x.median_ms|f(".1f") }} | {{ fx.median_ms|f(".1f") if fx else "-" }} | \
{{ "< %.0f ms"|format(x.budget_ms) if x.budget_ms else "-" }} | {{ "-" if x["pass"] is none else ("pass" if x["pass"] else "FAIL") }}
{% endfor %}""", rows=rows)


def t_slider_quality(r: Results) -> str:
    from bench.bench_speed import SLIDER_BUDGET_S

    d = r["slider_cpu"]
    return table("""\
model | sampling | batch-16 wall ms (median of {{ m.rounds }} rounds) | CPU ms | under {{ budget }} ms | FID | precision | recall | FID against the DDPM
{% for x in rows %}
{{ x.model }} | {{ x.sampling.items()|map("join", " ")|join(", ") or "its default" }} | {{ x.median_ms|f(".1f") }} | {{ x.cpu_ms|f(".0f") }} | \
{{ "yes" if x.under_budget else "no" }} | {{ x.fid.mean|ci([[x.fid.lo, 0]|max, x.fid.hi], 2) }} | \
{{ x.precision.mean|ci([[x.precision.lo, 0]|max, [x.precision.hi, 1]|min]) }} | {{ x.recall.mean|ci([[x.recall.lo, 0]|max, [x.recall.hi, 1]|min]) }} | \
{{ x.get("fid_vs_reference", "-") }}
{% endfor %}""", rows=d["rows"], m=d["meta"], budget=f"{SLIDER_BUDGET_S * 1000:.0f}")


def t_slider_reading(r: Results) -> str:
    """The slider target in words, from the file: which fast models answer in time and how they sit against the DDPM."""
    d = r["slider_cpu"]
    ref = next(x for x in d["rows"] if "reference" in x["model"])
    lines = [] if d["meta"].get("valid") else ["- **Not a quiet-machine run** (its load average is above the limit): re-run `python -m bench.bench_slider` alone."]
    for x in d["rows"]:
        if x is ref:
            continue
        speed = f"answers in {x['median_ms']:.0f} ms ({'within' if x['under_budget'] else 'over'} the budget)"
        verdict = x.get("fid_vs_reference", "-")
        lines.append(f"- {x['model']}: {speed}; its FID is {verdict} against the DDPM's ({x['fid']['mean']:.2f} against {ref['fid']['mean']:.2f}), "
                     f"recall {x['recall']['mean']:.3f} against {ref['recall']['mean']:.3f}.")  # fmt: skip
    return "\n".join(lines)


def t_speed_machines(r: Results) -> str:
    return table("""\
CPU | threads | date | load before / after | sampling 28x28: fast / diffusers; fast / diffusers fast | same, 32x32x3 | \
training 28x28: float32 / diffusers; bf16 / diffusers float32 | same, 32x32x3 | peak GFLOP/s float32 / bf16
{% for v in runs %}{% set m = v.meta %}
{{ v.cpu }} | {{ m.threads }} | {{ (m.date|string)[:10] }} | {{ m.loadavg_before[0]|f(".1f") }} / {{ m.loadavg_after[0]|f(".1f") }} | \
{% for shape in shapes %}{% set d = v.shapes[shape].sample_ratio %}{{ d.fast|ratio }}; {{ d.fast_fast|ratio }} | {% endfor %}\
{% for shape in shapes %}{% set d = v.shapes[shape].train_ratio %}{{ d.fp32|ratio }}; {{ d.bf16_vs_fp32|ratio }} | {% endfor %}\
{{ v.peak_gflops|f(".0f") }} / {{ v.peak_bf16_gflops|f(".0f") if v.peak_bf16_gflops else "-" }}
{% endfor %}""", runs=[r[alias] for alias in SPEED_RUNS], shapes=("28x28x1", "32x32x3"))


def t_profile(r: Results) -> str:
    return table("""\
operator | share of self CPU time
{% for k, v in share.items() %}
`{{ k }}` | {{ (100 * v)|f(".1f") }}%
{% endfor %}""", share=r["profile_unet_cpu"]["self_cpu_share"])


def _profile(r: Results) -> dict:
    sh = r["profile_unet_cpu"]["self_cpu_share"]
    top = max(sh, key=sh.get)
    _claim(top == "aten::mkldnn_convolution", "profile_unet_cpu: convolutions no longer take the largest share of a pass")
    return {
        "conv": sh["aten::mkldnn_convolution"],
        "groupnorm": sh.get("aten::native_group_norm"),
        "rest": 1 - sh["aten::mkldnn_convolution"],
    }


# -------------------------------------------------------------------------------------------------
# Time to quality (bench/results/time_to_quality_*.json), EMA
# -------------------------------------------------------------------------------------------------

MODEL_BASE = {
    "ours": "GDA Studio DDPM (our trainer)",
    "diffusers": "diffusers UNet2DModel, our layout",
    "diffusers-ref": "diffusers UNet2DModel, train_unconditional layout",
    "flow": "GDA Studio flow matching (our trainer)",
}
METRICS = ("fid", "precision", "recall", "density", "coverage")


def model_label(key: str) -> str:
    base, _, opts = key.partition(":")
    opts = ",".join(o for o in opts.split(",") if o and not o.startswith("cpu_bf16="))  # the precision has its own column
    return MODEL_BASE.get(base, base) + (f", `{opts}`" if opts else "")


def _ttq_rows(r: Results, source: str) -> list[dict]:
    doc = r[source]
    m = doc["meta"]
    seed = m.get("seed", 0)  # files written before the seed was recorded ran the default seed, 0
    return [{**row, "key": key, "seed": seed, "cpu": cpu_label(m.get("cpu")), "source": source} for key, row in doc["rows"].items()]


def _bold_best(rows: list[dict], cells: list[list], cols: dict[str, int]) -> None:
    """Bold the better figure of each metric among the rows of one race (FID: lower)."""
    if len(rows) < 2:
        return
    for k, j in cols.items():
        vals = [row[k] for row in rows]
        best = min(vals) if k == "fid" else max(vals)
        if vals.count(best) == 1:
            i = vals.index(best)
            cells[i][j] = f"**{cells[i][j]}**"


def t_ttq(
    r: Results,
    *sources: str,
    seed: bool = False,
    cpu: bool = False,
    precision: bool = False,
    wall: bool = False,
    reference: bool = False,
    mean: bool = False,
) -> str:
    head = (["CPU"] if cpu else []) + (["seed"] if seed else []) + ["model"] + (["training"] if precision else [])
    head += (
        ["params", "train steps", "train img/s"]
        + (["train wall s / CPU s"] if wall else [])
        + ["FID (lower better)", "precision", "recall", "density", "coverage"]
    )
    cols = {k: head.index(h) for k, h in zip(METRICS, head[-5:], strict=True)}
    out: list[list] = []
    for source in sources:
        rows = _ttq_rows(r, source)
        cells = []
        for x in rows:
            c = (
                ([x["cpu"]] if cpu else [])
                + ([x["seed"]] if seed else [])
                + [model_label(x["key"])]
                + ([x.get("train_precision", "-")] if precision else [])
            )
            c += [f"{x['params']:,}", f"{x['train_steps']:,}", f"{x['train_images_per_s']:.1f}"]
            c += [f"{x['train_wall_s']:.0f} / {x['train_cpu_s']:.0f}"] if wall else []
            c += [f3(x[k]) for k in METRICS]
            cells.append(c)
        _bold_best(rows, cells, cols)
        out += cells
    if mean:
        by_model: dict[str, list[dict]] = {}
        for source in sources:
            for x in _ttq_rows(r, source):
                by_model.setdefault(x["key"], []).append(x)
        for key, xs in by_model.items():
            c = ([""] if cpu else []) + (["mean ± sd"] if seed else []) + [model_label(key)] + ([""] if precision else [])
            c += ["", spread([x["train_steps"] for x in xs], 0), spread([x["train_images_per_s"] for x in xs], 1)] + ([""] if wall else [])
            c += [spread([x[k] for x in xs]) for k in METRICS]
            out.append(c)
    if reference:
        ref = r[sources[0]]["real_test_reference"]
        c = (
            ([""] if cpu else [])
            + (["-"] if seed else [])
            + [f"real test split ({ref['n']:,} images, reference)"]
            + (["-"] if precision else [])
        )
        c += ["-", "-", "-"] + (["-"] if wall else []) + [f3(ref[k]) for k in METRICS]
        out.append(c)
    return md_table(head, out)


def _paired(sources: list[str], a: Callable[[dict], bool], b: Callable[[dict], bool]) -> Callable[[Results], dict]:
    """A view of races between two settings, one race per file: per race the two rows, their step
    and throughput ratios, who wins each metric; over the races min / max / means and win counts."""

    def view(r: Results) -> dict:
        races = []
        for source in sources:
            rows = _ttq_rows(r, source)
            ra, rb = [x for x in rows if a(x)], [x for x in rows if b(x)]
            if len(ra) != 1 or len(rb) != 1:
                raise DocsError(f"{source}: cannot tell the two sides of the race apart")
            ra, rb = ra[0], rb[0]
            wins = {k: ("a" if (ra[k] < rb[k] if k == "fid" else ra[k] > rb[k]) else "b") for k in METRICS}
            races.append(
                {
                    "source": source,
                    "seed": ra["seed"],
                    "cpu": ra["cpu"],
                    "a": ra,
                    "b": rb,
                    "wins": wins,
                    "step_ratio": ra["train_steps"] / rb["train_steps"],
                    "step_ratio_inv": rb["train_steps"] / ra["train_steps"],
                    "rate_ratio": ra["train_images_per_s"] / rb["train_images_per_s"],
                    "fid_gap": abs(ra["fid"] - rb["fid"]),
                }
            )
        out = {"races": races, "n": len(races)}
        for side in ("a", "b"):
            out[f"{side}_wins"] = {k: sum(x["wins"][k] == side for x in races) for k in METRICS}
            out[f"{side}_fid_wins_seeds"] = [x["seed"] for x in races if x["wins"]["fid"] == side]
            out[f"{side}_mean"] = {k: statistics.mean(x[side][k] for x in races) for k in (*METRICS, "train_steps", "train_images_per_s")}
            out[f"{side}_fid"] = {"min": min(x[side]["fid"] for x in races), "max": max(x[side]["fid"] for x in races)}
            other = "b" if side == "a" else "a"
            out[f"{side}_fid_win_text"] = _list(
                [
                    f"{x['cpu']} seed {x['seed']}: {x[side]['fid']:.3f} against {x[other]['fid']:.3f}"
                    for x in races
                    if x["wins"]["fid"] == side
                ]
            )
        for k in ("step_ratio", "step_ratio_inv", "rate_ratio", "fid_gap"):
            out[k] = {"min": min(x[k] for x in races), "max": max(x[k] for x in races)}
        return out

    return view


def _is(key: str) -> Callable[[dict], bool]:
    return lambda x: x["key"] == key


def _prec(p: str) -> Callable[[dict], bool]:
    return lambda x: x.get("train_precision") == p


SEED_RACES = ["time_to_quality_cpu", "time_to_quality_seed1_cpu", "time_to_quality_seed2_cpu", "time_to_quality_seed3_cpu"]
BF16_RACES = [
    "time_to_quality_cpu_bf16_seed0",
    "time_to_quality_cpu_bf16_seed1",
    "time_to_quality_zen5_fp32_vs_bf16_seed0",
    "time_to_quality_zen5_fp32_vs_bf16_seed1",
]
FLOW_RACES = ["time_to_quality_flow_fp32_vs_bf16_seed0", "time_to_quality_flow_fp32_vs_bf16_seed1"]
MIN_SNR_RACES = ["time_to_quality_min_snr_seed0", "time_to_quality_min_snr_seed1"]
VS_FP32_RACES = ["time_to_quality_bf16_vs_diffusers_fp32_seed0", "time_to_quality_bf16_vs_diffusers_fp32_seed1"]
VS_BF16_RACES = ["time_to_quality_bf16_vs_diffusers_bf16_seed0", "time_to_quality_bf16_vs_diffusers_bf16_seed1"]


def _ttq_checks(r: Results) -> dict:
    """The sentences of the time-to-quality sections that are judgements, checked here."""
    seeds = r["ttq_seeds"]
    _claim(
        0 < seeds["a_wins"]["fid"] < seeds["n"], "time_to_quality seeds: one side now wins FID on every seed ('level within seed variance')"
    )
    bf = r["ttq_bf16"]
    _claim(bf["b_wins"]["fid"] > bf["n"] / 2, "bf16 races: bf16 no longer wins FID on most races")
    _claim(
        all(bf["b_wins"][k] == bf["n"] for k in ("precision", "density", "coverage")),
        "bf16 races: bf16 no longer wins precision/density/coverage on all",
    )
    fl = r["ttq_flow"]
    _claim(fl["b_wins"]["fid"] == fl["n"], "flow races: bf16 no longer wins FID on every seed")
    ms = r["ttq_min_snr"]
    _claim(
        ms["a_wins"]["fid"] == ms["n"] and ms["a_wins"]["recall"] == ms["n"],
        "Min-SNR races: plain MSE no longer wins FID and recall on both seeds",
    )
    _claim(ms["b_wins"]["precision"] == ms["n"], "Min-SNR races: Min-SNR no longer has the higher precision on both seeds")
    vf = r["ttq_vs_fp32"]
    _claim(vf["b_wins"]["fid"] == vf["n"], "bf16 vs diffusers float32: diffusers no longer has the lower FID on both seeds")
    _claim(
        all(vf["a_wins"][k] == vf["n"] for k in ("precision", "density", "coverage")),
        "bf16 vs diffusers float32: ours lost precision/density/coverage",
    )
    vb = r["ttq_vs_bf16"]
    _claim(0 < vb["a_wins"]["fid"] < vb["n"], "bf16 vs diffusers bf16: one side wins FID on both seeds")
    ref = _ttq_rows(r, "time_to_quality_ref_cpu")
    _claim(
        min(ref, key=lambda x: x["fid"])["key"] == "ours",
        "time_to_quality_ref_cpu: ours no longer has the lower FID than the example layout",
    )
    corn = {x["key"]: x for x in _ttq_rows(r, "time_to_quality_corn_cpu")}
    _claim(min(corn, key=lambda k: corn[k]["fid"]) == "ours", "time_to_quality_corn_cpu: our default layout no longer has the best FID")
    lean = next(k for k in corn if k.startswith("ours:"))
    _claim(max(corn, key=lambda k: corn[k]["fid"]) == lean, "time_to_quality_corn_cpu: the lean layout no longer scores worst on FID")
    init = {x["key"]: x for x in _ttq_rows(r, "time_to_quality_init_cpu")}
    _claim(init["ours"]["fid"] < init["ours:zero_init=true"]["fid"], "time_to_quality_init_cpu: the default init no longer beats zero_init")
    xeon = [x for x in bf["races"] if x["cpu"] == "Xeon (AMX)"]
    vsb = [x for x in r["ttq_vs_bf16"]["races"] if x["seed"] == 0]
    return {
        "ref": {x["key"]: x for x in ref},
        "ref_rate_ratio": ref[0]["train_images_per_s"] / ref[1]["train_images_per_s"],
        "init": init,
        "corn": {
            **{k.split(":")[0] if k != lean else "lean": v for k, v in corn.items()},
            "reference": r["time_to_quality_corn_cpu"]["real_test_reference"],
            "step_ratio_example": corn["diffusers-ref"]["train_steps"] / corn["ours"]["train_steps"],
            "recall_ratio": corn["ours"]["recall"] / corn["diffusers-ref"]["recall"],
            "lean_rate_ratio": corn[lean]["train_images_per_s"] / corn["ours"]["train_images_per_s"],
        },
        "xeon_bf16_seed0_fid_first": next(x["b"]["fid"] for x in xeon if x["seed"] == 0),
        "xeon_bf16_seed0_fid_again": vsb[0]["a"]["fid"],
        "vs_bf16_rate_spread": max(x["a"]["train_images_per_s"] for x in r["ttq_vs_bf16"]["races"])
        / min(x["a"]["train_images_per_s"] for x in r["ttq_vs_bf16"]["races"]),
    }


def t_ema(r: Results) -> str:
    sources = ["ema_cpu", "ema_short_cpu"]
    order: list[str] = []
    for s in sources:
        for x in r[s]["rows"]:
            if x["schedule"] not in order:
                order.append(x["schedule"])
    order = [o for o in order if o != "none"] + ["none"]
    names = {"const": "default (`0.999` cap)", "none": "raw weights of the last step"}
    rows = []
    for s in sources:
        for seed in sorted({x["seed"] for x in r[s]["rows"]}):
            xs = {x["schedule"]: x for x in r[s]["rows"] if x["seed"] == seed}
            steps = next(iter(xs.values()))["train_steps"]
            rows.append([s, seed, f"{steps:,}", *(f3(xs[o]["fid"]) if o in xs else "-" for o in order)])
    return md_table(["run", "seed", "steps", *(names.get(o, f"`{o}`") for o in order)], rows)


def _ema(r: Results) -> dict:
    runs = {s: {} for s in ("ema_cpu", "ema_short_cpu")}
    for s in runs:
        for x in r[s]["rows"]:
            runs[s].setdefault(x["seed"], {})[x["schedule"]] = x
    devs = [
        abs(x["fid"] - xs["const"]["fid"]) for s in runs.values() for xs in s.values() for k, x in xs.items() if k not in ("const", "none")
    ]
    seeds = sorted(runs["ema_cpu"])
    gaps = [abs(runs["ema_cpu"][sd]["const"]["train_steps"] - runs["ema_short_cpu"][sd]["const"]["train_steps"]) for sd in seeds]
    raw = [xs["none"]["fid"] for s in runs.values() for xs in s.values()]
    _claim(
        min(raw) < min(xs["const"]["fid"] for s in runs.values() for xs in s.values()), "EMA: the raw weights are no longer ever the best"
    )
    _claim(
        max(raw) > max(xs["const"]["fid"] for s in runs.values() for xs in s.values()), "EMA: the raw weights are no longer ever the worst"
    )
    return {
        "runs": {s: {str(k): v for k, v in d.items()} for s, d in runs.items()},
        "max_dev": max(devs),
        "step_gap_min": min(gaps),
        "step_gap_max": max(gaps),
        "raw_min": min(raw),
        "raw_max": max(raw),
    }


# -------------------------------------------------------------------------------------------------
# Metric kernels, evaluation at scale, full evaluate
# -------------------------------------------------------------------------------------------------


def t_metrics(r: Results) -> str:
    m = r["metrics_cpu"]
    return table("""\
work | ours | reference | agreement
{% set p, s, d = m.prdc, m.nearest_ssim, m.deepfool %}
precision / recall / density / coverage, {{ p.n|f(",") }} x {{ p.n|f(",") }} {{ p.dim }}-d features | {{ p.ours_s|f(".1f") }} s | \
`prdc.compute_prdc` (k = 3 and k = 5): {{ p.prdc_s|f(".1f") }} s | \
{{ "identical values" if p.max_abs_diff == 0 else "max abs diff " ~ p.max_abs_diff|f(".1e") }}
exact nearest SSIM, {{ s.n_syn|f(",") }} synthetic x {{ s.n_train|f(",") }} training 28x28 images | {{ s.ours_s|f(".1f") }} s | \
scikit-image loop: {{ s.skimage_loop_s_extrapolated|f(",.0f") }} s (extrapolated from {{ s.skimage_pairs_timed|f(",") }} pairs); naive batched torch: \
{{ s.naive_torch_s_extrapolated|f(".0f") }} s (extrapolated from {{ s.naive_syn_timed }} synthetic images) | max abs diff {{ s.max_abs_diff_vs_naive|f(".1e") }}
DeepFool L2, {{ d.n|f(",") }} {{ d.dataset.split()[0] }} test images | {{ d.ours_s|f(".1f") }} s | \
torchattacks: {{ d.torchattacks_s_extrapolated|f(".1f") }} s (extrapolated from {{ d.torchattacks_images_timed }} images) | \
rho {{ d.rho_ours_subset|f(".5f") }} vs {{ d.rho_torchattacks_subset|f(".5f") }} on the common subset
""", m=m)


def _metrics(r: Results) -> dict:
    m = r["metrics_cpu"]
    return {
        "prdc_speedup": m["prdc"]["prdc_s"] / m["prdc"]["ours_s"],
        "ssim_vs_skimage": m["nearest_ssim"]["skimage_loop_s_extrapolated"] / m["nearest_ssim"]["ours_s"],
        "ssim_vs_naive": m["nearest_ssim"]["naive_torch_s_extrapolated"] / m["nearest_ssim"]["ours_s"],
        "load_start": m["env"]["load_avg_start"][0],
        "load_end": m["env"]["load_avg_end"][0],
    }


def t_scale(r: Results) -> str:
    return table("""\
metric | sizes | time | peak RSS | result
{% for c in cases %}
{{ "precision / recall / density / coverage (128-d features)" if c.kind == "prdc" else "nearest SSIM (28x28)" }} | \
{{ c.a|f(",") }} x {{ c.b|f(",") }} | {{ c.seconds|f(".1f") }} s | {{ c.peak_rss_mb|f(",") }} MB | \
{{ "P %.3f R %.3f"|format(c.precision, c.recall) if c.kind == "prdc" else "mean nearest SSIM %.3f"|format(c.mean_nearest_ssim) }}
{% endfor %}""", cases=r["scale_cpu"]["cases"])


def _scale(r: Results) -> dict:
    cases = r["scale_cpu"]["cases"]
    ssim = max((c for c in cases if c["kind"] == "ssim"), key=lambda c: c["b"])
    prdc = sorted((c for c in cases if c["kind"] == "prdc"), key=lambda c: c["a"])
    return {
        "ssim_full_s": ssim["seconds"] * ssim["b"] / ssim["a"],
        "ssim_full_n": ssim["b"],
        "torch_rss_mb": cases[0]["rss_before_mb"],
        "prdc_small": prdc[0],
        "prdc_large": prdc[-1],
        "prdc_rss_growth": prdc[-1]["peak_rss_mb"] / prdc[0]["peak_rss_mb"],
    }


def t_evaluate(r: Results) -> str:
    return table("""\
family | trained steps (the scores mean nothing) | full evaluate
{% for x in rows %}
{{ x.family }} | {{ x.train_steps }} | {{ x.evaluate_s|f(".0f") }} s
{% endfor %}""", rows=r["evaluate_cpu"]["rows"])


def t_machines(r: Results) -> str:
    """Which machine each result file was made on, as the files record it."""
    by: dict[str, list[str]] = {}
    for stem, doc in r.files.items():
        if stem == "speed_cpu":
            for key, run in doc["runs"].items():
                by.setdefault(cpu_label(key), []).append(f"{stem} ({run['meta']['date'][:10]})")
            continue
        m = _meta(doc)
        by.setdefault(cpu_label(m.get("cpu") or doc.get("cpu")), []).append(stem)
    return table("""\
CPU (as the file records it) | result files
{% for cpu, stems in by|dictsort(true) %}
{{ cpu }} | `{{ stems|join("`, `") }}`
{% endfor %}""", by=by)


# -------------------------------------------------------------------------------------------------
# The protocol study (bench/results/protocol_*.json)
# -------------------------------------------------------------------------------------------------


def _level(v) -> str:
    return "all" if v == "all" else f"{v}/class"


def _ratio_txt(v) -> str:
    return f"{int(v)}x" if float(v).is_integer() else f"{v:g}x"


def _signed_ci(v, lo_hi) -> str:
    if v is None:
        return "-"
    return f"{v:+.3f}" + (f" [{lo_hi[0]:+.3f}, {lo_hi[1]:+.3f}]" if lo_hi else "")


HOW_IT_RAN = """How it ran: command `{{ b.get("command") }}`; run {{ (b.get("date", "")|string)[:10] or "date not recorded" }}; \
CPU {{ b.get("cpu", "not recorded") }}; {{ b.get("threads", "?") }} thread(s)\
{% if b.get("wall_s") is not none %}; wall time {{ (b.wall_s / 60)|f(".1f") }} min \
(generators' training {{ (b.get("generator_train_s", 0) / 60)|f(".1f") }} min of it){% endif %}\
{% if b.get("peak_rss_mb") is not none %}; peak memory {{ b.peak_rss_mb|f(",.0f") }} MB{% endif %}\
{% if b.get("load_start") is not none %}; load average {{ b.load_start|f(".1f") }} at the start, {{ b.get("load_end", nan)|f(".1f") }} at the end{% endif %}\
 (`bench/results/{{ stem }}.json`)."""


def protocol_block(r: Results, name: str) -> str:
    """One dataset's study: chart, table, claims, reading and how it ran; or "not run yet"."""
    if name not in PROTOCOL_DATASETS:
        raise DocsError(f"unknown protocol dataset {name!r} (PROTOCOL_DATASETS in bench/make_docs.py)")
    stem, command = PROTOCOL_DATASETS[name]
    if not r.has(stem):
        return f"Not run yet. To make it: `{command}` (writes `bench/results/{stem}.json` and `assets/{stem}.png`; then `make docs`)."
    d = r[stem]
    out = []
    png = r.root / "assets" / f"{stem}.png"
    if png.is_file():
        out.append(f"![{name}: accuracy against the synthetic ratio, one panel per scarcity level](../assets/{stem}.png)")
    else:
        out.append(f"(The chart `assets/{stem}.png` is missing: re-run `{command}`.)")
    c = d.get("config", {})
    budget = c.get("generator_budget") or {}
    levels = c.get("per_class_levels", [])
    budget_txt = "not recorded"
    for key, unit in (("steps", "steps"), ("minutes", "minutes")):
        v = budget.get(key)
        if isinstance(v, list) and len(v) == len(levels):
            budget_txt = ", ".join(f"{b:g} {unit} at {_level(lv)}" for b, lv in zip(v, levels, strict=True))
        elif v:
            budget_txt = f"{', '.join(f'{x:g}' for x in v) if isinstance(v, list) else f'{v:g}'} {unit}"
        if budget_txt != "not recorded":
            break
    seeds = c.get("seeds")
    n_seeds = len(seeds) if isinstance(seeds, list) else seeds
    out.append(
        f"Dataset `{c.get('dataset')}` ({c.get('test_images', '?')} test images); levels {', '.join(_level(x) for x in levels)}; "
        f"ratios {', '.join(_ratio_txt(x) for x in c.get('ratios', []))}; {n_seeds} seed{'s' * (n_seeds != 1)}; generators: "
        f"{c.get('scope', 'not recorded')}, trained for {budget_txt}. Accuracy on the real test split, mean over seeds with its 95 % interval; "
        "gain over real only paired by seed."
    )
    # The verdict is the Holm-corrected one over the ratios of its reading line (older results: the per-cell one).
    summary = table("""\
model | level | ratio | accuracy [95% CI] | gain [95% CI] | gain, Holm-corrected interval | verdict (from the corrected interval)
{% for s in rows %}{% set mixed = s.get("ratio", 0) > 0 %}{% set hc = s.get("verdict_corrected_ci") %}
{{ s.get("model_label") or s.model }}{{ " · geometric aug" if s.get("geometric_aug") else "" }}{{ " · selected" if s.get("selected") else "" }} | \
{{ s.per_class|level }} | {{ s.ratio|ratio_txt }} | {{ s.mean|ci(s.get("ci95")) }} | {{ s.get("gain")|signed_ci(s.get("gain_ci95")) if mixed else "-" }} | \
{{ (s.get("gain")|signed_ci(hc)) ~ " (" ~ (100 * s.verdict_corrected_level)|round(1) ~ " %)" if mixed and hc else "-" }} | \
{{ s.get("verdict_corrected", s.get("verdict", "-")) if mixed else "real only" }}
{% endfor %}""", rows=d.get("summary", []))
    out.append(summary if d.get("summary") else "(no summary rows)")
    claims = d.get("claims", [])
    if claims:
        out.append("The paper's claims, checked on these generators:\n\n" + table("""\
claim | verdict | why
{% for x in claims %}
{{ x.claim }} | {{ x.verdict }} | {{ x.get("reason", "") }}
{% endfor %}""", claims=claims))
    texts = [x["claim"] for x in claims]
    reading = [line for line in d.get("reading", []) if not any(t in line for t in texts)]  # the claims are in the table above
    if reading:
        out.append("Reading (written by the study itself):\n\n" + "\n".join(f"- {line}" for line in reading))
    b = d.get("bench") or {}
    done, total = b.get("units_done"), b.get("units_total")
    if done is not None and total and done < total:
        out.insert(1, f"**Partial: {done} of {total} (level, seed) units finished.** The figures below rest on those; the same command "
                      f"continues with the rest (finished units are kept in `bench/results/{stem}.parts.json`).")  # fmt: skip
    if b:
        out.append(_template(HOW_IT_RAN).render(b=b, stem=stem, nan=float("nan")))
    return "\n\n".join(out)


# -------------------------------------------------------------------------------------------------
# The shared server under load (bench/results/server_load.json)
# -------------------------------------------------------------------------------------------------

SERVER_TARGET = {"sessions": 8, "p95_s": 2.0}  # the issue's target on a 2-core machine


def _server(r: Results) -> dict:
    d = r["server_load"]
    n, p95 = d["settings"]["sessions"], d["page_response_s"]["p95"]
    met = {"sessions held": d["sessions_held"] >= SERVER_TARGET["sessions"] and d["sessions_held"] == n,
           "nothing lost": d["jobs_lost"] == 0, "no leak": d["cross_workspace_leaks"] == 0,
           f"p95 under {SERVER_TARGET['p95_s']:g} s": p95 is not None and p95 < SERVER_TARGET["p95_s"]}  # fmt: skip
    missed = [k for k, ok in met.items() if not ok]
    verdict = "met on every count" if not missed else "missed: " + ", ".join(missed)
    return {"verdict": verdict, "met": not missed, "sessions": n, "held": d["sessions_held"], "p95": p95}


def t_server_load(r: Results) -> str:
    d = r["server_load"]
    errors: dict[str, int] = {}
    for e in d.get("session_errors", []):
        errors[e] = errors.get(e, 0) + 1
    return table("""\
measure | measured | target
{% set pr, qw = d.page_response_s, d.queue_wait_s %}
sessions held (every step finished) | {{ d.sessions_held }} of {{ d.settings.sessions }} | {{ target.sessions }}
page response, p50 / p95 / max | {{ pr.p50|f(".2f") }} / {{ pr.p95|f(".2f") }} / {{ pr.max|f(".2f") }} s ({{ pr.n }} responses) | p95 < {{ target.p95_s|f("g") }} s
queue wait of the sessions' jobs, p50 / p95 / max | {{ qw.p50|f(".1f") }} / {{ qw.p95|f(".1f") }} / {{ qw.max|f(".1f") }} s ({{ qw.jobs }} jobs) | {{ "" }}
jobs lost | {{ d.jobs_lost }} | 0
cross-workspace leaks | {{ d.cross_workspace_leaks }} | 0
web server's peak memory (VmHWM) | {{ d.server_peak_rss_mib|f(",.0f") ~ " MiB" if d.get("server_peak_rss_mib") else "not recorded" }} | {{ "" }}
a session's timed steps, summed, median | {{ d.get("median_session_timed_s", d.get("median_session_s"))|f(".0f") }} s | {{ "" }}
{% for k, v in errors.items() %}
a session lost | {{ k }}{{ " (%d sessions)"|format(v) if v > 1 else "" }} | none
{% endfor %}""", d=d, target=SERVER_TARGET, errors=errors)


def t_server_steps(r: Results) -> str:
    return table("""\
page or action | response, p50
{% for k, v in steps.items() if v is not none %}
{{ k }} | {{ v|f(".2f") }} s
{% endfor %}""", steps=r["server_load"]["page_response_s"]["by_step_p50"])


# -------------------------------------------------------------------------------------------------
# Registry, rendering, checks
# -------------------------------------------------------------------------------------------------

# -------------------------------------------------------------------------------------------------
# Hybrids (docs/hybrids.md): distillation methods, and DDGAN / student against the DDPM
# -------------------------------------------------------------------------------------------------

HYBRID_NAMES = {"ddgan": "DDGAN, 2 large steps", "student": "distilled student, 2 steps", "ddim25": "DDPM, DDIM 25 steps", "dpmpp10": "DDPM, DPM-Solver++ 10 steps"}
DISTILL_DEFAULT = "progressive"  # the ``distill`` command's default method (gda_core/cli.py); the page says it won


def t_distill_methods(r: Results) -> str:
    d = r["distill_methods_cpu"]
    return table("""\
method | steps | training time | student's distance to the teacher | teacher's best own {{ d.student_steps }}-step sampler
{% for x in d.rows %}
`{{ x.method }}` | {{ x.train_steps }} | {{ x.train_time_s|f(".0f") }} s | {{ x.student|f(".4f") }} | {{ x.teacher_few_best|f(".4f") }}
{% endfor %}""", d=d)


def t_hybrids(r: Results) -> str:
    return table("""\
sampler | network passes per image | batch of 16 (wall) | batch of 16 (CPU time) | speed-up on DDIM 25 (wall) | FID | precision | recall
{% for k, x in variants.items() %}
{{ names.get(k, k) }} | {{ x.nfe_per_image|f("g") }} | {{ x.ms_per_batch16|f(".0f") }} ms | \
{{ x.cpu_ms_per_batch16|f(".0f") ~ " ms" if "cpu_ms_per_batch16" in x else "-" }} | {{ x.speedup_vs_ddim25|f(".1f") }}x | \
{{ x.fid|f2 }} | {{ x.precision|f3 }} | {{ x.recall|f3 }}
{% endfor %}""", variants=r["hybrids_cpu"]["variants"], names=HYBRID_NAMES)


def _hybrids(r: Results) -> dict:
    d, h = r["distill_methods_cpu"], r["hybrids_cpu"]
    _claim(d["best"] == DISTILL_DEFAULT, f"the default distillation method {DISTILL_DEFAULT} is no longer the one measured best ({d['best']})")
    best = next(x for x in d["rows"] if x["method"] == d["best"])
    _claim(best["student"] < best["teacher_few_best"], "the best student no longer tracks its teacher better than the teacher's own few steps")
    beaten = {x["method"] for x in d["rows"] if x["student"] >= x["teacher_few_best"]}
    _claim(all(x["method"] == "consistency" for x in d["rows"] if x["method"] in beaten) and "consistency" in beaten,
           "the methods whose student does not beat the teacher's own few steps are no longer just the short consistency run")
    v = h["variants"]
    _claim(v["ddgan"]["recall"] < v["ddim25"]["recall"], "the DDGAN no longer misses more of the data than the DDPM")
    _claim(v["student"]["recall"] > v["ddgan"]["recall"], "the student no longer keeps more coverage than the DDGAN")
    t = h["targets"]
    return {
        "fast": [HYBRID_NAMES[k] for k, x in t.items() if x["under_100ms"]],
        "slow": [HYBRID_NAMES[k] for k, x in t.items() if not x["under_100ms"]],
        "fast_cpu": [HYBRID_NAMES[k] for k, x in t.items() if x.get("under_100ms_cpu_time")],
        "slow_cpu": [HYBRID_NAMES[k] for k, x in t.items() if not x.get("under_100ms_cpu_time")],
        "tenfold": [HYBRID_NAMES[k] for k, x in t.items() if x["at_least_10x"]],
        "not_tenfold": [HYBRID_NAMES[k] for k, x in t.items() if not x["at_least_10x"]],
    }


VIEWS: dict[str, Callable[[Results], object]] = {
    "hybrids": _hybrids,
    "shipped": _shipped,
    "engine": _engine,
    "quality": _quality,
    "x0": _x0,
    "profile": _profile,
    "ttq_seeds": _paired(SEED_RACES, _is("ours"), _is("diffusers")),
    "ttq_bf16": _paired(BF16_RACES, _prec("float32"), _prec("bfloat16")),
    "ttq_flow": _paired(FLOW_RACES, _prec("float32"), _prec("bfloat16")),
    "ttq_min_snr": _paired(MIN_SNR_RACES, _is("ours"), _is("ours:min_snr_gamma=5")),
    "ttq_vs_fp32": _paired(VS_FP32_RACES, lambda x: x["key"].startswith("ours"), lambda x: x["key"].startswith("diffusers")),
    "ttq_vs_bf16": _paired(VS_BF16_RACES, lambda x: x["key"].startswith("ours"), lambda x: x["key"].startswith("diffusers")),
    "ttq": _ttq_checks,
    "ema": _ema,
    "metrics": _metrics,
    "server": _server,
    "scale": _scale,
    "speed": _speed_checks,
    **{alias: _speed_view(alias) for alias in SPEED_RUNS},
}

TABLES: dict[str, Callable[..., str]] = {
    "distill_methods": t_distill_methods,
    "hybrids": t_hybrids,
    "machines": t_machines,
    "shipped": t_shipped,
    "shipped_provenance": t_shipped_provenance,
    "shipped_families": t_shipped_families,
    "make_checkpoints": t_make_checkpoints,
    "engine": t_engine,
    "quality_models": t_quality_models,
    "quality_samplers": t_quality_samplers,
    "quality_bf16": t_quality_bf16,
    "x0_clip": t_x0_clip,
    "families_budget": t_families_budget,
    "speed_sampling": t_speed_sampling,
    "speed_example": t_speed_example,
    "speed_training": t_speed_training,
    "speed_util": t_speed_util,
    "speed_slider": t_speed_slider,
    "slider_quality": t_slider_quality,
    "slider_reading": t_slider_reading,
    "speed_machines": t_speed_machines,
    "profile": t_profile,
    "ttq_ref": lambda r: t_ttq(r, "time_to_quality_ref_cpu", reference=True),
    "ttq_seeds": lambda r: t_ttq(r, *SEED_RACES, seed=True, mean=True),
    "ttq_init": lambda r: t_ttq(r, "time_to_quality_init_cpu"),
    "ema": t_ema,
    "ttq_min_snr": lambda r: t_ttq(r, *MIN_SNR_RACES, seed=True, precision=True),
    "ttq_bf16": lambda r: t_ttq(r, *BF16_RACES, cpu=True, seed=True, precision=True),
    "ttq_flow": lambda r: t_ttq(r, *FLOW_RACES, seed=True, precision=True),
    "ttq_vs_fp32": lambda r: t_ttq(r, *VS_FP32_RACES, seed=True, precision=True, reference=True),
    "ttq_vs_bf16": lambda r: t_ttq(r, *VS_BF16_RACES, cpu=True, seed=True, precision=True),
    "ttq_corn": lambda r: t_ttq(r, "time_to_quality_corn_cpu", wall=True, reference=True),
    "metrics": t_metrics,
    "scale": t_scale,
    "evaluate": t_evaluate,
    "server_load": t_server_load,
    "server_steps": t_server_steps,
}


def fill(kind: str, body: str, r: Results) -> str:
    if kind == "table":
        name, *args = body.split(":")
        if name not in TABLES:
            raise DocsError(f"no table {name!r} (TABLES in bench/make_docs.py)")
        return TABLES[name](r, *args)
    if kind == "value":
        where, _, spec = body.partition("|")
        source, _, path = where.partition(":")
        return fmt(lookup(r[source.strip()], path.strip()), spec.strip())
    if kind == "run":
        return run_line(r, body)
    return protocol_block(r, body)


TEMPLATE_NOTE = re.compile(r"<!--\s*template\b.*?-->\n*", re.S)


def render(template: str, r: Results, name: str = "template") -> str:
    def one(m: re.Match) -> str:
        try:
            return fill(m.group(1), m.group(2), r)
        except DocsError as e:
            line = template.count("\n", 0, m.start()) + 1
            raise DocsError(f"{name}:{line}: {m.group(0)}: {e}") from None
        except (KeyError, TypeError, ValueError, ZeroDivisionError, jinja2.UndefinedError) as e:
            line = template.count("\n", 0, m.start()) + 1
            raise DocsError(f"{name}:{line}: {m.group(0)}: {type(e).__name__}: {e}") from None

    return TEMPLATE_NOTE.sub("", PLACEHOLDER.sub(one, template))


def render_all(root: Path = ROOT) -> dict[Path, str]:
    """Every generated page, path -> text (nothing written)."""
    r = Results(root)
    out = {}
    for page in PAGES:
        tpl = root / "docs" / page.replace(".md", ".template.md")
        out[root / "docs" / page] = render(tpl.read_text(), r, tpl.name)
    return out


_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)
_LINK_TARGET = re.compile(r"\]\([^)]*\)")
ALLOWED_FIGURES = {"95 %", "95%"}  # the confidence level of every interval: a convention, not a measurement
_FIGURE = re.compile(r"(?<![\w.])(\d+\.\d+|\d+(?:\.\d+)?x(?![\w])|\d+(?:\.\d+)? ?%)")


def stray_figures(template: str) -> list[str]:
    """Measured-looking figures typed into a template (decimals, ratios like 2x, percentages) outside
    placeholders, code and link targets: each should come from a result file instead."""
    text = PLACEHOLDER.sub(" ", template)
    text = _CODE.sub(" ", text)
    text = _LINK_TARGET.sub("]", text)
    hits = []
    for i, line in enumerate(text.splitlines(), 1):
        hits += [f"line {i}: {m.group(0)!r} in {line.strip()[:80]!r}" for m in _FIGURE.finditer(line) if m.group(0) not in ALLOWED_FIGURES]
    return hits


_MD_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_SRC = re.compile(r"<(?:img|a)\s[^>]*(?:src|href)=\"([^\"]+)\"", re.I)


def broken_links(files: list[Path], root: Path = ROOT) -> list[str]:
    """Relative links and images of markdown files that do not resolve to a file or folder inside
    ``root`` (links to the web, mail and in-page anchors are not checked; code is skipped)."""
    root = Path(root).resolve()
    bad = []
    for f in files:
        f = Path(f)
        text = _CODE.sub(" ", f.read_text())
        for m in [*_MD_LINK.finditer(text), *_HTML_SRC.finditer(text)]:
            target = m.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
                continue
            path = target.split("#", 1)[0].split("?", 1)[0]
            resolved = (root / path.lstrip("/")) if path.startswith("/") else (f.parent / path)
            resolved = resolved.resolve()
            if not resolved.is_relative_to(root) or not resolved.exists():
                bad.append(f"{f.resolve().relative_to(root) if f.resolve().is_relative_to(root) else f}: {target}")
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when a page differs from what the results give")
    args = ap.parse_args(argv)
    try:
        pages = render_all(ROOT)
    except DocsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stale = [p for p, text in pages.items() if not p.is_file() or p.read_text() != text]
    for tpl in sorted((ROOT / "docs").glob("*.template.md")):
        for hit in stray_figures(tpl.read_text()):
            print(f"warning: {tpl.relative_to(ROOT)}: figure typed into the prose, {hit}", file=sys.stderr)
    if args.check:
        for p in stale:
            print(f"{p.relative_to(ROOT)} is stale: run python -m bench.make_docs", file=sys.stderr)
        return 1 if stale else 0
    for p in stale:
        p.write_text(pages[p])
        print(f"wrote {p.relative_to(ROOT)}")
    if not stale:
        print("docs are up to date")
    for bad in broken_links(sorted(p for p in (ROOT / "docs").glob("*.md") if not p.name.endswith(".template.md"))):
        print(f"warning: broken link {bad}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
