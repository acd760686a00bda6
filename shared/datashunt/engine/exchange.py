"""One model call sent under the retry policy and timed: the step every LLM call shares.

:func:`exchange` / :func:`aexchange` are the only code that sends to a model, retries and
times it; :meth:`datashunt.Shunt.ask` (then parse and record) and the generative gate's
escalation (then record) both build on them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..llm.retry import RetryPolicy
from ..types import LLMReply
from .calls import ModelCall

__all__ = ["Exchange", "aexchange", "exchange"]


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
