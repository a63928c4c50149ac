"""The generated docs are current, their figures come from result files, and their links resolve.

docs/benchmarks.md and docs/protocol-results.md are written by ``python -m bench.make_docs`` from
bench/results/*.json and the templates in docs/. These tests regenerate them in memory (jinja2,
no torch) and fail when the pages on disk differ: whoever changes a result file or a
template re-runs ``make docs``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import make_docs

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted(p for p in (ROOT / "docs").glob("*.md") if not p.name.endswith(".template.md"))


def test_generated_pages_are_what_the_results_and_templates_give():
    pages = make_docs.render_all(ROOT)
    assert set(pages) == {ROOT / "docs" / p for p in make_docs.PAGES}
    stale = [p.name for p, text in pages.items() if not p.is_file() or p.read_text() != text]
    assert not stale, f"{', '.join(stale)} out of date: run `python -m bench.make_docs` (or `make docs`) and commit the result"


def test_templates_hold_no_typed_figures():
    """A decimal, a ratio such as 2x or a percentage in the prose must come from a placeholder."""
    for tpl in sorted((ROOT / "docs").glob("*.template.md")):
        assert make_docs.stray_figures(tpl.read_text()) == [], tpl.name


def test_every_result_file_is_read_by_a_page():
    """A result file no page shows is history nobody can see: render it or delete it."""
    used = "\n".join((ROOT / "docs" / p.replace(".md", ".template.md")).read_text() for p in make_docs.PAGES)
    used += Path(make_docs.__file__).read_text()
    # A study's ``*.parts`` files are its resumable units, read back into the combined file a page shows.
    unread = [p.stem for p in (ROOT / "bench" / "results").glob("*.json") if p.stem not in used and not p.stem.endswith(".parts")]
    assert not unread, f"no page shows {unread}"


def test_docs_links_resolve():
    assert DOCS, "no docs found"
    assert make_docs.broken_links(DOCS, ROOT) == []


def test_readme_links_resolve():
    assert make_docs.broken_links([ROOT / "README.md"], ROOT) == []


def test_link_checker_catches_a_missing_file_an_escape_and_a_missing_image(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "img.png").write_bytes(b"")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "[ok](../img.png) ![ok](../img.png) [web](https://example.org) [anchor](#top) [ok](page.md#top)\n"
        "[gone](missing.md) ![gone](../assets/none.png) [out](../../outside.md)\n"
        "`[in code](nowhere.md)`\n```\n[in a fence](nowhere.md)\n```\n"
    )
    bad = make_docs.broken_links([page], tmp_path)
    assert bad == ["docs/page.md: missing.md", "docs/page.md: ../assets/none.png", "docs/page.md: ../../outside.md"]


def test_placeholders_fill_from_the_result_file_and_fail_loudly(tmp_path):
    (tmp_path / "bench" / "results").mkdir(parents=True)
    doc = {"meta": {"command": "python bench/x.py", "date": "2026-12-02"}, "rows": [{"seed": 0, "fid": 0.5}, {"seed": 1, "fid": 0.25}]}
    (tmp_path / "bench" / "results" / "x_cpu.json").write_text(json.dumps(doc))
    r = make_docs.Results(tmp_path)
    text = "FID {{value:x_cpu:rows[seed=1].fid|.3f}} and {{value:x_cpu:rows.0.fid|.1%}}; {{value:x_cpu:meta.command|code}}."
    assert make_docs.render(text, r) == "FID 0.250 and 50.0%; `python bench/x.py`."
    assert "Run: `python bench/x.py`; run 2026-12-02" in make_docs.render("{{run:x_cpu}}", r)
    for bad in ("{{value:x_cpu:rows[seed=7].fid}}", "{{value:x_cpu:nothing}}", "{{value:nofile:a}}", "{{table:nosuch}}"):
        with pytest.raises(make_docs.DocsError, match="template:1"):
            make_docs.render(bad, r)


def test_a_table_template_draws_the_rows_and_fails_loudly_on_a_missing_field(tmp_path):
    (tmp_path / "bench" / "results").mkdir(parents=True)
    row = {"family": "vae", "train_steps": 40, "evaluate_s": 12.4}
    (tmp_path / "bench" / "results" / "evaluate_cpu.json").write_text(json.dumps({"rows": [row, {**row, "family": "a|b"}]}))
    got = make_docs.render("{{table:evaluate}}", make_docs.Results(tmp_path))
    assert got.splitlines() == ["| family | trained steps (the scores mean nothing) | full evaluate |", "|---|---|---|",
                                "| vae | 40 | 12 s |", "| a|b | 40 | 12 s |"]  # fmt: skip
    (tmp_path / "bench" / "results" / "evaluate_cpu.json").write_text(json.dumps({"rows": [{"family": "vae", "train_steps": 40}]}))
    with pytest.raises(make_docs.DocsError, match=r"template:1: \{\{table:evaluate\}\}: UndefinedError: .*evaluate_s"):
        make_docs.render("{{table:evaluate}}", make_docs.Results(tmp_path))


def test_formats():
    assert make_docs.fmt(3, "words") == "three"
    assert make_docs.fmt([1, 3], "list") == "1 and 3"
    assert make_docs.fmt({"min": 1.41, "max": 1.77}, "range:.1f:x") == "1.4x to 1.8x"
    assert make_docs.fmt({"min": 1.44, "max": 1.44}, "range:.2f:x") == "1.44x"
    assert make_docs.fmt(None, ".2f") == "-"


def _study(verdict: str = "helps") -> dict:
    row = {
        "model": "vae",
        "model_label": "vae",
        "per_class": 10,
        "geometric_aug": False,
        "selected": False,
        "seeds": 3,
        "n_real": 20,
        "n_synthetic": 0,
    }
    return {
        "config": {
            "dataset": "breastmnist",
            "test_images": 156,
            "per_class_levels": [10, "all"],
            "ratios": [0, 1],
            "seeds": [0, 1, 2],
            "scope": "per-level",
            "generator_budget": {"minutes": None, "steps": [150, 600]},
        },
        "summary": [
            {**row, "ratio": 0.0, "mean": 0.61, "ci95": [0.55, 0.67]},
            {
                **row,
                "ratio": 1.0,
                "n_synthetic": 20,
                "mean": 0.7,
                "ci95": [0.66, 0.74],
                "gain": 0.09,
                "gain_ci95": [0.02, 0.16],
                "verdict": verdict,
            },
        ],
        "claims": [{"claim": "diffusion > GAN > VAE on fidelity (at 10/class)", "verdict": "inconclusive", "reason": "no diffusion model"}],
        "reading": [
            "vae at 10/class: real only 0.610; +1x 0.700.",
            "Cannot tell: diffusion > GAN > VAE on fidelity (at 10/class) (no diffusion model).",
        ],
        "generators": [],
        "cells": [],
        "bench": {
            "command": "python -m bench.bench_protocol --data breastmnist",
            "date": "2026-12-03T10:00:00+00:00",
            "cpu": "Test CPU",
            "threads": 1,
            "wall_s": 600.0,
            "peak_rss_mb": 1500.0,
            "load_start": 1.0,
            "load_end": 2.0,
            "generator_train_s": 300.0,
        },
    }


def test_protocol_block_renders_a_study_and_says_not_run_yet_without_one(tmp_path):
    (tmp_path / "bench" / "results").mkdir(parents=True)
    r = make_docs.Results(tmp_path)
    missing = make_docs.protocol_block(r, "breastmnist")
    assert missing.startswith("Not run yet") and "python -m bench.bench_protocol --data breastmnist" in missing
    (tmp_path / "bench" / "results" / "protocol_breastmnist.json").write_text(json.dumps(_study()))
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "protocol_breastmnist.png").write_bytes(b"")
    out = make_docs.protocol_block(make_docs.Results(tmp_path), "breastmnist")
    assert "![breastmnist" in out and "(../assets/protocol_breastmnist.png)" in out
    # A result of before the corrected intervals were recorded: that column says "-".
    assert "| vae | 10/class | 1x | 0.700 [0.660, 0.740] | +0.090 [+0.020, +0.160] | - | helps |" in out
    assert "| vae | 10/class | 0x | 0.610 [0.550, 0.670] | - | - | real only |" in out
    study = _study()
    row = next(x for x in study["summary"] if x.get("ratio"))
    row.update(verdict_corrected="cannot tell at this budget", verdict_corrected_ci=[-0.01, 0.19], verdict_corrected_level=0.975)
    (tmp_path / "bench" / "results" / "protocol_breastmnist.json").write_text(json.dumps(study))
    shown = make_docs.protocol_block(make_docs.Results(tmp_path), "breastmnist")
    assert "| +0.090 [+0.020, +0.160] | +0.090 [-0.010, +0.190] (97.5 %) | cannot tell at this budget |" in shown
    assert "| diffusion > GAN > VAE on fidelity (at 10/class) | inconclusive | no diffusion model |" in out
    assert "- vae at 10/class: real only 0.610; +1x 0.700." in out
    assert "Cannot tell:" not in out  # the claims' own reading lines are not repeated under the table
    assert "150 steps at 10/class, 600 steps at all" in out
    assert "wall time 10.0 min" in out and "peak memory 1,500 MB" in out and "Test CPU" in out


def test_families_budget_block_says_not_run_yet_then_partial_then_renders_intervals(tmp_path):
    (tmp_path / "bench" / "results").mkdir(parents=True)
    assert make_docs.t_families_budget(make_docs.Results(tmp_path), "pneumoniamnist").startswith("Not run yet. To make it: `python -m bench.bench_families")
    row = {"family": "vae", "sampler_steps": None, "train_steps": 1234, "train_time_s": 300.0, "eval_time_s": 410.0, "load_start": 0.5,
           "load_end": 1.9, "scores": {a: 0.5 for a in make_docs.AXES}, "intervals": {a: [0.4, 0.6] for a in make_docs.AXES}}  # fmt: skip
    doc = {"command": "python -m bench.bench_families --dataset pneumoniamnist --seeds 3", "date": "2026-12-07 15:00", "cpu": "Test CPU",
           "loadavg_before": [0.5, 0.5, 0.5], "loadavg_after": [1.9, 1.9, 1.9], "wall_s": 710.0, "units_done": 1, "units_total": 10,
           "rows": [row], "reading": [], "trilemma": [], "image": None}  # fmt: skip
    (tmp_path / "bench" / "results" / "families_pneumoniamnist_cpu.json").write_text(json.dumps(doc))
    out = make_docs.t_families_budget(make_docs.Results(tmp_path), "pneumoniamnist")
    assert out.startswith("**Partial: 1 of 10 families finished.**")
    assert "| vae | 1,234 | 0.50 [0.40, 0.60] |" in out and "| 300 / 410 | 0.50 -> 1.90 |" in out
    doc.update(units_done=10, trilemma=["vaegan (a hybrid) escapes the trilemma here: ..."], image="images/radar_families_pneumoniamnist.png")
    (tmp_path / "bench" / "results" / "families_pneumoniamnist_cpu.json").write_text(json.dumps(doc))
    out = make_docs.t_families_budget(make_docs.Results(tmp_path), "pneumoniamnist")
    assert "Partial" not in out and "**Do the hybrids escape the trilemma at this budget?**" in out
    assert "(images/radar_families_pneumoniamnist.png)" in out and "Run: `python -m bench.bench_families" in out
