"""A hyper-parameter sweep: a grid of settings, each trained with several seeds and evaluated, so
that "which setting is best" is answered with training noise counted.

    python -m gda_core sweep --dataset digits --model ddpm --grid "lr=1e-4,3e-4;channels=32,64" --seeds 3 --steps 600 --out sweeps/ddpm

The grid is the Cartesian product of its keys' values. A key is a training setting (``lr``,
``batch_size``, ``ema_decay``) or a field of the family's model config (``channels``,
``latent_dim``, ...; see ``python -m gda_core models``). Every (setting, seed) is one training run
in its own folder under ``--out`` and one evaluation (the ``quick`` preset by default); the
sweep's file (sweep.json) is rewritten after each, so a killed sweep resumes where it stopped and
a finished run is never trained again.

The replication unit is the training seed: per setting and axis, the mean over seeds with its
t-interval. The best setting on an axis is named only where it is clear of noise: the top
setting's Welch difference to every other is positive after a Holm correction across those
comparisons; otherwise the sweep says no setting is clearly best there.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import Cancelled, ConfigError
from .runtime import atomic_write_json, atomic_write_text

#: Grid keys that go to the optimiser (TrainConfig); any other key is a model-config field.
TRAIN_KEYS = ("lr", "batch_size", "ema_decay")
MAX_CELLS = 64  # settings x seeds: a larger grid is a typo more often than a plan
FILE = "sweep.json"


def _value(text: str):
    """'3e-4' -> 0.0003, '64' -> 64, 'true' -> True, '1,2,4' is split by the caller."""
    t = text.strip()
    try:
        return json.loads(t)
    except json.JSONDecodeError:
        return t


def parse_grid(spec: str, family: str) -> list[dict]:
    """``"lr=1e-4,3e-4;channels=32,64"`` -> every combination as {key: value}, checked against the
    family's config and the training settings (one-line ConfigError otherwise)."""
    from .models import TrainConfig, get_model_class

    cls = get_model_class(family)
    if not cls.trainable_from_scratch:
        raise ConfigError(f"{family} is made from a trained teacher, not trained from data: sweep the teacher's family, then distill")
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    keys, values = [], []
    for part in (p for p in str(spec).split(";") if p.strip()):
        if "=" not in part:
            raise ConfigError(f"grid entry '{part.strip()}' is not KEY=V1,V2,...")
        k, vs = (s.strip() for s in part.split("=", 1))
        if k in keys:
            raise ConfigError(f"grid key '{k}' is given twice")
        if k not in TRAIN_KEYS and k not in fields:
            raise ConfigError(f"'{k}' is neither a training setting ({', '.join(TRAIN_KEYS)}) nor a {family} config field")
        vals = [_value(v) for v in vs.split(",") if v.strip()]
        if not vals:
            raise ConfigError(f"grid key '{k}' has no values")
        keys.append(k)
        values.append(vals)
    if not keys:
        raise ConfigError("the grid is empty; give it as KEY=V1,V2;KEY2=V1,V2")
    grid = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]
    for g in grid:  # every setting is checked before anything is trained
        model_part = {k: v for k, v in g.items() if k not in TRAIN_KEYS}
        cls.Config.from_dict({**cls.Config().to_dict(), **model_part})
        TrainConfig(**{k: v for k, v in g.items() if k in TRAIN_KEYS}).validate()
    return grid


def setting_label(setting: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in setting.items())


