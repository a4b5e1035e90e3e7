"""Errors a user can act on.

Every failure caused by what the user typed, configured or installed is raised as a
:class:`GenmodError` subclass whose message is one line naming the problem and the fix. The
CLI prints that line and exits with :attr:`GenmodError.exit_code`; anything else is a bug in
genmod or a plugin and keeps its traceback.
"""

from __future__ import annotations


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``exc`` as one line for a message: its type and its whole text with line breaks folded
    (a library's first line is often only a heading, the cause follows), at most ``limit`` characters."""
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class GenmodError(Exception):
    """A problem the user can fix; its message is shown without a traceback."""

    exit_code = 1


class ConfigError(GenmodError):
    """A config file, ``--set`` override or command-line option is invalid."""

    exit_code = 2


class UnknownNameError(ConfigError):
    """A model, component or dataset name is not registered by any installed plugin."""


class PluginError(GenmodError):
    """A plugin is broken or conflicts with another plugin."""

    exit_code = 2


class UntrustedPluginError(PluginError):
    """A run folder names a plugin file the user never chose to run (see :mod:`genmod.trust`)."""


class DataError(GenmodError):
    """A dataset cannot be found or read."""


class CheckpointError(GenmodError):
    """A checkpoint is missing, corrupted, or belongs to another model or config."""


class TrainingError(GenmodError):
    """Training cannot continue (for example the loss became NaN)."""
