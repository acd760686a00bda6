"""One model call sent under the retry policy and timed: the step every LLM call shares.

:func:`exchange` / :func:`aexchange` are the only code that sends to a model, retries and
times it; :meth:`datashunt.Shunt.ask` (then parse and record) and the generative gate's
escalation (then record) both build on them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..errors import LLMError
from ..llm.retry import RetryPolicy, status_of
from ..store import describe_error
from ..types import LLMReply
from .calls import ModelCall

__all__ = ["Exchange", "aexchange", "call_failed", "exchange"]


@dataclass(frozen=True)
class Exchange:
    """What one model call came to.

    Attributes:
        reply: the checked answer, or ``None`` when every attempt failed.
        error: the last attempt's error, or ``None``.
        attempts: calls made, retries included (0: it failed before sending).
        latency_s: wall time from ``started`` (rendering included) to the last answer.
    """

    reply: LLMReply | None
    error: BaseException | None
    attempts: int
    latency_s: float

    @classmethod
    def failed(cls, error: BaseException, started: float) -> Exchange:
        """A call that failed before anything was sent (a template error)."""
        return cls(None, error, 0, time.perf_counter() - started)


def exchange(
    call: ModelCall[Any], payload: Any, retry: RetryPolicy, started: float | None = None
) -> Exchange:
    """Send ``payload`` through ``call`` until an answer or the policy stops (never raises)."""
    t0 = time.perf_counter() if started is None else started
    out = retry.call(lambda: call.checked(call.send(payload)))
    return Exchange(out.value, out.error, out.attempts, time.perf_counter() - t0)


async def aexchange(
    call: ModelCall[Any], payload: Any, retry: RetryPolicy, started: float | None = None
) -> Exchange:
    """Async :func:`exchange`."""
    t0 = time.perf_counter() if started is None else started

    async def once() -> LLMReply:
        return call.checked(await call.asend(payload))

    out = await retry.acall(once)
    return Exchange(out.value, out.error, out.attempts, time.perf_counter() - t0)


def call_failed(error: BaseException | str, attempts: int, what: str = "the LLM call") -> LLMError:
    """The error raised for a failed call under ``on_llm_error="raise"`` (after recording).

    Args:
        error: the last attempt's error (kept as the cause) or its description.
        attempts: calls made, retries included.
        what: the call, as the message names it.
    """
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    cause = error if isinstance(error, BaseException) else None
    failed = LLMError(
        f"{what} failed{tries}: {describe_error(error)}",
        status=status_of(cause) if cause is not None else None,
        attempts=attempts,
    )
    failed.__cause__ = cause
    return failed
