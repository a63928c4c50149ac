"""The server owner's budgets, applied where the work happens.

Dataset budgets (pixels, decoded bytes) are the data loaders' own limits
(:mod:`gda_core.data.safety`), set from the server's settings in every process that decodes data.
Model size and training length are checked before a training job is queued and again in its
process. Each refusal is one line naming the limit and its value.
"""

from __future__ import annotations

from ..errors import ConfigError
from .config import ServerConfig


def apply_data_limits(cfg: ServerConfig) -> None:
    """Lower the data loaders' whole-dataset limits to the server's budgets in this process."""
    from ..data import safety

    safety.MAX_DATASET_PIXELS = min(safety.MAX_DATASET_PIXELS, cfg.max_dataset_pixels)
    safety.MAX_DATASET_BYTES = min(safety.MAX_DATASET_BYTES, cfg.max_dataset_bytes)


def model_parameters(family: str, model_config: dict) -> int:
    """Parameters of the model a config describes, counted on the meta device (nothing allocated)."""
    import warnings

    import torch

    from ..models import build_model

    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            model = build_model(family, **model_config)
    except (RuntimeError, ValueError, TypeError, OverflowError) as exc:
        msg = str(exc).strip().splitlines()
        raise ConfigError(f"{family} config cannot be built ({msg[0][:120] if msg else type(exc).__name__})") from None
    return sum(p.numel() for p in model.parameters())


def check_training(cfg: ServerConfig, family: str, model_config: dict, *, steps: int | None, minutes: float | None) -> int:
    """Refuse a training over the step, time or model-size budget; return the model's parameters."""
    if steps is not None and steps > cfg.max_steps:
        raise ConfigError(f"step budget: {steps:,} steps asked, over the limit max_steps = {cfg.max_steps:,}")
    if minutes is not None and minutes > cfg.max_minutes:
        raise ConfigError(f"time budget: {minutes:g} minutes asked, over the limit max_minutes = {cfg.max_minutes:g}")
    n = model_parameters(family, model_config)
    if n > cfg.max_model_params:
        raise ConfigError(f"model budget: this {family} has {n:,} parameters, over the limit max_model_params = {cfg.max_model_params:,}; "
                          "use a smaller width or fewer levels")  # fmt: skip
    return n


#: Augmentation: synthetic images per real one (the page's slider stops at 5).
MAX_AUGMENT_RATIO = 20.0
#: Evaluation: synthetic images per seed (the full preset makes a few thousand).
MAX_EVAL_SAMPLES = 50_000
#: Quality-cost curve: points (each a full sampling and scoring).
MAX_CURVE_POINTS = 32


def check_job(cfg: ServerConfig, kind: str, params: dict) -> None:
    """Refuse a job over its kind's budget (one line). Called when a job is queued and again in its
    worker process, so a job row written some other way (or an older app) is held to the same limits."""
    if kind == "train":
        check_training_length(cfg, steps=params.get("steps"), minutes=params.get("minutes"))
        if params.get("resume"):
            _check_run_model(cfg, params.get("out"))
    elif kind == "study":
        check_study(cfg, dict(params.get("options") or {}))
    elif kind == "sweep":
        check_sweep(cfg, params)
    elif kind == "augment":
        ratio = _number(params.get("ratio", 1.0), "augmentation ratio")
        if not 0 < ratio <= MAX_AUGMENT_RATIO:
            raise ConfigError(
                f"augmentation budget: ratio {ratio:g} asked, the limit is {MAX_AUGMENT_RATIO:g} synthetic images per real one"
            )
    elif kind == "evaluate":
        n = (params.get("sampling") or {}).get("n_samples")
        if n is not None and not 0 < _number(n, "n_samples") <= MAX_EVAL_SAMPLES:
            raise ConfigError(f"evaluation budget: {n} samples asked, the limit is {MAX_EVAL_SAMPLES:,}")
    elif kind == "curve":
        steps = list(params.get("steps") or [])
        if len(steps) > MAX_CURVE_POINTS:
            raise ConfigError(f"curve budget: {len(steps)} points asked, the limit is {MAX_CURVE_POINTS}")
        for s in steps:
            check_training_length(cfg, steps=s, minutes=None)


