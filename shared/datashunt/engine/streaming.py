"""The streaming attempt, written once: accumulate, bound the idle wait, retry only while no
text has reached the caller, then conclude like any other call.

:func:`stream_ask` and :func:`astream_ask` yield the model's chunks as they come and, last, the
:class:`ShuntResult` (or raise :class:`LLMError` under ``on_llm_error="raise"``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from ..types import LLMReply, LLMRequest, ShuntResult
from .calls import ModelCall, Rendered
from .idle import aiter_with_idle_timeout, iter_with_idle_timeout
from .steps import ShuntSteps

__all__ = ["astream_ask", "stream_ask"]


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

    def wait(self, shunt: ShuntSteps, attempt: int) -> float | None:
        """Seconds before the next attempt, or ``None`` to stop: text already sent to the
        caller cannot be taken back, so such a stream is never retried."""
        if self.error is None or self.sent:
            return None
        return shunt.retry.delay(attempt, self.error)


def _conclude(
    shunt: ShuntSteps,
    request: LLMRequest,
    rendered: Rendered[Any] | None,
    state: _Attempt | None,
    error: BaseException | None,
    t0: float,
    attempts: int,
    run_id: str | None,
) -> ShuntResult:
    reply = state.value if state is not None else None
    err = error if state is None else state.error
    call = state.call if state is not None else None
    return shunt.finish(
        request,
        reply,
        error=err,
        latency_s=time.perf_counter() - t0,
        run_id=run_id,
        attempts=attempts,
        messages=rendered.messages if rendered is not None else None,
        model_name=call.model_name if call is not None else None,
    )


def stream_ask(
    shunt: ShuntSteps,
    request: LLMRequest,
    call: ModelCall[Any],
    *,
    run_id: str | None = None,
    idle_timeout: float | None = None,
) -> Iterator[Any]:
    """Stream one LLM call under the shunt's retry policy; the last item is the result."""
    t0 = time.perf_counter()
    try:
        rendered: Rendered[Any] | None = call.render(request)
    except Exception as exc:  # a template error is recorded, then fallback or raise
        yield _conclude(shunt, request, None, None, exc, t0, 0, run_id)
        return
    assert rendered is not None  # noqa: S101 - for the type checker
    attempt = 0
    while True:
        attempt += 1
        state = _Attempt(call)
        try:
            for chunk in iter_with_idle_timeout(call.stream(rendered.payload), idle_timeout):
                state.add(chunk)
                yield chunk
        except Exception as exc:
            state.error = exc
        state.settle()  # an empty answer becomes the attempt's error
        wait = state.wait(shunt, attempt)
        if wait is None:
            break
        time.sleep(wait)
    yield _conclude(shunt, request, rendered, state, None, t0, attempt, run_id)


async def astream_ask(
    shunt: ShuntSteps,
    request: LLMRequest,
    call: ModelCall[Any],
    *,
    run_id: str | None = None,
    idle_timeout: float | None = None,
) -> AsyncIterator[Any]:
    """Async :func:`stream_ask`: the store write runs in a thread."""
    t0 = time.perf_counter()
    try:
        rendered: Rendered[Any] | None = await call.arender(request)
    except Exception as exc:
        yield await asyncio.to_thread(_conclude, shunt, request, None, None, exc, t0, 0, run_id)
        return
    assert rendered is not None  # noqa: S101
    attempt = 0
    while True:
        attempt += 1
        state = _Attempt(call)
        try:
            chunks = call.astream(rendered.payload)
            async for chunk in aiter_with_idle_timeout(chunks, idle_timeout):
                state.add(chunk)
                yield chunk
        except Exception as exc:
            state.error = exc
        state.settle()
        wait = state.wait(shunt, attempt)
        if wait is None:
            break
        await asyncio.sleep(wait)
    yield await asyncio.to_thread(
        _conclude, shunt, request, rendered, state, None, t0, attempt, run_id
    )
