"""Intervals that include training noise: the same recipe trained with several seeds.

``evaluate_training_seeds(run, train_seeds=T, seeds=K)`` re-trains the checkpoint's recipe (family,
model and training config, data, number of steps) with T - 1 more seeds, evaluates each of the T
runs with K sampling seeds, and reports every figure as the mean over the T runs with a t-interval
over them: the honest interval when a user asks "would a new training run of this model score the
same?". The replicas are ordinary run folders, cached under ``<cache>/replicas`` (a re-run reuses
them; a killed one resumes).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import ConfigError, GDAError
from ..runtime import atomic_write_json, cache_root
from ..stages import stage_key
from .intervals import Estimate, over_replicates
from .report import AXES, Report, normalise_scores


def replica_runs(run, train_seeds: int, *, device="auto", progress=None, cancel=None) -> list[Path]:
    """The run folder itself and T - 1 re-trainings of its recipe with seeds seed + 1, seed + 2, ..."""
    from ..data import load_spec
    from ..models import TrainConfig
    from ..training import ensure_trained

    if not isinstance(train_seeds, int) or isinstance(train_seeds, bool) or not 1 <= train_seeds <= 20:
        raise ConfigError(f"train_seeds must be between 1 and 20, got {train_seeds!r}")
    cfg = run.config
    steps = cfg.get("step")
    if not cfg.get("finished") or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"{run.name} has not finished training: independent training runs need its recipe's step count")
    ds = load_spec(run.data_spec)
    tc = TrainConfig.from_dict(cfg.get("train_config") or {})
    base = int(cfg.get("seed", 0))
    out = [Path(run.run_dir)]
    for t in range(1, train_seeds):
        key = stage_key(family=run.family, model=cfg.get("model_config"), train=cfg.get("train_config"), data=run.data_spec.to_dict(),
                        steps=steps, seed=base + t)  # fmt: skip
        folder = cache_root() / "replicas" / f"{run.family}-seed{base + t}-{key[:12]}"

        def cb(ev, t=t) -> None:
            if progress is not None and ev.kind in ("step", "done"):
                progress(f"training replica {t} of {train_seeds - 1} (seed {base + t})", ev.fraction)

        out.append(ensure_trained(folder, run.family, ds, steps=steps, model_config=cfg.get("model_config"), train_config=tc, seed=base + t,
                                  device=device, callback=cb, cancel=cancel))  # fmt: skip
    return out


def _over_runs(reports: list[Report], seeds: int) -> dict[str, Estimate]:
    what = f"training runs (each the mean of {seeds} sampling seed{'s' * (seeds != 1)})"
    out = {}
    for key in reports[0].raw:
        est = over_replicates([r.raw.get(key) for r in reports], what=what)
        if est is not None and est.se > 0:
            out[key] = est
    scores = [normalise_scores(r.raw) for r in reports]
    for a in AXES:
        est = over_replicates([s[a] for s in scores if s[a] is not None], what=what)
        if est is not None:
            out[f"score:{a}"] = est.within()
    # Figures every run shares (the real-data classifier's, the speed): their own interval.
    for key, est in reports[0].uncertainty.items():
        out.setdefault(key, est)
    return out


def _per_class(reports: list[Report]) -> dict:
    out = {}
    for name, row in reports[0].per_class.items():
        rows = [r.per_class.get(name, {}) for r in reports]
        merged = {k: row.get(k) for k in ("n_real", "n_synthetic", "n_test")}
        intervals = {}
        for fig in ("fidelity", "diversity", "utility", "tstr_acc", "trtr_acc"):
            vals = [x.get(fig) for x in rows if x.get(fig) is not None]
            merged[fig] = float(np.mean(vals)) if vals else None
            est = over_replicates(vals, what="training runs")
            intervals[fig] = est.within().interval if est is not None and est.se > 0 else row.get("intervals", {}).get(fig)
        out[name] = {**merged, "intervals": intervals, "method": f"t-interval over {len(reports)} training runs"}
    return out


def evaluate_training_seeds(
    run_dir: str | os.PathLike,
    dataset=None,
    *,
    train_seeds: int,
    seeds: int = 1,
    device: str = "auto",
    cache: bool = True,
    progress: Callable[[str, float], None] | None = None,
    cancel: threading.Event | None = None,
    **evaluate_kwargs,
) -> Report:
    """Evaluate T independent training runs of a checkpoint's recipe (module docstring)."""
    from ..checkpoints import load_run
    from .evaluation import evaluate

    run = load_run(run_dir, device=device)
    folders = replica_runs(run, train_seeds, device=device, progress=progress, cancel=cancel)
    reports = []
    for i, folder in enumerate(folders):
        def prog(stage, f, i=i):
            if progress is not None:
                progress(f"training run {i + 1}/{len(folders)}: {stage}", (i + f) / len(folders))

        reports.append(evaluate(folder, dataset, seeds=seeds, device=device, cache=cache, progress=prog, cancel=cancel, **evaluate_kwargs))
    if len(reports) == 1:
        return reports[0]
    raw = {k: (float(np.mean(v)) if (v := [r.raw[k] for r in reports if r.raw.get(k) is not None]) else None) for k in reports[0].raw}
    prov = {**reports[0].provenance, "train_seeds": [int(run.config.get("seed", 0)) + t for t in range(train_seeds)],
            "replicas": [str(f) for f in folders], "interval": f"t-interval over {len(folders)} training runs"}  # fmt: skip
    prov["settings_sha256"] = hashlib.sha256(json.dumps([prov.get("settings_sha256"), prov["train_seeds"]]).encode()).hexdigest()[:24]
    rep = Report.from_raw(raw, warnings=list(reports[0].warnings), provenance=prov, uncertainty=_over_runs(reports, seeds), per_class=_per_class(reports))
    from .memorisation import combine

    rep.memorisation, rep.duplicates = combine([r.memorisation for r in reports], what="training runs"), reports[0].duplicates
    try:
        atomic_write_json(Path(run.run_dir) / "eval" / f"{prov['settings_sha256']}.json", rep.to_dict())
    except (OSError, GDAError):
        rep.warnings.append("could not write the evaluation into the run folder (read-only?)")
    return rep