@dataclass
class SweepResult:
    """Every run of the sweep and, per setting and axis, the mean over training seeds with its interval."""

    family: str
    dataset: str
    grid: list[dict]
    seeds: list[int]
    steps: int | None
    minutes: float | None
    preset: str
    runs: list[dict] = field(default_factory=list)  # {setting, seed, run, scores, intervals}
    classifier: str = "small-cnn"  # the downstream classifier of utility and robustness

    def done(self, i: int, seed: int) -> dict | None:
        return next((r for r in self.runs if r["setting"] == i and r["seed"] == seed), None)

    def estimates(self, axis: str) -> list:
        """Per setting: the t-interval over its seeds' scores (None with fewer than two)."""
        from .metrics.intervals import over_replicates

        return [over_replicates([r["scores"][axis] for r in self.runs if r["setting"] == i and r["scores"].get(axis) is not None],
                                what="training seeds") for i in range(len(self.grid))]  # fmt: skip

    def best(self, axis: str) -> tuple[int | None, str]:
        """The clearly best setting on ``axis`` (index, sentence) or (None, why none is named)."""
        from scipy import stats

        from .metrics.verdicts import ALPHA, holm

        ests = self.estimates(axis)
        if len(self.grid) < 2 or any(e is None for e in ests):
            return None, f"{axis}: needs two or more finished seeds of every setting to name a best one"
        top = max(range(len(ests)), key=lambda i: ests[i].mean)
        pvals = []
        for i, e in enumerate(ests):
            if i != top:
                a, b = ests[top].values, e.values
                res = stats.ttest_ind(a, b, equal_var=False, alternative="greater")
                pvals.append(1.0 if not math.isfinite(res.pvalue) else float(res.pvalue))
        # The top setting must beat every other, Holm-corrected over those comparisons.
        m = len(pvals)
        clear = max(holm(pvals)) <= ALPHA
        label = setting_label(self.grid[top])
        if clear:
            return top, f"{axis}: {label} is clearly best ({ests[top].mean:.3f} [{ests[top].lo:.3f}, {ests[top].hi:.3f}], Holm-corrected over {m} comparisons)"
        return None, f"{axis}: no setting is clearly best (the top one, {label}, is within noise of another at {len(self.seeds)} seeds)"

    def table_rows(self) -> list[dict]:
        from .metrics import AXES
        from .metrics.intervals import fmt

        rows = []
        for i, g in enumerate(self.grid):
            row = {"setting": setting_label(g), "seeds done": sum(1 for r in self.runs if r["setting"] == i)}
            for axis in AXES:
                e = self.estimates(axis)[i]
                vals = [r["scores"][axis] for r in self.runs if r["setting"] == i and r["scores"].get(axis) is not None]
                row[axis] = fmt(e) if e is not None else (f"{vals[0]:.3f} (one seed)" if vals else "n/a")
            rows.append(row)
        return rows

    def figure(self):
        """One panel per axis: each setting's mean over seeds with its 95 % interval, seeds as dots."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        from .metrics import AXES

        labels = [setting_label(g) for g in self.grid]
        fig = make_subplots(rows=2, cols=3, subplot_titles=list(AXES), vertical_spacing=0.18)
        for k, axis in enumerate(AXES):
            r, c = k // 3 + 1, k % 3 + 1
            ests = self.estimates(axis)
            means = [e.mean if e else None for e in ests]
            fig.add_trace(go.Scatter(x=labels, y=means, mode="markers", marker={"size": 11, "color": "#1f77b4"}, showlegend=False,
                                     error_y={"type": "data", "symmetric": False, "array": [e.hi - e.mean if e else 0 for e in ests],
                                              "arrayminus": [e.mean - e.lo if e else 0 for e in ests]}), row=r, col=c)  # fmt: skip
            xs = [labels[run["setting"]] for run in self.runs if run["scores"].get(axis) is not None]
            ys = [run["scores"][axis] for run in self.runs if run["scores"].get(axis) is not None]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", marker={"size": 5, "color": "#999"}, showlegend=False), row=r, col=c)
            fig.update_yaxes(range=[0, 1], row=r, col=c)
        fig.update_layout(height=560, margin={"l": 40, "r": 20, "t": 50, "b": 40},
                          title=f"{self.family} on {self.dataset}: each setting's mean over training seeds, 95% interval (grey: one seed each)")  # fmt: skip
        return fig

    def to_dict(self) -> dict:
        from .metrics import AXES

        best = {a: self.best(a) for a in AXES}
        return {"family": self.family, "dataset": self.dataset, "grid": self.grid, "seeds": self.seeds, "steps": self.steps,
                "minutes": self.minutes, "preset": self.preset, "classifier": self.classifier, "runs": self.runs,
                "best": {a: {"setting": i, "sentence": s} for a, (i, s) in best.items()}}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict) -> SweepResult:
        try:
            return cls(family=str(d["family"]), dataset=str(d["dataset"]), grid=list(d["grid"]), seeds=[int(s) for s in d["seeds"]],
                       steps=d.get("steps"), minutes=d.get("minutes"), preset=str(d["preset"]), runs=list(d.get("runs", [])),
                       classifier=str(d.get("classifier") or "small-cnn"))  # fmt: skip
        except (KeyError, TypeError, ValueError):
            raise ConfigError("not a sweep file (family, dataset, grid, seeds, preset, runs)") from None

    def write_csv(self, path: Path) -> None:
        import csv
        import io

        rows = self.table_rows()
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        # Settings come from the user's grid text: a cell that a spreadsheet would run as a formula is quoted.
        w.writerows({k: ("'" + v if isinstance(v, str) and v[:1] in "=+-@\t\r" else v) for k, v in r.items()} for r in rows)
        atomic_write_text(path, buf.getvalue())


def run_sweep(dataset, family: str, grid: list[dict] | str, *, out, seeds: int = 3, steps: int | None = None, minutes: float | None = None,
              preset: str = "quick", device: str = "auto", eval_options: dict | None = None,
              progress: Callable[[float, str], None] | None = None, cancel: threading.Event | None = None) -> SweepResult:  # fmt: skip
    """Train and evaluate every (setting, seed) of ``grid`` into ``out`` (resuming what is there)
    and return the :class:`SweepResult`. ``eval_options`` overrides the preset's evaluate() keywords."""
    from .metrics import DEFAULT_BUDGET, evaluate
    from .metrics.evaluation import evaluation_options
    from .models import TrainConfig
    from .training import train

    if isinstance(grid, str):
        grid = parse_grid(grid, family)
    if not isinstance(seeds, int) or not 1 <= seeds <= 10:
        raise ConfigError(f"seeds must be 1..10, got {seeds}")
    if steps is None and minutes is None:
        raise ConfigError("give each run a training budget: --steps N or --minutes M")
    if len(grid) * seeds > MAX_CELLS:
        raise ConfigError(f"{len(grid)} settings x {seeds} seeds = {len(grid) * seeds} trainings; a sweep runs at most {MAX_CELLS}")
    opts = {**evaluation_options(preset), **(eval_options or {}), "seeds": 1, "device": device}
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    # The classifier changes utility and robustness: recorded, and a sweep file of another one is not resumed.
    classifier = opts.get("budget", DEFAULT_BUDGET).architecture
    res = SweepResult(family, getattr(dataset, "name", "?"), grid, list(range(seeds)), steps, minutes, preset, classifier=classifier)
    saved = out / FILE
    if saved.exists():
        try:
            old = SweepResult.from_dict(json.loads(saved.read_text()))
        except (ValueError, ConfigError):
            old = None
        if old is not None and (old.family, old.grid, old.steps, old.minutes, old.preset, old.classifier) == (family, grid, steps, minutes, preset,
                                                                                                              classifier):  # fmt: skip
            res.runs = [r for r in old.runs if r["seed"] < seeds]
    total, k = len(grid) * seeds, 0
    for seed in range(seeds):  # seed-major: after two seeds every setting already has an interval
        for i, setting in enumerate(grid):
            k += 1
            if res.done(i, seed):
                continue
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"sweep cancelled after {len(res.runs)} of {total} runs; run it again to continue")
            if progress:
                progress((k - 1) / total, f"{setting_label(setting)}, seed {seed}: training")
            run_dir = out / f"setting{i}-seed{seed}"
            tc = TrainConfig(**{key: v for key, v in setting.items() if key in TRAIN_KEYS})
            resume = (run_dir / "train_state.pt").exists() and not _finished(run_dir)
            if not _finished(run_dir):
                train(family, dataset, out=run_dir, steps=steps, minutes=minutes, seed=seed, device=device, resume=resume, cancel=cancel,
                      model_config={key: v for key, v in setting.items() if key not in TRAIN_KEYS} or None, train_config=tc)  # fmt: skip
            if progress:
                progress((k - 0.5) / total, f"{setting_label(setting)}, seed {seed}: evaluating")
            rep = evaluate(run_dir, dataset, cancel=cancel, **opts)
            res.runs.append({"setting": i, "seed": seed, "run": run_dir.name, "scores": dict(rep.scores),
                             "intervals": {a: v for a, v in rep.intervals.items()}})  # fmt: skip
            atomic_write_json(saved, res.to_dict())
    atomic_write_json(saved, res.to_dict())
    res.write_csv(out / "sweep.csv")
    return res


