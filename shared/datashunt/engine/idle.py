"""Idle timeouts for streamed answers: a stream that stops sending is an error, not a hang.

A client's own timeout bounds one read; a server that sends a chunk now and then, or a proxy
that keeps the connection open, can still hold a caller forever. These wrappers bound the wait
for each next chunk instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import TypeVar

from ..errors import ConfigError, StreamIdleError

__all__ = ["StreamIdleError", "aiter_with_idle_timeout", "iter_with_idle_timeout"]

T = TypeVar("T")

_DONE = object()


def _check(timeout: float) -> None:
    if not timeout > 0:
        raise ConfigError(f"stream idle timeout must be > 0 seconds, got {timeout}")


def iter_with_idle_timeout(source: Iterable[T], timeout: float | None) -> Iterator[T]:
    """Yield from ``source``, raising :class:`StreamIdleError` if a chunk takes > ``timeout`` s.

    With a timeout, ``source`` is read in a daemon thread (in a copy of the caller's context, so
    callbacks and tracing still see their run). A thread cannot be interrupted: after a timeout
    it is abandoned and ends when the blocked read returns or the client's own timeout fires.
    """
    if timeout is None:
        yield from source
        return
    _check(timeout)
    box: queue.Queue[object] = queue.Queue()
    stop = threading.Event()

    def pump() -> None:
        try:
            for item in source:
                box.put(item)
                if stop.is_set():
                    break
        except BaseException as exc:  # handed to the consumer, raised there
            box.put(exc)
        else:
            box.put(_DONE)

    ctx = contextvars.copy_context()
    threading.Thread(target=ctx.run, args=(pump,), daemon=True, name="datashunt-stream").start()
    try:
        while True:
            try:
                item = box.get(timeout=timeout)
            except queue.Empty:
                raise StreamIdleError(timeout) from None
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()


async def aiter_with_idle_timeout(
    source: AsyncIterable[T], timeout: float | None
) -> AsyncIterator[T]:
    """Async :func:`iter_with_idle_timeout`: the pending read is cancelled on timeout."""
    if timeout is None:
        async for item in source:
            yield item
        return
    _check(timeout)
    it = source.__aiter__()
    try:
        while True:
            try:
                item = await asyncio.wait_for(it.__anext__(), timeout)
            except StopAsyncIteration:
                return
            except asyncio.TimeoutError:  # the builtin TimeoutError from 3.11 on
                raise StreamIdleError(timeout) from None
            yield item
    finally:
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
