"""`make checkpoints` and the protocol bench resume from their tracked results files: a finished
entry (a shipped checkpoint of the same recipe, a study unit in the parts file) is never redone, so
a session that stops at any time leaves the next one to continue (issue 26)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from .hostile import module, module_ok

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_make_checkpoints_skips_a_finished_entry_and_trains_the_rest(tmp_path):
    common = ["--max-steps", "3", "--no-eval", "--dest", str(tmp_path / "ck"), "--results", str(tmp_path / "r.json"),
              "--runs-dir", str(tmp_path / "runs")]  # fmt: skip
    module_ok("bench.train_shipped", "--only", "vae-digits", *common)
    weights = tmp_path / "ck" / "vae-digits" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    recorded = json.loads((tmp_path / "r.json").read_text())["entries"]["vae-digits"]
    assert recorded["recipe"] == ["--steps", "3"] and recorded["steps"] == 3
    # As after a kill between two entries: the run folder of the finished one is gone (a fresh clone),
    # only the committed checkpoint and results file remain.
    import shutil

    shutil.rmtree(tmp_path / "runs")
    out = module_ok("bench.train_shipped", "--only", "vae-digits,gan-digits", *common)
    assert "vae-digits: checkpoints/vae-digits already holds this recipe's finished checkpoint" in out
    assert weights.stat().st_mtime_ns == before
    assert not (tmp_path / "runs" / "vae-digits").exists()
    assert (tmp_path / "ck" / "gan-digits" / "model.safetensors").is_file()
    entries = json.loads((tmp_path / "r.json").read_text())["entries"]
    assert set(entries) == {"vae-digits", "gan-digits"} and entries["vae-digits"] == recorded
    # The real recipe is a different question: the capped checkpoint never passes for it.
    from bench.train_shipped import _shipped_current

    assert not _shipped_current("vae-digits", tmp_path / "ck" / "vae-digits", {"entries": entries}, None)


def test_a_finished_run_whose_recipe_grew_resumes_where_it_stopped(tmp_path):
    """A run cut short by its minutes cap on a loaded machine (ddpm-pneumoniamnist: 2,165 of 6,000 steps)
    continues from its saved state when the recipe asks for more, instead of shipping as is or restarting."""
    common = ["--no-eval", "--only", "vae-digits", "--dest", str(tmp_path / "ck"), "--results", str(tmp_path / "r.json"),
              "--runs-dir", str(tmp_path / "runs")]  # fmt: skip
    module_ok("bench.train_shipped", "--max-steps", "3", *common)
    module_ok("bench.train_shipped", "--max-steps", "5", *common)
    cfg = json.loads((tmp_path / "ck" / "vae-digits" / "config.json").read_text())
    assert cfg["step"] == 5 and cfg["finished"]
    steps = [h["step"] for h in json.loads((tmp_path / "runs" / "vae-digits" / "history.json").read_text())]
    assert steps == sorted(set(steps)) and steps[-1] == 5  # one history, continued, not restarted
    # Both parts keep their own seconds and loads: the entry's own loads are the last part's only.
    entry = json.loads((tmp_path / "r.json").read_text())["entries"]["vae-digits"]
    parts = entry["train_parts"]
    assert [p["to_step"] for p in parts] == [3, 5] and parts[-1]["load_start"] == entry["train_load_start"]
    assert sum(p["seconds"] for p in parts) == pytest.approx(entry["train_s"], abs=0.2) and all(p["seconds"] > 0 for p in parts)
    from bench.train_shipped import _budget_left, _train_parts

    assert _train_parts({}, 5, 1.0, 0.1, 0.2) == []  # a first training is one part: nothing to split
    assert _train_parts({"steps": 5, "train_s": 9.0}, 5, 3.0, 0.1, 0.2) == []  # retrained from scratch, not resumed

    assert _budget_left({"step": 2165, "train_time_s": 3764.4}, ["--steps", "6000", "--minutes", "110"])
    assert not _budget_left({"step": 2165, "train_time_s": 3764.4}, ["--steps", "6000", "--minutes", "60"])  # its time is spent
    assert not _budget_left({"step": 3000, "train_time_s": 10.0}, ["--steps", "3000", "--minutes", "20"])
    assert not _budget_left({"step": 674, "train_time_s": 1200.7}, ["--steps", "2", "--train-steps", "1500", "--minutes", "20"])


def _tiny_npz(folder: Path) -> None:
    """A MedMNIST-layout file from the built-in digits: 8 training images per class."""
    from gda_core.data import load_dataset

    ds = load_dataset("digits")
    keep = np.concatenate([np.flatnonzero(ds.train_labels == c)[:8] for c in range(3)])
    test = np.flatnonzero(ds.test_labels < 3)[:60]
    folder.mkdir(parents=True)
    np.savez(folder / "tiny.npz", train_images=ds.train_images[keep, ..., 0], train_labels=ds.train_labels[keep, None],
             val_images=ds.test_images[test[:12], ..., 0], val_labels=ds.test_labels[test[:12], None],
             test_images=ds.test_images[test, ..., 0], test_labels=ds.test_labels[test, None])  # fmt: skip


def test_protocol_bench_continues_from_its_parts_file(tmp_path):
    _tiny_npz(tmp_path / "data" / "tiny")
    args = ["bench.bench_protocol", "--data", "tiny", "--data-dir", str(tmp_path / "data"), "--models", "vae", "--per-class", "4",
            "--ratios", "0,1", "--seeds", "2", "--budget-steps", "3", "--cache", str(tmp_path / "cache"),
            "--results-dir", str(tmp_path / "res"), "--assets-dir", str(tmp_path / "assets")]  # fmt: skip
    module_ok(*args)
    parts_path = tmp_path / "res" / "protocol_tiny.parts.json"
    parts = json.loads(parts_path.read_text())
    assert set(parts["units"]) == {"level=4,seed=0", "level=4,seed=1"}
    first = parts["units"]["level=4,seed=0"]
    # As if the run was killed after its first unit, on a fresh clone (no cache of generators).
    del parts["units"]["level=4,seed=1"]
    parts_path.write_text(json.dumps(parts))
    import shutil

    shutil.rmtree(tmp_path / "cache")
    out = module_ok(*args)
    assert "level=4,seed=0: already in protocol_tiny.parts.json" in out
    again = json.loads(parts_path.read_text())
    assert again["units"]["level=4,seed=0"] == first  # not redone: its bench record (date, wall time) is the old one
    assert "level=4,seed=1" in again["units"]
    combined = json.loads((tmp_path / "res" / "protocol_tiny.json").read_text())
    assert combined["bench"]["units_done"] == 2 == combined["bench"]["units_total"]
    assert (tmp_path / "assets" / "protocol_tiny.png").stat().st_size > 1000
    # Other settings answer another question: their units are not mixed with these.
    out = module_ok(*[a if a != "0,1" else "0,2" for a in args])
    assert "already in" not in out


def test_protocol_bench_runs_the_units_asked_for_into_the_same_study(tmp_path):
    """--units runs the chosen (level, seed) units in the given order into the same parts file as the full command
    (it picks what runs now, not what the study is), so the full command then runs only what is left."""
    _tiny_npz(tmp_path / "data" / "tiny")
    args = ["bench.bench_protocol", "--data", "tiny", "--data-dir", str(tmp_path / "data"), "--models", "vae", "--per-class", "4",
            "--ratios", "0,1", "--seeds", "2", "--budget-steps", "3", "--cache", str(tmp_path / "cache"),
            "--results-dir", str(tmp_path / "res"), "--assets-dir", str(tmp_path / "assets")]  # fmt: skip
    module_ok(*args, "--units", "4:1")
    parts_path = tmp_path / "res" / "protocol_tiny.parts.json"
    parts = json.loads(parts_path.read_text())
    assert set(parts["units"]) == {"level=4,seed=1"} and "--units" not in parts["command"]
    assert json.loads((tmp_path / "res" / "protocol_tiny.json").read_text())["bench"]["units_done"] == 1
    out = module_ok(*args)
    assert "level=4,seed=1: already in" in out
    assert set(json.loads(parts_path.read_text())["units"]) == {"level=4,seed=0", "level=4,seed=1"}
    bad = module(*args, "--units", "50:0")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "'50:0' is not a unit of this study" in bad.stderr and "4:0, 4:1" in bad.stderr


def test_a_training_committed_as_pending_is_moved_not_retrained(tmp_path):
    """A session that had time to train but not to evaluate commits the training to bench/pending; the next
    session's run moves it into checkpoints/ (to be evaluated there) instead of training it again."""
    common = ["--max-steps", "3", "--no-eval", "--only", "vae-digits", "--results", str(tmp_path / "r.json"),
              "--runs-dir", str(tmp_path / "runs")]  # fmt: skip
    module_ok("bench.train_shipped", "--dest", str(tmp_path / "pending"), *common)
    weights = tmp_path / "pending" / "vae-digits" / "model.safetensors"
    before = weights.read_bytes()
    import shutil

    shutil.rmtree(tmp_path / "runs")  # a fresh clone: only the committed pending folder and results file remain
    out = module_ok("bench.train_shipped", "--dest", str(tmp_path / "ck"), "--pending", str(tmp_path / "pending"), *common)
    assert "vae-digits: moved the finished training from" in out
    assert "already holds this recipe's finished checkpoint" in out
    assert (tmp_path / "ck" / "vae-digits" / "model.safetensors").read_bytes() == before
    assert not (tmp_path / "pending" / "vae-digits").exists() and not (tmp_path / "runs" / "vae-digits").exists()
    # A pending training of another recipe is not taken for this one: the capped run never passes for the real recipe.
    module_ok("bench.train_shipped", "--dest", str(tmp_path / "pending"), *common)
    from bench.train_shipped import _promote_pending

    res = json.loads((tmp_path / "r.json").read_text())
    assert not _promote_pending("vae-digits", tmp_path / "ck2" / "vae-digits", tmp_path / "pending", res, None)
    assert (tmp_path / "pending" / "vae-digits").is_dir()
