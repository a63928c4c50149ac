"""The server owner's settings: environment variables, or a TOML file.

Every setting has an environment variable; the same names (lower case, without ``GDA_``) can be
written in a TOML file named by ``$GDA_SERVER_CONFIG`` or found at ``<app data>/server.toml``.
The environment wins over the file. docs/deployment.md lists them with their defaults.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import ConfigError

GiB = 1024**3
MiB = 1024**2


def default_app_data() -> Path:
    """$GDA_APP_DATA, else platformdirs' user data folder for 'gda-studio'."""
    env = os.environ.get("GDA_APP_DATA")
    if env:
        return Path(env).expanduser().resolve()
    from platformdirs import user_data_dir

    return Path(user_data_dir("gda-studio")).resolve()


def default_workers() -> int:
    """One training at a time per GPU, and per two CPU cores (at least one)."""
    try:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - a broken CUDA install must not stop the server
        gpus = 0
    return max(1, gpus, (os.cpu_count() or 2) // 2)


@dataclass(frozen=True)
class ServerConfig:
    """What the server owner decides. Sizes in bytes, pixels as counts."""

    app_data: Path
    #: Jobs that run at once (each in its own process).
    workers: int = 0
    #: torch threads per job process (0: the cores divided by the workers, at least 1).
    job_threads: int = 0
    #: Decoded size of one uploaded dataset: pixels (all images, all channels) and bytes.
    max_dataset_pixels: int = 200_000_000
    max_dataset_bytes: int = 1 * GiB
    #: Disk one workspace may use (uploads, runs, evaluations, exports, caches).
    workspace_quota_bytes: int = 5 * GiB
    #: Largest model one job may build (parameters) and longest training (steps; minutes).
    max_model_params: int = 50_000_000
    max_steps: int = 200_000
    max_minutes: float = 12 * 60.0
    #: Niceness of job processes (0..19): trainings yield the CPU to the web server, so pages stay
    #: responsive while every worker trains.
    job_niceness: int = 10
    #: The Data page's "Local folder or file" box reads paths on the server: off unless set.
    allow_server_paths: bool = False
    #: Fairness: jobs one workspace may have queued or running, and running at once (0: half the
    #: workers, at least one), so that one user's burst cannot push everyone else's jobs back.
    max_jobs_per_workspace: int = 10
    max_running_per_workspace: int = 0
    #: Studies: trainings one study may run (families x levels x seeds) and minutes per training.
    max_study_trainings: int = 60

    @property
    def workspaces_dir(self) -> Path:
        return self.app_data / "workspaces"

    @property
    def published_dir(self) -> Path:
        return self.app_data / "published"

    def resolved_workers(self) -> int:
        return self.workers if self.workers > 0 else default_workers()

    def resolved_running_per_workspace(self) -> int:
        if self.max_running_per_workspace > 0:
            return self.max_running_per_workspace
        return max(1, -(-self.resolved_workers() // 2))

    def resolved_job_threads(self) -> int:
        if self.job_threads > 0:
            return self.job_threads
        return max(1, (os.cpu_count() or 1) // self.resolved_workers())


_BOOL_TRUE = ("1", "true", "yes", "on")


def _coerce(name: str, kind: type, value: object) -> object:
    try:
        if kind is bool:
            return value if isinstance(value, bool) else str(value).strip().lower() in _BOOL_TRUE
        if kind is float:
            return float(value)  # type: ignore[arg-type]
        if kind is int:
            return int(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"server setting {name} must be a {kind.__name__}, got {value!r}") from None
    return value


def load_config(app_data: str | os.PathLike | None = None) -> ServerConfig:
    """The settings in force: defaults, then the TOML file, then ``GDA_<NAME>`` variables."""
    root = Path(app_data).expanduser().resolve() if app_data is not None else default_app_data()
    file = Path(os.environ.get("GDA_SERVER_CONFIG") or root / "server.toml")
    values: dict[str, object] = {}
    if file.is_file():
        try:
            values.update(tomllib.loads(file.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{file}: not a readable TOML file ({exc})") from None
    kinds = {"workers": int, "job_threads": int, "max_dataset_pixels": int, "max_dataset_bytes": int, "workspace_quota_bytes": int,
             "max_model_params": int, "max_steps": int, "max_minutes": float, "allow_server_paths": bool, "job_niceness": int, "max_jobs_per_workspace": int,
             "max_running_per_workspace": int, "max_study_trainings": int}  # fmt: skip
    out: dict[str, object] = {}
    for f in fields(ServerConfig):
        if f.name == "app_data":
            continue
        env = os.environ.get(f"GDA_{f.name.upper()}")
        if env is not None:
            out[f.name] = _coerce(f.name, kinds[f.name], env)
        elif f.name in values:
            out[f.name] = _coerce(f.name, kinds[f.name], values[f.name])
    cfg = ServerConfig(app_data=root, **out)  # type: ignore[arg-type]
    if not 0 <= cfg.job_niceness <= 19:
        raise ConfigError(f"server setting job_niceness must be in 0..19, got {cfg.job_niceness}")
    for name in ("max_dataset_pixels", "max_dataset_bytes", "workspace_quota_bytes", "max_model_params", "max_steps", "max_jobs_per_workspace",
                 "max_study_trainings"):  # fmt: skip
        if getattr(cfg, name) < 1:
            raise ConfigError(f"server setting {name} must be positive, got {getattr(cfg, name)}")
    return cfg
