"""Bounded retries with backoff around a large-model call, shared by the core and the adapters.

:class:`RetryPolicy` is pure configuration plus one decision, :meth:`RetryPolicy.delay`: how
long to wait before the next attempt, or ``None`` to stop. :meth:`RetryPolicy.call` and
:meth:`RetryPolicy.acall` apply it with tenacity (``Retrying`` / ``AsyncRetrying``, whose
``retry``, ``wait`` and ``stop`` are built from the policy); they differ only in how they sleep.
Neither raises what the call raised: the :class:`Attempted` outcome carries the value or the
last error and the number of attempts, so that every input still gets a result (or a clear
error) and a record.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

from tenacity import AsyncRetrying, RetryCallState, Retrying, stop_after_attempt

from ..errors import ConfigError, LLMError

__all__ = [
    "RETRYABLE_STATUSES",
    "Attempted",
    "RetryPolicy",
    "empty_answer_error",
    "retry_after_of",
    "status_of",
]

T = TypeVar("T")

#: HTTP statuses worth another try: timeouts, conflicts, rate limits and server-side failures.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})

# Transport failures of the common HTTP clients, by class name so that the core imports none of
# them: openai's APIConnectionError (parent of APITimeoutError) and httpx's TransportError
# (parent of its timeouts, connect and protocol errors). Names anywhere in the MRO count.
_TRANSIENT_NAMES = frozenset(
    {"APIConnectionError", "APITimeoutError", "TransportError", "TimeoutException"}
)


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


@dataclass(frozen=True)
class Attempted(Generic[T]):
    """The outcome of a call under a :class:`RetryPolicy`.

    Attributes:
        value: what the last attempt returned (``None`` when every attempt failed).
        error: the last attempt's error, or ``None`` on success.
        attempts: how many times the call was made.
    """

    value: T | None
    error: Exception | None
    attempts: int


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how patiently, a failed large-model call is tried again.

    The wait before attempt ``n + 1`` is ``min(max_delay, base_delay * 2 ** (n - 1))``, reduced
    by up to ``jitter`` of itself at random (so that many clients failing together do not come
    back together), unless the server sent ``Retry-After``: that is honoured, capped at
    ``max_retry_after``. Only transient errors are retried (see :meth:`retryable`).

    Attributes:
        attempts: calls in all, the first included (1 disables retries).
        base_delay: seconds before the second attempt.
        max_delay: the longest computed wait, in seconds.
        jitter: the share of each wait drawn at random, in [0, 1].
        honour_retry_after: wait as long as the server's ``Retry-After`` says.
        max_retry_after: a longer ``Retry-After`` than this (seconds) is not waited for: the
            call fails at once, so a caller is never parked for minutes.
        retry_statuses: HTTP statuses that are retried.
        retry_on: exception types that are retried whatever their status: by default
            timeouts, refused or dropped connections, and a body that is not JSON (a
            gateway's error page in place of the answer).

    Example:
        >>> policy = RetryPolicy(attempts=4, base_delay=0.2)
        >>> policy.delay(1, TimeoutError("slow"), rng=lambda: 0.0)
        0.2
    """

    attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    jitter: float = 0.5
    honour_retry_after: bool = True
    max_retry_after: float = 60.0
    retry_statuses: frozenset[int] = RETRYABLE_STATUSES
    retry_on: tuple[type[BaseException], ...] = (
        TimeoutError,
        ConnectionError,
        json.JSONDecodeError,
    )

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise ConfigError(f"attempts must be an integer >= 1, got {self.attempts!r}")
        for name in ("base_delay", "max_delay", "max_retry_after"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a number of seconds >= 0, got {value}")
        if not (math.isfinite(self.jitter) and 0.0 <= self.jitter <= 1.0):
            raise ConfigError(f"jitter must be in [0, 1], got {self.jitter}")
        object.__setattr__(self, "retry_statuses", frozenset(self.retry_statuses))
        object.__setattr__(self, "retry_on", tuple(self.retry_on))

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that calls once and never retries."""
        return cls(attempts=1)

    def retryable(self, exc: BaseException) -> bool:
        """Whether another attempt may succeed where ``exc`` failed.

        An explicit ``retryable`` attribute (set on :class:`LLMError`) decides; then an HTTP
        status decides (``retry_statuses``); then the exception's type (``retry_on``, or a
        transport error of openai / httpx, recognised by class name).
        """
        flag = getattr(exc, "retryable", None)
        if isinstance(flag, bool):
            return flag
        status = status_of(exc)
        # A 2xx can ride along on a decoding error (langchain-openai attaches the response to a
        # JSONDecodeError): only an error status speaks for or against another try.
        if status is not None and status >= 400:
            return status in self.retry_statuses
        if isinstance(exc, self.retry_on):
            return True
        return any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__)

    def delay(
        self, attempt: int, exc: BaseException, *, rng: Callable[[], float] = random.random
    ) -> float | None:
        """Seconds to wait after failed attempt number ``attempt`` (1-based), or ``None`` to stop.

        Args:
            attempt: the attempt that just failed.
            exc: its error.
            rng: a ``[0, 1)`` random source, for the jitter.
        """
        if attempt >= self.attempts or not self.retryable(exc):
            return None
        if self.honour_retry_after:
            asked = retry_after_of(exc)
            if asked is not None:
                return asked if asked <= self.max_retry_after else None
        wait = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return wait * (1.0 - self.jitter * rng())

    def _tenacity(self) -> dict[str, Any]:
        """tenacity's ``retry``, ``wait`` and ``stop`` for one call, all from :meth:`delay`.

        :meth:`delay` is asked once per failed attempt (by ``retry``, which tenacity evaluates
        first) and ``wait`` returns what it decided: the jitter is drawn once, and the choice
        does not depend on the order in which a tenacity version asks ``wait`` and ``stop``.
        """
        decided: dict[int, float] = {}

        def retry(state: RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome is not None else None
            if not isinstance(exc, Exception):  # success, or KeyboardInterrupt / cancellation
                return False
            wait = self.delay(state.attempt_number, exc)
            if wait is None:
                return False
            decided[state.attempt_number] = wait
            return True

        def wait(state: RetryCallState) -> float:
            return decided.pop(state.attempt_number, 0.0)

        return {
            "retry": retry,
            "wait": wait,
            "stop": stop_after_attempt(self.attempts),
            "reraise": True,  # the last attempt's own error, never tenacity's RetryError
        }

    def call(
        self,
        fn: Callable[..., T],
        *args: Any,
        sleep: Callable[[float], object] = time.sleep,
    ) -> Attempted[T]:
        """Call ``fn(*args)`` until it succeeds or the policy stops; never raises its errors.

        ``KeyboardInterrupt`` and other ``BaseException`` that are not ``Exception`` pass through.
        ``sleep`` waits between attempts (a test passes a recorder).
        """
        attempts = 0

        def attempt() -> T:
            nonlocal attempts
            attempts += 1
            return fn(*args)

        def pause(seconds: float) -> None:
            sleep(seconds)

        retrying = Retrying(sleep=pause, **self._tenacity())
        try:
            return Attempted(retrying(attempt), None, attempts)
        except Exception as exc:
            return Attempted(None, exc, attempts)

    async def acall(
        self,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> Attempted[T]:
        """Async :meth:`call`: awaits ``fn(*args)`` and sleeps without blocking the loop.

        Cancellation (``asyncio.CancelledError``) is never swallowed.
        """
        attempts = 0

        async def attempt() -> T:
            nonlocal attempts
            attempts += 1
            return await fn(*args)

        async def pause(seconds: float) -> None:
            await sleep(seconds)

        retrying = AsyncRetrying(sleep=pause, **self._tenacity())
        try:
            return Attempted(await retrying(attempt), None, attempts)
        except Exception as exc:
            return Attempted(None, exc, attempts)


def empty_answer_error(text: str | None) -> LLMError | None:
    """An error for an empty answer (retried: a truncated or dropped reply), else ``None``."""
    if text is None or not text.strip():
        return LLMError("the LLM returned an empty answer", retryable=True)
    return None