def _finished(run_dir: Path) -> bool:
    try:
        return bool(json.loads((run_dir / "config.json").read_text()).get("finished"))
    except (OSError, ValueError):
        return False


# -- the command line ------------------------------------------------------------------------------


def register(sub) -> None:
    from .metrics.classifier import ARCHITECTURES

    p = sub.add_parser("sweep", help="train and evaluate a grid of settings over several seeds; name the best where it is clear")
    p.add_argument("--dataset", required=True, help="registered name (see `datasets`) or path to .npz / .zip / folder")
    p.add_argument("--data-dir", default=None, help="folder of named datasets' files")
    p.add_argument("--per-class", type=int, default=None, help="keep N training images per class (scarcity)")
    p.add_argument("--model", required=True, help="model family (see `models`)")
    p.add_argument("--grid", required=True, help='settings, e.g. "lr=1e-4,3e-4;channels=32,64" (every combination)')
    p.add_argument("--seeds", type=int, default=3, help="training seeds per setting (the interval's replicates)")
    p.add_argument("--steps", type=int, default=None, help="training steps per run")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock minutes per run")
    p.add_argument("--preset", default="quick", help="evaluation preset per run: quick or full")
    p.add_argument("--classifier", choices=tuple(ARCHITECTURES), default="small-cnn",
                   help="downstream classifier of utility and robustness, trained from scratch: " + "; ".join(f"{k}: {v}" for k, v in ARCHITECTURES.items()))  # fmt: skip
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="folder of the sweep's runs, sweep.json and sweep.csv")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args) -> int:
    import sys

    from .data import load_dataset
    from .metrics import AXES, DEFAULT_BUDGET
    from .metrics.classifier import with_classifier
    from .metrics.evaluation import evaluation_options

    budget = with_classifier(evaluation_options(args.preset).get("budget", DEFAULT_BUDGET), args.classifier)
    ds = load_dataset(args.dataset, per_class=args.per_class, data_dir=args.data_dir)
    res = run_sweep(ds, args.model, args.grid, out=args.out, seeds=args.seeds, steps=args.steps, minutes=args.minutes, preset=args.preset,
                    device=args.device, eval_options={"budget": budget}, progress=lambda f, m: print(f"[{f:5.1%}] {m}", file=sys.stderr, flush=True))  # fmt: skip
    for row in res.table_rows():
        print(" | ".join(str(v) for v in row.values()))
    for axis in AXES:
        print(res.best(axis)[1])
    print(f"wrote {Path(args.out) / FILE} and {Path(args.out) / 'sweep.csv'}")
    return 0
