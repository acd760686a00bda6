"""The error hierarchy of datashunt, drawn once.

Every error a user can meet says what happened and what to do about it. Catch
:class:`DataShuntError` to catch them all.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "DataShuntError",
    "DriftWarning",
    "GateError",
    "InputError",
    "LLMError",
    "LLMServerError",
    "ModelNotFoundError",
    "StoreError",
    "StreamIdleError",
    "UnpricedModelWarning",
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
    """The large model failed (timeout, HTTP error, empty answer) after the configured retries.

    Args:
        message: what happened and what to do.
        status: the HTTP status, when the provider answered with an error status.
        retry_after: seconds the provider asked to wait (its ``Retry-After`` header), if any.
        retryable: whether trying again may help; ``None`` leaves it to
            :class:`datashunt.RetryPolicy` (which then goes by ``status``).
        attempts: how many calls were made before giving up, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
        attempts: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.retryable = retryable
        self.attempts = attempts


class StoreError(DataShuntError):
    """The call store could not be opened, written or read."""


class StreamIdleError(LLMError, TimeoutError):
    """A stream sent nothing for longer than its idle timeout (retried like a timeout)."""

    def __init__(self, timeout: float) -> None:
        super().__init__(
            f"the LLM stream sent nothing for {timeout:g}s (stream_idle_timeout); "
            "the server may be overloaded or stuck",
            retryable=True,
        )


class LLMServerError(DataShuntError):
    """The local LLM server could not be started (missing dependency, bad model, timeout)."""


# ---- warnings: something a user should know that does not stop the answers -----------------


class DriftWarning(UserWarning):
    """The live stream no longer looks like the calibration sample."""


class UnpricedModelWarning(UserWarning):
    """An answer came from a model the price table cannot price: its cost is unknown."""
