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
    args = ["--dataset", "digits", "--families", "vae", "ddpm", "--minutes", "0.03", "--steps", "2", "--seeds", "2", "--preset", "quick",
            "--device", "cpu", "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "res"),
            "--images-dir", str(tmp_path / "img")]  # fmt: skip
    _run(*args)
    path = tmp_path / "res" / "families_digits_cpu.json"
    res = json.loads(path.read_text())
    assert res["units_done"] == 2 == res["units_total"]
    assert [r["family"] for r in res["rows"]] == ["vae", "ddpm"]
    for r in res["rows"]:
        assert r["seeds"] == 2 and r["report"]["scores"] == r["scores"]
        ivs = {a: iv for a, iv in r["intervals"].items() if iv}
        assert all(ivs[a][0] <= r["scores"][a] <= ivs[a][1] for a in ivs)
        assert sum(lo < hi for lo, hi in ivs.values()) >= 3  # two sampling seeds: intervals, not points
    assert len(res["trilemma"]) == 1 and res["trilemma"][0].startswith("vae (one pass per image)")
    assert res["reading"] and (tmp_path / "img" / "radar_families_digits.png").stat().st_size > 10_000
    # As if killed after the first family on a fresh clone: the committed file holds vae only, no run folders.
    first = res["rows"][0]
    path.write_text(json.dumps({**res, "rows": [first], "units_done": 1}))
    shutil.rmtree(tmp_path / "runs")
    out = _run(*args)
    assert "vae: already in families_digits_cpu.json" in out
    again = json.loads(path.read_text())
    assert again["rows"][0] == first and [r["family"] for r in again["rows"]] == ["vae", "ddpm"]
    assert not (tmp_path / "runs" / "vae-digits").exists()  # not retrained
