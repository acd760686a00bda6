"""How LangChain models are called: what a request renders to (the exact messages, as the store
records them) and how the model is invoked; the engine times, retries, parses and records."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig

from datashunt import LLMReply, LLMRequest
from datashunt.adapters import ModelCall, Rendered, model_name_of, unreadable_as_llm_error
from datashunt.llm.retry import time_left

from ._convert import as_messages, message_text, message_to_reply, with_image

__all__ = ["DEFAULT_ATTEMPT_TIMEOUT", "ChatCall", "ChatModelCall", "single_attempt"]


class ChatCall(ModelCall[Any]):
    """A chat model (or any runnable to a message) invoked with a run config and call options
    (``stop``, ``temperature``...): sent, streamed, its message read back."""

    def __init__(
        self,
        llm: Runnable[Any, BaseMessage],
        config: RunnableConfig,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.llm, self.config, self.options = llm, config, dict(options or {})
        self.model_name = model_name_of(llm)

    def send(self, payload: Any) -> LLMReply:
        with unreadable_as_llm_error():
            options = {**self.options, **self._bounded()}
            return message_to_reply(self.llm.invoke(payload, self.config, **options))

    def _bounded(self) -> dict[str, Any]:
        """For an OpenAI chat model (see :func:`single_attempt`), this attempt's timeout: what
        is left of the retry policy's deadline, when less than the model's own."""
        left, own = time_left(), getattr(self.llm, "request_timeout", None)
        if left is None or getattr(self.llm, "root_client", None) is None:
            return {}
        return {"timeout": min(left, own) if isinstance(own, int | float) else left}

    async def asend(self, payload: Any) -> LLMReply:
        with unreadable_as_llm_error():
            return message_to_reply(await self.llm.ainvoke(payload, self.config, **self.options))

    def is_empty(self, reply: LLMReply) -> bool:
        # a message that calls a tool is an answer even with no text
        return not reply.text.strip() and not getattr(reply.raw, "tool_calls", None)

    def stream(self, payload: Any) -> Iterator[Any]:
        return self.llm.stream(payload, self.config, **self.options)

    def astream(self, payload: Any) -> AsyncIterator[Any]:
        return self.llm.astream(payload, self.config, **self.options)

    def chunk_text(self, chunk: Any) -> str:
        # a tool-call chunk reached the caller as surely as text: no retry after it either
        return message_text(chunk) or json.dumps(getattr(chunk, "tool_call_chunks", None) or "")

    def reply(self, acc: Any) -> LLMReply:
        return message_to_reply(acc)


class ChatModelCall(ChatCall):
    """A prompt template and a chat model, for one input of a classification shunt.

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
        super().__init__(llm, config)
        self.prompt, self.extras = prompt, dict(extras or {})

    def render(self, request: LLMRequest) -> Rendered[Any]:
        value = self.prompt.invoke({**self.extras, **request.variables}, self.config)
        return self._rendered(value, request)

    async def arender(self, request: LLMRequest) -> Rendered[Any]:
        value = await self.prompt.ainvoke({**self.extras, **request.variables}, self.config)
        return self._rendered(value, request)

    def _rendered(self, value: Any, request: LLMRequest) -> Rendered[Any]:
        value = with_image(value, request.text)  # an image input: a block of the user message
        return Rendered(value, as_messages(value))


#: Seconds one attempt of a model call may take when neither the chat model nor the shunt's
#: retry policy sets one (``ChatOpenAI()``'s own default waits forever on a hung server).
DEFAULT_ATTEMPT_TIMEOUT = 30.0


def single_attempt(llm: Any, retry: Any = None) -> Any:
    """``llm`` as one attempt per call: an OpenAI chat model (``ChatOpenAI``, ``AzureChatOpenAI``
    and kin) gets a copy whose client retries nothing and gives up after one attempt's timeout,
    so that the shunt's :class:`~datashunt.RetryPolicy` makes (and the store counts) every
    request. Other models are returned as they are: give them ``max_retries=0`` yourself.

    The timeout is the model's own ``request_timeout`` when set, else the retry policy's
    ``attempt_timeout`` when it has one, else :data:`DEFAULT_ATTEMPT_TIMEOUT`.
    """
    root = getattr(llm, "root_client", None)
    if root is None or not hasattr(root, "with_options") or not hasattr(llm, "model_copy"):
        return llm
    own = getattr(llm, "request_timeout", None)
    timeout = own if own is not None else getattr(retry, "attempt_timeout", None)
    timeout = timeout if timeout is not None else DEFAULT_ATTEMPT_TIMEOUT
    update: dict[str, Any] = {"max_retries": 0, "request_timeout": timeout}
    update["root_client"] = root.with_options(max_retries=0, timeout=timeout)
    update["client"] = update["root_client"].chat.completions
    aroot = getattr(llm, "root_async_client", None)
    if aroot is not None:
        update["root_async_client"] = aroot.with_options(max_retries=0, timeout=timeout)
        update["async_client"] = update["root_async_client"].chat.completions
    return llm.model_copy(update=update)
