"""PDF reports of a comparison and of a study: the pages and headings they should have, the text
searchable, the provenance readable back.

Neither pdftotext nor pypdf is installed here, so the text is read with the PDF format itself:
every page's content stream is Flate-compressed (zlib) and matplotlib writes its text as literal
strings between BT and ET; the pages are the objects of /Type /Page."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np
import pytest

from gda_core.augment.study_report import StudyResult
from gda_core.jobs import cached_reports
from gda_core.metrics import write_comparison
from gda_core.provenance import read_provenance

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"
_STRING = re.compile(rb"\(((?:\\.|[^\\)])*)\)")


def pdf_pages(data: bytes) -> list[str]:
    """The text of each page (content streams in page order: matplotlib writes one per page)."""
    assert data.startswith(b"%PDF-")
    pages = []
    for raw in re.findall(rb"stream\r?\n(.*?)endstream", data, re.S):
        try:  # a decompressor object: the end-of-line before "endstream" is left over, not an error
            content = zlib.decompressobj().decompress(raw)
        except zlib.error:
            continue
        blocks = re.findall(rb"BT(.*?)ET", content, re.S)
        if blocks:
            text = [b"".join(_STRING.findall(b)).decode("latin-1") for b in blocks]
            pages.append(re.sub(r"\\(.)", r"\1", "\n".join(text)))
    n_page_objects = len(re.findall(rb"/Type\s*/Page\b", data))
    assert n_page_objects == len(pages), (n_page_objects, len(pages))
    return pages


@pytest.fixture(scope="module")
def shipped_reports():
    return [cached_reports(SHIPPED / n)[0][1] for n in ("vae-digits", "gan-digits", "ddpm-digits")]


def test_comparison_pdf_pages_and_headings(tmp_path, shipped_reports):
    out = write_comparison(shipped_reports, ["vae", "gan", "ddpm"], tmp_path / "cmp.pdf")
    pages = pdf_pages(out.read_bytes())
    assert 4 <= len(pages) <= 8
    first = pages[0]
    assert "Model comparison" in first
    for axis in ("fidelity", "diversity", "speed", "utility", "robustness", "privacy"):  # the radar's axes, searchable
        assert axis in first
    assert f"fidelity: {shipped_reports[0].scores['fidelity']:.3f} [" in first  # a score with its interval
    text = "\n".join(pages)
    for heading in ("Scores on the six axes", "Raw figures", "Reading", "The paper's claims on these models", "Provenance"):
        assert heading in text, heading
    assert "fidelity score" in text and "tstr_acc" in text
    assert order(text, "Scores on the six axes", "Raw figures", "Reading", "The paper's claims", "Provenance")
    for rep in shipped_reports:
        assert rep.provenance["checkpoint_sha256"] in text
    prov = read_provenance(out)
    assert prov["kind"] == "comparison" and prov["models"]["gan"]["weights_sha256"] == shipped_reports[1].provenance["checkpoint_sha256"]


def order(text: str, *parts: str) -> bool:
    pos = [text.index(p) for p in parts]
    return pos == sorted(pos)


def _study() -> StudyResult:
    """A study's summary from hand-made cells (summarise and the reading are the real code; no training)."""
    rng = np.random.default_rng(0)
    cells, gens = [], []
    for model, base in (("vae", 0.70), ("ddpm", 0.74)):
        for level in (10, "all"):
            for seed in range(3):
                gens.append({"model": model, "model_label": model, "family": model, "per_class": level, "seed": seed, "scope": "per-level",
                             "checkpoint": f"study/{model}-{level}-{seed}", "weights_sha256": f"{seed}" * 64, "train_indices_sha256": "ab" * 32,
                             "n_train": 20 if level == 10 else 546, "steps": 100, "scores": {}})  # fmt: skip
                for ratio in (0.0, 1.0, 2.0):
                    acc = base + 0.05 * ratio * (level == 10) + rng.normal(0, 0.01)
                    cells.append({"model": model, "model_label": model, "scope": "per-level", "per_class": level, "geometric_aug": False,
                                  "selected": False, "ratio": ratio, "seed": seed, "n_real": 20, "n_synthetic": int(20 * ratio),
                                  "accuracy": acc, "balanced_accuracy": acc - 0.02})  # fmt: skip
    config = {"dataset": "breastmnist", "per_class_levels": [10, "all"], "ratios": [0.0, 1.0, 2.0], "seeds": [0, 1, 2], "scope": "per-level",
              "generator_budget": {"minutes": 2}}  # fmt: skip
    return StudyResult.build(cells, gens, config, ["A note on the study."])


def test_study_pdf_pages_and_headings(tmp_path):
    res = _study()
    out = tmp_path / "study.pdf"
    out.write_bytes(res.pdf())
    pages = pdf_pages(out.read_bytes())
    assert 3 <= len(pages) <= 6
    assert "Utility study: breastmnist" in pages[0] and "10/class real images" in pages[0] and "synthetic images per real image" in pages[0]
    text = "\n".join(pages)
    assert order(text, "Results", "Reading", "Provenance")
    assert "accuracy [95% CI]" in text and "A note on the study." in text
    assert "helps" in text  # the planted gain at 10/class is read as a help
    assert "0" * 64 in text  # a generator's weights hash
    prov = read_provenance(out)
    assert prov["kind"] == "study" and prov["dataset"] == "breastmnist" and len(prov["generators"]) == 12


def test_study_cli_pdf_suffix_is_accepted():
    from gda_core.augment.cli import STUDY_SUFFIXES
    from gda_core.metrics.cli import COMPARE_SUFFIXES

    assert ".pdf" in STUDY_SUFFIXES and ".pdf" in COMPARE_SUFFIXES
