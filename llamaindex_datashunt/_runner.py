"""The steps every LlamaIndex adapter shares: plan with the gate, answer small, ask the LLM.

Each step calls the core (:meth:`Shunt.decide`, :meth:`Shunt.prepare`,
:meth:`Shunt.small_result`, :meth:`Shunt.finish`); the async forms run the gate pass and the
store write in a thread and differ from the sync ones only in how the LLM is awaited.
LLM calls made here are tagged so that :class:`DataShuntEventHandler` does not record them a
second time (``Shunt.finish`` already has).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.llms import LLM
from llama_index_instrumentation.dispatcher import active_instrument_tags, instrument_tags

from datashunt import Decision, LLMReply, LLMRequest, Shunt, ShuntResult
from datashunt.retry import empty_answer_error

from ._replies import to_reply

__all__ = ["RECORDED_TAG", "ShuntRunner", "recorded_scope"]

#: Instrumentation tag on LLM events whose call datashunt records itself.
RECORDED_TAG = "datashunt.recorded"


@contextmanager
def recorded_scope() -> Iterator[None]:
    """Tag the LLM events emitted inside as already recorded (the tags of the caller are kept)."""
    with instrument_tags({**active_instrument_tags.get(), RECORDED_TAG: True}):
        yield


class ShuntRunner:
    """The shared steps over one :class:`Shunt`.

    Args:
        shunt: the core shunt (gate, policy, prompt mode, template, store).
    """

    def __init__(self, shunt: Shunt) -> None:
        if not isinstance(shunt, Shunt):
            raise TypeError(
                f"shunt must be a datashunt.Shunt, got {type(shunt).__name__}: build one with "
                "Shunt(gate, policy, store=...) or Shunt.from_dir(path)"
            )
        self.shunt = shunt

    def plan(self, text: str) -> tuple[Decision, LLMRequest | None]:
        """One gate pass; the LLM request too when the input is uncertain."""
        decision = self.shunt.decide([text])[0]
        if decision.route == "small":
            return decision, None
        return decision, self.shunt.prepare([text], [decision])[0]

    async def aplan(self, text: str) -> tuple[Decision, LLMRequest | None]:
        """:meth:`plan` in a thread: gate inference never runs on the event loop."""
        return await asyncio.to_thread(self.plan, text)

    def small(self, text: str, decision: Decision, run_id: str | None = None) -> ShuntResult:
        """The gate's answer (recorded when the shunt records small answers)."""
        return self.shunt.small_result(text, decision, run_id=run_id)

    async def asmall(self, text: str, decision: Decision, run_id: str | None = None) -> ShuntResult:
        """:meth:`small` with the store write in a thread."""
        return await asyncio.to_thread(self.small, text, decision, run_id)

    def ask(
        self,
        request: LLMRequest,
        call: Callable[[], object],
        *,
        run_id: str | None = None,
    ) -> ShuntResult:
        """Call the LLM (``call()``), then parse, record and fall back through ``Shunt.finish``.

        Args:
            request: the request; its ``prompt`` is what the store records as sent.
            call: makes the LLM call, returns a LlamaIndex chat or completion response.
            run_id: stored with the record.
        """

        def once() -> LLMReply:
            with recorded_scope():
                return _non_empty(to_reply(call()))

        t0 = time.perf_counter()
        # any provider error is retried per the shunt's policy, then recorded: fallback or raise
        out = self.shunt.retry.call(once)
        latency = time.perf_counter() - t0
        return self.shunt.finish(
            request,
            out.value,
            error=out.error,
            latency_s=latency,
            run_id=run_id,
            attempts=out.attempts,
        )

    async def aask(
        self,
        request: LLMRequest,
        call: Callable[[], Awaitable[Any]],
        *,
        run_id: str | None = None,
    ) -> ShuntResult:
        """Async :meth:`ask`: the LLM call is awaited, the store write runs in a thread."""

        async def once() -> LLMReply:
            with recorded_scope():
                return _non_empty(to_reply(await call()))

        t0 = time.perf_counter()
        out = await self.shunt.retry.acall(once)
        latency = time.perf_counter() - t0
        return await asyncio.to_thread(
            self.shunt.finish,
            request,
            out.value,
            error=out.error,
            latency_s=latency,
            run_id=run_id,
            attempts=out.attempts,
        )

    def ask_llm(
        self,
        llm: LLM,
        request: LLMRequest,
        *,
        run_id: str | None = None,
    ) -> ShuntResult:
        """:meth:`ask` with ``request.prompt`` (a user message to a chat model, else completion)."""
        if llm.metadata.is_chat_model:
            messages = _as_messages(request.prompt)
            return self.ask(request, lambda: llm.chat(messages), run_id=run_id)
        return self.ask(request, lambda: llm.complete(request.prompt), run_id=run_id)

    async def aask_llm(
        self,
        llm: LLM,
        request: LLMRequest,
        *,
        run_id: str | None = None,
    ) -> ShuntResult:
        """Async :meth:`ask_llm`."""
        if llm.metadata.is_chat_model:
            messages = _as_messages(request.prompt)
            return await self.aask(request, lambda: llm.achat(messages), run_id=run_id)
        return await self.aask(request, lambda: llm.acomplete(request.prompt), run_id=run_id)


def _non_empty(reply: LLMReply) -> LLMReply:
    if (err := empty_answer_error(reply.text)) is not None:
        raise err
    return reply


def _as_messages(prompt: str) -> list[ChatMessage]:
    return [ChatMessage(role=MessageRole.USER, content=prompt)]
