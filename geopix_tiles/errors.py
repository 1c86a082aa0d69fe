"""User-facing errors.

Every problem a user can fix (bad path, bad option, bad scene) is raised as a
:class:`GeopixError` whose message is one line saying what is wrong and how to fix it.
The CLI prints that line and exits non-zero without a traceback; anything else is a bug
and keeps its traceback.
"""
from __future__ import annotations


class GeopixError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class InputError(GeopixError, ValueError):
    """Bad scene, option or prompt."""


class OutputError(GeopixError, OSError):
    """The destination cannot be written (exists, unwritable, disk full)."""

    exit_code = 3


class ReadError(GeopixError, OSError):
    """The scene could not be read mid-run (corrupt or truncated file)."""

    exit_code = 4
