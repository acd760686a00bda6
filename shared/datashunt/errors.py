"""The error hierarchy of datashunt, drawn once.

Every error a user can meet says what happened and what to do about it. Catch
:class:`DataShuntError` to catch them all.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "DataShuntError",
    "GateError",
    "InputError",
    "LLMError",
    "ModelNotFoundError",
    "StoreError",
]


class DataShuntError(Exception):
    """Base class of every error raised by datashunt."""


class ConfigError(DataShuntError, ValueError):
    """A configuration value is out of range or inconsistent (the message names the field)."""


class InputError(DataShuntError, ValueError):
    """An input text cannot be classified (empty, not a string, too long)."""


class DataError(DataShuntError, ValueError):
    """A data file is missing, malformed, or holds labels the gate does not know."""


class GateError(DataShuntError):
    """The gate (small model) failed or returned an output of the wrong shape."""


class ModelNotFoundError(GateError, FileNotFoundError):
    """A model directory or weights file is missing; the message says how to get one."""


class LLMError(DataShuntError):
    """The large model failed (timeout, HTTP error, empty answer) after the configured retries."""


class StoreError(DataShuntError):
    """The call store could not be opened, written or read."""
