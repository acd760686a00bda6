"""How LangChain models are called: the adapter's only contribution to the engine's lifecycle.

The engine (:meth:`datashunt.Shunt.ask` and its async and streaming forms) times, retries,
parses and records every call; these classes say only how to render a request into what a
LangChain model takes and how to invoke it. ``render`` reports the exact messages the model
receives, so the store records what was sent, whatever the prompt template.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig

from datashunt import LLMReply, LLMRequest
from datashunt.adapters import ModelCall, Rendered

from ._convert import as_messages, message_text, message_to_reply, model_name_of, with_image

__all__ = ["ChatModelCall"]


class ChatModelCall(ModelCall[Any]):
    """A prompt template and a chat model (or any runnable to a message), for one input.

    Args:
        prompt: renders the shunt variables (plus ``extras``) into a prompt value.
        llm: the chat model or runnable.
        config: the run config the model is invoked with (callbacks, metadata, tags).
        extras: further template variables (the other keys of a dict input).
    """

    def __init__(
        self,
        prompt: Runnable[dict[str, Any], Any],
        llm: Runnable[Any, BaseMessage],
        config: RunnableConfig,
        extras: Mapping[str, Any] | None = None,
    ) -> None:
        self.prompt, self.llm, self.config = prompt, llm, config
        self.extras = dict(extras or {})
        self.model_name = model_name_of(llm)

    def _variables(self, request: LLMRequest) -> dict[str, Any]:
        return {**self.extras, **request.variables}

    def render(self, request: LLMRequest) -> Rendered[Any]:
        value = with_image(self.prompt.invoke(self._variables(request), self.config), request.text)
        return Rendered(value, as_messages(value))

    async def arender(self, request: LLMRequest) -> Rendered[Any]:
        value = await self.prompt.ainvoke(self._variables(request), self.config)
        value = with_image(value, request.text)  # an image input: a block of the user message
        return Rendered(value, as_messages(value))

    def send(self, payload: Any) -> LLMReply:
        return message_to_reply(self.llm.invoke(payload, self.config))

    async def asend(self, payload: Any) -> LLMReply:
        return message_to_reply(await self.llm.ainvoke(payload, self.config))

    def is_empty(self, reply: LLMReply) -> bool:
        # a message that calls a tool is an answer even with no text
        return not reply.text.strip() and not getattr(reply.raw, "tool_calls", None)

    def stream(self, payload: Any) -> Iterator[Any]:
        return self.llm.stream(payload, self.config)

    def astream(self, payload: Any) -> AsyncIterator[Any]:
        return self.llm.astream(payload, self.config)

    def chunk_text(self, chunk: Any) -> str:
        return message_text(chunk)

    def reply(self, acc: Any) -> LLMReply:
        return message_to_reply(acc)
