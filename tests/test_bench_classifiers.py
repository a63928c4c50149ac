"""bench/bench_classifiers.py: whether the ranking of checkpoints by utility changes with the downstream
classifier (issue 28). The ranking logic on planted cells; the bench end to end on the shipped digits
checkpoints with a capped budget, resumed without redoing a finished cell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.bench_classifiers import REAL, _key, ranking, reading

ROOT = Path(__file__).resolve().parents[1]


def _cells(table: dict[str, dict[str, list[float]]]) -> dict:
    return {_key(k, c, s): {"acc": v} for c, per in table.items() for k, vals in per.items() for s, v in enumerate(vals)}


def test_a_clear_flip_is_named_and_a_flip_within_noise_is_not():
    seeds = [0, 1, 2]
    cells = _cells({"small-cnn": {"a": [0.90, 0.91, 0.92], "b": [0.80, 0.81, 0.79], REAL: [0.95, 0.95, 0.96]},
                    "resnet18": {"a": [0.70, 0.71, 0.69], "b": [0.85, 0.86, 0.84], REAL: [0.97, 0.96, 0.97]},
                    "vgg11": {"a": [0.80, 0.90, 0.70], "b": [0.82, 0.72, 0.86], REAL: [0.9, 0.9, 0.9]}})  # fmt: skip
    rank = ranking(cells, ["a", "b"], ["small-cnn", "resnet18", "vgg11"], seeds)
    assert rank["per_classifier"]["small-cnn"]["clear_pairs"] == ["a > b"]
    assert rank["per_classifier"]["resnet18"]["clear_pairs"] == ["b > a"]
    assert rank["per_classifier"]["vgg11"]["clear_pairs"] == []  # noisy: its order is not a claim
    assert rank["flips"] == ["a above b with small-cnn, below it with resnet18"]
    assert rank["per_classifier"]["resnet18"]["trtr_mean"] == pytest.approx(0.9667, abs=1e-3)
    assert any(line.startswith("The ranking changes with the classifier") for line in reading(rank, ["small-cnn", "resnet18", "vgg11"]))
    rank = ranking(cells, ["a", "b"], ["small-cnn", "vgg11"], seeds)
    assert rank["flips"] == [] and "within noise" in reading(rank, ["small-cnn", "vgg11"])[-1]


@pytest.mark.slow
def test_the_bench_runs_on_shipped_checkpoints_and_resumes_from_its_parts(tmp_path):
    from gda_core.checkpoints import SHIPPED_DIR

    if not all((SHIPPED_DIR / n / "model.safetensors").is_file() for n in ("vae-digits", "gan-digits")):
        pytest.skip("needs checkpoints/vae-digits and checkpoints/gan-digits")
    out = tmp_path / "classifiers_digits.json"
    cmd = [sys.executable, "-m", "bench.bench_classifiers", "--data", "digits", "--only", "vae-digits,gan-digits",
           "--classifiers", "small-cnn,resnet18", "--seeds", "2", "--max-steps", "3", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=800)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    d = json.loads(out.read_text())
    assert len(d["cells"]) == 2 * 3 * 2  # (real + 2 checkpoints) x 2 classifiers x 2 seeds
    assert all(0.0 <= c["acc"] <= 1.0 and c["steps"] == 3 for c in d["cells"].values())
    assert set(d["ranking"]["per_classifier"]) == {"small-cnn", "resnet18"} and d["meta"]["capped"]
    assert d["reading"] and all(isinstance(x, str) for x in d["reading"])
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "test accuracy" not in again.stdout  # every cell was in the parts file
    assert json.loads(out.read_text())["cells"] == d["cells"]
