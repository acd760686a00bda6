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
import contextvars
import json
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tenacity import AsyncRetrying, RetryCallState, Retrying, stop_after_attempt

from ..errors import ConfigError, LLMError
from .statuses import retry_after_of, status_of

__all__ = [
    "RETRYABLE_STATUSES",
    "Attempted",
    "RetryPolicy",
    "empty_answer_error",
    "retry_after_of",
    "status_of",
    "time_left",
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


# The monotonic time by which the call in progress (in this thread or task) must end, set by
# RetryPolicy.call / acall: a client caps each request's timeout at what is left of it.
_DEADLINE_AT: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "datashunt_deadline_at", default=None
)


def time_left() -> float | None:
    """Seconds left of the deadline of the LLM call in progress (``None``: no deadline).

    A client calls it before each request and sends ``min(its timeout, time_left())`` as the
    request's timeout, so that one deadline bounds the whole call, its retries included.
    """
    at = _DEADLINE_AT.get()
    return None if at is None else max(0.0, at - time.monotonic())


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

    One deadline bounds the whole call, every attempt and wait included: no retry starts
    that could not finish before it, an async attempt is cancelled when it passes, and a
    client that reads :func:`time_left` (the core's ``OpenAICompatLLM`` does) caps each
    request's timeout at what is left. A provider client's own retries must be off (the
    openai SDK's ``max_retries=0``), so that the attempts counted here are the requests sent.

    Attributes:
        attempts: calls in all, the first included (1 disables retries).
        deadline: seconds for the whole call, retries and waits included (``None``: no
            deadline; then each request's own timeout is the only bound).
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
    deadline: float | None = 30.0  # last: positional arguments keep their meaning

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise ConfigError(f"attempts must be an integer >= 1, got {self.attempts!r}")
        if self.deadline is not None and not (
            isinstance(self.deadline, int | float)
            and math.isfinite(self.deadline)
            and self.deadline > 0
        ):
            raise ConfigError(
                f"deadline must be a number of seconds > 0 or None, got {self.deadline!r}"
            )
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
        self,
        attempt: int,
        exc: BaseException,
        *,
        rng: Callable[[], float] = random.random,
        elapsed: float = 0.0,
    ) -> float | None:
        """Seconds to wait after failed attempt number ``attempt`` (1-based), or ``None`` to stop.

        Args:
            attempt: the attempt that just failed.
            exc: its error.
            rng: a ``[0, 1)`` random source, for the jitter.
            elapsed: seconds since the call began: no retry starts past the deadline.
        """
        if attempt >= self.attempts or not self.retryable(exc):
            return None
        wait = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        wait *= 1.0 - self.jitter * rng()
        if self.honour_retry_after:
            asked = retry_after_of(exc)
            if asked is not None:
                wait = asked if asked <= self.max_retry_after else math.inf
        if self.deadline is not None and elapsed + wait >= self.deadline:
            return None
        return wait if math.isfinite(wait) else None

    def deadline_error(self, attempts: int) -> LLMError:
        """The error of a call that ran out of its deadline."""
        return LLMError(
            f"no answer within the {self.deadline:g}s deadline ({attempts} attempts; raise "
            "RetryPolicy(deadline=...) for a slow model)",
            retryable=False,
            attempts=attempts,
        )

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
            wait = self.delay(state.attempt_number, exc, elapsed=state.seconds_since_start or 0.0)
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
        token = self._start()

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
            return Attempted(None, self._past_deadline(exc, attempts), attempts)
        finally:
            _DEADLINE_AT.reset(token)

    def _start(self) -> contextvars.Token[float | None]:
        at = None if self.deadline is None else time.monotonic() + self.deadline
        outer = _DEADLINE_AT.get()  # a call inside a call keeps the earlier deadline
        return _DEADLINE_AT.set(at if outer is None or at is None else min(at, outer))

    def _past_deadline(self, exc: Exception, attempts: int) -> Exception:
        """The deadline's own error for a call that ran out of time, else ``exc``."""
        left = time_left()
        if left is not None and left <= 0.05 and self.retryable(exc):
            err = self.deadline_error(attempts)
            err.__cause__ = exc
            return err
        return exc

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
        token = self._start()

        async def attempt() -> T:
            nonlocal attempts
            attempts += 1
            left = time_left()
            if left is None:
                return await fn(*args)
            try:  # an async attempt can be cut off: it is, when the deadline passes
                return await asyncio.wait_for(fn(*args), timeout=left)
            except TimeoutError as exc:
                if (time_left() or 0.0) > 0.0:
                    raise  # the call's own timeout, before the deadline: a retry may help
                raise self.deadline_error(attempts) from exc

        async def pause(seconds: float) -> None:
            await sleep(seconds)

        retrying = AsyncRetrying(sleep=pause, **self._tenacity())
        try:
            return Attempted(await retrying(attempt), None, attempts)
        except Exception as exc:
            return Attempted(None, self._past_deadline(exc, attempts), attempts)
        finally:
            _DEADLINE_AT.reset(token)


def empty_answer_error(text: str | None) -> LLMError | None:
    """An error for an empty answer (retried: a truncated or dropped reply), else ``None``."""
    if text is None or not text.strip():
        return LLMError("the LLM returned an empty answer", retryable=True)
    return None
