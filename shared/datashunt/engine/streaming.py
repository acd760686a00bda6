"""The streaming attempt, written once: accumulate, bound the idle wait, retry only while no
text has reached the caller, then conclude like any other call.

:func:`stream_exchange` / :func:`astream_exchange` are the streamed form of
:func:`~datashunt.engine.exchange.exchange`: they yield the model's chunks as they come and,
last, a :class:`StreamedExchange`. :func:`stream_ask` and :func:`astream_ask` build the shunt's
call on them and yield, last, the :class:`ShuntResult` (or raise :class:`LLMError` under
``on_llm_error="raise"``); the generative gate's streamed escalation builds on them too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from ..llm.retry import RetryPolicy
from ..types import LLMReply, LLMRequest, ShuntResult
from .calls import ModelCall, Rendered
from .conclude import Concluding
from .exchange import Exchange
from .idle import aiter_with_idle_timeout, iter_with_idle_timeout

__all__ = ["StreamedExchange", "astream_ask", "astream_exchange", "stream_ask", "stream_exchange"]


@dataclass(frozen=True)
class StreamedExchange(Exchange):
    """What one streamed model call came to.

    Attributes:
        sent: some text reached the caller (so a failure cannot be replaced by another answer).
    """

    sent: bool = False


@dataclass
class _Attempt:
    """The state of one streaming attempt (pure; shared by the sync and async loops)."""

    call: ModelCall[Any]
    acc: Any = None
    sent: bool = False
    error: BaseException | None = None
    value: LLMReply | None = None

    def add(self, chunk: Any) -> None:
        self.acc = self.call.join(self.acc, chunk)
        self.sent = self.sent or bool(self.call.chunk_text(chunk))

    def settle(self) -> None:
        """The finished answer from the chunks; an empty one is an error worth a retry."""
        if self.error is not None:
            return
        try:
            answer = self.call.reply(self.acc) if self.acc is not None else ""
            self.value = self.call.checked(answer)
        except Exception as exc:
            self.error = exc

    def wait(self, retry: RetryPolicy, attempt: int, t0: float) -> float | None:
        """Seconds before the next attempt, or ``None`` to stop: text already sent to the
        caller cannot be taken back, so such a stream is never retried; nor is one past the
        policy's deadline."""
        if self.error is None or self.sent:
            return None
        return retry.delay(attempt, self.error, elapsed=time.perf_counter() - t0)

    def done(self, attempts: int, t0: float) -> StreamedExchange:
        value = self.value if self.error is None else None
        return StreamedExchange(value, self.error, attempts, time.perf_counter() - t0, self.sent)


def stream_exchange(
    call: ModelCall[Any],
    payload: Any,
    retry: RetryPolicy,
    *,
    idle_timeout: float | None = None,
    started: float | None = None,
) -> Iterator[Any]:
    """Stream ``payload`` through ``call`` under ``retry`` (never raises): the model's chunks,
    then a :class:`StreamedExchange`."""
    t0 = time.perf_counter() if started is None else started
    attempt = 0
    while True:
        attempt += 1
        state = _Attempt(call)
        try:
            for chunk in iter_with_idle_timeout(call.stream(payload), idle_timeout):
                state.add(chunk)
                yield chunk
        except Exception as exc:
            state.error = exc
        state.settle()  # an empty answer becomes the attempt's error
        wait = state.wait(retry, attempt, t0)
        if wait is None:
            break
        time.sleep(wait)
    yield state.done(attempt, t0)


async def astream_exchange(
    call: ModelCall[Any],
    payload: Any,
    retry: RetryPolicy,
    *,
    idle_timeout: float | None = None,
    started: float | None = None,
) -> AsyncIterator[Any]:
    """Async :func:`stream_exchange`."""
    t0 = time.perf_counter() if started is None else started
    attempt = 0
    while True:
        attempt += 1
        state = _Attempt(call)
        try:
            async for chunk in aiter_with_idle_timeout(call.astream(payload), idle_timeout):
                state.add(chunk)
                yield chunk
        except Exception as exc:
            state.error = exc
        state.settle()
        wait = state.wait(retry, attempt, t0)
        if wait is None:
            break
        await asyncio.sleep(wait)
    yield state.done(attempt, t0)


def _conclude(
    shunt: Concluding,
    request: LLMRequest,
    call: ModelCall[Any],
    rendered: Rendered[Any] | None,
    done: Exchange,
    run_id: str | None,
) -> ShuntResult:
    return shunt.finish(
        request,
        done.reply,
        error=done.error,
        latency_s=done.latency_s,
        run_id=run_id,
        attempts=done.attempts,
        messages=rendered.messages if rendered is not None else None,
        model_name=call.model_name if rendered is not None else None,
    )


def stream_ask(
    shunt: Concluding,
    request: LLMRequest,
    call: ModelCall[Any],
    *,
    run_id: str | None = None,
    idle_timeout: float | None = None,
) -> Iterator[Any]:
    """Stream one LLM call under the shunt's retry policy; the last item is the result."""
    t0 = time.perf_counter()
    try:
        rendered = call.render(request)
    except Exception as exc:  # a template error is recorded, then fallback or raise
        yield _conclude(shunt, request, call, None, Exchange.failed(exc, t0), run_id)
        return
    streamed = stream_exchange(
        call, rendered.payload, shunt.retry, idle_timeout=idle_timeout, started=t0
    )
    for item in streamed:
        if isinstance(item, StreamedExchange):
            yield _conclude(shunt, request, call, rendered, item, run_id)
        else:
            yield item


async def astream_ask(
    shunt: Concluding,
    request: LLMRequest,
    call: ModelCall[Any],
    *,
    run_id: str | None = None,
    idle_timeout: float | None = None,
) -> AsyncIterator[Any]:
    """Async :func:`stream_ask`: the store write runs in a thread."""
    t0 = time.perf_counter()
    try:
        rendered = await call.arender(request)
    except Exception as exc:
        failed = Exchange.failed(exc, t0)
        yield await asyncio.to_thread(_conclude, shunt, request, call, None, failed, run_id)
        return
    streamed = astream_exchange(
        call, rendered.payload, shunt.retry, idle_timeout=idle_timeout, started=t0
    )
    async for item in streamed:
        if isinstance(item, StreamedExchange):
            args = (shunt, request, call, rendered, item, run_id)
            yield await asyncio.to_thread(_conclude, *args)
        else:
            yield item
