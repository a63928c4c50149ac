"""Every shipped checkpoint side by side, one radar per dataset, and whether the hybrids escape the trilemma there.

    .venv/bin/python -m bench.shipped_families

Reads the current full reports shipped in ``checkpoints/*/eval/`` (what Compare draws on first
launch; nothing is evaluated here, so it takes seconds) and writes, per dataset:

- ``docs/images/radar_<dataset>.png``: the radar of every shipped family with its 95 % bands;
- ``bench/results/shipped_families.json``: each checkpoint's six scores with their intervals, the
  app's reading and its trilemma reading (``gda_core.metrics.trilemma_reading``: faster than the best
  iterative model while within noise of it on fidelity and diversity), and which shipped checkpoints
  have no current report yet (left out, named).

docs/benchmarks.md renders the file (``python -m bench.make_docs``); tests/test_shipped.py fails when
the file no longer matches the shipped reports (re-run this after ``make checkpoints``).
"""

from __future__ import annotations

import time
from pathlib import Path

from gda_core.checkpoints import SHIPPED_DIR, list_runs
from gda_core.data import dataset_title
from gda_core.jobs import cached_reports
from gda_core.metrics import AXES, radar_png, reading, trilemma_reading
from gda_core.runtime import atomic_write_bytes, atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "bench" / "results" / "shipped_families.json"
IMAGES = ROOT / "docs" / "images"


def summary(shipped_dir: Path = SHIPPED_DIR) -> tuple[dict, dict[str, bytes]]:
    """(the result file's content, dataset -> radar PNG) from the shipped checkpoints' current reports."""
    by_data: dict[str, list] = {}
    for info in list_runs(shipped_dir, include_shipped=False):  # by dataset, then the families' registry order
        by_data.setdefault(info.dataset, []).append(info)
    out, images = {}, {}
    for ds, infos in by_data.items():
        rows, reps, names, missing = [], [], [], []
        for info in infos:
            cached = cached_reports(info.path)
            if not cached:
                missing.append(info.path.name)
                continue
            rep = cached[0][1]
            reps.append(rep)
            names.append(info.path.name)
            rows.append({"name": info.path.name, "family": info.family, "steps": info.step,
                         "settings_sha256": rep.provenance.get("settings_sha256"), "seeds": len(rep.provenance.get("seeds") or [0]),
                         "scores": {a: rep.scores.get(a) for a in AXES}, "intervals": {a: rep.intervals.get(a) for a in AXES}})  # fmt: skip
        entry = {"title": dataset_title(ds), "checkpoints": rows, "missing": missing, "reading": [], "trilemma": [], "image": None}
        if len(reps) >= 2:
            entry.update(reading=reading(reps, names), trilemma=trilemma_reading(reps, names), image=f"images/radar_{ds}.png")
            images[ds] = radar_png(reps, names, size=800)
        out[ds] = entry
    meta = {"command": "python -m bench.shipped_families", "date": time.strftime("%Y-%m-%d %H:%M")}
    return {"meta": meta, "datasets": out}, images


def main() -> int:
    res, images = summary()
    IMAGES.mkdir(parents=True, exist_ok=True)
    for ds, png in images.items():
        atomic_write_bytes(IMAGES / f"radar_{ds}.png", png)
    atomic_write_json(RESULT, res)
    for ds, d in res["datasets"].items():
        print(f"{ds}: {len(d['checkpoints'])} with current reports" + (f"; no report yet: {', '.join(d['missing'])}" if d["missing"] else ""))
        for line in d["trilemma"]:
            print(f"  - {line}")
    print(f"wrote {RESULT.relative_to(ROOT)} and {len(images)} radar images in {IMAGES.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
