"""The all-families-at-one-budget bench: with several sampling seeds every score has its interval, the
results carry each family's report, the trilemma reading and a radar, and a re-run of the same settings
continues from the results file instead of redoing a finished family (issue 26: hours on real data)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "GDA_ALLOW_DOWNLOAD": "0"}
    out = subprocess.run([sys.executable, "-m", "bench.bench_families", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=900)  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out.stdout


def test_families_bench_reads_the_trilemma_with_intervals_and_resumes(tmp_path):
    args = ["--dataset", "digits", "--families", "vae", "ddpm", "distilled", "--minutes", "0.03", "--steps", "2", "--seeds", "2", "--preset", "quick",
            "--device", "cpu", "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "res"),
            "--images-dir", str(tmp_path / "img")]  # fmt: skip
    _run(*args)
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
    out = _run(*args)
    assert "vae: already in families_digits_cpu.json" in out and "ddpm: already in families_digits_cpu.json" in out
    again = json.loads(path.read_text())
    assert again["rows"][:2] == kept and [r["family"] for r in again["rows"]] == ["vae", "ddpm", "distilled"]
    assert not (tmp_path / "runs" / "vae-digits").exists()  # not retrained
    # The student's teacher had to be trained again, and its row says it is not the DDPM evaluated above.
    assert again["rows"][2]["teacher_retrained"] is True
