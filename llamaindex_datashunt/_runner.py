"""The steps every LlamaIndex adapter shares: plan with the gate, answer small, ask the LLM.

The LLM call itself belongs to the engine (:meth:`datashunt.Shunt.ask` / ``aask``: timing,
retries, parsing, recording); :class:`LlamaIndexCall` only says how a LlamaIndex ``LLM`` is
called and which messages it receives. Calls made here are tagged so that
:class:`DataShuntEventHandler` does not record them a second time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.llms import LLM
from llama_index_instrumentation.dispatcher import active_instrument_tags, instrument_tags

from datashunt import (
    Decision,
    LLMReply,
    LLMRequest,
    Message,
    ModelCall,
    Rendered,
    Shunt,
    ShuntResult,
)

from ._replies import to_reply

__all__ = ["RECORDED_TAG", "LlamaIndexCall", "ShuntRunner", "recorded_scope"]

#: Instrumentation tag on LLM events whose call datashunt records itself.
RECORDED_TAG = "datashunt.recorded"

Payload = list[ChatMessage] | str


@contextmanager
def recorded_scope() -> Iterator[None]:
    """Tag the LLM events emitted inside as already recorded (the tags of the caller are kept)."""
    with instrument_tags({**active_instrument_tags.get(), RECORDED_TAG: True}):
        yield


class LlamaIndexCall(ModelCall[Payload]):
    """A LlamaIndex ``LLM``: a chat model gets ``messages`` (default: the request's prompt as
    one user message), a completion model gets the prompt.

    Args:
        llm: the LlamaIndex LLM.
        messages: the exact chat messages to send (e.g. with an injected system message).
        prompt: the completion prompt to send instead of the request's (completion models).
        kwargs: passed to ``chat`` / ``complete``.
    """

    def __init__(
        self,
        llm: LLM,
        *,
        messages: Sequence[ChatMessage] | None = None,
        prompt: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.llm, self.messages, self.prompt, self.kwargs = llm, messages, prompt, kwargs
        self.model_name = getattr(llm.metadata, "model_name", None) or None

    def render(self, request: LLMRequest) -> Rendered[Payload]:
        if self.messages is not None:
            sent = list(self.messages)
        elif self.prompt is None and self.llm.metadata.is_chat_model:
            sent = [ChatMessage(role=MessageRole.USER, content=request.prompt)]
        else:
            text = self.prompt if self.prompt is not None else request.prompt
            return Rendered(text, (Message("user", text),))
        return Rendered(sent, tuple(Message(m.role.value, m.content or "") for m in sent))

    def send(self, payload: Payload) -> LLMReply:
        with recorded_scope():
            if isinstance(payload, str):
                return _with_raw(self.llm.complete(payload, **self.kwargs))
            return _with_raw(self.llm.chat(payload, **self.kwargs))

    async def asend(self, payload: Payload) -> LLMReply:
        with recorded_scope():
            if isinstance(payload, str):
                return _with_raw(await self.llm.acomplete(payload, **self.kwargs))
            return _with_raw(await self.llm.achat(payload, **self.kwargs))


def _with_raw(response: Any) -> LLMReply:
    return replace(to_reply(response), raw=response)


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
