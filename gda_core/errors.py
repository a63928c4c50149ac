"""User-facing errors.

Every error a user can cause (bad file, bad option, tampered checkpoint) is raised as a
:class:`GDAError` subclass with a one-line message that names the problem and the file. The CLI
prints ``error: <message>`` and exits with code 2; the app shows the message in the page. Anything
else escaping is a bug.
"""

from __future__ import annotations


class GDAError(Exception):
    """Base class of all user-facing errors. ``str(err)`` is a complete one-line message."""

    def __init__(self, message: str):
        # Keep the message on one line whatever the caller passed in.
        super().__init__(" ".join(str(message).split()))


class DataError(GDAError):
    """A dataset could not be found, read or validated."""


class CheckpointError(GDAError):
    """A run directory / checkpoint is missing, corrupt, tampered or incompatible."""


class ConfigError(GDAError):
    """An option or configuration value is invalid."""


class TrainingError(GDAError):
    """Training cannot go on (diverged, disk full, run folder locked)."""


class Cancelled(GDAError):
    """Long work was cancelled by the user."""
