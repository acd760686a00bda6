"""One LLM call, from request to result: render, send under the retry policy, parse, record.

:meth:`Asking.ask` / :meth:`Asking.aask` (and their streaming forms) are the only place an LLM
call is timed, retried, parsed and recorded; every path reaches them through
:meth:`~datashunt.Shunt.run_plan` or directly (the batch job, calibration).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ..errors import ConfigError, LLMError
from ..types import LLMRequest, ShuntResult
from .calls import FunctionCall, ModelCall, Rendered
from .conclude import Concluding
from .exchange import Exchange, aexchange, exchange
from .streaming import astream_ask, stream_ask

__all__ = ["Asking"]


class Asking(Concluding):
    """The LLM call lifecycle of a shunt (see :class:`~datashunt.Shunt`)."""

    llm: Any
    allm: Any

    def own_call(self, *, sync: bool) -> ModelCall[Any]:
        """The shunt's own ``llm`` / ``allm`` as a :class:`ModelCall`.

        Raises:
            ConfigError: no LLM is configured (or only an async one, for a sync path).
        """
        if self.llm is None and (sync or self.allm is None):
            if self.allm is not None:
                raise ConfigError(
                    "this shunt has only an async LLM (allm): use arun/arun_batch, or pass llm="
                )
            raise ConfigError("no LLM configured: pass llm= (and/or allm=) to Shunt")
        return FunctionCall(self.llm, self.allm, self.model_name)

    def ask(
        self,
        request: LLMRequest,
        call: ModelCall[Any] | None = None,
        *,
        run_id: str | None = None,
        record: bool = True,
    ) -> ShuntResult:
        """Ask the LLM about one request: render, send under the retry policy, parse, record.

        Args:
            request: from :meth:`prepare`.
            call: how to call the model (an adapter's); default the shunt's own ``llm``.
            run_id: stored with the record.
            record: write the call to the store (the benchmark turns this off).

        Raises:
            LLMError: the call failed and ``on_llm_error="raise"`` (after recording).
        """
        call = call if call is not None else self.own_call(sync=True)
        t0 = time.perf_counter()
        try:
            rendered = call.render(request)
        except Exception as exc:  # a template error is recorded, then fallback or raise
            return self._conclude(call, request, None, Exchange.failed(exc, t0), run_id, record)
        # any provider error is retried per self.retry, then recorded: fallback or raise
        done = exchange(call, rendered.payload, self.retry, t0)
        return self._conclude(call, request, rendered, done, run_id, record)

    async def aask(
        self,
        request: LLMRequest,
        call: ModelCall[Any] | None = None,
        *,
        run_id: str | None = None,
        record: bool = True,
    ) -> ShuntResult:
        """Async :meth:`ask`: the call is awaited, the store write runs in a thread."""
        call = call if call is not None else self.own_call(sync=False)
        t0 = time.perf_counter()
        try:
            rendered = await call.arender(request)
        except Exception as exc:
            failed = Exchange.failed(exc, t0)
            return await asyncio.to_thread(
                self._conclude, call, request, None, failed, run_id, record
            )
        try:
            done = await aexchange(call, rendered.payload, self.retry, t0)
        except asyncio.CancelledError as exc:  # asyncio.wait_for, a client gone: after sending
            cut = Exchange(None, exc, 1, time.perf_counter() - t0)
            with contextlib.suppress(LLMError):  # recorded as failed; the cancel goes on
                self._conclude(call, request, rendered, cut, run_id, record)
            raise
        return await asyncio.to_thread(
            self._conclude, call, request, rendered, done, run_id, record
        )

    def ask_stream(
        self,
        request: LLMRequest,
        call: ModelCall[Any],
        *,
        run_id: str | None = None,
        idle_timeout: float | None = None,
    ) -> Iterator[Any]:
        """Stream one call: the model's chunks as they come, then the :class:`ShuntResult`.

        A stream is retried only while no text has reached the caller; ``idle_timeout``
        bounds the wait for each next chunk.
        """
        return stream_ask(self, request, call, run_id=run_id, idle_timeout=idle_timeout)

    def aask_stream(
        self,
        request: LLMRequest,
        call: ModelCall[Any],
        *,
        run_id: str | None = None,
        idle_timeout: float | None = None,
    ) -> AsyncIterator[Any]:
        """Async :meth:`ask_stream`."""
        return astream_ask(self, request, call, run_id=run_id, idle_timeout=idle_timeout)

    def _conclude(
        self,
        call: ModelCall[Any],
        request: LLMRequest,
        rendered: Rendered[Any] | None,
        done: Exchange,
        run_id: str | None,
        record: bool,
    ) -> ShuntResult:
        return self.finish(
            request,
            done.reply,
            error=done.error,
            latency_s=done.latency_s,
            run_id=run_id,
            record=record,
            attempts=done.attempts,
            messages=rendered.messages if rendered is not None else None,
            model_name=call.model_name,
        )