def _number(value, what: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if out != out:
        raise ConfigError(f"{what} must be a number, got {value!r}")
    return out


def check_training_length(cfg: ServerConfig, *, steps, minutes) -> None:
    if steps is not None and _number(steps, "steps") > cfg.max_steps:
        raise ConfigError(f"step budget: {int(_number(steps, 'steps')):,} steps asked, over the limit max_steps = {cfg.max_steps:,}")
    if minutes is not None and _number(minutes, "minutes") > cfg.max_minutes:
        raise ConfigError(f"time budget: {_number(minutes, 'minutes'):g} minutes asked, over the limit max_minutes = {cfg.max_minutes:g}")


def capped_minutes(cfg: ServerConfig, minutes) -> float:
    """A training's wall-clock limit in the worker: the one asked, never more than max_minutes; a
    training asked for no time limit (steps only, or a resume) stops at max_minutes too."""
    return cfg.max_minutes if minutes is None else min(_number(minutes, "minutes"), cfg.max_minutes)


def _check_run_model(cfg: ServerConfig, run_dir) -> None:
    """A resumed run's model against the size budget (an imported run was never checked)."""
    from ..checkpoints import read_config

    if not run_dir:
        return
    conf = read_config(run_dir)
    n = model_parameters(str(conf.get("family", "")), dict(conf.get("model_config") or {}))
    if n > cfg.max_model_params:
        raise ConfigError(
            f"model budget: this run's model has {n:,} parameters, over the limit max_model_params = {cfg.max_model_params:,}"
        )


def check_study(cfg: ServerConfig, opts: dict) -> None:
    """A study trains families x levels x seeds generators, each for its budget: refuse one over
    max_study_trainings trainings, a training over the step or time budget, or a whole study whose
    trainings' minutes add up to more than max_minutes (the job's own time)."""
    from ..augment.study import parse_levels, parse_seeds

    levels = parse_levels(opts.get("per_class_levels", (10, 50, "all")))
    seeds = parse_seeds(opts.get("seeds", 3))
    families = list(opts.get("models") or [])
    trainings = len(families) * len(levels) * len(seeds)
    if trainings > cfg.max_study_trainings:
        raise ConfigError(f"study budget: {len(families)} families x {len(levels)} levels x {len(seeds)} seeds = {trainings} trainings, "
                          f"over the limit max_study_trainings = {cfg.max_study_trainings}")  # fmt: skip
    minutes = _as_list(opts.get("budget_minutes"))
    for m in minutes:
        check_training_length(cfg, steps=None, minutes=m)
    for s in _as_list(opts.get("budget_steps")):
        check_training_length(cfg, steps=s, minutes=None)
    if trainings and minutes:
        total = trainings * max(_number(m, "minutes") for m in minutes)
        if total > cfg.max_minutes:
            raise ConfigError(f"study budget: {trainings} trainings x {max(_number(m, 'minutes') for m in minutes):g} minutes = {total:g} "
                              f"minutes, over the limit max_minutes = {cfg.max_minutes:g}")  # fmt: skip


#: Evaluation settings a sweep job may override (a job row names no cache folder or device of its own).
SWEEP_EVAL_KEYS = ("n_samples", "augment", "deepfool_steps", "kid_subsets", "budget", "extractor_budget")


def check_sweep(cfg: ServerConfig, params: dict, dims: dict | None = None) -> list[dict]:
    """A sweep trains settings x seeds generators: refuse one over max_study_trainings trainings, a
    training over the step or time budget, trainings whose minutes add up to more than max_minutes,
    an evaluation over its sample budget and, with the dataset's ``dims`` (image_size, channels,
    num_classes; known once it is loaded), any setting's model over max_model_params. Returns the grid."""
    from ..sweep import TRAIN_KEYS, parse_grid, setting_label

    family = str(params.get("family", ""))
    grid = parse_grid(str(params.get("grid", "")), family)
    seeds = params.get("seeds", 3)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= 10:
        raise ConfigError(f"seeds must be 1..10, got {seeds!r}")
    steps, minutes = params.get("steps"), params.get("minutes")
    if steps is None and minutes is None:
        raise ConfigError("give each run of the sweep a training budget: steps or minutes")
    trainings = len(grid) * seeds
    if trainings > cfg.max_study_trainings:
        raise ConfigError(f"sweep budget: {len(grid)} settings x {seeds} seeds = {trainings} trainings, "
                          f"over the limit max_study_trainings = {cfg.max_study_trainings}")  # fmt: skip
    check_training_length(cfg, steps=steps, minutes=minutes)
    if minutes is not None and trainings * _number(minutes, "minutes") > cfg.max_minutes:
        raise ConfigError(f"sweep budget: {trainings} trainings x {_number(minutes, 'minutes'):g} minutes = {trainings * _number(minutes, 'minutes'):g} "
                          f"minutes, over the limit max_minutes = {cfg.max_minutes:g}")  # fmt: skip
    ev = params.get("eval_options") or {}
    if not isinstance(ev, dict) or set(ev) - set(SWEEP_EVAL_KEYS):
        raise ConfigError(f"a sweep's evaluation options are some of {', '.join(SWEEP_EVAL_KEYS)}")
    n = ev.get("n_samples")
    if n is not None and not 0 < _number(n, "n_samples") <= MAX_EVAL_SAMPLES:
        raise ConfigError(f"evaluation budget: {n} samples asked, the limit is {MAX_EVAL_SAMPLES:,}")
    if dims is not None:
        for setting in grid:
            model_part = {k: v for k, v in setting.items() if k not in TRAIN_KEYS}
            n_params = model_parameters(family, {**dims, **model_part})
            if n_params > cfg.max_model_params:
                raise ConfigError(f"model budget: the setting {setting_label(setting)} makes a {family} of {n_params:,} parameters, over the limit "
                                  f"max_model_params = {cfg.max_model_params:,}; use a smaller width or fewer levels")  # fmt: skip
    return grid


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
