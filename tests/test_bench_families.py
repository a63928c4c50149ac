"""The all-families-at-one-budget bench: with several sampling seeds every score has its interval, the
results carry each family's report, the trilemma reading and a radar, and a re-run of the same settings
continues from the results file instead of redoing a finished family (issue 26: hours on real data)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .hostile import module_ok

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_families_bench_reads_the_trilemma_with_intervals_and_resumes(tmp_path):
    args = ["--dataset", "digits", "--families", "vae", "ddpm", "distilled", "--minutes", "0.03", "--steps", "2", "--seeds", "2", "--preset", "quick",
            "--device", "cpu", "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "res"),
            "--images-dir", str(tmp_path / "img")]  # fmt: skip
    module_ok("bench.bench_families", *args, timeout=900)
    path = tmp_path / "res" / "families_digits_cpu.json"
    res = json.loads(path.read_text())
    assert res["units_done"] == 3 == res["units_total"]
    assert [r["family"] for r in res["rows"]] == ["vae", "ddpm", "distilled"]
    assert "teacher_retrained" not in res["rows"][2]  # the student learnt from the DDPM evaluated beside it
    for r in res["rows"]:
        assert r["seeds"] == 2 and r["report"]["scores"] == r["scores"]
        ivs = {a: iv for a, iv in r["intervals"].items() if iv}
        assert all(ivs[a][0] <= r["scores"][a] <= ivs[a][1] for a in ivs)
        assert sum(lo < hi for lo, hi in ivs.values()) >= 3  # two sampling seeds: intervals, not points
    # One line per one-pass model against the DDPM (and, at this toy budget, maybe a note that the DDPM is no corner).
    assert sum(t.startswith("vae (one pass per image)") for t in res["trilemma"]) == 1
    assert sum(t.startswith("distilled (a hybrid)") for t in res["trilemma"]) == 1
    assert res["reading"] and (tmp_path / "img" / "radar_families_digits.png").stat().st_size > 10_000
    # As if killed before the student on a fresh clone: the committed file holds vae and ddpm, no run folders.
    kept = res["rows"][:2]
    path.write_text(json.dumps({**res, "rows": kept, "units_done": 2}))
    shutil.rmtree(tmp_path / "runs")
    out = module_ok("bench.bench_families", *args, timeout=900)
    assert "vae: already in families_digits_cpu.json" in out and "ddpm: already in families_digits_cpu.json" in out
    again = json.loads(path.read_text())
    assert again["rows"][:2] == kept and [r["family"] for r in again["rows"]] == ["vae", "ddpm", "distilled"]
    assert not (tmp_path / "runs" / "vae-digits").exists()  # not retrained
    # The student's teacher had to be trained again, and its row says it is not the DDPM evaluated above.
    assert again["rows"][2]["teacher_retrained"] is True
    # A reading changed in code is re-read from the stored reports without running anything.
    path.write_text(json.dumps({**again, "reading": [], "trilemma": []}))
    (tmp_path / "img" / "radar_families_digits.png").unlink()
    out = module_ok("bench.bench_families", *args, "--summarise-only")
    assert "re-summarised 3 families" in out and not (tmp_path / "runs" / "vae-digits").exists()
    resummed = json.loads(path.read_text())
    assert resummed["reading"] == again["reading"] and resummed["trilemma"] == again["trilemma"] and resummed["rows"] == again["rows"]
    assert (tmp_path / "img" / "radar_families_digits.png").is_file()


def test_previews_are_laid_out_in_labelled_rows_not_one_strip(tmp_path):
    import numpy as np
    from PIL import Image

    from bench.bench_families import compose_previews

    dirs = []
    for i, fam in enumerate(["vae", "gan", "ddpm"]):
        d = tmp_path / f"{fam}-pneumoniamnist"
        d.mkdir()
        Image.fromarray(np.full((20, 50, 3), 40 * i, np.uint8)).save(d / "preview.png")
        dirs.append(d)
    dirs.append(tmp_path / "flow-pneumoniamnist")  # a family resumed from the results file has no run folder
    out = compose_previews(dirs, tmp_path / "out.png", columns=2, gap=10, scale=2)
    img = np.asarray(Image.open(out).convert("RGB"))
    # Two to a row: 2 x 100 px grids + 3 gaps wide, two rows of (40 px grid + label) tall.
    assert img.shape[1] == 2 * 100 + 3 * 10 and img.shape[0] > 2 * 40 + 3 * 10
    assert img.shape[0] < img.shape[1] * 2  # not a strip either way
    # Each grid sits under a white label line: the family's name is written above its images.
    label = img[10 : 10 + 26, 10 : 10 + 100]
    assert (label == 255).all(axis=2).any()
    # Left to itself it picks the columns that make the whole landscape, whatever the grids' shape.
    auto = np.asarray(Image.open(compose_previews(dirs, tmp_path / "auto.png", gap=10, scale=2)))
    assert auto.shape[1] > auto.shape[0]
