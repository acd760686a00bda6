"""What an HTTP error from a model provider says: its status, and how long it asks to wait.

Read from :class:`~datashunt.errors.LLMError` or from any SDK's exception (openai, httpx,
langchain-openai), by attribute, so that the core imports none of them.
"""

from __future__ import annotations

import email.utils
import math
from datetime import datetime, timezone
from typing import Any

__all__ = ["retry_after_of", "status_of"]


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an error carries: ``LLMError.status``, or an SDK's ``status_code``."""
    for value in (
        getattr(exc, "status", None),
        getattr(exc, "status_code", None),
        getattr(getattr(exc, "response", None), "status_code", None),
    ):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _parse_retry_after(value: str) -> float | None:
    """Seconds from a ``Retry-After`` value: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)  # noqa: UP017 - keeps Python 3.10 working
        seconds = (when - datetime.now(timezone.utc)).total_seconds()  # noqa: UP017
    return max(0.0, seconds) if math.isfinite(seconds) else None


def retry_after_of(exc: BaseException) -> float | None:
    """Seconds the server asked to wait: ``LLMError.retry_after``, or the error's response
    headers (``retry-after-ms``, which OpenAI sends, then ``retry-after``)."""
    own = getattr(exc, "retry_after", None)
    if isinstance(own, int | float) and not isinstance(own, bool):
        return max(0.0, float(own))
    headers: Any = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        headers = getattr(exc, "headers", None)
    if headers is None or not hasattr(headers, "get"):  # a Mapping, httpx.Headers, HTTPMessage
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        parsed = _parse_retry_after(str(ms))
        if parsed is not None:
            return parsed / 1000.0
    raw = headers.get("retry-after")
    return _parse_retry_after(str(raw)) if raw is not None else None
