"""Errors that describe a user mistake: the CLI prints them plainly, without a traceback."""

from __future__ import annotations


class TunesmithError(Exception):
    """A problem the user can fix; the message says what happened and what to do."""

    exit_code = 2


class ConfigError(TunesmithError):
    """The project configuration is invalid."""


class DataError(TunesmithError):
    """An input file cannot be read at all (as opposed to single bad records)."""


class ModelLoadError(TunesmithError):
    """A base model or tokenizer cannot be found or loaded."""
